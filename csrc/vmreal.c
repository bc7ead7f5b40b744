/* vmreal: runs a workload plan as real processes on a real kernel (issue 6).
 *
 *   vmreal run PLAN DATA_DIR [--cgroup PROCS_FILE] [--cpus LIST] [--limit-ms N]
 *     (--cgroup: every task goes into that cgroup.procs, the runner stays outside; --cpus: CPU
 *     affinity; --limit-ms: lower the plan's limit)
 *   vmreal task PLAN DATA_DIR ID SLOT_FD [PLAN_FD] (internal: one task, exec'd by its parent;
 *     PLAN_FD: the runner's parsed plan, mapped instead of parsing PLAN again)
 *
 * The plan (written by harness/real/plan.py) is one line per task and per operation; every
 * random value was drawn by the compiler, so the runner only executes.  Format:
 *   vmreal-plan 1
 *   tasks N | limit_us U | watchdog_us U | quantum_us U | sample_us U | measure ID
 *                                             (workload/seed/time_scale: informative)
 *   task ID NAME ROLE START_US GOAL AUTOSTART DAEMON UID NICE OOM_SCORE_ADJ IGNORE_SIGTERM PARENT
 *   op ID OP ARGS...     every op follows its task's line, in order:
 *     text FILE KB WS_KB | reserve KB | mmap KB | munmap KB | touch KB | grow KB CPU_US PHASES |
 *     compute US | sleep US | dwait US | read FILE KB CONTINUE | write FILE KB CONTINUE |
 *     spawn CHILD WAIT | waitall | make JOBS CHILD... [| CHILD...]... | exit CODE |
 *     access KB (store again into KB of the pages the task touched, in order, wrapping)
 * AUTOSTART 1: started by the runner at START_US; 0: only spawned (by spawn or make).
 *
 * Every task is its own process: fork() + exec() of this binary (a fresh address space, as make forks and execs cc1),
 * named with prctl(PR_SET_NAME) so that the kernel's "Killed process N (name)" names the task.
 *
 * Output, one line per event on stdout, each written with a single write(2) (atomic on a pipe):
 *   VMREAL <t_us> t0                                  the runner's time zero
 *   VMREAL <t_us> start ID PID NAME                   printed by the task once it is named
 *   VMREAL <t_us> exit ID PID CODE SIG MAXFAULT_US    printed by whoever reaped it
 *   VMREAL <t_us> enomem ID PID WHAT THEN             an allocation the task saw fail (WHAT: mmap, fork,
 *                                                     read, write; THEN: exit (it exits 1), continue
 *                                                     (on_fail), stop (make stops starting jobs))
 *   VMREAL <t_us> ioerr ID PID WHAT ERRNO THEN        another I/O error
 *   VMREAL <t_us> stop REASON                         the run is over: the runner kills what is left
 *   VMREAL <t_us> limit                               (after stop, unless done) the limit was reached
 *   VMREAL <t_us> stuck ID PID STATE SINCE_US         at the limit: a task inside one allocation for >= watchdog
 *   VMREAL <t_us> end REASON                          done | limit | signal
 *   VMREAL <t_us> step ID PID K START_US RUNDELAY_US  a measured task (plan line 'measure ID')
 *                                                     completed its op K (0-based), begun at
 *                                                     START_US; RUNDELAY_US: the time it spent
 *                                                     runnable but waiting for a CPU meanwhile
 *                                                     (/proc/self/schedstat's run_delay)
 *   VMREAL <t_us> wait ID PID START_US                a measured task waited for its children
 *                                                     (spawn with wait, waitall, make) from START_US
 *   VMREAL <t_us> psi SOME_TOTAL FULL_TOTAL SOME_AVG10 FULL_AVG10 REFAULT_FILE PGMAJFAULT
 *                                                     every sample_us (plan; 0: never): the
 *                                                     memory pressure (totals in us, averages in
 *                                                     percent) and the counters of /proc/vmstat,
 *                                                     or of the cgroup's memory.pressure and
 *                                                     memory.stat with --cgroup; -1 if unreadable
 * t_us is CLOCK_MONOTONIC in microseconds.  If /dev/kmsg can be written, the runner first
 * writes "vmreal: clock <t_us>" there, so that the kernel log's timestamps (local_clock) can be
 * put on the same clock by whoever reads both.
 *
 * Memory is touched with volatile stores (one per page: the kernel zero-fills the rest), so
 * no compiler can drop them.  CPU work spins on CLOCK_PROCESS_CPUTIME_ID: a task that shares
 * its CPU takes longer in wall time, as in the simulator.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/fuse.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/uio.h>

#define PAGE 4096L
#define CHUNK (64 * 1024L)

enum { OP_RESERVE, OP_TEXT, OP_MMAP, OP_MUNMAP, OP_TOUCH, OP_GROW, OP_COMPUTE, OP_SLEEP,
       OP_READ, OP_WRITE, OP_SPAWN, OP_WAITALL, OP_MAKE, OP_EXIT, OP_DWAIT, OP_ACCESS };
static const char *OP_NAMES[] = {"reserve", "text", "mmap", "munmap", "touch", "grow", "compute",
                                 "sleep", "read", "write", "spawn", "waitall", "make", "exit", "dwait", "access", 0};

struct op { int type; long a, b, c; int file; int list_off, list_len; };
struct task {
    char name[64], role[16];
    long start_us;
    int goal, autostart, daemon, uid, nice, oomadj, ignterm, measure;
    int op_off, op_n, defined;
};
/* one per task, in a shared memfd: the runner and the parents read what the task wrote */
struct slot {
    volatile int32_t pid, state;            /* state 0 not started, 1 started, 2 reaped */
    volatile int64_t fault_start_us;        /* inside an allocation since (0: not) */
    volatile int64_t max_fault_us;          /* slowest single allocation so far */
    int64_t pad[5];
};

static struct task *tasks;
static int ntasks;
static struct op *ops;
static int nops, cap_ops;
static int *lists;
static int nlists, cap_lists;
static char **files;
static int nfiles;
static long limit_us = 600000000L, watchdog_us = 12000000L, quantum_us = 1000, sample_us = 0;
static struct slot *slots;
static const char *plan_path, *data_dir;
static int self_id = -1;
static volatile char sink;

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int64_t cpu_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void emit(const char *fmt, ...) {
    char buf[512];
    int n = snprintf(buf, sizeof buf, "VMREAL %lld ", (long long)now_us());
    va_list ap;
    va_start(ap, fmt);
    n += vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 2) n = sizeof buf - 2;
    buf[n++] = '\n';
    ssize_t w = write(1, buf, n);
    (void)w;
}

static void die(const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(stderr, "vmreal: %s\n", buf);
    emit("error %s", buf);
    exit(3);
}

/* ------------------------------------------------------------------------- plan */
static int file_index(const char *name) {
    for (int i = 0; i < nfiles; i++)
        if (!strcmp(files[i], name)) return i;
    files = realloc(files, sizeof(char *) * (nfiles + 1));
    files[nfiles] = strdup(name);
    return nfiles++;
}

static void push_list(int v) {
    if (nlists == cap_lists) {
        cap_lists = cap_lists ? 2 * cap_lists : 1024;
        lists = realloc(lists, sizeof(int) * cap_lists);
    }
    lists[nlists++] = v;
}

static void load_plan(const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) die("cannot open plan %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t len = 0;
    int lineno = 0, last = -1;
    while (getline(&line, &len, f) > 0) {
        lineno++;
        char *save, *tok = strtok_r(line, " \t\r\n", &save);
        if (!tok || tok[0] == '#') continue;
        if (lineno == 1) {
            char *v = strtok_r(NULL, " \t\r\n", &save);
            if (strcmp(tok, "vmreal-plan") || !v || atoi(v) != 1)
                die("%s: not a version 1 plan (first line must be 'vmreal-plan 1')", path);
            continue;
        }
        if (!strcmp(tok, "tasks")) {
            ntasks = atoi(strtok_r(NULL, " \t\r\n", &save));
            tasks = calloc(ntasks, sizeof *tasks);
        } else if (!strcmp(tok, "limit_us")) {
            limit_us = atol(strtok_r(NULL, " \t\r\n", &save));
        } else if (!strcmp(tok, "watchdog_us")) {
            watchdog_us = atol(strtok_r(NULL, " \t\r\n", &save));
        } else if (!strcmp(tok, "workload") || !strcmp(tok, "seed") || !strcmp(tok, "time_scale")) {
            continue;                                         /* informative only */
        } else if (!strcmp(tok, "quantum_us")) {
            quantum_us = atol(strtok_r(NULL, " \t\r\n", &save));
            if (quantum_us < 100) quantum_us = 100;
        } else if (!strcmp(tok, "sample_us")) {
            sample_us = atol(strtok_r(NULL, " \t\r\n", &save));
        } else if (!strcmp(tok, "measure")) {
            char *x = strtok_r(NULL, " \t\r\n", &save);
            int id = x ? atoi(x) : -1;
            if (id < 0 || id >= ntasks || !tasks[id].defined)
                die("%s:%d: measure: no task %s defined above", path, lineno, x ? x : "(none)");
            tasks[id].measure = 1;
        } else if (!strcmp(tok, "task")) {
            /* task ID NAME ROLE START_US GOAL AUTOSTART DAEMON UID NICE OOMADJ IGNTERM */
            char *a[12];
            for (int i = 0; i < 12; i++)
                if (!(a[i] = strtok_r(NULL, " \t\r\n", &save))) die("%s:%d: short task line", path, lineno);
            int id = atoi(a[0]);
            if (id < 0 || id >= ntasks) die("%s:%d: task id %d out of range", path, lineno, id);
            struct task *t = &tasks[id];
            snprintf(t->name, sizeof t->name, "%s", a[1]);
            snprintf(t->role, sizeof t->role, "%s", a[2]);
            t->start_us = atol(a[3]);
            t->goal = atoi(a[4]); t->autostart = atoi(a[5]); t->daemon = atoi(a[6]);
            t->uid = atoi(a[7]); t->nice = atoi(a[8]); t->oomadj = atoi(a[9]); t->ignterm = atoi(a[10]);
            (void)a[11];
            t->op_off = nops;
            t->op_n = 0;
            t->defined = 1;
            last = id;
        } else if (!strcmp(tok, "op")) {
            char *ids = strtok_r(NULL, " \t\r\n", &save), *name = strtok_r(NULL, " \t\r\n", &save);
            if (!ids || !name) die("%s:%d: short op line", path, lineno);
            int id = atoi(ids);
            if (id != last) die("%s:%d: op of task %d must follow its task line", path, lineno, id);
            int type = -1;
            for (int i = 0; OP_NAMES[i]; i++)
                if (!strcmp(OP_NAMES[i], name)) type = i;
            if (type < 0) die("%s:%d: unknown op '%s'", path, lineno, name);
            if (nops == cap_ops) {
                cap_ops = cap_ops ? 2 * cap_ops : 4096;
                ops = realloc(ops, sizeof(struct op) * cap_ops);
            }
            struct op *o = &ops[nops++];
            memset(o, 0, sizeof *o);
            o->type = type;
            o->file = -1;
            char *x;
            if (type == OP_TEXT || type == OP_READ || type == OP_WRITE) {
                if (!(x = strtok_r(NULL, " \t\r\n", &save))) die("%s:%d: %s needs a file", path, lineno, name);
                o->file = file_index(x);
            }
            if (type == OP_MAKE) {
                o->a = atol(strtok_r(NULL, " \t\r\n", &save));
                o->list_off = nlists;
                while ((x = strtok_r(NULL, " \t\r\n", &save)))
                    push_list(!strcmp(x, "|") ? -1 : atoi(x));
                o->list_len = nlists - o->list_off;
            } else {
                long *dst[3] = {&o->a, &o->b, &o->c};
                for (int i = 0; i < 3 && (x = strtok_r(NULL, " \t\r\n", &save)); i++) *dst[i] = atol(x);
            }
            tasks[id].op_n++;
        } else {
            die("%s:%d: unknown line '%s'", path, lineno, tok);
        }
    }
    free(line);
    fclose(f);
    if (!tasks) die("%s: no 'tasks N' line", path);
    for (int i = 0; i < ntasks; i++)
        if (!tasks[i].defined) die("%s: task %d is not defined", path, i);
}

/* The parsed plan, shared.  The runner parses the text once and writes its tables to a memfd
 * that every task maps, instead of each new process parsing the whole plan again (4,400 lines,
 * 110 KB for morton-make-usemem).  The re-parse was the runner's, not the workload's: under TCG
 * it cost each fork + exec ~35 ms of CPU (22 compilers started together took 0.8 s to get to
 * their first op, and usemem, spawned behind them, 1.6 s, where the model's fork costs 0.2 ms,
 * harness.mm.FORK_US), and each process ~250 KB of private memory for the tables.  A task maps
 * the tables read-only: it reads a few pages (its task, its ops) of one shared copy.
 * Layout: plan_hdr | tasks | ops | lists | file names (NUL-separated), each 8-byte aligned. */
struct plan_hdr {
    char magic[8];
    int ntasks, nops, nlists, nfiles;
    long limit_us, watchdog_us, quantum_us, sample_us;
    long names_len;
};
#define ALIGN8(n) (((n) + 7L) & ~7L)

static int share_plan(void) {
    long names_len = 0;
    for (int i = 0; i < nfiles; i++) names_len += strlen(files[i]) + 1;
    struct plan_hdr h = {"vmplan1", ntasks, nops, nlists, nfiles, limit_us, watchdog_us,
                         quantum_us, sample_us, names_len};
    long size = ALIGN8(sizeof h) + ALIGN8(sizeof(struct task) * ntasks)
                + ALIGN8(sizeof(struct op) * nops) + ALIGN8(sizeof(int) * nlists) + names_len;
    int fd = memfd_create("vmreal-plan", 0);
    if (fd < 0 || ftruncate(fd, size)) die("memfd plan: %s", strerror(errno));
    char *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die("mmap plan: %s", strerror(errno));
    char *q = p;
    memcpy(q, &h, sizeof h);
    q += ALIGN8(sizeof h);
    memcpy(q, tasks, sizeof(struct task) * ntasks);
    q += ALIGN8(sizeof(struct task) * ntasks);
    if (nops) memcpy(q, ops, sizeof(struct op) * nops);
    q += ALIGN8(sizeof(struct op) * nops);
    if (nlists) memcpy(q, lists, sizeof(int) * nlists);
    q += ALIGN8(sizeof(int) * nlists);
    for (int i = 0; i < nfiles; i++) {
        size_t n = strlen(files[i]) + 1;
        memcpy(q, files[i], n);
        q += n;
    }
    munmap(p, size);
    return fd;
}

static void map_plan(int fd) {
    struct stat st;
    if (fstat(fd, &st)) die("plan fd %d: %s", fd, strerror(errno));
    /* read-only and shared: no commit charge (a private writable mapping is charged, and
     * under vm.overcommit_memory = 2 a task could then not start at all) */
    char *p = mmap(NULL, st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) die("mmap plan fd %d: %s", fd, strerror(errno));
    struct plan_hdr h;
    memcpy(&h, p, sizeof h);
    if (memcmp(h.magic, "vmplan1", 8)) die("plan fd %d: not a shared plan", fd);
    ntasks = h.ntasks; nops = cap_ops = h.nops; nlists = cap_lists = h.nlists; nfiles = h.nfiles;
    limit_us = h.limit_us; watchdog_us = h.watchdog_us; quantum_us = h.quantum_us;
    sample_us = h.sample_us;
    char *q = p + ALIGN8(sizeof h);
    tasks = (struct task *)q;
    q += ALIGN8(sizeof(struct task) * ntasks);
    ops = (struct op *)q;
    q += ALIGN8(sizeof(struct op) * nops);
    lists = (int *)q;
    q += ALIGN8(sizeof(int) * nlists);
    files = malloc(sizeof(char *) * (nfiles + 1));
    for (int i = 0; i < nfiles; i++) {
        files[i] = q;
        q += strlen(q) + 1;
    }
}

/* ------------------------------------------------------------------------- reaping */
static int slot_of(pid_t pid) {
    for (int i = 0; i < ntasks; i++)
        if (slots[i].pid == pid && slots[i].state == 1) return i;
    return -1;
}

/* a child was reaped: print its exit line; returns its exit status in the shell's sense
 * (code, or 128 + signal) and sets *idp */
static pid_t fuse_pid = -1;

/* --cgroup (the memcg backend): the tasks go into the run's cgroup, each top-level task (and the
 * dwait server) writing itself into cgroup.procs between fork and exec, and the runner stays
 * outside.  Its own memory -- the plan's tables, the slots -- is then not charged to the
 * workload's limit, and it cannot be the memcg OOM killer's victim: on a host where it may not
 * set its oom_score_adj to -1000 (no CAP_SYS_RESOURCE in a container) it was once the largest
 * process of a fork bomb's cgroup, and killed.  A task's children stay in its cgroup. */
static const char *cgroup_procs;

static int join_cgroup(void) {
    if (!cgroup_procs) return 1;
    int fd = open(cgroup_procs, O_WRONLY | O_CLOEXEC);
    char pid[32];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    int ok = fd >= 0 && write(fd, pid, n) == n;
    if (fd >= 0) close(fd);
    return ok;
}

static int reaped(pid_t pid, int st, int *idp) {
    if (pid == fuse_pid) return 0;           /* the dwait server, not a task */
    int id = slot_of(pid);
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : 0;
    int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    int64_t mf = 0;
    if (id >= 0) {
        mf = slots[id].max_fault_us;
        int64_t fs = slots[id].fault_start_us;
        if (fs && now_us() - fs > mf) mf = now_us() - fs;      /* died inside an allocation */
        slots[id].state = 2;
    }
    emit("exit %d %d %d %d %lld", id, (int)pid, code, sig, (long long)mf);
    if (idp) *idp = id;
    return sig ? 128 + sig : code;
}

static void reap_nohang(void) {
    int st;
    pid_t r;
    while ((r = waitpid(-1, &st, WNOHANG)) > 0) reaped(r, st, NULL);
}

/* ------------------------------------------------------------------------- task */
struct region { char *base; long pages, touched; };
static struct region *regions;
static int nregions;
static char *text_base;
static long text_ws_pages;
static int *file_fd;
static off_t *file_off;
static char *iobuf;

static inline void fault_begin(void) { slots[self_id].fault_start_us = now_us(); }
static inline void fault_end(void) {
    int64_t d = now_us() - slots[self_id].fault_start_us;
    if (d > slots[self_id].max_fault_us) slots[self_id].max_fault_us = d;
    slots[self_id].fault_start_us = 0;
}

static void enomem_exit(const char *what) {
    emit("enomem %d %d %s exit", self_id, (int)getpid(), what);
    _exit(1);
}

static struct region *new_region(long pages) {
    char *p = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        if (errno == ENOMEM || errno == EAGAIN) enomem_exit("mmap");
        die("mmap %ld pages: %s", pages, strerror(errno));
    }
    regions = realloc(regions, sizeof *regions * (nregions + 1));
    regions[nregions] = (struct region){p, pages, 0};
    return &regions[nregions++];
}

static void touch(long pages) {
    volatile char *p;
    char v = (char)(getpid() | 1);
    while (pages > 0) {
        struct region *r = NULL;
        for (int i = 0; i < nregions && !r; i++)
            if (regions[i].touched < regions[i].pages) r = &regions[i];
        if (!r) r = new_region(pages);
        long n = r->pages - r->touched;
        if (n > pages) n = pages;
        for (long i = 0; i < n; i++) {
            p = r->base + (r->touched + i) * PAGE;
            fault_begin();
            *p = v;
            fault_end();
            if ((i & 63) == 63) reap_nohang();
        }
        r->touched += n;
        pages -= n;
    }
}

/* a loop over a working set faulted in before: one store a page into the pages already
 * touched, from where the last access stopped, wrapping (what reclaim swapped out comes back:
 * do_swap_page) */
static long access_region, access_page;

static void access_pages(long pages) {
    volatile char *p;
    char v = (char)(getpid() | 1);
    long have = 0;
    for (int i = 0; i < nregions; i++) have += regions[i].touched;
    if (have <= 0) return;
    for (long done = 0; done < pages; done++) {
        while (access_region >= nregions || access_page >= regions[access_region].touched) {
            if (access_region >= nregions) access_region = 0;
            else access_region++;
            access_page = 0;
            if (access_region < nregions && regions[access_region].touched > 0) break;
        }
        p = regions[access_region].base + access_page * PAGE;
        fault_begin();
        *p = v;
        fault_end();
        access_page++;
        if ((done & 63) == 63) reap_nohang();
    }
}

static void unmap(long pages) {
    for (int i = nregions - 1; i >= 0 && pages > 0; i--) {
        struct region *r = &regions[i];
        long n = r->pages < pages ? r->pages : pages;
        if (n <= 0) continue;
        munmap(r->base + (r->pages - n) * PAGE, n * PAGE);
        r->pages -= n;
        if (r->touched > r->pages) r->touched = r->pages;
        pages -= n;
    }
}

static void ensure_text(void) {
    for (long i = 0; i < text_ws_pages; i++) {
        fault_begin();
        sink += ((volatile char *)text_base)[i * PAGE];
        fault_end();
    }
}

static void compute(long us) {
    int64_t start = cpu_us(), target = start + us, next_q = start;
    uint64_t x = 88172645463325252ULL ^ (uint64_t)getpid();
    for (;;) {
        int64_t c = cpu_us();
        if (c >= next_q) {
            ensure_text();
            reap_nohang();
            next_q = c + quantum_us;
        }
        if (c >= target) break;
        for (int i = 0; i < 2000; i++) {    /* ~5-10 us of work between clock reads */
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        }
        sink += (char)x;
    }
}

static void do_sleep(long us) {
    int64_t deadline = now_us() + us;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    for (;;) {
        int64_t left = deadline - now_us();
        if (left <= 0) break;
        struct timespec ts = {left / 1000000, (left % 1000000) * 1000};
        if (sigtimedwait(&set, NULL, &ts) == SIGCHLD) reap_nohang();
    }
    reap_nohang();
}

static int open_file(int fi, int for_write) {
    if (file_fd[fi] >= 0) return file_fd[fi];
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", data_dir, files[fi]);
    int fd = for_write ? open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666)
                       : open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOMEM) enomem_exit(for_write ? "write" : "read");
        die("task %d: cannot open %s: %s", self_id, path, strerror(errno));
    }
    return file_fd[fi] = fd;
}

/* returns 0, or 1 when the I/O failed and the task goes on (on_fail = continue) */
static int do_io(int fi, long kb, int write_, int on_fail_continue) {
    int fd = open_file(fi, write_);
    if (!iobuf) {                 /* at the first I/O: a task that does none has no buffer */
        iobuf = malloc(CHUNK);
        if (!iobuf) enomem_exit(write_ ? "write" : "read");
        memset(iobuf, 'v', CHUNK);
    }
    long left = kb * 1024L;
    while (left > 0) {
        long n = left < CHUNK ? left : CHUNK;
        fault_begin();
        ssize_t r = write_ ? write(fd, iobuf, n) : pread(fd, iobuf, n, file_off[fi]);
        int err = errno;
        fault_end();
        if (r < 0) {
            if (err == EINTR) continue;
            if (err == ENOMEM) {
                emit("enomem %d %d %s %s", self_id, (int)getpid(), write_ ? "write" : "read",
                     on_fail_continue ? "continue" : "exit");
                if (!on_fail_continue) _exit(1);
            } else {
                emit("ioerr %d %d %s %d %s", self_id, (int)getpid(), write_ ? "write" : "read", err,
                     on_fail_continue ? "continue" : "exit");
                if (!on_fail_continue) _exit(1);
            }
            return 1;
        }
        if (!write_) {
            if (r == 0) {                   /* end of file: read it again from the start */
                if (file_off[fi] == 0) break;
                file_off[fi] = 0;
                continue;
            }
            file_off[fi] += r;
        }
        left -= r;
        reap_nohang();
    }
    return 0;
}


/* ------------------------------------------------------------------------- dwait (FUSE)
 * A real uninterruptible sleep: the task reads one byte of DATA_DIR/.dwait/d<US>, a file of a
 * FUSE filesystem served by the runner's own server process, which answers each read only US
 * microseconds after it arrived (a file server that has gone away and comes back).  The kernel
 * sleeps in fuse's request_wait_answer(): once the server has taken the request, a fatal
 * signal (SIGKILL from the OOM killer) cannot end the wait -- wait_event() in
 * TASK_UNINTERRUPTIBLE -- until the answer comes (or the server dies: the connection is
 * aborted).  The server answers ENOSYS to FUSE_INTERRUPT, so after the first interrupt the
 * kernel waits killably ("D") from the start.  The filesystem is mounted in a private mount
 * namespace of the runner: the host never sees it, it goes away with the run's last process. */

static void fuse_reply(int fd, uint64_t unique, int err, const void *data, size_t len) {
    struct fuse_out_header h = {(uint32_t)(sizeof h + len), err, unique};
    struct iovec iov[2] = {{&h, sizeof h}, {(void *)data, len}};
    ssize_t w = writev(fd, iov, len ? 2 : 1);
    (void)w;                                 /* ENOENT: the request was aborted meanwhile */
}

static void fuse_attr_of(uint64_t node, struct fuse_attr *a) {
    memset(a, 0, sizeof *a);
    a->ino = node;
    a->mode = node == FUSE_ROOT_ID ? (S_IFDIR | 0755) : (S_IFREG | 0444);
    a->nlink = node == FUSE_ROOT_ID ? 2 : 1;
    a->size = node == FUSE_ROOT_ID ? 0 : 4096;
    a->blksize = 4096;
}

static void fuse_serve(int fd) {
    size_t bufsz = 1 << 20;
    char *buf = malloc(bufsz);
    struct { uint64_t unique; int64_t due; } pend[4096];
    int npend = 0;
    for (;;) {
        int64_t now = now_us(), first = -1;
        for (int i = 0; i < npend; i++)
            if (first < 0 || pend[i].due < first) first = pend[i].due;
        int timeout = first < 0 ? -1 : (int)((first - now + 999) / 1000);
        struct pollfd pfd = {fd, POLLIN, 0};
        int pr = poll(&pfd, 1, timeout < 0 ? -1 : timeout);
        now = now_us();
        for (int i = 0; i < npend;) {
            if (pend[i].due <= now) {
                fuse_reply(fd, pend[i].unique, 0, "v", 1);
                pend[i] = pend[--npend];
            } else {
                i++;
            }
        }
        if (pr <= 0 || !(pfd.revents & POLLIN)) {
            if (pr > 0 && (pfd.revents & (POLLERR | POLLHUP))) _exit(0);
            continue;
        }
        ssize_t n = read(fd, buf, bufsz);
        if (n < 0) {
            if (errno == EINTR || errno == ENOENT || errno == EAGAIN) continue;
            _exit(0);                        /* ENODEV: unmounted */
        }
        if (n < (ssize_t)sizeof(struct fuse_in_header)) continue;
        struct fuse_in_header *in = (struct fuse_in_header *)buf;
        void *arg = in + 1;
        switch (in->opcode) {
        case FUSE_INIT: {
            struct fuse_init_in *ii = arg;
            struct fuse_init_out o;
            memset(&o, 0, sizeof o);
            o.major = FUSE_KERNEL_VERSION;
            o.minor = ii->minor < FUSE_KERNEL_MINOR_VERSION ? ii->minor : FUSE_KERNEL_MINOR_VERSION;
            o.max_readahead = ii->max_readahead;
            o.max_background = 64;
            o.congestion_threshold = 48;
            o.max_write = 4096;
            o.time_gran = 1;
            fuse_reply(fd, in->unique, 0, &o, sizeof o);
            break;
        }
        case FUSE_GETATTR: {
            struct fuse_attr_out o;
            memset(&o, 0, sizeof o);
            o.attr_valid = 3600;
            fuse_attr_of(in->nodeid, &o.attr);
            fuse_reply(fd, in->unique, 0, &o, sizeof o);
            break;
        }
        case FUSE_LOOKUP: {
            const char *name = arg;
            char *end;
            long long us = name[0] == 'd' ? strtoll(name + 1, &end, 10) : -1;
            if (in->nodeid != FUSE_ROOT_ID || us < 0 || *end) {
                fuse_reply(fd, in->unique, -ENOENT, NULL, 0);
                break;
            }
            struct fuse_entry_out o;
            memset(&o, 0, sizeof o);
            o.nodeid = (uint64_t)us + 2;
            o.generation = 1;
            o.entry_valid = o.attr_valid = 3600;
            fuse_attr_of(o.nodeid, &o.attr);
            fuse_reply(fd, in->unique, 0, &o, sizeof o);
            break;
        }
        case FUSE_OPEN:
        case FUSE_OPENDIR: {
            struct fuse_open_out o;
            memset(&o, 0, sizeof o);
            o.open_flags = FOPEN_DIRECT_IO;  /* every read comes to us, no page cache */
            fuse_reply(fd, in->unique, 0, &o, sizeof o);
            break;
        }
        case FUSE_READ:
            if (npend < (int)(sizeof pend / sizeof pend[0])) {
                pend[npend].unique = in->unique;
                pend[npend++].due = now + (int64_t)(in->nodeid - 2);
            } else {
                fuse_reply(fd, in->unique, 0, "v", 1);
            }
            break;
        case FUSE_INTERRUPT:
            fuse_reply(fd, in->unique, -ENOSYS, NULL, 0);   /* the wait goes on */
            break;
        case FUSE_FORGET:
        case FUSE_BATCH_FORGET:
            break;                           /* no reply */
        case FUSE_FLUSH:
        case FUSE_RELEASE:
        case FUSE_RELEASEDIR:
        case FUSE_DESTROY:
            fuse_reply(fd, in->unique, 0, NULL, 0);
            break;
        default:
            fuse_reply(fd, in->unique, -ENOSYS, NULL, 0);
        }
    }
}

static void start_fuse(void) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/.dwait", data_dir);
    if (unshare(CLONE_NEWNS)) die("dwait: unshare(CLONE_NEWNS): %s", strerror(errno));
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL)) die("dwait: make / private: %s", strerror(errno));
    if (mkdir(dir, 0755) && errno != EEXIST) die("dwait: mkdir %s: %s", dir, strerror(errno));
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0) die("dwait needs /dev/fuse (the fuse module): %s", strerror(errno));
    char opts[256];
    snprintf(opts, sizeof opts, "fd=%d,rootmode=40000,user_id=0,group_id=0,allow_other", fd);
    if (mount("vmreal", dir, "fuse", MS_NOSUID | MS_NODEV, opts)) die("dwait: mount fuse: %s", strerror(errno));
    fuse_pid = fork();
    if (fuse_pid < 0) die("dwait: fork: %s", strerror(errno));
    if (fuse_pid == 0) {
        if (!join_cgroup()) _exit(127);
        prctl(PR_SET_NAME, "vmreal-fuse", 0, 0, 0);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        fuse_serve(fd);
        _exit(0);
    }
    close(fd);
}

static void dwait(long us) {
    char path[4200];
    snprintf(path, sizeof path, "%s/.dwait/d%ld", data_dir, us);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("task %d: dwait: open %s: %s", self_id, path, strerror(errno));
    char c;
    while (read(fd, &c, 1) < 0 && errno == EINTR) {}
    close(fd);
}

static pid_t start_task(int id, int toplevel);

static void wait_for(pid_t pid) {
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return;                          /* ECHILD */
        }
        reaped(r, st, NULL);
        if (r == pid) return;
    }
}

static int wait_any(void) {
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        return reaped(r, st, NULL);
    }
}

/* GNU make -j N over directories: at most N jobs at once (0 = unlimited); the first failed
 * fork or failed job stops new jobs, the running ones are waited for, and make exits 2. */
static int make(const struct op *o) {
    long jobs = o->a;
    int failed = 0, running = 0;
    int i = o->list_off, end = o->list_off + o->list_len;
    while (i < end && !failed) {
        for (; i < end && lists[i] >= 0; i++) {
            while (jobs && running >= jobs) {
                running--;
                if (wait_any() != 0) failed = 1;
                if (failed) break;
            }
            if (failed) break;
            if (start_task(lists[i], 0) < 0) {
                emit("enomem %d %d fork stop", self_id, (int)getpid());
                failed = 1;
                break;
            }
            running++;
        }
        while (running > 0) {
            running--;
            if (wait_any() != 0) failed = 1;
        }
        while (i < end && lists[i] >= 0) i++;    /* the rest of a failed directory */
        i++;                                      /* the '|' */
    }
    return failed ? 2 : 0;
}

/* the time this task has spent runnable, waiting for a CPU (kernel/sched/stats.h
 * sched_info_dequeue: /proc/PID/schedstat's second field, ns); -1 if unreadable */
static int64_t run_delay_us(void) {
    static int fd = -2;
    char buf[128];
    if (fd == -2) fd = open("/proc/self/schedstat", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0) return -1;
    buf[n] = 0;
    unsigned long long run, delay;
    if (sscanf(buf, "%llu %llu", &run, &delay) != 2) return -1;
    return (int64_t)(delay / 1000);
}

static int run_ops(const struct task *t) {
    for (int k = 0; k < t->op_n; k++) {
        const struct op *o = &ops[t->op_off + k];
        int64_t t0 = t->measure ? now_us() : 0, rd0 = t->measure ? run_delay_us() : 0;
        switch (o->type) {
        case OP_RESERVE:
            if (o->a > 0) new_region((o->a + 3) / 4);
            break;
        case OP_TEXT: {
            int fd = open_file(o->file, 0);
            /* PROT_EXEC: the kernel sees program text (VM_EXEC), which reclaim treats apart */
            text_base = mmap(NULL, o->a * 1024L, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
            if (text_base == MAP_FAILED) {
                if (errno == ENOMEM) enomem_exit("mmap");
                die("task %d: mmap text: %s", self_id, strerror(errno));
            }
            text_ws_pages = (o->b + 3) / 4;
            ensure_text();
            break;
        }
        case OP_MMAP:
            if (o->a > 0) new_region((o->a + 3) / 4);
            break;
        case OP_MUNMAP:
            unmap((o->a + 3) / 4);
            break;
        case OP_TOUCH:
            touch((o->a + 3) / 4);
            break;
        case OP_ACCESS:
            access_pages((o->a + 3) / 4);
            break;
        case OP_GROW: {          /* grow KB CPU_US PHASES: touch and compute in phases */
            long pages = (o->a + 3) / 4, cpu = o->b, ph = o->c > 0 ? o->c : 8;
            for (long i = 0; i < ph; i++) {
                touch(pages * (i + 1) / ph - pages * i / ph);
                compute(cpu * (i + 1) / ph - cpu * i / ph);
            }
            break;
        }
        case OP_COMPUTE:
            compute(o->a);
            break;
        case OP_SLEEP:
            do_sleep(o->a);
            break;
        case OP_READ:
            do_io(o->file, o->a, 0, (int)o->b);
            break;
        case OP_WRITE:
            do_io(o->file, o->a, 1, (int)o->b);
            break;
        case OP_SPAWN: {
            pid_t pid = start_task((int)o->a, 0);
            if (pid < 0) enomem_exit("fork");
            if (o->b) {
                int64_t w0 = now_us();
                if (t->measure) {         /* the fork is a step; the wait is its children's */
                    int64_t rd = run_delay_us();
                    emit("step %d %d %d %lld %lld", self_id, (int)getpid(), k, (long long)t0,
                         (long long)(rd >= 0 && rd0 >= 0 ? rd - rd0 : 0));
                }
                wait_for(pid);
                if (t->measure) emit("wait %d %d %lld", self_id, (int)getpid(), (long long)w0);
                t0 = -1;
            }
            break;
        }
        case OP_WAITALL:
            while (wait_any() != -1) {}
            if (t->measure) emit("wait %d %d %lld", self_id, (int)getpid(), (long long)t0);
            t0 = -1;
            break;
        case OP_MAKE: {
            int code = make(o);
            if (t->measure) emit("wait %d %d %lld", self_id, (int)getpid(), (long long)t0);
            return code;
        }
        case OP_EXIT:
            return (int)o->a;
        case OP_DWAIT:
            dwait(o->a);
            break;
        }
        if (t->measure && t0 >= 0 && o->type != OP_EXIT) {
            int64_t rd = run_delay_us();
            emit("step %d %d %d %lld %lld", self_id, (int)getpid(), k, (long long)t0,
                 (long long)(rd >= 0 && rd0 >= 0 ? rd - rd0 : 0));
        }
        reap_nohang();
    }
    return 0;
}

static char self_exe[4096];
static int slot_fd = -1, plan_fd = -1;

static void find_self(void) {
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0) die("readlink /proc/self/exe: %s", strerror(errno));
    self_exe[n] = 0;
}

static pid_t start_task(int id, int toplevel) {
    if (id < 0 || id >= ntasks) die("no task %d", id);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        if (toplevel) setpgid(0, 0);
        if (toplevel && !join_cgroup()) {
            fprintf(stderr, "vmreal: task %d: cannot join cgroup %s: %s\n", id, cgroup_procs,
                    strerror(errno));
            _exit(127);
        }
        char ids[16], fds[16], pfd[16];
        snprintf(ids, sizeof ids, "%d", id);
        snprintf(fds, sizeof fds, "%d", slot_fd);
        snprintf(pfd, sizeof pfd, "%d", plan_fd);
        char *argv[] = {"vmreal", "task", (char *)plan_path, (char *)data_dir, ids, fds,
                        plan_fd >= 0 ? pfd : NULL, NULL};
        /* every process is tagged with its workload task and oracle role (for people:
         * /proc/PID/environ, ps e); the records take both from the plan, by pid */
        setenv("VMBENCH_TASK", tasks[id].name, 1);
        setenv("VMBENCH_ROLE", tasks[id].role, 1);
        execv(self_exe, argv);
        fprintf(stderr, "vmreal: exec %s: %s\n", self_exe, strerror(errno));
        _exit(127);
    }
    if (toplevel) setpgid(pid, pid);
    slots[id].pid = pid;
    slots[id].state = 1;
    return pid;
}

static void write_file(const char *path, const char *text) {
    int fd = open(path, O_WRONLY);
    if (fd < 0) return;
    ssize_t w = write(fd, text, strlen(text));
    (void)w;
    close(fd);
}

static int cmd_task(int argc, char **argv) {
    if (argc < 6) die("usage: vmreal task PLAN DATA ID SLOT_FD [PLAN_FD]");
    plan_path = argv[2];
    data_dir = argv[3];
    self_id = atoi(argv[4]);
    slot_fd = atoi(argv[5]);
    find_self();
    if (argc >= 7) {
        plan_fd = atoi(argv[6]);
        map_plan(plan_fd);
    } else {
        load_plan(plan_path);
    }
    if (self_id < 0 || self_id >= ntasks) die("no task %d", self_id);
    slots = mmap(NULL, sizeof(struct slot) * ntasks, PROT_READ | PROT_WRITE, MAP_SHARED, slot_fd, 0);
    if (slots == MAP_FAILED) die("task %d: mmap slots: %s", self_id, strerror(errno));
    const struct task *t = &tasks[self_id];
    char comm[16] = {0};
    memcpy(comm, t->name, strnlen(t->name, 15));         /* TASK_COMM_LEN: 15 chars */
    prctl(PR_SET_NAME, comm, 0, 0, 0);
    char adj[32];
    snprintf(adj, sizeof adj, "%d", t->oomadj);
    write_file("/proc/self/oom_score_adj", adj);          /* the runner's -1000 is not inherited */
    if (t->nice) setpriority(PRIO_PROCESS, 0, t->nice);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigprocmask(SIG_SETMASK, &set, NULL);                 /* SIGCHLD is taken with sigtimedwait */
    signal(SIGTERM, t->ignterm ? SIG_IGN : SIG_DFL);
    signal(SIGINT, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    if ((uid_t)t->uid != getuid()) {        /* a task spawned by a task of its uid keeps it */
        if (setgroups(0, NULL) || setgid(t->uid) || setuid(t->uid))
            die("task %d: cannot become uid %d: %s", self_id, t->uid, strerror(errno));
    }
    file_fd = malloc(sizeof(int) * (nfiles + 1));
    file_off = calloc(nfiles + 1, sizeof(off_t));
    for (int i = 0; i <= nfiles; i++) file_fd[i] = -1;
    slots[self_id].pid = getpid();
    slots[self_id].state = 1;
    emit("start %d %d %s", self_id, (int)getpid(), t->name);
    int code = run_ops(t);
    _exit(code);
}

/* ------------------------------------------------------------------------- runner */
static void parse_cpus(const char *s, cpu_set_t *set) {
    CPU_ZERO(set);
    while (*s) {
        char *e;
        long a = strtol(s, &e, 10), b = a;
        if (e == s) die("--cpus: cannot parse '%s'", s);
        if (*e == '-') b = strtol(e + 1, &e, 10);
        for (long c = a; c <= b; c++) CPU_SET(c, set);
        s = *e == ',' ? e + 1 : e;
        if (*e && *e != ',') die("--cpus: cannot parse '%s'", s);
    }
}

static char proc_state(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return '?';
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return '?';
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    return p && p[1] && p[2] ? p[2] : '?';
}

/* ---------------------------------------------------------------- sampling
 * The machine's memory pressure and refault counters, read as a monitoring daemon reads them:
 * kernel/sched/psi.c psi_show ("some avg10=A avg60=.. avg300=.. total=US" and "full ...") and
 * mm/vmstat.c's workingset_refault_file and pgmajfault (in a cgroup: memory.pressure and
 * memory.stat, mm/memcontrol.c memory_stat_format, the same names). */
static char pressure_path[4200] = "/proc/pressure/memory", counters_path[4200] = "/proc/vmstat";

static int read_text(const char *path, char *buf, size_t cap) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0) return -1;
    buf[n] = 0;
    return (int)n;
}

static long long counter_of(const char *text, const char *name) {
    size_t len = strlen(name);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (!strncmp(p, name, len) && p[len] == ' ') return atoll(p + len + 1);
    return -1;
}

static void sample(void) {
    static char buf[16384];
    double sa = -1, fa = -1;
    long long st = -1, ft = -1, refault = -1, major = -1;
    if (read_text(pressure_path, buf, sizeof buf) > 0) {
        const char *some = strstr(buf, "some "), *full = strstr(buf, "full ");
        double a60, a300;
        if (some) sscanf(some, "some avg10=%lf avg60=%lf avg300=%lf total=%lld", &sa, &a60, &a300, &st);
        if (full) sscanf(full, "full avg10=%lf avg60=%lf avg300=%lf total=%lld", &fa, &a60, &a300, &ft);
    }
    if (read_text(counters_path, buf, sizeof buf) > 0) {
        refault = counter_of(buf, "workingset_refault_file");
        major = counter_of(buf, "pgmajfault");
    }
    emit("psi %lld %lld %.2f %.2f %lld %lld", st, ft, sa, fa, refault, major);
}

static int cmd_run(int argc, char **argv) {
    if (argc < 4) die("usage: vmreal run PLAN DATA_DIR [--cgroup PROCS_FILE] [--cpus LIST] [--limit-ms N]");
    plan_path = argv[2];
    data_dir = argv[3];
    const char *cgroup = NULL, *cpus = NULL;
    long limit_override = -1;
    for (int i = 4; i < argc; i++) {
        if (!strcmp(argv[i], "--cgroup") && i + 1 < argc) cgroup = argv[++i];
        else if (!strcmp(argv[i], "--cpus") && i + 1 < argc) cpus = argv[++i];
        else if (!strcmp(argv[i], "--limit-ms") && i + 1 < argc) limit_override = atol(argv[++i]);
        else die("unknown option %s", argv[i]);
    }
    if (cgroup) {               /* the tasks' cgroup; a first join checks that it can be joined */
        cgroup_procs = cgroup;
        pid_t probe = fork();
        if (probe == 0) _exit(join_cgroup() ? 0 : 1);
        int pst = 0;
        if (probe < 0 || waitpid(probe, &pst, 0) < 0 || !WIFEXITED(pst) || WEXITSTATUS(pst))
            die("cannot join cgroup %s", cgroup);
        const char *slash = strrchr(cgroup, '/');
        int dir = slash ? (int)(slash - cgroup) : 0;
        snprintf(pressure_path, sizeof pressure_path, "%.*s/memory.pressure", dir, cgroup);
        snprintf(counters_path, sizeof counters_path, "%.*s/memory.stat", dir, cgroup);
    }
    if (cpus) {
        cpu_set_t set;
        parse_cpus(cpus, &set);
        if (sched_setaffinity(0, sizeof set, &set)) die("sched_setaffinity %s: %s", cpus, strerror(errno));
    }
    write_file("/proc/self/oom_score_adj", "-1000");     /* the runner is not a workload task */
    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);           /* orphans come back to us */
    prctl(PR_SET_NAME, "vmreal-run", 0, 0, 0);
    find_self();
    load_plan(plan_path);
    for (int i = 0; i < nops; i++)
        if (ops[i].type == OP_DWAIT) {
            start_fuse();
            break;
        }
    if (limit_override >= 0 && limit_override * 1000 < limit_us) limit_us = limit_override * 1000;
    plan_fd = share_plan();
    slot_fd = memfd_create("vmreal-slots", 0);
    if (slot_fd < 0 || ftruncate(slot_fd, sizeof(struct slot) * ntasks))
        die("memfd: %s", strerror(errno));
    slots = mmap(NULL, sizeof(struct slot) * ntasks, PROT_READ | PROT_WRITE, MAP_SHARED, slot_fd, 0);
    if (slots == MAP_FAILED) die("mmap slots: %s", strerror(errno));
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    int kfd = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    if (kfd >= 0) {             /* puts the kernel log's timestamps on our clock */
        char mark[64];
        int m = snprintf(mark, sizeof mark, "vmreal: clock %lld\n", (long long)now_us());
        ssize_t w = write(kfd, mark, m);
        (void)w;
        close(kfd);
    }
    int64_t t0 = now_us();
    emit("t0");
    int *started = calloc(ntasks, sizeof(int));
    const char *reason = "done";
    int ngoal = 0;
    for (int i = 0; i < ntasks; i++) ngoal += tasks[i].autostart && tasks[i].goal;
    int64_t next_sample = t0;
    for (;;) {
        int64_t now = now_us(), next = t0 + limit_us;
        if (sample_us > 0 && now >= next_sample) {
            sample();
            next_sample += sample_us;
            if (next_sample <= now) next_sample = now + sample_us;
        }
        if (sample_us > 0 && next_sample < next) next = next_sample;
        for (int i = 0; i < ntasks; i++) {
            if (!tasks[i].autostart || started[i]) continue;
            int64_t at = t0 + tasks[i].start_us;
            if (at <= now) {
                started[i] = 1;
                if (start_task(i, 1) < 0) {
                    emit("enomem %d -1 fork runner", i);
                    slots[i].state = 2;
                }
            } else if (at < next) {
                next = at;
            }
        }
        reap_nohang();
        /* the end, as the simulator's: every goal task has exited and no task that is not a
         * daemon is alive (without goal tasks the run lasts until its limit) */
        if (ngoal) {
            int goals_done = 1, others = 0;
            for (int i = 0; i < ntasks; i++) {
                if (tasks[i].autostart && tasks[i].goal && slots[i].state != 2) goals_done = 0;
                if (slots[i].state == 1 && !tasks[i].daemon) others = 1;
            }
            if (goals_done && !others) break;
        }
        now = now_us();
        if (now >= t0 + limit_us) {
            reason = "limit";
            break;
        }
        if (next > now + 20000) next = now + 20000;
        int64_t left = next - now;
        struct timespec ts = {left / 1000000, (left % 1000000) * 1000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
            reason = "signal";
            break;
        }
    }
    if (sample_us > 0) sample();
    emit("stop %s", reason);                  /* exits after this line are our kills */
    if (strcmp(reason, "done")) {
        emit("limit");
        int64_t now = now_us();
        for (int i = 0; i < ntasks; i++) {
            int64_t fs = slots[i].fault_start_us;
            if (slots[i].state == 1 && fs && now - fs >= watchdog_us)
                emit("stuck %d %d %c %lld", i, (int)slots[i].pid, proc_state(slots[i].pid), (long long)fs);
        }
    }
    /* kill what is left (daemons, or everything at the limit): each top-level task's process
     * group holds it and its descendants; an unreaped slot's pid cannot have been reused */
    for (int i = 0; i < ntasks; i++) {
        pid_t pid = slots[i].pid;
        if (pid <= 0) continue;              /* never kill(0) or kill(-1) */
        if (tasks[i].autostart && started[i]) kill(-pid, SIGKILL);
        if (slots[i].state == 1) kill(pid, SIGKILL);
    }
    if (fuse_pid > 0) kill(fuse_pid, SIGKILL);   /* aborts the connection: dwaits end */
    int64_t give_up = now_us() + 5000000;
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, WNOHANG);
        if (r > 0) {
            reaped(r, st, NULL);
            continue;
        }
        if (r < 0 && errno == ECHILD) break;
        if (now_us() > give_up) {
            emit("error children still alive 5 s after SIGKILL");
            break;
        }
        usleep(2000);
    }
    emit("end %s", reason);
    return 0;
}

/* ---------------------------------------------------------------- bench
 * `vmreal bench`: the fixed micro-workload real-setup runs on the host and in a VM to measure
 * the emulator's slowdown (harness/real/tcg.py): a CPU loop (BENCH_ITERS multiply-adds on one
 * register, no memory traffic) and page-fault throughput (BENCH_MB of fresh anonymous memory
 * touched one store per page, BENCH_ROUNDS times, unmapped in between).  Prints
 * "bench cpu_ns N iters K" and "bench fault_ns N pages P" (CLOCK_MONOTONIC). */
#define BENCH_ITERS 100000000UL
#define BENCH_MB 32
#define BENCH_ROUNDS 4

static long long bench_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int cmd_bench(void) {
    volatile unsigned long sink;
    unsigned long x = 1;
    long long t = bench_ns();
    for (unsigned long i = 0; i < BENCH_ITERS; i++)
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    sink = x;
    (void)sink;
    printf("bench cpu_ns %lld iters %lu\n", bench_ns() - t, BENCH_ITERS);
    size_t len = (size_t)BENCH_MB << 20, pages = 0;
    long psz = sysconf(_SC_PAGESIZE);
    t = bench_ns();
    for (int r = 0; r < BENCH_ROUNDS; r++) {
        char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) { perror("vmreal bench: mmap"); return 1; }
        for (size_t o = 0; o < len; o += (size_t)psz, pages++)
            ((volatile char *)p)[o] = 1;
        munmap(p, len);
    }
    printf("bench fault_ns %lld pages %zu\n", bench_ns() - t, pages);
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "bench")) return cmd_bench();
    if (argc >= 2 && !strcmp(argv[1], "run")) return cmd_run(argc, argv);
    if (argc >= 2 && !strcmp(argv[1], "task")) return cmd_task(argc, argv);
    fprintf(stderr, "usage: vmreal run PLAN DATA_DIR [--cgroup PROCS_FILE] [--cpus LIST] [--limit-ms N]\n");
    return 2;
}

"""The simulated machine: time, CPUs, zones, tasks, page accounting, I/O, trace.

This is the shared engine of ``shared/spec/model.md``.  Policies (``policies/*.py``) decide;
the engine acts.  Kernel paths are Python generators that ``yield`` scheduler commands
(consume CPU, yield the CPU, sleep, wait uninterruptibly), so a policy's allocator or reclaim
loop reads like the kernel function it models and is interleaved with every other task exactly
as a round-robin scheduler would interleave it.

Page accounting is by counts per zone (``model.md``: "page counts, not page objects, are fine
where nothing distinguishes the pages"), owned by mm's (anonymous, page tables, swap cache),
files (clean, mapped, dirty, under write-back page cache) and tasks (task_struct, kernel
allocations).  ``check_pages`` verifies conservation from the owners up.
"""
from __future__ import annotations

import hashlib
import heapq
import marshal
import random
import time
from collections import deque

from . import machine as M
from .machine import (PF_MEMALLOC, PF_MEMDIE, ZONE_DMA, ZONE_HIGHMEM, ZONE_NORMAL, SIGKILL,
                      SIGTERM)

# scheduler commands yielded by kernel/user generators
CPU = 0        # (CPU, us, is_user)
YIELD = 1      # (YIELD,)  sched_yield: to the back of the run queue
SLEEP = 2      # (SLEEP, until_us)  TASK_INTERRUPTIBLE until a time (a signal wakes it)
DWAIT = 3      # (DWAIT, until_us)  TASK_UNINTERRUPTIBLE until a time
WAITQ = 4      # (WAITQ, queue or None, interruptible)  sleep until woken (via the queue)
REPEAT = 5     # (REPEAT, us, count)  ``count`` identical kernel iterations of ``us`` each; the
               # generator is sent how many ran: fewer if the machine changed meanwhile
ITER = 6       # (ITER, us, is_user, fn)  CPU like (CPU, us, is_user); when it is used up the engine
               # calls ``fn()`` instead of resuming the generator: an int > 0 is the CPU time of the
               # next iteration (one event, as a resumption would have been), None resumes the
               # generator.  ``fn`` must do exactly what the generator would have done up to its
               # next yield (a loop's tail and head that consult nothing but the machine).
               # (ITER, us, is_user, fn, many): ``many(now, limit)`` makes in one call the
               # iterations that ``fn`` would make from ``now`` on, each one starting when the
               # one before ended (whole microseconds later) and ending before ``limit``; it
               # stops before one that would not, or that ``fn`` would not make, and changes
               # nothing the engine reads (timers, run queue, spin points).  Returns (how
               # many, their whole-microsecond CPU time, the CPU time of the last)

CMD_YIELD = (YIELD,)

INF = float("inf")

# task states
R, S, D, Z, X = "R", "S", "D", "Z", "X"   # runnable, sleeping, uninterruptible, exiting/zombie, dead


class SimError(Exception):
    """A workload or policy asked the engine for something impossible."""


class RunTimeout(Exception):
    """The run exceeded its wall-clock budget (a policy looping without end, say)."""


class Zone:
    """One ``zone_t``: size, free count, 2.4 watermarks and the page counts of every use."""

    KINDS = ("reserved", "anon", "clean", "mapped", "dirty", "wb", "swapc", "slab", "dcache",
             "pt", "ts", "kmem")
    __slots__ = ("idx", "name", "size", "free", "pages_min", "pages_low", "pages_high",
                 "need_balance") + KINDS

    def __init__(self, idx: int, size: int):
        self.idx, self.name, self.size = idx, M.ZONE_NAMES[idx], size
        self.pages_min, self.pages_low, self.pages_high = (
            M.zone_watermarks(idx, size) if size else (0, 0, 0))
        self.need_balance = 0
        for k in self.KINDS:
            setattr(self, k, 0)
        self.free = size

    def used(self) -> int:
        return sum(getattr(self, k) for k in self.KINDS)


class MM:
    """An ``mm_struct``: virtual size, resident anonymous pages per zone, page tables, swap."""

    __slots__ = ("total_vm", "anon", "pt", "swapc", "swapped", "touched", "users", "text")

    def __init__(self, total_vm: int, text=None):
        self.total_vm = total_vm
        self.anon = [0, 0, 0]
        self.pt = [0, 0, 0]
        self.swapc = [0, 0, 0]     # our anonymous pages now in the swap cache (dirty until written)
        self.swapped = 0           # swap slots holding our pages (written out or in swap cache)
        self.touched = 0           # anonymous pages ever faulted in (for page-table coverage)
        self.users = 1
        self.text = text           # the program's text File, mapped while we run

    @property
    def rss(self) -> int:
        return sum(self.anon) + sum(self.swapc)

    @property
    def nr_ptes(self) -> int:
        return sum(self.pt)


class File:
    """A file's page cache, per zone: clean unmapped, clean mapped (program text), dirty, under I/O."""

    __slots__ = ("name", "size", "clean", "mapped", "dirty", "wb", "mappers", "ws")

    def __init__(self, name: str, size: int, ws: int = 0):
        self.name, self.size, self.ws = name, size, ws
        self.clean = [0, 0, 0]
        self.mapped = [0, 0, 0]
        self.dirty = [0, 0, 0]
        self.wb = [0, 0, 0]
        self.mappers = 0

    @property
    def resident(self) -> int:
        return sum(self.clean) + sum(self.mapped) + sum(self.dirty) + sum(self.wb)


class Task:
    """A ``task_struct`` as far as the VM and the OOM killer can see it."""

    __slots__ = ("pid", "name", "role", "parent", "uid", "euid", "nice", "caps", "mm", "state",
                 "flags", "sigpending", "start_us", "utime", "stime", "gen", "cmd_left",
                 "slice_len", "ts_zone", "kmem", "exit_code", "exit_reason", "kthread",
                 "daemon", "goal", "ignores_sigterm", "children", "wait_child", "waiters",
                 "in_alloc_since", "spin_seen", "spin_ver", "killed_at", "sleep_token",
                 "oom_score_adj", "tpl", "cmd_user",
                 "boost_us", "send_val", "rep_per", "rep_total", "rep_ver", "iter_fn",
                 "iter_many")

    def __init__(self, pid, name, *, role="bystander", parent=None, uid=0, euid=None, nice=0,
                 caps=(), mm=None, kthread=False, daemon=False, goal=False,
                 ignores_sigterm=False, oom_score_adj=0, tpl=None):
        self.pid, self.name, self.role, self.parent = pid, name, role, parent
        self.uid = uid
        self.euid = uid if euid is None else euid
        self.nice, self.caps, self.mm = nice, frozenset(caps), mm
        self.state = R
        self.flags = 0
        self.sigpending = 0          # 0, SIGTERM or SIGKILL
        self.start_us = 0
        self.utime = 0
        self.stime = 0
        self.gen = None
        self.cmd_left = 0            # microseconds of CPU left on the current CPU command
        self.cmd_user = False
        self.slice_len = None        # timeslice override
        self.boost_us = 0            # CPU left of the OOM victim's 5*HZ ``counter`` boost
        self.send_val = None         # value sent into the generator when it next resumes
        self.rep_per = 0             # REPEAT in progress: cost of one iteration,
        self.rep_total = 0           # ... total cost granted,
        self.rep_ver = 0             # ... and the machine's version when it started
        self.iter_fn = None          # ITER in progress: what continues it
        self.iter_many = None        # ... and what makes many of its iterations at once
        self.ts_zone = None
        self.kmem = [0, 0, 0]
        self.exit_code = None
        self.exit_reason = None
        self.kthread, self.daemon, self.goal = kthread, daemon, goal
        self.ignores_sigterm = ignores_sigterm
        self.children = []
        self.wait_child = None
        self.waiters = []
        self.in_alloc_since = None
        self.spin_seen = -1
        self.spin_ver = -1
        self.killed_at = None
        self.sleep_token = 0
        self.oom_score_adj = oom_score_adj
        self.tpl = tpl

    @property
    def alive(self) -> bool:
        return self.state not in (Z, X)

    def __repr__(self):
        return f"<{self.name}[{self.pid}] {self.state}>"


class WaitQueue:
    __slots__ = ("tasks",)

    def __init__(self):
        self.tasks = []


class AllocReq:
    """One ``__alloc_pages`` call: who asks, with which GFP mask and order, for how many blocks."""

    __slots__ = ("task", "gfp", "order", "n", "zl", "got", "user")

    def __init__(self, task, gfp, order, n, zl, user):
        self.task, self.gfp, self.order, self.n, self.zl, self.user = task, gfp, order, n, zl, user
        self.got = [0, 0, 0]     # pages obtained, per zone

    @property
    def pages(self) -> int:
        return sum(self.got)


class CPUState:
    __slots__ = ("task", "slice_left")

    def __init__(self):
        self.task = None
        self.slice_left = 0


class Kernel:
    """One simulated machine running one workload under one policy with one seed."""

    def __init__(self, spec: M.MachineSpec, policy, seed: int = 0, *, trace: bool = True,
                 debug: bool = False, watchdog_s: float = 120.0, time_limit_s: float = 3600.0,
                 sample_us: int = 100_000):
        self.spec = spec
        self.costs = spec.costs
        self.policy = policy
        self.rng = random.Random(seed)
        self.seed = seed
        self.debug = debug
        self.now = 0
        self.version = 0
        self.spin_count = 0
        self.state_epoch = 0         # bumped whenever a task changes state (R/S/D/X)
        self._hot_epoch = -1
        self._hot = set()
        sizes = M.zone_sizes(spec.ram_pages)
        self.sizes = sizes
        self.zones = [Zone(i, s) for i, s in enumerate(sizes)]
        self.zonelists = {}
        self.swap_total = spec.swap_pages
        self.nr_swap_pages = spec.swap_pages
        self.tasks = []              # every task ever created, in creation (list) order
        self.live = {}               # pid -> task, for tasks not yet dead (creation order)
        self.by_pid = {}
        self.dstate = {}             # pid -> task, for tasks in D state
        self.next_pid = 1             # pid 0 is the idle task; init is pid 1
        self.runq = deque()
        self.cpus = [CPUState() for _ in range(max(1, spec.cpus))]
        self.n_runnable = 0
        self.timers = []
        self.tseq = 0
        self.alarms = {}             # key -> time before which a fast-forward must stop
        self.files = {}              # name -> File, in LRU order (oldest first)
        self.disk_busy_until = 0
        self.swap_cursor = 0
        self.swap_write_done = 0
        self.kswapd_wait = WaitQueue()
        self.kswapd = None
        self.watchdog_us = int(watchdog_s * 1e6)
        self.time_limit_us = int(time_limit_s * 1e6)
        self.last_progress = 0
        self.finished = None         # None while running, else "all-exited" / "time-limit" / "watchdog"
        self.watchdog_kind = None
        self.events = 0
        self.trace_on = trace
        self.trace = []
        self.sample_us = sample_us
        self.next_sample = 0
        self.samples = []            # (t_us, free per zone...)
        self.goal_tasks = 0
        self.goal_done = 0
        self._reserve_boot()

    # ------------------------------------------------------------------ boot
    def _reserve_boot(self):
        """Kernel image, mem_map and boot allocations come out of DMA first (model.md, Memory)."""
        sp = self.spec
        want = {
            "reserved": sp.reserved_kb * 1024 // M.PAGE_SIZE,
            "slab": sp.boot_slab_kb * 1024 // M.PAGE_SIZE,
            "dcache": sp.dcache_kb * 1024 // M.PAGE_SIZE,
        }
        for kind, n in want.items():
            for z in self.zones:
                if n <= 0:
                    break
                take = min(n, z.free - (z.pages_high if kind != "reserved" else 0))
                take = max(0, take)
                z.free -= take
                setattr(z, kind, getattr(z, kind) + take)
                n -= take
            if n > 0:
                raise SimError(f"machine too small: {kind} needs {n} more pages at boot")

    def zonelist(self, gfp: int):
        zl = self.zonelists.get(gfp & M.GFP_ZONEMASK)
        if zl is None:
            zl = M.build_zonelist(gfp, self.sizes)
            if not zl:
                raise SimError(f"no zone can satisfy gfp {gfp:#x} on this machine")
            self.zonelists[gfp & M.GFP_ZONEMASK] = zl
        return zl

    # ------------------------------------------------------------------ trace & versioning
    def emit(self, kind: str, *fields):
        if self.trace_on:
            self.trace.append((self.now, kind) + fields)

    def changed(self):
        """Something a retry loop could observe changed: invalidates fixed-point detection."""
        self.version += 1
        self.spin_count = 0

    def alarm(self, key, when: int):
        """A time at which some state a loop consults changes by itself (a rate limiter's gate
        opening): fast-forwarding never jumps past it."""
        self.alarms[key] = when

    def progress(self):
        self.last_progress = self.now

    def spin_point(self, task):
        """Mark the top of a retry loop whose local state is identical on every iteration.

        If nothing changed since this task last passed here, its iteration was a no-op.  When every
        runnable task is in that state the machine is at a fixed point until a timer fires, and the
        scheduler fast-forwards (model.md: the livelock must not cost wall time).
        """
        v = self.version
        if task.spin_seen == v:
            if task.spin_ver != v:
                task.spin_ver = v
                self.spin_count += 1
        else:
            task.spin_seen = v

    # ------------------------------------------------------------------ page accounting
    def take(self, req: AllocReq, thresholds, limit=None) -> int:
        """``rmqueue`` from each zone of the zonelist while ``zone.free > threshold``.

        ``thresholds[i]`` is the exclusive bound for ``req.zl[i]`` (``None`` = skip the zone).
        Takes up to ``limit`` (default ``req.n``) blocks of ``2**order`` pages in zonelist order,
        exactly as that many consecutive single allocations would.  Returns blocks taken.
        """
        want = req.n if limit is None else limit
        blk = 1 << req.order
        got_blocks = 0
        zones = self.zones
        i = -1
        for zi in req.zl:
            i += 1
            if got_blocks >= want:
                break
            t = thresholds[i]
            if t is None:
                continue
            z = zones[zi]
            free = z.free
            if free > t and free >= blk:
                can = (free - t - 1) // blk + 1
                if blk == 1:
                    if free < can:
                        can = free
                else:
                    can = min(can, free // blk)
                if want - got_blocks < can:
                    can = want - got_blocks
                if can > 0:
                    z.free = free - can * blk
                    req.got[zi] += can * blk
                    got_blocks += can
        if got_blocks:
            self.version += 1                # self.changed()
            self.spin_count = 0
        return got_blocks

    def take_nowatermark(self, req: AllocReq, limit=None) -> int:
        """The PF_MEMALLOC / PF_MEMDIE branch: any free block, no watermark at all."""
        return self.take(req, [blk - 1 for blk in [1 << req.order] * len(req.zl)], limit)

    def free_to_zone(self, zi: int, n: int):
        if n:
            self.zones[zi].free += n
            self.changed()

    def move(self, zi: int, frm: str, to: str, n: int):
        if n:
            z = self.zones[zi]
            setattr(z, frm, getattr(z, frm) - n)
            setattr(z, to, getattr(z, to) + n)

    def file_move(self, f: File, frm: str, to: str, n: int, zones=(2, 1, 0)) -> int:
        """Move up to ``n`` of a file's pages between states (``clean``, ``mapped``, ``dirty``,
        ``wb``), zone by zone in the order given, keeping the zone counts.  Returns pages moved."""
        src, dst = getattr(f, frm), getattr(f, to)
        left = n
        for zi in zones:
            if left <= 0:
                break
            m = min(left, src[zi])
            if m > 0:
                src[zi] -= m
                dst[zi] += m
                self.move(zi, frm, to, m)
                left -= m
        return n - left

    def assign(self, req: AllocReq, kind: str, owner_list):
        """Hand the pages of a finished allocation to an owner's per-zone list."""
        got = req.got
        zones = self.zones
        for zi in (0, 1, 2):
            n = got[zi]
            if n:
                z = zones[zi]
                setattr(z, kind, getattr(z, kind) + n)
                owner_list[zi] += n
        req.got = [0, 0, 0]

    def check_pages(self):
        """Page conservation, recomputed from the owners: raises on the first violation."""
        per = [dict.fromkeys(Zone.KINDS, 0) for _ in range(3)]
        for t in self.live.values():
            if t.ts_zone is not None:
                per[t.ts_zone]["ts"] += 2
            for zi in range(3):
                per[zi]["kmem"] += t.kmem[zi]
        seen = set()
        for t in self.live.values():
            mm = t.mm
            if mm is None or id(mm) in seen:
                continue
            seen.add(id(mm))
            for zi in range(3):
                per[zi]["anon"] += mm.anon[zi]
                per[zi]["pt"] += mm.pt[zi]
                per[zi]["swapc"] += mm.swapc[zi]
        for f in self.files.values():
            for zi in range(3):
                per[zi]["clean"] += f.clean[zi]
                per[zi]["mapped"] += f.mapped[zi]
                per[zi]["dirty"] += f.dirty[zi]
                per[zi]["wb"] += f.wb[zi]
        for z in self.zones:
            if z.free < 0:
                raise AssertionError(f"t={self.now}: zone {z.name} free {z.free} < 0")
            for k in Zone.KINDS:
                v = getattr(z, k)
                if v < 0:
                    raise AssertionError(f"t={self.now}: zone {z.name} {k} {v} < 0")
                if k not in ("reserved", "slab", "dcache") and v != per[z.idx][k]:
                    raise AssertionError(
                        f"t={self.now}: zone {z.name} {k}: zone says {v}, owners say {per[z.idx][k]}")
            if z.free + z.used() != z.size:
                raise AssertionError(
                    f"t={self.now}: zone {z.name}: free {z.free} + used {z.used()} != size {z.size}")
        if not 0 <= self.nr_swap_pages <= self.swap_total:
            raise AssertionError(f"swap pages {self.nr_swap_pages} out of range")
        # the engine's indexes of task states: runnable() and dstate
        for state, have in ((R, [t.pid for t in self.runnable()]), (D, list(self.dstate))):
            want = sorted(t.pid for t in self.live.values() if t.state == state)
            if sorted(have) != want:
                raise AssertionError(f"t={self.now}: tasks in state {state} {want}, "
                                     f"the engine's index says {sorted(have)}")

    # ------------------------------------------------------------------ files & I/O
    def file(self, name: str, size: int = 0, ws: int = 0) -> File:
        f = self.files.get(name)
        if f is None:
            f = self.files[name] = File(name, size, ws)
        return f

    def touch_file(self, f: File):
        """Move a file to the hot end of the (file-granular) LRU."""
        d = self.files
        if next(reversed(d)) is not f.name:
            d.pop(f.name)
            d[f.name] = f

    def disk_io(self, pages: int) -> int:
        """Queue one request on the single disk; returns its completion time (FIFO)."""
        c = self.costs
        start = max(self.now, self.disk_busy_until)
        done = start + c.disk_request_us + pages * c.disk_page_us
        self.disk_busy_until = done
        return done

    def start_writeback(self, f: File, zi: int, n: int):
        """Dirty -> under write-back; clean when the disk is done (``writepage``)."""
        n = self.file_move(f, "dirty", "wb", n, (zi,))
        if n <= 0:
            return
        done = self.disk_io(n)
        self.at(done, self._writeback_done, (f, zi, n))
        self.changed()

    def _writeback_done(self, arg):
        f, zi, n = arg
        self.file_move(f, "wb", "clean", n, (zi,))
        self.changed()

    # ------------------------------------------------------------------ timers
    def at(self, when: int, fn, arg=None):
        self.tseq += 1
        heapq.heappush(self.timers, (when, self.tseq, fn, arg))

    # ------------------------------------------------------------------ tasks
    def new_task(self, name, gen_factory, **kw) -> Task:
        pid = self.next_pid
        self.next_pid += 1
        t = Task(pid, name, **kw)
        t.start_us = self.now
        self.tasks.append(t)
        self.by_pid[pid] = t
        self.live[pid] = t
        if t.goal:
            self.goal_tasks += 1
        t.gen = gen_factory(t)
        t.state = S
        self.wake(t)
        self.emit("spawn", pid, name, t.parent.pid if t.parent else -1)
        return t

    def boost(self, t: Task, us: int):
        """``p->counter = 5*HZ`` in 2.4 ``oom_kill_task``: the old scheduler's goodness() then
        prefers the victim until it has used that CPU time.  Modelled as: a boosted task goes to
        the front of the run queue when it wakes or is preempted, and after a yield lets one
        other task run before it (a SCHED_YIELD task is skipped once)."""
        t.boost_us = us
        if t.state == R and t in self.runq:
            self.runq.remove(t)
            self.runq.appendleft(t)

    def wake(self, t: Task):
        if t.state in (S, D):
            if t.state == D:
                self.dstate.pop(t.pid, None)
            t.state = R
            self.state_epoch += 1
            t.sleep_token += 1
            if t.boost_us > 0:
                self.runq.appendleft(t)
            else:
                self.runq.append(t)
            self.n_runnable += 1
            self.changed()

    def _timer_wake(self, arg):
        t, token = arg
        if t.sleep_token == token and t.state in (S, D):
            self.wake(t)

    def wake_queue(self, q: WaitQueue):
        ts, q.tasks = q.tasks, []
        for t in ts:
            self.wake(t)

    def signal(self, t: Task, sig: int):
        """``force_sig``: pending signal; an S sleeper wakes at once, a D sleeper when its wait ends."""
        if not t.alive:
            return
        if sig == SIGKILL or t.sigpending != SIGKILL:
            t.sigpending = sig
        self.changed()
        if t.state == S:
            self.wake(t)

    def runnable(self):
        """The tasks in R state, in no particular order: those on a CPU and those queued."""
        for c in self.cpus:
            if c.task is not None:
                yield c.task
        yield from self.runq

    def text_ids(self, dstate: bool = False) -> set:
        """ids of the program text files of the runnable tasks (and, with ``dstate``, of the
        tasks in D state)."""
        out = {id(t.mm.text) for t in self.runnable()
               if t.mm is not None and t.mm.text is not None}
        if dstate:
            out.update(id(t.mm.text) for t in self.dstate.values()
                       if t.mm is not None and t.mm.text is not None)
        return out

    def text_in_use(self, f: File, dstate: bool = False) -> bool:
        """Is ``f`` the program text of a runnable task (or, with ``dstate``, of a task in D
        state)?  ``id(f) in self.text_ids(dstate)``, without building the set."""
        for c in self.cpus:
            t = c.task
            if t is not None and t.mm is not None and t.mm.text is f:
                return True
        for t in self.runq:
            if t.mm is not None and t.mm.text is f:
                return True
        if dstate:
            for t in self.dstate.values():
                if t.mm is not None and t.mm.text is f:
                    return True
        return False

    def hot_text(self) -> set:
        """ids of program text files some runnable task is executing (young, active pages).
        Cached until a task changes state."""
        if self._hot_epoch != self.state_epoch:
            self._hot = self.text_ids()
            self._hot_epoch = self.state_epoch
        return self._hot

    def fatal_pending(self, t: Task) -> bool:
        s = t.sigpending
        return s == SIGKILL or (s == SIGTERM and not t.ignores_sigterm)

    # ------------------------------------------------------------------ exit
    def release_mm(self, t: Task):
        mm = t.mm
        t.mm = None
        if mm is None:
            return
        mm.users -= 1
        if mm.text is not None:
            self.unmap_text(mm.text)
        if mm.users > 0:
            return
        for zi in range(3):
            for kind, lst in (("anon", mm.anon), ("pt", mm.pt), ("swapc", mm.swapc)):
                n = lst[zi]
                if n:
                    setattr(self.zones[zi], kind, getattr(self.zones[zi], kind) - n)
                    self.zones[zi].free += n
                    lst[zi] = 0
        self.nr_swap_pages += mm.swapped
        mm.swapped = 0
        mm.total_vm = 0
        self.changed()

    def unmap_text(self, f: File):
        f.mappers -= 1
        if f.mappers <= 0:
            f.mappers = 0
            self.file_move(f, "mapped", "clean", sum(f.mapped))

    def do_exit(self, t: Task, code: int, reason: str):
        """``do_exit``: free the mm, kernel allocations and task_struct, wake the parent."""
        if not t.alive:
            return
        was = t.state
        self.release_mm(t)
        for zi in range(3):
            if t.kmem[zi]:
                self.zones[zi].kmem -= t.kmem[zi]
                self.zones[zi].free += t.kmem[zi]
                t.kmem[zi] = 0
        if t.ts_zone is not None:
            self.zones[t.ts_zone].ts -= 2
            self.zones[t.ts_zone].free += 2
            t.ts_zone = None
        t.exit_code, t.exit_reason = code, reason
        if was == R:
            self._remove_runnable(t)
        elif was == D:
            self.dstate.pop(t.pid, None)
        t.state = X
        self.state_epoch += 1
        self.live.pop(t.pid, None)
        t.flags &= ~(PF_MEMALLOC | PF_MEMDIE)
        t.in_alloc_since = None
        t.iter_fn = t.iter_many = None
        self.changed()
        self.progress()
        self.emit("exit", t.pid, t.name, code, reason)
        if t.goal:
            self.goal_done += 1
        for w in t.waiters:               # parents sleeping in wait4() on this child
            if w.wait_child and w.state == S:
                w.wait_child = None
                self.wake(w)
        t.waiters = []
        if self.goal_tasks and self.goal_done >= self.goal_tasks and self.finished is None:
            if not any(not x.daemon and not x.kthread for x in self.live.values()):
                self.finished = "all-exited"

    def _remove_runnable(self, t: Task):
        for c in self.cpus:
            if c.task is t:
                c.task = None
                self.n_runnable -= 1
                return
        try:
            self.runq.remove(t)
            self.n_runnable -= 1
        except ValueError:
            pass

    # ------------------------------------------------------------------ scheduler
    def _dispatch(self, cpu: CPUState):
        t = self.runq.popleft()
        cpu.task = t
        cpu.slice_left = max(t.boost_us, t.slice_len or self.costs.timeslice_us)
        t.slice_len = None

    def _repeat_check(self, t: Task):
        """A REPEAT whose iterations would now see a changed machine stops at the end of the
        current iteration, so the kernel loop observes the change exactly where it would have."""
        if self.version != t.rep_ver:
            per = t.rep_per
            elapsed = t.rep_total - t.cmd_left
            new_total = (elapsed // per + 1) * per
            if new_total < t.rep_total:
                t.cmd_left = new_total - elapsed
                t.rep_total = new_total
            t.rep_ver = self.version

    def _step(self, cpu: CPUState):
        """Run a task's generator until it asks for time or leaves the CPU."""
        t = cpu.task
        fn = t.iter_fn
        if fn is not None:
            us = fn()
            if us is not None and us > 0:
                self.events += 1
                t.cmd_left = us
                return
            t.iter_fn = t.iter_many = None
        gen = t.gen
        if t.rep_per:
            t.send_val = t.rep_total // t.rep_per
            t.rep_per = 0
        while True:
            self.events += 1
            try:
                val, t.send_val = t.send_val, None
                cmd = gen.send(val)
            except StopIteration:
                if t.alive:
                    self.do_exit(t, 0, "exit")
                if cpu.task is t:
                    cpu.task = None
                    self.n_runnable -= 1
                return
            if t.state != R:          # killed synchronously (do_exit inside the generator)
                if cpu.task is t:
                    cpu.task = None
                return
            op = cmd[0]
            if op == CPU:
                us = cmd[1]
                if us <= 0:
                    continue
                t.cmd_left = us
                t.cmd_user = cmd[2]
                return
            if op == ITER:
                us = cmd[1]
                if us <= 0:
                    continue
                t.cmd_left = us
                t.cmd_user = cmd[2]
                t.iter_fn = cmd[3]
                t.iter_many = cmd[4] if len(cmd) > 4 else None
                return
            if op == REPEAT:
                per, count = cmd[1], cmd[2]
                if per <= 0 or count <= 0:
                    t.send_val = count
                    continue
                t.rep_per, t.rep_total, t.rep_ver = per, per * count, self.version
                t.cmd_left = per * count
                t.cmd_user = False
                return
            if op == YIELD:
                if self.runq:
                    cpu.task = None
                    if t.boost_us > 0:
                        self.runq.insert(1, t)
                    else:
                        self.runq.append(t)
                    return
                continue
            # sleeping commands
            self.state_epoch += 1
            cpu.task = None
            self.n_runnable -= 1
            t.sleep_token += 1
            if op == SLEEP or op == DWAIT:
                t.state = S if op == SLEEP else D
                if op == DWAIT:
                    self.dstate[t.pid] = t
                if op == SLEEP and self.fatal_pending(t):
                    t.state = S
                    self.wake(t)
                    return
                self.at(cmd[1], self._timer_wake, (t, t.sleep_token))
            elif op == WAITQ:
                t.state = S if cmd[2] else D
                if not cmd[2]:
                    self.dstate[t.pid] = t
                q = cmd[1]
                if q is not None:
                    q.tasks.append(t)
                if cmd[2] and self.fatal_pending(t):
                    if q is not None:
                        q.tasks.remove(t)
                    self.wake(t)
                    return
            else:
                raise SimError(f"unknown command {cmd!r}")
            self.changed()
            return

    def _advance(self, dt: int):
        for c in self.cpus:
            t = c.task
            if t is not None:
                t.cmd_left -= dt
                c.slice_left -= dt
                if t.cmd_user:
                    t.utime += dt
                else:
                    t.stime += dt
                if t.boost_us > 0:
                    t.boost_us = max(0, t.boost_us - dt)
        self.now += dt

    def _fast_forward(self, until: int):
        """Every runnable task is spinning in a loop that changes nothing: jump to ``until``."""
        dt = until - self.now
        if dt <= 0:
            return
        share = dt * len(self.cpus) // max(1, self.n_runnable)
        share = min(share, dt)
        for t in self.runq:
            t.stime += share
        for c in self.cpus:
            if c.task is not None:
                c.task.stime += share
        self.now = until
        self.emit("ff", dt)

    def _sample(self):
        z = self.zones
        self.samples.append((self.now, z[0].free, z[1].free, z[2].free))
        self.next_sample = self.now - self.now % self.sample_us + self.sample_us
        hook = self.__dict__.get("on_sample")     # harness.laws.Periodic, set by the runner
        if hook is not None:
            hook(self)

    def run(self, wall_timeout_s: float | None = None):
        """The event loop: dispatch, advance to the next event, fire it; until the run ends.
        ``wall_timeout_s`` bounds the wall time (checked every 4096 loop turns)."""
        if len(self.cpus) == 1:
            self._run1(wall_timeout_s)
        else:
            self._run_n(wall_timeout_s)
        self._sample()
        return self

    def _run1(self, wall_timeout_s):
        """:meth:`_run_n` for a machine with one CPU, turn for turn the same operations in the
        same order, with the per-CPU loops unrolled and the hot attributes held in locals."""
        c = self.cpus[0]
        timers = self.timers
        runq = self.runq
        heappop = heapq.heappop
        debug = self.debug
        alarms = self.alarms
        watchdog_us = self.watchdog_us
        time_limit_us = self.time_limit_us
        step = self._step
        deadline_wall = time.perf_counter() + wall_timeout_s if wall_timeout_s else None
        turns = 0
        while self.finished is None:
            turns += 1
            if deadline_wall is not None and not turns & 4095 and time.perf_counter() > deadline_wall:
                raise RunTimeout(f"run exceeded {wall_timeout_s:g} s of wall time at "
                                 f"t={self.now / 1e6:.3f} s simulated")
            t = c.task
            if t is not None and not t.rep_per:
                # the usual turn, its tests in short: the task's command ends first (before a
                # timer, the end of its timeslice, the next zone sample and the deadline) and
                # no fast-forward is due -- advance to its end, step, fire the timers now due
                now = self.now
                cl = t.cmd_left
                e = now + cl
                n_run = self.n_runnable
                if (0 < cl < c.slice_left and (not timers or e < timers[0][0])
                        and e < self.next_sample and not (n_run and self.spin_count >= n_run)
                        and e < self.last_progress + watchdog_us and e < time_limit_us):
                    cl = int(cl)                # (as _advance: whole microseconds)
                    t.cmd_left -= cl
                    c.slice_left -= cl
                    if t.cmd_user:
                        t.utime += cl
                    else:
                        t.stime += cl
                    if t.boost_us > 0:
                        t.boost_us = max(0, t.boost_us - cl)
                    self.now = now + cl
                    if t.iter_fn is not None:
                        self._iterate1(c, t)
                    else:
                        step(c)
                    if debug:
                        self.check_pages()
                    while timers and timers[0][0] <= self.now:
                        _, _, fn, arg = heappop(timers)
                        self.events += 1
                        fn(arg)
                        if debug:
                            self.check_pages()
                    continue
            while t is None and runq:
                self._dispatch(c)
                if c.task.cmd_left <= 0:
                    step(c)
                    if debug:
                        self.check_pages()
                t = c.task
            now = self.now
            t_next = timers[0][0] if timers else INF
            if t is not None:
                if t.rep_per:
                    self._repeat_check(t)
                cl, sl = t.cmd_left, c.slice_left
                e = now + (cl if cl < sl else sl)
                if e < t_next:
                    t_next = e
                n_run = self.n_runnable
                if n_run and self.spin_count >= n_run:
                    deadline = self.last_progress + watchdog_us
                    if time_limit_us < deadline:
                        deadline = time_limit_us
                    target = min(timers[0][0] if timers else INF, deadline)
                    for a in alarms.values():
                        if now < a < target:
                            target = a
                    self._fast_forward(int(target))
                    now = self.now
                    if now >= self.next_sample:
                        self._sample()
                    t_next = now
            deadline = self.last_progress + watchdog_us
            if time_limit_us < deadline:
                deadline = time_limit_us
            if t_next >= deadline:
                if t_next == INF and t is None and deadline == INF:
                    self.finished = "idle"
                    break
                if deadline > now:
                    if t is not None:
                        self._advance(int(deadline - now))
                    else:
                        self.now = int(deadline)
                if self._end_by_deadline():
                    break
                continue
            if t_next > now:
                dt = int(t_next - now)
                if t is not None:              # _advance, one CPU
                    t.cmd_left -= dt
                    c.slice_left -= dt
                    if t.cmd_user:
                        t.utime += dt
                    else:
                        t.stime += dt
                    if t.boost_us > 0:
                        t.boost_us = max(0, t.boost_us - dt)
                now = self.now = now + dt
            if now >= self.next_sample:
                self._sample()
            if t is not None:
                if t.cmd_left <= 0:
                    if t.iter_fn is not None:
                        self._iterate1(c, t)
                    else:
                        step(c)
                    if debug:
                        self.check_pages()
                elif c.slice_left <= 0:
                    c.task = None
                    if t.boost_us > 0:
                        runq.appendleft(t)
                    else:
                        runq.append(t)
            while timers and timers[0][0] <= self.now:
                _, _, fn, arg = heappop(timers)
                self.events += 1
                fn(arg)
                if debug:
                    self.check_pages()

    def _iterate1(self, c: CPUState, t: Task):
        """One CPU: an ``ITER`` command is used up.  Call its function, and while the next
        iteration would end before anything else happens -- no timer due by then, within the
        timeslice, before the next zone sample and the watchdog or time limit, no fast-forward
        due -- make the turns of :meth:`_run1` that would only advance time and call it again
        (they consist of nothing else).  Otherwise the main loop takes over with the iteration
        set as the task's CPU command, or the generator is resumed.

        ``lim`` holds the end of the timeslice (``now + slice_left`` does not change while
        both advance together), the next sample and the watchdog/time-limit deadline as they
        were on entry; ``fn`` may only move the deadline later (``progress``), so an iteration
        that reaches the stale one goes back to the main loop, which then makes the same
        decision with the current deadline -- either way the same operations in the same
        order."""
        fn, many = t.iter_fn, t.iter_many
        timers = self.timers
        debug = self.debug
        now = self.now
        lim = now + c.slice_left
        if self.next_sample < lim:
            lim = self.next_sample
        deadline = self.last_progress + self.watchdog_us
        if self.time_limit_us < deadline:
            deadline = self.time_limit_us
        if deadline < lim:
            lim = deadline
        while True:
            us = fn()
            if us is None or us <= 0:
                t.iter_fn = t.iter_many = None
                self._step(c)
                return
            self.events += 1
            t.cmd_left = us
            now = self.now
            e = now + us
            if e >= lim or (timers and timers[0][0] <= e):
                return
            n_run = self.n_runnable
            if n_run and self.spin_count >= n_run:
                return
            if debug:
                self.check_pages()
            d = int(us)                   # (as _advance: whole microseconds)
            t.cmd_left = us - d
            c.slice_left -= d
            if t.cmd_user:
                t.utime += d
            else:
                t.stime += d
            if t.boost_us > 0:
                t.boost_us = max(0, t.boost_us - d)
            self.now = now = now + d
            if many is not None and not debug:
                # the iterations that fit before the stops above, in one call: the same
                # accounting, summed (the fast-forward test cannot change meanwhile)
                n, d, last = many(now, timers[0][0] if timers and timers[0][0] < lim else lim)
                if n:
                    self.events += n
                    self._advance(d)
                    t.cmd_left = last - int(last)

    def _run_n(self, wall_timeout_s):
        """The event loop of a machine with several CPUs."""
        cpus = self.cpus
        timers = self.timers
        heappop = heapq.heappop
        debug = self.debug
        deadline_wall = time.perf_counter() + wall_timeout_s if wall_timeout_s else None
        turns = 0
        while self.finished is None:
            turns += 1
            if deadline_wall is not None and not turns & 4095 and time.perf_counter() > deadline_wall:
                raise RunTimeout(f"run exceeded {wall_timeout_s:g} s of wall time at "
                                 f"t={self.now / 1e6:.3f} s simulated")
            for c in cpus:
                while c.task is None and self.runq:
                    self._dispatch(c)
                    if c.task.cmd_left <= 0:
                        self._step(c)
                        if debug:
                            self.check_pages()
            t_next = timers[0][0] if timers else INF
            busy = False
            for c in cpus:
                t = c.task
                if t is not None:
                    busy = True
                    if t.rep_per:
                        self._repeat_check(t)
                    e = self.now + (t.cmd_left if t.cmd_left < c.slice_left else c.slice_left)
                    if e < t_next:
                        t_next = e
            deadline = self.last_progress + self.watchdog_us
            if self.time_limit_us < deadline:
                deadline = self.time_limit_us
            if busy and self.n_runnable and self.spin_count >= self.n_runnable:
                target = min(timers[0][0] if timers else INF, deadline)
                for a in self.alarms.values():
                    if self.now < a < target:
                        target = a
                self._fast_forward(int(target))
                if self.now >= self.next_sample:
                    self._sample()
                t_next = self.now
            if t_next >= deadline:
                if t_next == INF and not busy and deadline == INF:
                    self.finished = "idle"
                    break
                if deadline > self.now:
                    if busy:
                        self._advance(int(deadline - self.now))
                    else:
                        self.now = int(deadline)
                if self._end_by_deadline():
                    break
                continue
            if t_next > self.now:
                self._advance(int(t_next - self.now))
            if self.now >= self.next_sample:
                self._sample()
            for c in cpus:
                t = c.task
                if t is None:
                    continue
                if t.cmd_left <= 0:
                    self._step(c)
                    if debug:
                        self.check_pages()
                elif c.slice_left <= 0:
                    c.task = None
                    if t.boost_us > 0:
                        self.runq.appendleft(t)
                    else:
                        self.runq.append(t)
            while timers and timers[0][0] <= self.now:
                _, _, fn, arg = heappop(timers)
                self.events += 1
                fn(arg)
                if debug:
                    self.check_pages()

    def _end_by_deadline(self) -> bool:
        """The time limit, or the watchdog.  A machine on which no task waits for memory is idle,
        not stuck: the watchdog window then starts again.  Returns True when the run ends."""
        if self.now >= self.time_limit_us:
            self.finished = "time-limit"
            self.emit("time_limit")
            return True
        if not any(t.in_alloc_since is not None for t in self.live.values()):
            self.last_progress = self.now
            return False
        self.finished = "watchdog"
        # livelock: someone is runnable and looping in the allocator/reclaim (CPU busy, nothing
        # achieved); deadlock: everyone waiting for memory is asleep
        spinning = [t for t in self.tasks if t.state == R and t.in_alloc_since is not None]
        self.watchdog_kind = "livelock" if spinning else "deadlock"
        self.emit("watchdog", self.watchdog_kind, tuple(t.pid for t in spinning))
        return True

    # ------------------------------------------------------------------ results
    def trace_sha256(self) -> str:
        """SHA-256 of the trace and the zone samples, serialised by ``marshal`` format 2 (plain
        values, no back-references to shared objects: the bytes depend on the values only; a
        quarter of the time of ``repr``), or by ``repr`` when an event holds something else."""
        h = hashlib.sha256()
        for part in (self.trace, self.samples):
            try:
                h.update(marshal.dumps(part, 2))
            except ValueError:
                h.update(repr(part).encode())
        return h.hexdigest()

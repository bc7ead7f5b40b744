"""The simulated machine's model: zones, mm's, files, tasks, page accounting, I/O, the trace.

Page accounting is by counts per zone (``model.md``: "page counts, not page objects, are fine
where nothing distinguishes the pages"), owned by mm's (anonymous, page tables, swap cache),
files (clean, mapped, dirty, under write-back page cache) and tasks (task_struct, kernel
allocations).  ``check_pages`` verifies conservation from the owners up.  The scheduler that
runs the tasks is :mod:`harness.sched`; :class:`harness.engine.Kernel` is the two together.
"""
from __future__ import annotations

import hashlib
import marshal

from . import machine as M
from .machine import PF_MEMALLOC, PF_MEMDIE, SIGKILL, SIGTERM

# task states
R, S, D, Z, X = "R", "S", "D", "Z", "X"   # runnable, sleeping, uninterruptible, exiting/zombie, dead


class SimError(Exception):
    """A workload or policy asked the engine for something impossible."""


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

    __slots__ = ("name", "size", "clean", "mapped", "dirty", "wb", "mappers", "ws", "read_until")

    def __init__(self, name: str, size: int, ws: int = 0):
        self.name, self.size, self.ws = name, size, ws
        self.read_until = 0       # when the last read of its pages issued by file_read completes
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
                 "iter_many", "rq_since")

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
        self.rq_since = None         # when it joined the run queue (waiting for a CPU), or None
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


class Model:
    """The machine's state and the operations on it that take no time: allocation from the
    zones' free counts, moving pages between owners, files and the disk queue, creating and
    ending tasks, signals, the trace.  Mixed into :class:`harness.engine.Kernel`."""

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

    def emit(self, kind: str, *fields):
        if self.trace_on:
            self.trace.append((self.now, kind) + fields)

    def changed(self):
        """Something a retry loop could observe changed: invalidates fixed-point detection."""
        self.version += 1
        self.spin_count = 0

    def progress(self):
        self.last_progress = self.now

    def memstall(self, task, enter: bool):
        """``psi_memstall_enter`` / ``psi_memstall_leave`` (kernel/sched/psi.c): ``task`` starts or
        stops a memory stall (direct reclaim, kswapd's balance pass, the read of a refaulting
        page flagged workingset).  The engine's PSI (``self.psi``, :class:`harness.psi.MemPSI`)
        records it; then the policy's :meth:`memstall` hook is told."""
        if enter:
            self.psi.memstall_enter(self.now, task.pid)
        else:
            self.psi.memstall_leave(self.now, task.pid)
        self.policy.memstall(self, task, enter)

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

    def owner_counts(self) -> list[dict]:
        """Per zone, each use's page count as its owners hold it (the live tasks' mms, kernel
        allocations and task_structs, the files' page cache); O(tasks + files).  What the
        zones' counts must equal (``check_pages``, :func:`harness.laws.check_owners`)."""
        per = [dict.fromkeys(Zone.KINDS, 0) for _ in range(3)]
        seen = set()
        for t in self.live.values():
            if t.ts_zone is not None:
                per[t.ts_zone]["ts"] += 2
            for zi in range(3):
                per[zi]["kmem"] += t.kmem[zi]
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
        return per

    def check_pages(self):
        """Page conservation, recomputed from the owners: raises on the first violation."""
        per = self.owner_counts()
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
        if self.lru is not None:
            self.lru.check()
        if not 0 <= self.nr_swap_pages <= self.swap_total:
            raise AssertionError(f"swap pages {self.nr_swap_pages} out of range")
        # the engine's indexes of task states: runnable() and dstate
        for state, have in ((R, [t.pid for t in self.runnable()]), (D, list(self.dstate))):
            want = sorted(t.pid for t in self.live.values() if t.state == state)
            if sorted(have) != want:
                raise AssertionError(f"t={self.now}: tasks in state {state} {want}, "
                                     f"the engine's index says {sorted(have)}")

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

    def signal(self, t: Task, sig: int):
        """``force_sig``: pending signal; an S sleeper wakes at once, a D sleeper when its wait ends."""
        if not t.alive:
            return
        if sig == SIGKILL or t.sigpending != SIGKILL:
            t.sigpending = sig
        if self.fatal_pending(t):             # dying: no longer the goal's work (progress)
            self.prog.task_exit(t.pid, self.now)
        self.changed()
        if t.state == S:
            self.wake(t)

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
        self.psi.exit(self.now, t.pid)
        self.prog.task_exit(t.pid, self.now)
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

"""The policy interface: what differs between the kernels of the 2002 thread.

A policy file in ``policies/`` subclasses :class:`Policy` and overrides some of its six hooks
(``shared/spec/policies.md``):

1. :meth:`Policy.watermarks`       the watermark test of each allocator pass
2. :meth:`Policy.slow_path`        what the allocator does once the fast passes fail
3. :meth:`Policy.try_to_free_pages` reclaim effort and early exit (and :meth:`Policy.kswapd`)
4. :meth:`Policy.out_of_memory`    when the OOM killer runs (call sites and rate limiter)
5. :meth:`Policy.badness` / :meth:`Policy.select_bad_process`  whom it picks
6. :meth:`Policy.oom_kill`         how the kill is delivered

Contract:

* ``__init__(**params)`` only stores parameters (plain, picklable values) as attributes; the
  class attribute ``params`` lists their names and defaults.  Per-run state is built in
  :meth:`reset`, which the engine calls once before the run.
* Hooks named ``*_path``, ``try_to_free_pages``, ``kswapd``, ``out_of_memory`` and
  ``alloc_pages`` are generators: they ``yield`` scheduler commands (``(CPU, us, False)``,
  ``CMD_YIELD``, ``(DWAIT, until)``) and ``return`` their result; call them with ``yield from``.
* A policy reads the machine through the kernel object ``k`` (``k.zones``, ``k.tasks``,
  ``k.now``, ``k.nr_swap_pages``) and changes it only through the engine and the blocks in
  :mod:`harness.blocks` (``k.take``, reclaim blocks, kill delivery).  It never looks at a task's
  or workload's name to decide anything.
* Every policy module starts with a docstring naming the tree, files and functions it models.
"""
from __future__ import annotations

from . import blocks as B
from . import machine as M
from .engine import CMD_YIELD, CPU, SLEEP, WAITQ
from .machine import PF_MEMALLOC, PF_MEMDIE


class Policy:
    """Base class.  The defaults are mainline 2.4.19's ``__alloc_pages`` fast passes and OOM killer.

    Subclasses set ``name`` (unique, used on the command line) and ``description`` (one line).
    """

    name: str = ""
    description: str = ""
    params: dict = {}

    def __init__(self, **params):
        unknown = set(params) - set(self.params)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown parameter(s) {sorted(unknown)}; "
                            f"known: {sorted(self.params)}")
        for key, default in self.params.items():
            setattr(self, key, params.get(key, default))

    def get_params(self) -> dict:
        return {key: getattr(self, key) for key in self.params}

    def reset(self, k):
        """Build per-run state, before anything runs.  The default keeps one shared 2.4
        ``out_of_memory`` limiter."""
        self.oom_limiter = B.OOMRateLimiter(lastkill=True)

    def boot(self, k):
        """Called once init and the kernel threads exist (pid 1 is init), before the workload's
        tasks start: the place to start a policy's own threads (an oom_reaper, a user-space
        killer daemon) with ``k.new_task``.  Default: nothing."""

    # ------------------------------------------------------------------ 1. watermark test
    def watermarks(self, k, zl, order: int, gfp: int, which: str):
        """Exclusive lower bounds on ``zone.free``, one per zone of ``zl``, for pass ``which``:
        ``"low"`` (pass A), ``"min"`` (pass B), ``"atomic"`` (pass B without ``__GFP_WAIT``),
        ``"retry"`` (after reclaim), ``"high"`` (-aa's "has someone been killed" check).
        Default: mainline's sums over the zonelist."""
        if which == "low":
            return B.summed_thresholds(k, zl, order, "low")
        if which == "atomic":
            return B.summed_thresholds(k, zl, order, "min", shift=2)
        if which == "high":
            return B.summed_thresholds(k, zl, order, "high")
        return B.summed_thresholds(k, zl, order, "min")

    # ------------------------------------------------------------------ __alloc_pages
    def alloc_pages(self, k, req):
        """``__alloc_pages`` (2.4 mm/page_alloc.c): pass A at ``low``, wake kswapd, pass B at
        ``min`` (``min>>2`` for atomic), the PF_MEMALLOC/PF_MEMDIE no-watermark branch, then
        :meth:`slow_path`.  Returns the number of blocks obtained (0 = failure)."""
        zl, order, gfp, task = req.zl, req.order, req.gfp, req.task
        n = k.take(req, self.watermarks(k, zl, order, gfp, "low"))
        if n:
            return n
        self.wakeup_kswapd(k, zl[0])
        which = "min" if gfp & M.GFPF_WAIT else "atomic"
        n = k.take(req, self.watermarks(k, zl, order, gfp, which))
        if n:
            return n
        if task.flags & (PF_MEMALLOC | PF_MEMDIE):
            return k.take_nowatermark(req, 1)
        if not gfp & M.GFPF_WAIT:
            return 0
        since = task.in_alloc_since
        if since is None:
            task.in_alloc_since = k.now
        k.emit("stall", task.pid, gfp, order)
        try:
            n = yield from self.slow_path(k, req)
        finally:
            if since is None:
                task.in_alloc_since = None
        k.emit("stall_end", task.pid, int(bool(n)))
        return n

    def wakeup_kswapd(self, k, cz: int):
        z = k.zones[cz]
        if not z.need_balance:
            z.need_balance = 1
            k.changed()
        if k.kswapd_wait.tasks:
            k.wake_queue(k.kswapd_wait)

    # ------------------------------------------------------------------ 2. slow path
    def slow_path(self, k, req):
        """After passes A and B failed for a ``__GFP_WAIT`` caller.  Must return blocks (>= 1)
        or 0 for failure.  Default: mainline's rebalance loop (never fails for order <= 3)."""
        task = req.task
        while True:
            if task.flags & (PF_MEMALLOC | PF_MEMDIE):
                n = k.take_nowatermark(req, 1)
                return n
            n, _freed = yield from self.balance_classzone(k, req)
            if n:
                return n
            n = k.take(req, self.watermarks(k, req.zl, req.order, req.gfp, "retry"), 1)
            if n:
                return n
            if req.order > 3:
                return 0
            k.spin_point(task)
            yield CMD_YIELD

    def balance_classzone(self, k, req):
        """``balance_classzone`` (2.4 mm/page_alloc.c): reclaim with PF_MEMALLOC|PF_FREE_PAGES; the
        first page this task frees is handed straight to it if the order fits (order 0 here).
        Returns ``(blocks, freed)`` where ``freed`` is reclaim's return value."""
        task = req.task
        cz = req.zl[0]
        task.flags |= PF_MEMALLOC
        try:
            ok, rr = yield from self.try_to_free_pages(k, task, cz, req.gfp, req.order)
        finally:
            if not task.flags & PF_MEMDIE:
                task.flags &= ~PF_MEMALLOC
        if rr is not None and rr.first_zone is not None and req.order == 0:
            z = k.zones[rr.first_zone]
            if z.free >= 1:
                z.free -= 1
                req.got[rr.first_zone] += 1
                k.changed()
                return 1, ok
        return 0, ok

    # ------------------------------------------------------------------ 3. reclaim
    def try_to_free_pages(self, k, task, cz: int, gfp: int, order: int):
        """Direct reclaim.  Returns ``(ok, ReclaimRound)``; ``ok`` is the kernel's return value."""
        raise NotImplementedError

    def kswapd(self, k, task):
        """The kswapd thread (-aa shape, S4 mm/vmscan.c ``kswapd``/``kswapd_balance_pgdat``): for
        each zone flagged ``need_balance``, highest first, run reclaim; if it fails clear the
        flag and sleep ``kswapd_fail_sleep`` jiffies; sleep on ``kswapd_wait`` when none is flagged."""
        task.flags |= PF_MEMALLOC
        fail_sleep = getattr(self, "kswapd_fail_sleep", M.HZ)
        while True:
            flagged = [z for z in reversed(k.zones) if z.need_balance and z.size]
            if not flagged:
                yield (WAITQ, k.kswapd_wait, True)
                continue
            for z in flagged:
                ok, rr = yield from self.try_to_free_pages(k, task, z.idx, M.GFP_KSWAPD, 0)
                if not ok:
                    z.need_balance = 0
                    k.changed()
                    yield (SLEEP, k.now + fail_sleep * M.JIFFY_US)
                    continue
                if not self.need_balance(k, z.idx):
                    z.need_balance = 0
                    k.changed()

    def need_balance(self, k, cz: int) -> bool:
        """``check_classzone_need_balance``; default mainline's."""
        return B.mainline_need_balance(k, cz)

    # ------------------------------------------------------------------ 4. OOM trigger
    def out_of_memory(self, k, task):
        """2.4 ``out_of_memory()``: the shared rate limiter, then :meth:`oom_kill`.
        Returns True if the calling task itself was chosen."""
        if not self.oom_limiter(k):
            k.emit("oom_call", task.pid, 0)
            return False
        k.emit("oom_call", task.pid, 1)
        killed_self = yield from self.oom_kill(k, task)
        return killed_self

    # ------------------------------------------------------------------ 5. victim selection
    def badness(self, k, p) -> int:
        """Points for task ``p``; 0 means never.  Default: 2.4.19 ``badness`` (no PF_MEMDIE skip)."""
        return B.badness_24(k, p, memdie_skip=False)

    def select_bad_process(self, k):
        """Returns (victim or None, top of the badness table).  Default: 2.4, init eligible."""
        return B.select_bad_process(k, self.badness)

    # ------------------------------------------------------------------ 6. kill delivery
    def oom_kill(self, k, task):
        """``oom_kill``: select, signal every task sharing the mm, then yield.
        Returns True if ``task`` itself was killed."""
        victim, table = self.select_bad_process(k)
        killed_self = B.oom_kill_24(k, task, victim, table)
        yield (CPU, int(len(k.live) * k.costs.oom_scan_us_per_task), False)   # the scan's cost
        yield CMD_YIELD
        return killed_self

"""oom_reaper: Linux 4.15 -- the OOM reaper, should_reclaim_retry, oom_score_adj.

The answer of 2016 to Andrea's objection of 2002 (the OOM killer "can select a task in D state"):
a kernel thread takes the victim's ``mmap_sem`` for reading and unmaps its anonymous and private
memory while the victim still sleeps, then marks the mm MMF_OOM_SKIP so the selector may move
on (``shared/spec/kernel-2.4.md`` §7; M13 "mm, oom: introduce oom reaper", 4.6; M12 "mm, oom:
rework oom detection", 4.7).

Models (tree ``torvalds/linux`` ~v4.15, S6: ``mm/oom_kill.c`` @ c797bc88f77b,
``mm/page_alloc.c``; the watermarks, reclaim and the frame of ``out_of_memory`` are the modern
base's, :mod:`harness.modern`):

* ``mm/oom_kill.c``: ``oom_badness`` = rss + swap entries + page tables, minus 3 % for
  CAP_SYS_ADMIN, plus ``oom_score_adj * (totalpages / 1000)``, at least 1; -1000, MMF_OOM_SKIP,
  init and kernel threads score 0.  ``oom_evaluate_task``/``select_bad_process``: a victim
  (``tsk_is_oom_victim``) aborts the scan unless its mm has MMF_OOM_SKIP, then it is skipped;
  ties keep the first.  ``out_of_memory``: ``task_will_free_mem(current)`` (a caller already
  dying is marked and handed to the reaper), panic when nobody is killable, else
  ``oom_kill_process`` (``task_will_free_mem(victim)`` shortcut; sacrifice a child; SIGKILL;
  ``mark_oom_victim``; SIGKILL to every other process sharing the mm; ``wake_oom_reaper``) and
  ``schedule_timeout_killable(1)``.  The reaper (``oom_reaper``, ``oom_reap_task``,
  ``__oom_reap_task_mm``): a kthread started at boot, woken with the victim (a LIFO list); it
  takes ``oom_lock``, then ``down_read_trylock(mmap_sem)``; on success it frees the resident
  anonymous pages and the swap slots already written, and unmaps the program text; on failure
  it sleeps HZ/10 and tries again, ``MAX_OOM_REAP_RETRIES`` = 10 attempts; then, reaped or not,
  MMF_OOM_SKIP.
* ``mm/page_alloc.c`` (``__alloc_pages_slowpath``, 4.15): wake kswapd, pass at ``min``;
  ``retry:`` reserves -- ALLOC_NO_WATERMARKS for PF_MEMALLOC, ALLOC_OOM (half the min
  watermark) for an OOM victim; direct reclaim; ``should_reclaim_retry`` (``no_progress_loops``
  back to 0 after progress for order <= 3, else +1; past MAX_RECLAIM_RETRIES = 16 give up;
  else retry while some zone's free + reclaimable pages would pass its min watermark, after a
  ``congestion_wait(HZ/10)`` when reclaim made no progress and over half of that is dirty or
  under write-back, swap included -- NR_ZONE_WRITE_PENDING); then ``__alloc_pages_may_oom`` (``mutex_trylock(&oom_lock)`` -- taken: a
  jiffy's sleep counts as progress; a pass at ``high``; no OOM for order > 3, a classzone
  below NORMAL, or a caller without ``__GFP_FS``, which is told "progress"); an OOM victim
  whose ALLOC_OOM pass failed gets NULL; progress -> ``no_progress_loops = 0``, retry.
* ``mm/vmscan.c``: the base's reclaim without the per-priority nap; the watermarks count
  ``managed_pages`` (no boot reservation), ``watermark_scale_factor`` 10.

The file LRU: the 6.1 rules of :mod:`harness.lru` and :mod:`harness.workingset`
(``lru_rules = workingset_kernel = "6.1"``), not 4.15's: 4.15 has no PG_workingset (4.20), so
its refaults could never be memory stalls, and the real kernel this model is held against on
the thrashing workloads is Debian 6.1 (``docs/thrashing.md``).  The OOM side stays 4.15.

Departures: the engine has no ``mmap_sem``, so no task ever holds it for writing and the
reaper's ``down_read_trylock`` (:meth:`OomReaper.mmap_sem_trylock`) succeeds at once.  The
reaper's work costs ``pte_scan_us`` per page unmapped.  The engine's scheduler gives CFS's
slices (:func:`harness.sched.cfs_slice`, 2.6.38-6.1's tunables) but queues a woken task behind
every runnable one, where CFS's wakeup preemption would run a task that slept (the reaper, a
killed sleeper) almost at once: both get the engine's boost for 2.4's timeslice
(``timeslice_us``) to stand for that (without it, every allocating task spins through its
slice before the victim or the reaper gets the CPU).  An OOM victim whose allocation fails
even with ALLOC_OOM takes the engine's i386 fault path (it is killed on the spot, counted as a
fault kill) instead of ``pagefault_out_of_memory``.  No ``PF_EXITING`` window (an exiting task leaves
at once).  A retry round that changed nothing is charged again with the engine's ``REPEAT``
for the retries left.  :mod:`harness.replay` replays the no-op retries, the no-op reclaim
round and the badness scan (``REPLAYS``).
"""
from harness import blocks as B
from harness import machine as M
from harness import replay
from harness.engine import CPU, DWAIT, SLEEP, WAITQ, WaitQueue
from harness.machine import PF_MEMALLOC, SIGKILL, ZONE_NORMAL
from harness.modern import (ALLOC_NO_WATERMARKS, ALLOC_OOM, OOM_SCORE_ADJ_MIN,
                            PAGE_ALLOC_COSTLY_ORDER, WMARK_HIGH, WMARK_MIN, Aborted,
                            congestion_wait)
from harness.sched import CFS_2_6_38

from policies.linux26 import Linux26

from harness.replay import MAX_RECLAIM_RETRIES   # mm/internal.h (M12): 16
MAX_OOM_REAP_RETRIES = 10          # mm/oom_kill.c
REAP_RETRY_JIFFIES = M.HZ // 10    # schedule_timeout_idle(HZ/10)


class OomReaper(Linux26):
    name = "oom_reaper"
    description = ("4.15: the oom_reaper frees a victim's memory even in D state; "
                   "MAX_RECLAIM_RETRIES 16; oom_score_adj")
    params = {"lowmem_reserve_ratio": (256, 32), "swappiness": 60}
    REPLAYS = ("noop_round", "noop_retries", "select_415")     # harness.replay

    MANAGED_PAGES = True
    WATERMARK_SCALE_FACTOR = 10
    # the file LRU and refault detection of 6.1 (see the module docstring, "The file LRU")
    lru_rules = "6.1"
    workingset_kernel = "6.1"
    cfs_tunables = CFS_2_6_38          # kernel/sched/fair.c: 6 ms, 0.75 ms, 8 (2.6.38 on)

    def reset(self, k):
        super().reset(k)
        self.reap_list = []          # oom_reaper_list (LIFO)
        self.reaper_wait = WaitQueue()
        self.reaper = None

    def boot(self, k):
        """``oom_init``: ``kthread_run(oom_reaper, NULL, "oom_reaper")``."""
        self.reaper = k.new_task("oom_reaper", lambda t: self.oom_reaper(k, t),
                                 role="protected", kthread=True, daemon=True)

    # ------------------------------------------------------------------ victims
    def wake_oom_reaper(self, k, p):
        if self.reaper is None or p in self.reap_list:
            return
        self.reap_list.insert(0, p)
        k.boost(self.reaper, k.costs.timeslice_us)     # CFS: a woken sleeper runs next
        k.wake_queue(self.reaper_wait)

    # ------------------------------------------------------------------ allocator
    def reserve_flags(self, k, task) -> int:
        """``__gfp_pfmemalloc_flags``: PF_MEMALLOC -> ALLOC_NO_WATERMARKS, an OOM victim ->
        ALLOC_OOM."""
        if task.flags & PF_MEMALLOC:
            return ALLOC_NO_WATERMARKS
        if self.is_oom_victim(task):
            return ALLOC_OOM
        return 0

    def slow_path(self, k, req):
        """``__alloc_pages_slowpath`` (4.15)."""
        task, zl, order, gfp = req.task, req.zl, req.order, req.gfp
        flags = self.gfp_flags(gfp)
        self.wake_all_kswapd(k, zl)
        n = k.take(req, self.thresholds(k, zl, order, WMARK_MIN, flags))
        if n:
            return n
        loops = 0                                               # no_progress_loops
        same = False                # the last iteration changed nothing (harness.replay)
        while True:                                             # retry:
            if same:
                top = ver = k.version
                loops, saved = yield from replay.noop_retries(self, k, req, loops)
                progress = False
            else:
                top = k.version
                self.wake_all_kswapd(k, zl)
                reserve = self.reserve_flags(k, task)
                if reserve:
                    flags = reserve
                if flags & ALLOC_NO_WATERMARKS:
                    n = k.take_nowatermark(req, 1)
                else:
                    n = k.take(req, self.thresholds(k, zl, order, WMARK_MIN, flags))
                if n:
                    return n
                if not gfp & M.GFPF_WAIT or task.flags & PF_MEMALLOC:
                    return 0
                if not loops:
                    # the loop's state (the machine, no_progress_loops) comes round again
                    # only at a count of 0: the no-progress retries are bounded and end in
                    # the OOM path, so they are no fixed point; a cycle that an OOM path
                    # without a kill (a victim still exiting) restarts from 0 is one
                    k.spin_point(task)
                ver, saved = k.version, tuple(self.saved_scan)
                progress, _rr = yield from self.direct_reclaim(k, req)
                if progress:
                    n = k.take(req, self.thresholds(k, zl, order, WMARK_MIN, flags))
                    if n:
                        return n
            same = False
            retry, loops = yield from self.should_reclaim_retry(k, req, flags, progress, loops)
            if retry and not progress:         # a round that changed nothing: harness.replay
                retry, loops, same = yield from replay.same_rounds(self, k, req, loops, ver,
                                                                   saved, top)
            if retry:
                continue
            n, oom_progress = yield from self.may_oom(k, req)
            if n:
                return n
            if self.is_oom_victim(task) and flags == ALLOC_OOM:
                return 0
            if oom_progress:
                loops = 0
                continue
            return 0

    def should_reclaim_retry(self, k, req, flags, progress, loops):
        """``should_reclaim_retry`` (4.15).  Returns (retry?, no_progress_loops)."""
        if progress and req.order <= PAGE_ALLOC_COSTLY_ORDER:
            loops = 0
        else:
            loops += 1
        if loops > MAX_RECLAIM_RETRIES:
            return False, loops
        thr = self.thresholds(k, req.zl, req.order, WMARK_MIN, flags)
        for i, zi in enumerate(req.zl):
            z = k.zones[zi]
            reclaimable = self.zone_reclaimable_pages(k, zi)
            if z.free + reclaimable > thr[i]:
                if not progress and 2 * (z.dirty + z.wb + z.swapc) > reclaimable:
                    yield from congestion_wait(k, M.HZ // 10)
                return True, loops
        return False, loops

    def may_oom(self, k, req):
        """``__alloc_pages_may_oom`` (4.15).  Returns (blocks, did_some_progress)."""
        task, zl, order, gfp = req.task, req.zl, req.order, req.gfp
        if not self.take_oom_lock(k, task):
            yield (DWAIT, k.now + M.JIFFY_US)          # schedule_timeout_uninterruptible(1)
            return 0, True
        try:
            n = k.take(req, self.thresholds(k, zl, order, WMARK_HIGH, 0))
            if n:
                return n, False
            if order > PAGE_ALLOC_COSTLY_ORDER or zl[0] < ZONE_NORMAL:
                return 0, False
            if not gfp & M.GFPF_FS and not self.task_will_free_mem(k, task):
                return 0, True           # out_of_memory: "does not compensate for IO-less reclaim"
            progress = yield from self.out_of_memory(k, task)
            return 0, bool(progress)
        finally:
            self.release_oom_lock(k, task)

    def priority_nap(self, k, scanned, prio):
        """4.15 reclaim takes no nap between priorities."""
        return
        yield  # pragma: no cover

    # ------------------------------------------------------------------ OOM
    def dying_caller(self, k, task) -> bool:
        """``task_will_free_mem(current)``: a caller already dying is marked and handed to the
        reaper."""
        if not self.task_will_free_mem(k, task):
            return False
        self.mark_oom_victim(k, task)
        self.wake_oom_reaper(k, task)
        return True

    def after_kill(self, k, task):
        """``schedule_timeout_killable(1)``."""
        yield (SLEEP, k.now + M.JIFFY_US)

    def badness(self, k, p):
        """``oom_badness`` (4.15): pages, not a share."""
        if self.unkillable(p) or p.mm is None:
            return 0
        adj = p.oom_score_adj
        if adj == OOM_SCORE_ADJ_MIN or self.oom_skip(p.mm):
            return 0
        points = self.mm_points(p)
        if self.has_cap_sys_admin(p):
            points -= points * 3 // 100
        points += adj * (self.totalpages // 1000)
        return points if points > 0 else 1

    def select_bad_process(self, k, current=None):
        """``select_bad_process`` / ``oom_evaluate_task`` (4.15)."""
        chosen, best = None, 0
        table = []
        for p in k.live.values():
            if not p.alive or self.unkillable(p):
                continue
            if self.is_oom_victim(p):
                if self.oom_skip(self.oom_mm[p.pid]):
                    continue
                return None, Aborted(((p.pid, p.name, -1),))
            pts = self.badness(k, p)
            if not pts or pts < best:
                continue
            table.append((p.pid, p.name, pts))
            if chosen is not None and pts == best:
                continue                      # a tie keeps the (thread-group leader) first
            chosen, best = p, pts
        return chosen, B.badness_table(table)

    def oom_kill_process(self, k, killer, p, table):
        """``oom_kill_process`` (4.15)."""
        if self.task_will_free_mem(k, p):
            self.mark_oom_victim(k, p)
            self.wake_oom_reaper(k, p)
            return True
        victim = self.sacrifice_child(k, p)
        if victim.mm is None:
            return False
        mm = victim.mm
        k.signal(victim, SIGKILL)
        k.boost(victim, k.costs.timeslice_us)          # CFS: a woken sleeper runs next
        self.mark_oom_victim(k, victim)
        B.record_kill(k, victim, SIGKILL, table, killer)
        can_reap = True
        for q in k.live.values():
            if q is victim or not q.alive or q.mm is not mm:
                continue
            if q.pid == 1:
                can_reap = False
                self.set_oom_skip(mm)
                continue
            if q.kthread:
                continue
            k.signal(q, SIGKILL)
            B.record_kill(k, q, SIGKILL, table, killer)
        if can_reap:
            self.wake_oom_reaper(k, victim)
        return True

    # ------------------------------------------------------------------ the reaper
    def mmap_sem_trylock(self, k, mm) -> bool:
        """``down_read_trylock(&mm->mmap_sem)``.  The engine models no mmap_sem: nobody holds
        it for writing, so the read lock is always had."""
        return True

    def oom_reaper(self, k, t):
        """The ``oom_reaper`` kthread: sleep until a victim is queued, reap it, again."""
        while True:
            if not self.reap_list:
                yield (WAITQ, self.reaper_wait, True)
                continue
            tsk = self.reap_list.pop(0)
            yield from self.oom_reap_task(k, t, tsk)

    def oom_reap_task(self, k, t, tsk):
        """``oom_reap_task``: up to MAX_OOM_REAP_RETRIES attempts HZ/10 apart; then
        MMF_OOM_SKIP whatever happened."""
        mm = self.oom_mm.get(tsk.pid)
        if not tsk.alive:                              # exit_mmap got there first
            self.set_oom_skip(mm)
            return
        attempts = 0
        reaped = False
        while attempts < MAX_OOM_REAP_RETRIES:
            attempts += 1
            reaped = yield from self.oom_reap_task_mm(k, t, tsk, mm)
            if reaped:
                break
            yield (DWAIT, k.now + REAP_RETRY_JIFFIES * M.JIFFY_US)
        k.emit("oom_reap", tsk.pid, attempts, int(reaped))
        self.set_oom_skip(mm)
        k.changed()

    def oom_reap_task_mm(self, k, t, tsk, mm):
        """``__oom_reap_task_mm``: under ``oom_lock`` and the read side of ``mmap_sem``, free
        the victim's resident anonymous pages and written-out swap slots and unmap its text."""
        yield from self.lock_oom_lock(k, t)
        try:
            return (yield from self._reap_mm(k, t, tsk, mm))
        finally:
            self.release_oom_lock(k, t)

    def _reap_mm(self, k, t, tsk, mm):
        if mm is None or mm.users <= 0 or not tsk.alive:
            return True                                # mmget_not_zero failed: already gone
        if not self.mmap_sem_trylock(k, mm):
            return False
        freed = 0
        for zi in range(len(mm.anon)):
            n = mm.anon[zi]
            if n:
                mm.anon[zi] = 0
                k.zones[zi].anon -= n
                k.free_to_zone(zi, n)
                freed += n
        slots = mm.swapped - sum(mm.swapc)             # free_swap_and_cache of written pages
        if slots > 0:
            mm.swapped -= slots
            k.nr_swap_pages += slots
        if mm.text is not None:                        # private file mappings are unmapped too
            k.unmap_text(mm.text)
            mm.text = None
        k.changed()
        if freed:
            yield (CPU, int(freed * k.costs.pte_scan_us), False)
        return True

"""linux26: Linux 2.6.36 -- lowmem_reserve watermarks, RSS badness, TIF_MEMDIE wait.

The first kernel with the RSS-based ``oom_badness`` (David Rientjes' rewrite, 2.6.36, 2010),
still with the TIF_MEMDIE rule of 2.6: ``select_bad_process`` aborts -- kills nobody new -- while
any task is an OOM victim that has not exited yet, so a victim asleep in D state stalls OOM
handling until it wakes (``shared/spec/kernel-2.4.md`` §7; ``policies.md``, successors).

Models (tree ``torvalds/linux`` v2.6.36; the watermarks, reserves, reclaim and the frame of
``out_of_memory`` are the modern base's, :mod:`harness.modern`):

* ``mm/page_alloc.c`` ``__alloc_pages_slowpath``: wake every zone's kswapd, pass at ``min``;
  ALLOC_NO_WATERMARKS for PF_MEMALLOC and TIF_MEMDIE; a TIF_MEMDIE task that still fails gets
  NULL; direct reclaim; no progress -> ``__alloc_pages_may_oom`` (the zonelist OOM lock, one
  last pass at ``high``, no OOM for order > 3 or a classzone below NORMAL, ``out_of_memory``)
  and ``goto restart``; progress -> ``should_alloc_retry`` (always for order <= 3),
  ``congestion_wait(HZ/50)``, ``goto rebalance``.
* ``mm/vmscan.c``: the two-list file LRU of 2.6.36 (:mod:`harness.lru`, ``lru_rules``
  "2.6.36": ``inactive_file_is_low_global``, the VM_EXEC extra trip, ``page_check_references``;
  no ``workingset.c`` -- that is 3.15 -- so refaults are plain reads).
* ``mm/vmscan.c`` ``do_try_to_free_pages``: the base's, with ``congestion_wait(HZ/10)`` after
  each priority below 10 that scanned (the base's default ``priority_nap``).
* ``mm/oom_kill.c``: ``oom_badness`` = (rss + page tables + swap entries) x 1000 / totalpages,
  -30 for CAP_SYS_ADMIN, + ``oom_score_adj``, at least 1, at most 1000; init and kernel threads
  never; ``select_bad_process`` (task list order, strict ``>``; **returns "abort" as soon as it
  meets a TIF_MEMDIE task**); ``oom_kill_process`` ("sacrifice child": the highest-scoring child
  with its own mm dies instead of the parent); ``oom_kill_task`` (TIF_MEMDIE, SIGKILL,
  ``boost_dying_task_prio``); ``out_of_memory`` (the base's: a caller with SIGKILL pending just
  gets TIF_MEMDIE; after a kill the caller sleeps one jiffy).

The scheduler: CFS's slices with 2.6.36's tunables (``kernel/sched_fair.c``: latency 6 ms,
min_granularity 2 ms, nr_latency 3; the modern base's ``cfs_tunables``), on a 250 Hz tick.

Departures: the engine's flag PF_MEMDIE stands for TIF_MEMDIE; ``do_try_to_free_pages``'
"return 1 while a zone is still reclaimable" (``all_unreclaimable``) is not modelled, so no
progress means OOM; SCHED_FIFO of a dying task is the engine's boost for HZ of CPU.
"""
from harness import blocks as B
from harness import machine as M
from harness import replay
from harness.engine import DWAIT
from harness.machine import PF_MEMALLOC, PF_MEMDIE, SIGKILL, ZONE_NORMAL
from harness.modern import (ALLOC_NO_WATERMARKS, OOM_SCORE_ADJ_MIN, PAGE_ALLOC_COSTLY_ORDER,
                            WMARK_HIGH, WMARK_MIN, Aborted, Modern, congestion_wait)


class Linux26(Modern):
    name = "linux26"
    description = ("2.6.36: lowmem_reserve watermarks, RSS badness; no new kill while a "
                   "TIF_MEMDIE victim lives")
    params = {"lowmem_reserve_ratio": (256, 32), "swappiness": 60}
    REPLAYS = ("select_26", "abort_restarts")   # harness.replay: the badness scan inline, the
                                                 # restarts while out_of_memory aborts

    # ------------------------------------------------------------------ __alloc_pages
    def slow_path(self, k, req):
        """``__alloc_pages_slowpath`` (2.6.36)."""
        task, zl, order, gfp = req.task, req.zl, req.order, req.gfp
        wait = gfp & M.GFPF_WAIT
        same = False                # the last iteration changed nothing (harness.replay)
        while True:                                             # restart:
            top, fl = k.version, task.flags
            self.wake_all_kswapd(k, zl)
            flags = self.gfp_flags(gfp)
            n = k.take(req, self.thresholds(k, zl, order, WMARK_MIN, flags))
            if n:
                return n
            while True:                                         # rebalance:
                if self.reserve_flags(k, task) & ALLOC_NO_WATERMARKS:
                    n = k.take_nowatermark(req, 1)
                    if n:
                        return n
                if not wait or task.flags & (PF_MEMALLOC | PF_MEMDIE):
                    return 0
                k.spin_point(task)
                if same:
                    same = False
                    if k.version == top and replay.idle_round(self, k, zl[0]):
                        n = yield from replay.abort_restarts(self, k, req)   # the same ones
                        if n:
                            return n
                        break                                   # goto restart
                progress, _rr = yield from self.direct_reclaim(k, req)
                if progress:
                    n = k.take(req, self.thresholds(k, zl, order, WMARK_MIN, flags))
                    if n:
                        return n
                elif gfp & M.GFPF_FS:
                    n = yield from self.may_oom(k, req)
                    if n:
                        return n
                    if order > PAGE_ALLOC_COSTLY_ORDER or zl[0] < ZONE_NORMAL:
                        return 0
                    # an iteration that changed nothing (out_of_memory met a TIF_MEMDIE task):
                    # the next ones are the same while the machine is (harness.replay)
                    same = (self.replay.restarts and k.version == top and task.flags == fl)
                    break                                       # goto restart
                retry, _ = yield from self.should_reclaim_retry(k, req, flags, progress, 0)
                if not retry:                                   # should_alloc_retry
                    return 0
                yield from congestion_wait(k, M.HZ // 50)

    def may_oom(self, k, req):
        """``__alloc_pages_may_oom`` (2.6.36): the zonelist OOM lock (taken: sleep a jiffy and
        retry), one pass at ``high`` to catch a parallel kill, then ``out_of_memory``."""
        task, zl, order = req.task, req.zl, req.order
        if not self.take_oom_lock(k, task):
            yield (DWAIT, k.now + M.JIFFY_US)
            return 0
        try:
            n = k.take(req, self.thresholds(k, zl, order, WMARK_HIGH, 0))
            if n:
                return n
            if order > PAGE_ALLOC_COSTLY_ORDER or zl[0] < ZONE_NORMAL:
                return 0
            yield from self.out_of_memory(k, task)
            return 0
        finally:
            self.release_oom_lock(k, task)

    # ------------------------------------------------------------------ OOM
    def badness(self, k, p):
        """``oom_badness`` (2.6.36): a share of RAM + swap in 1/1000."""
        if self.unkillable(p) or p.mm is None or p.oom_score_adj == OOM_SCORE_ADJ_MIN:
            return 0
        points = self.mm_points(p) * 1000 // max(1, self.totalpages)
        if self.has_cap_sys_admin(p):
            points -= 30
        points += p.oom_score_adj
        if points <= 0:
            return 1
        return min(points, 1000)

    def select_bad_process(self, k, current=None):
        """``select_bad_process`` (2.6.36): task list order, strict ``>`` from 0; meeting a
        TIF_MEMDIE task aborts the scan."""
        chosen, best = None, 0
        table = []
        for p in k.live.values():
            if not p.alive or self.unkillable(p):
                continue
            if p.flags & PF_MEMDIE:
                return None, Aborted(((p.pid, p.name, -1),))
            if p.mm is None:
                continue
            pts = self.badness(k, p)
            if pts:
                table.append((p.pid, p.name, pts))
            if pts > best:
                chosen, best = p, pts
        return chosen, B.badness_table(table)

    def oom_kill_process(self, k, killer, p, table):
        victim = self.sacrifice_child(k, p)
        if victim.mm is None:
            return False
        victim.flags |= PF_MEMDIE                      # set_tsk_thread_flag(p, TIF_MEMDIE)
        k.signal(victim, SIGKILL)
        k.boost(victim, M.HZ * M.JIFFY_US)             # boost_dying_task_prio: SCHED_FIFO
        B.record_kill(k, victim, SIGKILL, table, killer)
        return True

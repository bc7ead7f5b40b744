"""aa: Andrea Arcangeli's -aa VM (2.4.19-pre6aa1 era): point-of-view watermarks, no OOM killer.

Models (``shared/spec/kernel-2.4.md`` §4):

* watermarks per classzone (S4 ``mm/page_alloc.c free_area_init_core``, M8
  ``zone-watermarks-1``): ``lower_zone_reserve_ratio`` {256, 32}; not summed.
* ``__alloc_pages`` (S4): passes at ``low`` then ``min`` of the class's watermarks; after
  ``balance_classzone``: if reclaim freed, retry at ``min`` and ``goto rebalance``; if not,
  one check at ``high`` ("has another task been killed meanwhile?") and then **fail**.
* ``try_to_free_pages_zone`` (S4 ``mm/vmscan.c``): 60 passes; everyone but init gives up after
  a failed round; init yields and loops while the point-of-view
  ``check_classzone_need_balance`` says there is need.
* no OOM killer (the -aa ``oom_kill.c`` is ``#if 0``, M1): a failed page fault kills the faulting
  task (arch/i386/mm/fault.c), a failed fork or read returns -ENOMEM.

Departures: kswapd sleeps ``kswapd_fail_sleep`` (HZ, as in 2002) after a failed balance, not
2.4.32's 5*HZ; reclaim is the count-based one of :mod:`harness.blocks`.
"""
from harness import blocks as B
from harness import machine as M
from harness.engine import CMD_YIELD
from harness.policy import Policy


class AA(Policy):
    name = "aa"
    description = "-aa: per-classzone watermarks, reclaim gives up, allocation fails, no OOM killer"
    params = {"vm_passes": 60, "lower_zone_reserve_ratio": (256, 32), "kswapd_fail_sleep": M.HZ}

    def reset(self, k):
        self.wm = B.classzone_watermarks(k, self.lower_zone_reserve_ratio)
        self.oom_limiter = None

    def watermarks(self, k, zl, order, gfp, which):
        if which == "atomic":
            return B.classzone_thresholds(k, self.wm, zl, order, "min", shift=2)
        if which == "retry":
            which = "min"
        return B.classzone_thresholds(k, self.wm, zl, order, which)

    def need_balance(self, k, cz):
        return B.classzone_need_balance(k, self.wm, cz)

    def slow_path(self, k, req):
        while True:
            n, freed = yield from self.balance_classzone(k, req)
            if n:
                return n
            if freed:
                n = k.take(req, self.watermarks(k, req.zl, req.order, req.gfp, "min"), 1)
                if n:
                    return n
                continue                      # goto rebalance
            n = yield from self.after_failed_reclaim(k, req)
            return n

    def after_failed_reclaim(self, k, req):
        """The hook :meth:`harness.policy.Policy.after_failed_reclaim`, -aa's (S4
        ``__alloc_pages``, reclaim freed nothing): one last look at ``high`` (someone may have
        died meanwhile), then fail."""
        n = k.take(req, self.watermarks(k, req.zl, req.order, req.gfp, "high"), 1)
        if n:
            return n
        k.emit("alloc_failed_msg", req.task.pid, req.order)    # "__alloc_pages: %u-order allocation failed"
        return 0
        yield  # pragma: no cover  (a generator hook)

    def try_to_free_pages(self, k, task, cz, gfp, order):
        total = B.ReclaimRound()
        while True:
            rr = yield from B.aa_reclaim_round(k, task, cz, gfp, self.vm_passes)
            total.freed += rr.freed
            if total.first_zone is None:
                total.first_zone = rr.first_zone
            ok = rr.freed >= M.SWAP_CLUSTER_MAX
            B.note_reclaim(k, task, rr, ok, task is not k.kswapd)
            if ok:
                return True, total
            if task.pid != 1:
                return False, total
            if not self.need_balance(k, cz):
                return False, total
            k.spin_point(task)
            yield CMD_YIELD

    def out_of_memory(self, k, task):
        return False
        yield  # pragma: no cover

"""morton: Andrew Morton's hybrid proposal of 11 April 2002 on the -aa base.

Models M4 (``shared/spec/kernel-2.4.md`` §6): "If the aa approach reaches the point where it
will fail a page allocation we run the oom-killer, yield and then have another go at the
allocation.  Do that a couple of times and *then* fail the page allocation."

* watermarks, reclaim, kswapd: as ``aa`` (S4 ``mm/page_alloc.c``, ``mm/vmscan.c``).
* where ``aa`` would fail: first ``oom_kill_passes`` more reclaim rounds (akpm's "tunable which
  defines how hard we work before killing something", default 3, M1); then
  ``out_of_memory()``, ``yield()``, and another go at the allocation (``goto rebalance``:
  reclaim again), ``retries`` times; then fail as ``aa`` does.
* OOM killer: akpm's ``aa-122-oom_kill`` (M1): skips ``pid <= 1`` and tasks without an mm, the
  2.4 first/last/count rate limiter without ``lastkill``, 2.4 ``badness`` without a PF_MEMDIE
  skip.  A task chosen while it loops here has PF_MEMDIE and takes the reserves on its next go.

The proposal was prose only; this is the model suggested in §6 [I], with the effort tunable of
akpm's posted patch in front of the first kill.
"""
from harness import blocks as B
from harness.engine import CMD_YIELD
from harness.machine import PF_MEMDIE
from harness.policy import Policy
from policies.aa import AA


class Morton(AA):
    name = "morton"
    description = "akpm's hybrid: -aa, but kill + yield + retry N times before failing"
    params = {**AA.params, "retries": 2, "oom_kill_passes": 3}

    def reset(self, k):
        super().reset(k)
        self.oom_limiter = B.OOMRateLimiter(lastkill=False)

    def after_failed_reclaim(self, k, req):
        """The hook ``after_failed_reclaim`` (aa's slow path, reclaim freed nothing): M4's
        kill, yield and retry before -aa's failure."""
        task = req.task
        # akpm's effort tunable (vm_oom_kill_passes, M1): more failed rounds before any kill
        for _ in range(self.oom_kill_passes):
            n = k.take(req, self.watermarks(k, req.zl, req.order, req.gfp, "high"), 1)
            if n:
                return n
            yield CMD_YIELD
            n, _freed = yield from self.balance_classzone(k, req)
            if n:
                return n
        # M4: run the oom-killer, yield, have another go; a couple of times; then fail
        for _ in range(self.retries):
            n = k.take(req, self.watermarks(k, req.zl, req.order, req.gfp, "high"), 1)
            if n:
                return n
            yield from self.out_of_memory(k, task)
            yield CMD_YIELD
            if task.flags & PF_MEMDIE:                 # we were chosen: use the reserves, then die
                return k.take_nowatermark(req, 1)
            n, _freed = yield from self.balance_classzone(k, req)
            if n:
                return n
        return (yield from super().after_failed_reclaim(k, req))

    # AA.out_of_memory returns False (-aa's oom_kill.c is #if 0); akpm's patch brings the 2.4
    # out_of_memory() back: the rate limiter made in reset (no lastkill), then oom_kill with
    # the select_bad_process below.  Assigned, not overridden, so it is exactly the base hook.
    out_of_memory = Policy.out_of_memory

    def select_bad_process(self, k):
        return B.select_bad_process(k, self.badness, skip_pid_le=1, skip_no_mm=True)


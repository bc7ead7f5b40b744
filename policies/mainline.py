"""mainline: Linux 2.4.19-pre6 as Andrew Morton tested it in April 2002.

Models (``shared/spec/kernel-2.4.md`` §1, §1.5, §6):

* allocator: mainline ``__alloc_pages`` and ``balance_classzone`` (2.4.19, S2
  ``mm/page_alloc.c``): passes A (``pages_low``) and B/C (``pages_min``) with the thresholds
  **summed** over the zonelist (``min += z->pages_min``); after reclaim fails, ``yield()`` and
  ``goto rebalance`` forever for order <= 3.
* reclaim: Morton's split-up of the -aa VM, i.e. -aa ``try_to_free_pages_zone`` (S4
  ``mm/vmscan.c``: 60 passes of ``shrink_caches``) with his ``aa-122-oom_kill`` loop (M1): after a
  failed round, ``check_classzone_need_balance`` -- mainline's, per-zone ``pages_high`` -- may
  say "no need" and return 0; otherwise yield and, every ``oom_kill_passes`` + 1 failed rounds,
  call ``out_of_memory()``.
* OOM killer: 2.4 ``mm/oom_kill.c`` with akpm's filters (skip ``pid <= 1`` and tasks without an
  mm), the first/last/count rate limiter **without** ``lastkill`` (not yet merged in
  2.4.19-pre6), ``badness`` without the PF_MEMDIE skip.

The livelock of the thread is not written anywhere here: it comes from the two different views
of the watermarks (summed in the allocator, per zone in ``check_classzone_need_balance``).

Departures: the -aa reclaim is the count-based one of :mod:`harness.blocks`; kswapd sleeps HZ
after a failed balance (2.4.19).
"""
from harness import blocks as B
from harness.engine import CMD_YIELD
from harness.policy import Policy


class Mainline(Policy):
    name = "mainline"
    description = "2.4.19-pre6 + akpm's -aa reclaim split-up: summed pages_min, loops forever"
    params = {"vm_passes": 60, "oom_kill_passes": 3}

    def reset(self, k):
        self.oom_limiter = B.OOMRateLimiter(lastkill=False)

    def try_to_free_pages(self, k, task, cz, gfp, order):
        """akpm's ``try_to_free_pages`` (M1 ``aa-122-oom_kill``) around the -aa 60-pass round."""
        total = B.ReclaimRound()
        npass = 0
        while True:
            rr = yield from B.aa_reclaim_round(k, task, cz, gfp, self.vm_passes)
            total.freed += rr.freed
            if total.first_zone is None:
                total.first_zone = rr.first_zone
            if rr.freed >= B.M.SWAP_CLUSTER_MAX:
                B.note_reclaim(k, task, rr, True, task is not k.kswapd)
                return True, total
            B.note_reclaim(k, task, rr, False, task is not k.kswapd)
            if not self.need_balance(k, cz):
                return False, total
            yield CMD_YIELD
            p, npass = npass, npass + 1
            if p >= self.oom_kill_passes:
                if (yield from self.out_of_memory(k, task)):
                    return False, total
                yield CMD_YIELD
                npass = 0

    def select_bad_process(self, k):
        return B.select_bad_process(k, self.badness, skip_pid_le=1, skip_no_mm=True)

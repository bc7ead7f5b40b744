"""template: <one line -- which kernel or proposal this policy is, and what it changes>.

Models (say where every mechanism comes from: tree or project version, file, function; the
trees and mails are listed in shared/spec/kernel-2.4.md §0):

* <e.g. Linux 2.4.19 (S2) mm/vmscan.c ``try_to_free_pages``: ...>
* <e.g. mm/oom_kill.c ``badness``: ...>

Departures: <what this model leaves out or does differently, and why>.

How to use this file: copy it to ``policies/<name>.py`` -- a file whose name starts with ``_``
is never loaded, this one included -- set ``name``, ``description`` and ``params``, keep the
hooks you change and delete the others (the defaults are in ``harness/policy.py``; for a 2.6+
kernel subclass ``harness.modern.Modern`` or ``policies.oom_reaper.OomReaper`` instead, see the
guide's second hook table).  The engine measures stalls and failures: never emit ``stall`` or
``alloc_fail`` events or write ``in_alloc_since`` yourself.  Then::

    python -m harness check policies/<name>.py
    python -m harness run --policy <name> --workload tiny

``docs/adding-a-policy.md`` walks through a complete example.
"""
from harness import blocks as B
from harness import machine as M
from harness.policy import Policy


class Template(Policy):
    # Registration: set in the class body.  ``name`` is typed on the command line: letters,
    # digits and _ . + - only, unique among all policy files.
    name = "template"
    description = "a starting point: -aa reclaim under mainline's allocator and OOM killer"
    # Parameters and their defaults.  __init__ stores each as an attribute of the same name
    # (self.vm_passes); values must be plain and picklable (numbers, strings, tuples).
    params = {"vm_passes": 60}

    def reset(self, k):
        """Per-run state, built once before every run (never in __init__)."""
        super().reset(k)              # the shared 2.4 out_of_memory() limiter, with lastkill

    # ---------------------------------------------------------------- 1. watermark test
    # Thresholds per zone of the zonelist; the allocator takes a page where zone.free > it.
    # which: "low" (pass A), "min" (pass B), "atomic", "retry" (after reclaim), "high".
    #
    # def watermarks(self, k, zl, order, gfp, which):
    #     if which == "retry":
    #         return B.per_zone_thresholds(k, zl, order, "min")      # akpm's fix
    #     return super().watermarks(k, zl, order, gfp, which)

    # ---------------------------------------------------------------- 2. slow path
    # A generator, run by the engine when fast_path (passes A and B) returns None; return
    # blocks, 0 for failure, or None to go back to fast_path (goto try_again).
    #
    # def slow_path(self, k, req):
    #     n = yield from super().slow_path(k, req)
    #     return n

    # ---------------------------------------------------------------- 3. reclaim (required)
    def try_to_free_pages(self, k, task, cz, gfp, order):
        """A generator: reclaim for classzone ``cz``; returns (ok, ReclaimRound).  Here: one
        round of the -aa 60-pass loop (S4 mm/vmscan.c ``try_to_free_pages_zone``), and the
        2.4 ``out_of_memory()`` when it fails, as mainline calls it (S2)."""
        rr = yield from B.aa_reclaim_round(k, task, cz, gfp, self.vm_passes)
        ok = rr.freed >= M.SWAP_CLUSTER_MAX
        B.note_reclaim(k, task, rr, ok, task is not k.kswapd)
        if not ok:
            yield from self.out_of_memory(k, task)
        return ok, rr

    # ---------------------------------------------------------------- 4. OOM trigger
    # A generator; the default is the 2.4 rate limiter (self.oom_limiter) then oom_kill.
    #
    # def out_of_memory(self, k, task):
    #     return (yield from super().out_of_memory(k, task))

    # ---------------------------------------------------------------- 5. victim selection
    # Read-only: score a task / pick the victim.  Never look at p.name or p.role.
    #
    # def badness(self, k, p):
    #     return B.badness_24(k, p, memdie_skip=True)                # 2.4.22's PF_MEMDIE skip
    #
    # def select_bad_process(self, k):
    #     return B.select_bad_process(k, self.badness, skip_pid_le=1, skip_no_mm=True)

    # ---------------------------------------------------------------- 6. kill delivery
    # A generator; B.oom_kill_24 signals every task sharing the mm and records the kill.
    #
    # def oom_kill(self, k, task):
    #     return (yield from super().oom_kill(k, task))

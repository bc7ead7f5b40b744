"""mainline_akpm_fix: ``mainline`` with Andrew Morton's fix to pass C of ``__alloc_pages``.

Models akpm's patch (M1, ``shared/spec/kernel-2.4.md`` §1.1, §6): after reclaim, the retry pass
tests each zone against its own ``(1<<order) + z->pages_min`` instead of the running sum, so the
allocator takes a page wherever ``check_classzone_need_balance`` (per-zone ``pages_high``) saw
headroom.  Never merged: 2.4.19 and 2.4.22 still sum.  Everything else is ``mainline``.
"""
from harness import blocks as B

from policies.mainline import Mainline


class MainlineAkpmFix(Mainline):
    name = "mainline_akpm_fix"
    description = "mainline with akpm's per-zone pass C: the livelock fix of April 2002"

    def watermarks(self, k, zl, order, gfp, which):
        if which == "retry":
            return B.per_zone_thresholds(k, zl, order, "min")
        return super().watermarks(k, zl, order, gfp, which)

"""mainline_2419: Linux 2.4.19 final -- ``mainline_pure`` with the 5 s ``lastkill`` gate.

Between 2.4.19-pre6 and 2.4.19 final, ``out_of_memory()`` gained -rmap's rule "after an OOM
kill, wait 5 seconds for the next kill" (``static unsigned long lastkill``; rmap 11a, sent to
Marcelo through Christoph Hellwig; ``shared/spec/kernel-2.4.md`` §3.3-§3.4).  Everything else
is the shipped 2.4.19 VM, as in ``mainline_pure`` (S2 = 2.4.19 ``mm/oom_kill.c``,
``mm/vmscan.c``, ``mm/page_alloc.c``).

Departures: those of ``mainline_pure``.
"""
from harness import blocks as B

from policies.mainline_pure import MainlinePure


class Mainline2419(MainlinePure):
    name = "mainline_2419"
    description = "2.4.19 final: mainline_pure with the 5 s lastkill gate between kills"

    def reset(self, k):
        super().reset(k)
        self.oom_limiter = B.OOMRateLimiter(lastkill=True)

"""mglru_ttl: Linux 6.1 with the multi-gen LRU and its thrashing guard ``min_ttl_ms``.

Models Debian 12's 6.1 with ``/sys/kernel/mm/lru_gen/enabled = y`` and ``min_ttl_ms = 1000``
(the real counterpart ``policies/real/real-6.1-mglru-ttl.toml``).  Tree ``torvalds/linux``
v6.1:

* ``mm/vmscan.c`` ``CONFIG_LRU_GEN``: generations with birth times, aging
  (``try_to_inc_max_seq``, ``inc_max_seq``), eviction from the oldest generation
  (``evict_folios``), ``lru_gen_shrink_lruvec``/``get_nr_to_scan``, and kswapd's
  ``lru_gen_age_node`` -> ``age_lruvec``: with ``min_ttl`` set, a lruvec whose oldest file
  generation was born less than ``min_ttl`` ago is not reclaimable, and when none is kswapd
  calls ``out_of_memory()`` under ``mutex_trylock(&oom_lock)`` -- all in
  :mod:`harness.lru_gen`, whose docstring lists what is modelled and the departures.  It
  takes the place of the classic two-list LRU (:mod:`harness.lru`) as ``k.lru``, through the
  same API (``LruGenReclaim.make_lru``), and its reclaim (``try_to_free_pages``) replaces
  the base's file part with ``lru_gen_shrink_lruvec``.
* Everything else -- the allocator's slow path (``should_reclaim_retry``, ``oom_lock``,
  ``__alloc_pages_may_oom``), ``oom_badness``, ``oom_kill_process`` and the OOM reaper -- is
  ``oom_reaper``'s (policies/oom_reaper.py), the 4.15 model the project holds real 6.1
  against (``real-6.1`` and ``real-6.1-mglru`` name it), rather than the bare modern base:
  the allocator and OOM killer are then those the project already compares with real 6.1,
  and this policy differs from ``oom_reaper`` by the multi-gen LRU alone.

``min_ttl_ms`` (default 1000, the real counterpart's setting; 0 = the guard off, plain MGLRU)
is ``/sys/kernel/mm/lru_gen/min_ttl_ms``.

Departures: those of :mod:`harness.lru_gen` and of ``oom_reaper``.
"""
from harness.lru_gen import LruGenReclaim

from policies.oom_reaper import OomReaper


class MglruTtl(LruGenReclaim, OomReaper):
    name = "mglru_ttl"
    description = ("6.1 with the multi-gen LRU: kswapd OOM-kills when the oldest generation is "
                   "younger than min_ttl_ms (1000)")
    params = {**OomReaper.params, "min_ttl_ms": 1000}

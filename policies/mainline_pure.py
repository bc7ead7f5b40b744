"""mainline_pure: Linux 2.4.19-pre6 as Marcelo shipped it, without akpm's -aa reclaim.

The kernel under the thread, not the one Morton tested: mainline ``__alloc_pages`` (summed
``pages_min``, yield and ``goto rebalance`` forever for order <= 3) over mainline's own reclaim,
the six priorities of ``try_to_free_pages``, which call the old ``out_of_memory()`` whenever
they fail (``shared/spec/kernel-2.4.md`` §1.1-§1.4, §3; ``policies.md``, variants).

Models (S2 = 2.4.19 ``mm/vmscan.c``, ``mm/page_alloc.c``, ``mm/oom_kill.c``; the pre6 files
differ from S2 in ``oom_kill.c``'s ``lastkill`` only, §3.4):

* ``try_to_free_pages``: ``nr_pages = SWAP_CLUSTER_MAX``; for priority 6..1
  ``shrink_caches``; success as soon as one call leaves ``nr_pages <= 0``; after the sixth,
  ``out_of_memory()`` -- the only call site -- and return 0.  Direct reclaim and kswapd
  (``kswapd_balance_pgdat``: a failed zone sleeps HZ) both get here.
* ``shrink_caches``: ``kmem_cache_reap`` (success if it alone frees ``nr_pages``; otherwise
  ``nr_pages`` starts again from the chunk), ``refill_inactive`` (keeps the active list at 2/3
  of the cache), ``shrink_cache``, then ``shrink_dcache_memory`` and ``shrink_icache_memory``
  at this priority.
* ``shrink_cache``: walks at most ``nr_inactive_pages / priority`` pages of the global inactive
  list from its cold end.  Clean, unmapped cache pages are freed; dirty ones get ``writepage``
  (``__GFP_FS``); pages under write-back make a ``__GFP_FS`` caller wait; pages of higher zones
  are skipped (``memclass``); a mapped or anonymous page (mainline puts anonymous pages on the
  LRU, ``do_anonymous_page`` -> ``lru_cache_add``) uses up ``max_mapped = min(nr_pages <<
  (10 - priority), max_scan / 10)``, and when that runs out it calls ``swap_out(priority)`` and
  returns.
* ``out_of_memory()``: the first/last/count rate limiter **without** ``lastkill``;
  ``select_bad_process`` scans every task with ``pid != 0`` -- **init is eligible** -- with
  2.4.19 ``badness`` (no PF_MEMDIE skip); ``oom_kill`` kills every task sharing the mm
  (PF_MEMALLOC|PF_MEMDIE, the 5*HZ boost, SIGKILL or SIGTERM for CAP_SYS_RAWIO), then yields.

Departures: page counts instead of page lists, so the inactive list is a third of the LRU and
the walk meets clean, dirty, locked, mapped and anonymous pages in proportion to their
numbers; pages freed by the dentry/inode shrink are counted by the next ``kmem_cache_reap``;
``swap_out`` is :func:`harness.blocks.swap_out`.
"""
from harness import blocks as B
from harness import machine as M
from harness.engine import CPU, DWAIT
from harness.policy import Policy


def shrink_cache_24(k, rr, cz: int, gfp: int, nr: int, prio: int):
    """2.4.19 ``shrink_cache`` on counts.  Returns (``nr_pages`` left, pages scanned, whether
    ``max_mapped`` ran out and ``swap_out`` is due)."""
    zones = k.zones
    lru = sum(z.clean + z.dirty + z.wb + z.mapped + z.anon + z.swapc for z in zones)
    nr_inactive = lru // 3                       # refill_inactive: active = 2/3 of the cache
    max_scan = nr_inactive // prio
    max_mapped = min(nr << (10 - prio), max_scan // 10)
    c = sum(z.clean for z in zones[: cz + 1])
    d = sum(z.dirty for z in zones[: cz + 1])
    w = sum(z.wb for z in zones[: cz + 1])
    mapped = sum(z.mapped + z.anon + z.swapc for z in zones[: cz + 1])
    total = lru                                   # the rest are pages of higher zones: skipped
    if total == 0 or max_scan <= 0:
        return nr, 0, False
    # the walk stops at the first of: nr freed, max_mapped exceeded, max_scan pages
    stop = max_scan
    if c:
        stop = min(stop, -(-nr * total // c))
    map_out = False
    if mapped and (max_mapped + 1) * total // mapped < stop:
        stop = -(-(max_mapped + 1) * total // mapped)
        map_out = True
    stop = min(stop, max_scan)
    freed = min(nr, c * stop // total) if c else 0
    if c and stop >= -(-nr * total // c):
        freed = min(nr, c)
    if freed:
        got, first = B.evict_clean(k, cz, freed)
        rr.freed += got
        nr -= got
        if rr.first_zone is None:
            rr.first_zone = first
    if gfp & M.GFPF_FS:
        dirty_seen = stop * d // total
        if dirty_seen:
            B.start_dirty_writeback(k, cz, dirty_seen)
        if w and stop * w // total and k.disk_busy_until > k.now:
            rr.wait_until = max(rr.wait_until, min(k.disk_busy_until,
                                                   k.now + k.costs.disk_request_us))
    return nr, stop, map_out and nr > 0


class MainlinePure(Policy):
    name = "mainline_pure"
    description = "2.4.19-pre6 as shipped: 6-priority reclaim calling out_of_memory(), init eligible"
    params = {}

    def reset(self, k):
        self.oom_limiter = B.OOMRateLimiter(lastkill=False)
        self.reaped = 0                # pages the dcache shrink freed, for the next kmem_cache_reap

    def shrink_caches(self, k, rr, cz, gfp, prio, nr):
        """``shrink_caches`` (S2).  Returns (nr_pages left, CPU cost in us)."""
        c = k.costs
        cost = c.vfs_shrink_us
        reaped, self.reaped = self.reaped, 0      # kmem_cache_reap
        if nr - reaped <= 0:
            return 0, cost
        nr, scanned, map_out = shrink_cache_24(k, rr, cz, gfp, nr, prio)
        cost += scanned * c.lru_scan_us
        if map_out:
            _ok, ptes, _queued = B.swap_out(k, cz)
            cost += ptes * c.pte_scan_us
            return nr, cost
        if nr <= 0:
            return 0, cost
        self.reaped += B.shrink_vfs(k, prio)      # shrink_dcache_memory + shrink_icache_memory
        return nr, cost

    def try_to_free_pages(self, k, task, cz, gfp, order):
        """``try_to_free_pages`` (S2 mm/vmscan.c): six priorities, then ``out_of_memory()``."""
        rr = B.ReclaimRound()
        nr = M.SWAP_CLUSTER_MAX
        for prio in range(M.DEF_PRIORITY, 0, -1):
            nr, cost = self.shrink_caches(k, rr, cz, gfp, prio, nr)
            yield (CPU, int(cost), False)
            if rr.wait_until > k.now:
                yield (DWAIT, rr.wait_until)
                rr.wait_until = 0
            if nr <= 0:
                B.note_reclaim(k, task, rr, True, task is not k.kswapd)
                return True, rr
        B.note_reclaim(k, task, rr, False, task is not k.kswapd)
        yield from self.out_of_memory(k, task)
        return False, rr

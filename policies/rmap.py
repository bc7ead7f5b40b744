"""rmap: Rik van Riel's reverse-mapping VM (rmap-12/13, as in Red Hat 2.4.18-14).

Models (``shared/spec/kernel-2.4.md`` §5; S5 = Red Hat 2.4.18-14 ``mm/page_alloc.c``,
``mm/vmscan.c``, ``mm/oom_kill.c``, ``include/linux/mm_inline.h``; M6, M7):

* ``__alloc_pages``: a summed ``pages_min`` pass; then per zone ``free + inactive_clean`` against
  ``pages_high`` and ``pages_low`` (a clean inactive page is reclaimed on the spot,
  ``reclaim_page``); ``wakeup_kswapd``; ``pages_min``; ``pages_min/2`` for ``__GFP_HIGH``.  Then a
  ``__GFP_WAIT`` task that is not PF_MEMALLOC yields, calls ``try_to_free_pages()`` and, for
  order <= 3, retries while reclaim made progress **or ``__GFP_FS`` is set** -- in practice it
  loops until the OOM killer frees memory.
* ``do_try_to_free_pages``: ``page_launder`` over the inactive list (all pages are on the LRU
  with rmap: clean ones freed, dirty ones written, mapped file pages unmapped through the
  reverse map and freed, anonymous ones only with free swap) plus the dentry/inode/slab
  shrinks; **``out_of_memory()`` only if that freed nothing and ``free_min(ANY_ZONE) > 0``**.
  kswapd runs it too when ``free_high(ALL_ZONES) >= 0`` or ``free_low(ANY_ZONE) > 0``.
* OOM killer: 2.4 ``badness`` with no PF_MEMDIE skip (init eligible); the rate limiter **with
  the 5*HZ ``lastkill`` timeout** ("rmap 11a: after an OOM kill, wait 5 seconds for the next
  kill"); ``oom_kill`` also wakes the tasks waiting on ``kswapd_done`` (rmap 11b).

Departures: inactive_clean is the zone's clean unmapped page cache; the active/inactive split
of ``page_launder`` is not kept (it scans the whole LRU of file pages plus a third of the
anonymous pages per call); ``wakeup_kswapd`` does not sleep on ``kswapd_done``.
"""
from operator import attrgetter

from harness import blocks as B
from harness import machine as M
from harness.engine import CMD_YIELD, CPU, SLEEP, WAITQ
from harness.machine import PF_MEMALLOC, PF_MEMDIE
from harness.policy import Policy


_WM = {w: attrgetter(f"pages_{w}") for w in ("min", "low", "high")}     # zone->pages_X


class Rmap(Policy):
    name = "rmap"
    description = "-rmap 12/13: loops until the OOM killer acts; 5 s timeout between kills"
    params = {"anon_scan_fraction": 3}

    def reset(self, k):
        self.oom_limiter = B.OOMRateLimiter(lastkill=True)

    # -- allocator ---------------------------------------------------------------------------
    def _alloc_limit(self, k, req, which: str, shift: int = 0) -> int:
        """``__alloc_pages_limit`` (S5): the first zone with ``free + inactive_clean >= mark``
        gives a page, reclaimed from its clean list when ``direct_reclaim`` (order 0 with
        ``__GFP_WAIT``), else from the free list."""
        direct = req.order == 0 and req.gfp & M.GFPF_WAIT
        mark = _WM[which]
        zones = k.zones
        for i, zi in enumerate(req.zl):
            z = zones[zi]
            if z.free + z.clean >= mark(z) >> shift:          # free + inactive_clean
                if direct and z.clean:
                    B.evict_clean(k, zi, 1, lowest=zi)
                thr = [None] * len(req.zl)
                thr[i] = (1 << req.order) - 1
                if k.take(req, thr, 1):
                    return 1
        return 0

    def _fast(self, k, req) -> int:
        """``try_again:`` the summed ``pages_min`` pass (``fixup_freespace`` for a zone below min
        with direct reclaim), then the HIGH and LOW passes."""
        zl = req.zl
        n = k.take(req, B.summed_thresholds(k, zl, req.order, "min"))
        if n:
            return n
        if req.order == 0 and req.gfp & M.GFPF_WAIT:
            for zi in zl:
                z = k.zones[zi]
                if z.free < z.pages_min and z.clean:
                    B.evict_clean(k, zi, min(z.clean, z.pages_min - z.free + 1), lowest=zi)
        for which in ("high", "low"):
            n = self._alloc_limit(k, req, which)
            if n:
                return n
        return 0

    def fast_path(self, k, req):
        """``__alloc_pages`` (S5 mm/page_alloc.c) up to the slow path: ``try_again:``'s passes,
        ``wakeup_kswapd``, ``pages_min`` (``pages_min/2`` for ``__GFP_HIGH``); a PF_MEMALLOC
        task or one that cannot sleep then takes the final phase."""
        n = self._fast(k, req)
        if n:
            return n
        self.wakeup_kswapd(k, req.zl[0])
        n = self._alloc_limit(k, req, "min")
        if n:
            return n
        if req.gfp & M.GFPF_HIGH:
            n = self._alloc_limit(k, req, "min", shift=1)
            if n:
                return n
        if req.task.flags & PF_MEMALLOC or not req.gfp & M.GFPF_WAIT:
            return self._final_phase(k, req)
        return None

    def _final_phase(self, k, req) -> int:
        """"Final phase: allocate anything we can": pages_min/4 summed, or anything for a
        PF_MEMALLOC task outside interrupts."""
        if req.task.flags & PF_MEMALLOC:
            return k.take_nowatermark(req, 1)
        return k.take(req, B.summed_thresholds(k, req.zl, req.order, "min", shift=2), 1)

    def slow_path(self, k, req):
        """The ``__GFP_WAIT`` slow path; returns blocks, 0 for failure, or None to ``goto
        try_again`` (the fast passes again)."""
        task = req.task
        if req.order > 0:
            return (yield from self._defragment(k, req))
        yield CMD_YIELD
        ok, _rr = yield from self._reclaim(k, req)
        if task.flags & PF_MEMDIE:                     # chosen by the OOM killer meanwhile
            return k.take_nowatermark(req, 1)
        if ok or req.gfp & M.GFPF_FS:
            k.spin_point(task)
            return None                                # goto try_again
        return 0

    def _reclaim(self, k, req):
        """``try_to_free_pages`` with PF_MEMALLOC (kept by an OOM victim)."""
        task = req.task
        had = B.memalloc_enter(task)
        try:
            return (yield from self.try_to_free_pages(k, task, req.zl[0], req.gfp, req.order))
        finally:
            B.memalloc_exit(task, had, memdie_keeps=True)

    def _defragment(self, k, req):
        """Order > 0: free the zones' inactive_clean pages and retry; one ``try_to_free_pages``;
        once more; then fail."""
        for attempt in range(2):
            for i, zi in enumerate(req.zl):
                z = k.zones[zi]
                if z.clean:
                    B.evict_clean(k, zi, z.clean, lowest=zi)
                thr = [None] * len(req.zl)
                thr[i] = (1 << req.order) - 1
                if k.take(req, thr, 1):
                    return 1
            if attempt == 0:
                yield from self._reclaim(k, req)
        return 0

    # -- reclaim -----------------------------------------------------------------------------
    def free_min_any(self, k) -> int:
        out = 0
        for z in k.zones:
            if z.size:
                d = z.pages_min - (z.free + z.clean)              # free + inactive_clean
                if d > 0:
                    out += d
        return out

    def shortage(self, k) -> bool:
        high = 0
        low_any = False
        for z in k.zones:
            if z.size:
                fc = z.free + z.clean                             # free + inactive_clean
                high += z.pages_high - fc
                if z.pages_low - fc > 0:
                    low_any = True
        return high >= 0 or low_any

    def launder(self, k, rr, gfp):
        """``page_launder`` on counts: scan the inactive pages; free clean ones, unmap mapped file
        pages through the reverse map (they are then clean and freed), start write-back of dirty
        ones.  Anonymous pages are scanned too (rmap keeps them on the LRU) but, without swap,
        stay."""
        cz = len(k.zones) - 1
        c, d, w, m = B.lru_counts(k, cz)
        anon = sum(z.anon for z in k.zones)
        rr.scanned += c + d + w + m + anon // self.anon_scan_fraction
        target = max(M.SWAP_CLUSTER_MAX,
                     sum(max(0, z.pages_high - z.free) for z in k.zones if z.size))
        got, first = B.evict_clean(k, cz, min(c, target))
        rr.freed += got
        rr.first_zone = first
        if got < target and m:
            dropped = B.drop_text(k, cz, min(m, target - got))
            more, f2 = B.evict_clean(k, cz, dropped)
            rr.freed += more
            rr.first_zone = rr.first_zone if rr.first_zone is not None else f2
        if gfp & M.GFPF_FS and d:
            B.start_dirty_writeback(k, cz, d)
        if k.nr_swap_pages > 0 and rr.freed < target:
            B.swap_out(k, cz, target - rr.freed)

    def try_to_free_pages(self, k, task, cz, gfp, order):
        """``do_try_to_free_pages`` (S5 mm/vmscan.c)."""
        rr = B.ReclaimRound()
        self.launder(k, rr, gfp)
        vfs = B.shrink_vfs(k)
        ret = rr.freed + vfs
        yield (CPU, int(rr.scanned * k.costs.lru_scan_us + k.costs.vfs_shrink_us), False)
        B.note_reclaim(k, task, rr, ret > 0, task is not k.kswapd)
        if ret == 0 and self.free_min_any(k) > 0:
            yield from self.out_of_memory(k, task)
        return ret > 0, rr

    def kswapd(self, k, task):
        task.flags |= PF_MEMALLOC
        while True:
            if not self.shortage(k):
                for z in k.zones:
                    z.need_balance = 0
                yield (WAITQ, k.kswapd_wait, True)
                continue
            ok, _rr = yield from self.try_to_free_pages(k, task, len(k.zones) - 1, M.GFP_KSWAPD, 0)
            yield (SLEEP, k.now + (M.JIFFY_US if ok else M.HZ * M.JIFFY_US))

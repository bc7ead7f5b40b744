"""linux26: Linux 2.6.36 -- lowmem_reserve watermarks, RSS badness, TIF_MEMDIE wait.

The first kernel with the RSS-based ``oom_badness`` (David Rientjes' rewrite, 2.6.36, 2010),
still with the TIF_MEMDIE rule of 2.6: ``select_bad_process`` aborts -- kills nobody new -- while
any task is an OOM victim that has not exited yet, so a victim asleep in D state stalls OOM
handling until it wakes (``shared/spec/kernel-2.4.md`` §7; ``policies.md``, successors).

Models (tree ``torvalds/linux`` v2.6.36; files and functions):

* ``mm/page_alloc.c``: ``init_per_zone_wmark_min`` (``min_free_kbytes = int_sqrt(lowmem_kbytes *
  16)``, 128..65536), ``setup_per_zone_wmarks`` (each lowmem zone's share of it as ``min``;
  ``low = min + min/4``, ``high = min + min/2``; HIGHMEM ``min = present/1024`` in 32..128),
  ``setup_per_zone_lowmem_reserve`` (``sysctl_lowmem_reserve_ratio`` {256, 32} on i386: a lower
  zone keeps back ``pages above it / ratio`` from allocations whose classzone is higher),
  ``zone_watermark_ok`` (``free - (1<<order) + 1 > mark - ALLOC_HIGH/HARDER cuts +
  lowmem_reserve[classzone]``), ``__alloc_pages_nodemask`` (fast pass at ``low``) and
  ``__alloc_pages_slowpath``: wake every zone's kswapd, pass at ``min``; ALLOC_NO_WATERMARKS for
  PF_MEMALLOC and TIF_MEMDIE; a TIF_MEMDIE task that still fails gets NULL; direct reclaim; no
  progress -> ``__alloc_pages_may_oom`` (the zonelist OOM lock, one last pass at ``high``, no
  OOM for order > 3 or a classzone below NORMAL, ``out_of_memory``) and ``goto restart``;
  progress -> ``should_alloc_retry`` (always for order <= 3), ``congestion_wait(HZ/50)``,
  ``goto rebalance``.
* ``mm/vmscan.c``: ``do_try_to_free_pages`` -- priorities 12..0 of ``shrink_zones`` (file LRU
  ``>> priority``, anonymous LRU only with free swap, ``swappiness`` 60 splitting the two, the
  ``nr_saved_scan`` batching below SWAP_CLUSTER_MAX), ``shrink_slab`` (dentry/inode caches in
  proportion ``2 * scanned / lru_pages``), stop at SWAP_CLUSTER_MAX reclaimed,
  ``congestion_wait(HZ/10)`` after each priority below 10 that scanned; returns pages reclaimed.
* ``mm/oom_kill.c``: ``oom_badness`` = (rss + page tables + swap entries) x 1000 / totalpages,
  -30 for CAP_SYS_ADMIN, + ``oom_score_adj``, at least 1, at most 1000; init and kernel threads
  never; ``select_bad_process`` (task list order, strict ``>``; **returns "abort" as soon as it
  meets a TIF_MEMDIE task**); ``oom_kill_process`` ("sacrifice child": the highest-scoring child
  with its own mm dies instead of the parent); ``oom_kill_task`` (TIF_MEMDIE, SIGKILL,
  ``boost_dying_task_prio``); ``out_of_memory`` (a caller with SIGKILL pending just gets
  TIF_MEMDIE; after a kill the caller sleeps one jiffy).

Departures: the engine's flag PF_MEMDIE stands for TIF_MEMDIE; zones have no holes, so
``present_pages`` is the zone size; the file LRU is one list (no active/inactive split, no
reference bits: text a runnable task executes is young and text a task asleep in D state is
faulting in is locked, :func:`text_in_use`);
``do_try_to_free_pages``' "return 1 while a zone is still reclaimable" (``all_unreclaimable``)
is not modelled, so no progress means OOM; ``wakeup_flusher_threads`` is left to kupdated;
``congestion_wait`` sleeps its whole timeout unless the disk is busy, when it ends with the
disk's queue; kswapd is the base class's 2.4 loop around this reclaim (``balance_pgdat``'s own
priority walk is not modelled); SCHED_FIFO of a dying task is the engine's boost for HZ of CPU;
2.4 GFP masks carry ``__GFP_HIGH`` in GFP_KERNEL, which 2.6 dropped, so ALLOC_HIGH is given to
``__GFP_HIGH`` callers that cannot sleep (GFP_ATOMIC) only.  A reclaim pass that changes nothing
is charged together with the next one (no other task could tell the difference), and a round
in which no pass could free anything is done as arithmetic (``nothing_to_reclaim``).
"""
from math import isqrt

from harness import blocks as B
from harness import machine as M
from harness.engine import CPU, DWAIT
from harness.machine import PF_MEMALLOC, PF_MEMDIE, SIGKILL, ZONE_HIGHMEM, ZONE_NORMAL
from harness.policy import Policy

DEF_PRIORITY = 12                  # include/linux/mmzone.h (2.6)
PAGE_ALLOC_COSTLY_ORDER = 3
WMARK_MIN, WMARK_LOW, WMARK_HIGH = 0, 1, 2
ALLOC_HIGH, ALLOC_HARDER, ALLOC_OOM, ALLOC_NO_WATERMARKS = 0x1, 0x2, 0x4, 0x8
OOM_SCORE_ADJ_MIN = -1000
WHICH = {"low": WMARK_LOW, "min": WMARK_MIN, "retry": WMARK_MIN, "high": WMARK_HIGH,
         "atomic": WMARK_MIN}


DEAD = ("Z", "X")                  # the task states that are not ``alive``


class Aborted(tuple):
    """The badness table of a scan that ``select_bad_process`` gave up (``ERR_PTR(-1UL)``):
    a victim is still on its way out, so nobody new is killed."""


# ---------------------------------------------------------------------------- watermarks
def min_free_kbytes(lowmem_kbytes: int) -> int:
    """``init_per_zone_wmark_min``: ``int_sqrt(lowmem_kbytes * 16)`` clamped to 128..65536
    (``int_sqrt`` here is lib/int_sqrt.c, an exact integer square root)."""
    return max(128, min(65536, isqrt(lowmem_kbytes * 16)))


def zone_pages(k, zi: int, managed: bool) -> int:
    """``present_pages`` (2.6.36) or ``managed_pages`` (4.x: without the boot reservation)."""
    z = k.zones[zi]
    return z.size - (z.reserved if managed else 0)


def zone_watermarks(k, managed: bool = False, scale_factor=None):
    """``setup_per_zone_wmarks``: (min, low, high) per zone.  2.6.36: ``low = min + min/4``,
    ``high = min + min/2``; 4.x (``scale_factor`` = ``watermark_scale_factor``, 10): the gap is
    ``max(min/4, managed * scale_factor / 10000)``, ``high = min + 2 * gap``."""
    lowmem = sum(zone_pages(k, i, managed) for i, z in enumerate(k.zones)
                 if z.size and i != ZONE_HIGHMEM)
    pages_min = min_free_kbytes(lowmem * 4) >> 2
    out = []
    for i, z in enumerate(k.zones):
        if not z.size:
            out.append((0, 0, 0))
            continue
        size = zone_pages(k, i, managed)
        tmp = pages_min * size // lowmem
        if i == ZONE_HIGHMEM:
            wmin = max(M.SWAP_CLUSTER_MAX, min(128, size // 1024))
        else:
            wmin = tmp
        if scale_factor is None:
            out.append((wmin, wmin + (tmp >> 2), wmin + (tmp >> 1)))
        else:
            gap = max(tmp >> 2, size * scale_factor // 10000)
            out.append((wmin, wmin + gap, wmin + 2 * gap))
    return out


def lowmem_reserve(k, ratios=(256, 32), managed: bool = False):
    """``setup_per_zone_lowmem_reserve``: ``res[i][j]`` pages zone ``i`` keeps back from an
    allocation whose classzone is ``j`` (> i): the pages of the zones i+1..j over ``ratios[i]``."""
    n = len(k.zones)
    res = [[0] * n for _ in range(n)]
    for j in range(n):
        pages = zone_pages(k, j, managed) if k.zones[j].size else 0
        for i in range(j - 1, -1, -1):
            res[i][j] = pages // ratios[i] if i < len(ratios) and ratios[i] >= 1 else 0
            pages += zone_pages(k, i, managed) if k.zones[i].size else 0
    return res


def totalram_pages(k) -> int:
    """RAM handed to the page allocator at boot: every zone's pages but the boot reservation."""
    return sum(z.size - z.reserved for z in k.zones)


def congestion_wait(k, timeout_jiffies: int):
    """``congestion_wait``: sleep uninterruptibly for the timeout, or until the disk's queue has
    drained if it is busy (a backing device leaving congestion wakes the sleepers)."""
    until = k.now + timeout_jiffies * M.JIFFY_US
    if k.disk_busy_until > k.now:
        until = min(until, k.disk_busy_until)
    yield (DWAIT, until)


# ---------------------------------------------------------------------------- the policy
class Linux26(Policy):
    name = "linux26"
    description = ("2.6.36: lowmem_reserve watermarks, RSS badness; no new kill while a "
                   "TIF_MEMDIE victim lives")
    params = {"lowmem_reserve_ratio": (256, 32), "swappiness": 60}

    # versions differ in these (oom_reaper: 4.x managed pages and watermark_scale_factor)
    MANAGED_PAGES = False
    WATERMARK_SCALE_FACTOR = None

    def reset(self, k):
        self.wm = zone_watermarks(k, self.MANAGED_PAGES, self.WATERMARK_SCALE_FACTOR)
        self.reserve = lowmem_reserve(k, self.lowmem_reserve_ratio, self.MANAGED_PAGES)
        self._thresholds = {}
        # select_bad_process computes badness inline while these are this file's
        self.inline_badness26 = all(
            issubclass(Linux26, next(c for c in type(self).__mro__ if m in c.__dict__))
            for m in ("badness", "unkillable", "mm_points", "has_cap_sys_admin"))
        self.totalpages = totalram_pages(k) + k.swap_total
        self.oom_lock = None               # the task holding the zonelist OOM lock / oom_lock
        self.reclaim_cost = {}             # pid -> CPU us of its last try_to_free_pages
        self._nothing_key = self._nothing = None
        self._noop_rounds = {}             # (file LRU, saved scan, cz) -> (cost, saved scan)
        self._memo = {}                    # text_in_use, per task-state epoch
        self.swapped_free = 0              # swap-cache pages written and freed, not yet counted
        self.saved_scan = [0, 0]           # nr_saved_scan of the anonymous and file LRUs
        self.oom_limiter = None

    # ------------------------------------------------------------------ 1. watermarks
    def thresholds(self, k, zl, order: int, mark: int, flags: int):
        """``zone_watermark_ok`` as ``k.take`` bounds: ``free > mark' + reserve + (1<<order) - 1``.
        (The watermarks and reserves are fixed for the run: remembered per argument.)"""
        key = (tuple(zl), order, mark, flags)
        hit = self._thresholds.get(key)
        if hit is None:
            hit = self._thresholds[key] = tuple(self._thresholds_of(zl, order, mark, flags))
        return list(hit)

    def _thresholds_of(self, zl, order: int, mark: int, flags: int):
        cz = zl[0]
        out = []
        for zi in zl:
            m = self.wm[zi][mark]
            if flags & ALLOC_HIGH:
                m -= m // 2
            if flags & ALLOC_OOM:
                m -= m // 2
            elif flags & ALLOC_HARDER:
                m -= m // 4
            out.append(m + self.reserve[zi][cz] + (1 << order) - 1)
        return out

    def gfp_flags(self, gfp: int) -> int:
        """``gfp_to_alloc_flags`` without the reserves: ALLOC_HIGH for a ``__GFP_HIGH`` caller
        that cannot sleep, ALLOC_HARDER for every caller that cannot sleep."""
        if gfp & M.GFPF_WAIT:
            return 0
        return ALLOC_HARDER | (ALLOC_HIGH if gfp & M.GFPF_HIGH else 0)

    def watermarks(self, k, zl, order, gfp, which):
        flags = 0 if which in ("low", "high") else self.gfp_flags(gfp)
        if which == "atomic":
            flags |= ALLOC_HARDER
        return self.thresholds(k, zl, order, WHICH[which], flags)

    def need_balance(self, k, cz):
        """kswapd's test (``balance_pgdat``): some zone from ``cz`` down is at or below its high
        watermark (classzone 0, no reserve)."""
        return any(self.wm[zi][WMARK_HIGH] >= k.zones[zi].free
                   for zi in range(cz, -1, -1) if k.zones[zi].size)

    def wake_all_kswapd(self, k, zl):
        """``wake_all_kswapd``: flag every zone of the zonelist below its low watermark."""
        woke = False
        for zi in zl:
            z = k.zones[zi]
            if z.size and z.free <= self.wm[zi][WMARK_LOW]:
                if not z.need_balance:
                    z.need_balance = 1
                    k.changed()
                woke = True
        if woke and k.kswapd_wait.tasks:
            k.wake_queue(k.kswapd_wait)

    # ------------------------------------------------------------------ __alloc_pages
    def reserve_flags(self, k, task) -> int:
        """ALLOC_NO_WATERMARKS for PF_MEMALLOC (reclaimers) and TIF_MEMDIE (OOM victims)."""
        return ALLOC_NO_WATERMARKS if task.flags & (PF_MEMALLOC | PF_MEMDIE) else 0

    def fast_path(self, k, req):
        """``__alloc_pages_nodemask``: the fast pass at ``low``; else the slow path."""
        return k.take(req, self.watermarks(k, req.zl, req.order, req.gfp, "low")) or None

    def slow_path(self, k, req):
        """``__alloc_pages_slowpath`` (2.6.36)."""
        task, zl, order, gfp = req.task, req.zl, req.order, req.gfp
        wait = gfp & M.GFPF_WAIT
        while True:                                             # restart:
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
                    break                                       # goto restart
                if order > PAGE_ALLOC_COSTLY_ORDER:             # should_alloc_retry
                    return 0
                yield from congestion_wait(k, M.HZ // 50)

    def direct_reclaim(self, k, req):
        """``__alloc_pages_direct_reclaim``: reclaim with PF_MEMALLOC set."""
        task = req.task
        had = task.flags & PF_MEMALLOC
        task.flags |= PF_MEMALLOC
        try:
            return (yield from self.try_to_free_pages(k, task, req.zl[0], req.gfp, req.order))
        finally:
            if not had:
                task.flags &= ~PF_MEMALLOC

    def take_oom_lock(self, k, task) -> bool:
        """``try_set_zonelist_oom`` (4.x: ``mutex_trylock(&oom_lock)``)."""
        holder = self.oom_lock
        if holder is not None and holder is not task and holder.alive:
            return False
        self.oom_lock = task
        return True

    def release_oom_lock(self, k, task):
        if self.oom_lock is task:
            self.oom_lock = None

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

    # ------------------------------------------------------------------ 3. reclaim
    def file_lru(self, k, cz: int) -> int:
        c, d, w, m = B.lru_counts(k, cz)
        return c + d + w + m

    def anon_lru(self, k, cz: int) -> int:
        return sum(z.anon + z.swapc for z in k.zones[: cz + 1])

    def scan_batch(self, lru: int, scan: int) -> int:
        """``nr_scan_try_batch``: fewer than SWAP_CLUSTER_MAX pages are saved for later."""
        self.saved_scan[lru] += scan
        if self.saved_scan[lru] < M.SWAP_CLUSTER_MAX:
            return 0
        scan, self.saved_scan[lru] = self.saved_scan[lru], 0
        return scan

    def shrink_zones(self, k, rr, cz: int, gfp: int, prio: int, nr: int, lru=None):
        """One priority of ``shrink_zones`` + ``shrink_slab`` over the classzone (``lru``: the
        file and anonymous LRU sizes if already known).  Returns (pages scanned, CPU cost in
        us); a pass that finds nothing to scan still walks the zonelist (``alloc_pass_us`` per
        zone)."""
        c = k.costs
        swap = k.nr_swap_pages > 0
        if lru is None:
            lru = (self.file_lru(k, cz), self.anon_lru(k, cz) if swap else 0)
        file_pages, anon_pages = lru
        if not swap:
            anon_pages = 0
        if prio and swap:
            ap, fp = self.swappiness + 1, 200 - self.swappiness + 1
            den = ap + fp + 1
            scan_anon = (anon_pages >> prio) * ap // den
            scan_file = (file_pages >> prio) * fp // den
        else:
            scan_anon = anon_pages >> prio
            scan_file = file_pages >> prio
        scan_anon = self.scan_batch(0, scan_anon) if swap else 0
        scan_file = self.scan_batch(1, scan_file)
        scanned = 0
        cost = (cz + 1) * c.alloc_pass_us
        left = nr
        if self.swapped_free:
            # swap-cache pages whose write has completed are freed by the next pass that meets
            # them (shrink_page_list); the engine frees them at the end of the write, so the
            # next reclaim pass counts them
            rr.freed += self.swapped_free
            left -= self.swapped_free
            self.swapped_free = 0
        if scan_file:
            before = rr.scanned
            left, mapped_seen = B.shrink_cache(k, rr, cz, gfp, left, scan_file)
            scanned += rr.scanned - before
            if left > 0 and mapped_seen:
                # shrink_page_list: an unreferenced mapped page is unmapped (try_to_unmap), then
                # freed like any clean page
                dropped = unmap_text(k, cz, min(mapped_seen, left), self._memo)
                if dropped:
                    got, first = B.evict_clean(k, cz, dropped)
                    rr.freed += got
                    left -= got
                    if rr.first_zone is None:
                        rr.first_zone = first
        if scan_anon and left > 0:
            queued = swap_out_anon(k, cz, min(scan_anon, left), self.swap_written)
            scanned += scan_anon
            cost += queued * c.pte_scan_us
        cost += scanned * c.lru_scan_us
        freed = shrink_slab(k, scanned, file_pages + anon_pages)
        if freed:
            rr.freed += freed
            cost += c.vfs_shrink_us
        rr.scanned = 0
        return scanned, int(cost)

    NAPS = True        # 2.6.36 naps between priorities (see priority_nap)

    def nothing_to_reclaim(self, k, cz: int, gfp: int) -> bool:
        """No clean or (for ``__GFP_FS``) dirty cache, no text that could be unmapped, no
        dentry cache, no swap to write to: a reclaim pass can only scan.  (Remembered until
        the machine changes.)"""
        key = (k.version, k.state_epoch, cz, gfp & M.GFPF_FS)
        if self._nothing_key == key:
            return self._nothing
        self._nothing_key = key
        self._nothing = self._nothing_to_reclaim(k, cz, gfp)
        return self._nothing

    def _nothing_to_reclaim(self, k, cz: int, gfp: int) -> bool:
        zones = k.zones[: cz + 1]
        fs, swap = gfp & M.GFPF_FS, k.nr_swap_pages > 0
        mapped = False
        for z in zones:
            if z.clean or (fs and z.dirty) or (swap and z.anon):
                return False
            mapped = mapped or z.mapped
        for z in k.zones:
            if z.dcache:
                return False
        if mapped:
            hit = self._memo.get("busy")              # text_in_use(k, self._memo), if at hand
            busy = hit[1] if hit is not None and hit[0] == k.state_epoch else None
            for f in k.files.values():
                if f.mappers and any(f.mapped[: cz + 1]) and not (
                        id(f) in busy if busy is not None else k.text_in_use(f, dstate=True)):
                    return False
        return True

    def swap_written(self, arg):
        """A swap write is done: the page leaves the swap cache and is free (to be counted by
        the next reclaim pass)."""
        _k, mm, zi, n = arg
        self.swapped_free += min(n, mm.swapc[zi])
        B._swap_written(arg)

    def priority_nap(self, k, scanned: int, prio: int):
        """2.6.36 ``do_try_to_free_pages``: "take a nap, wait for some writeback to complete"."""
        if scanned and prio < DEF_PRIORITY - 2:
            yield from congestion_wait(k, M.HZ // 10)

    def noop_round(self, k, cz: int, file_pages: int) -> int:
        """The arithmetic of a round in which no pass can free anything (``nothing_to_reclaim``):
        advance the file LRU's ``nr_saved_scan`` as the 13 priorities would and return their CPU
        cost (remembered per file LRU size, saved scan and classzone)."""
        key = (file_pages, self.saved_scan[1], cz)
        hit = self._noop_rounds.get(key)
        if hit is None:
            per_zone = (cz + 1) * k.costs.alloc_pass_us
            saved = key[1]
            total = 0
            for prio in range(DEF_PRIORITY, -1, -1):
                saved += file_pages >> prio                  # nr_scan_try_batch
                scan, saved = (saved, 0) if saved >= M.SWAP_CLUSTER_MAX else (0, saved)
                total += int(per_zone + scan * k.costs.lru_scan_us)
            hit = self._noop_rounds[key] = (total, saved)
        total, self.saved_scan[1] = hit
        return total

    def try_to_free_pages(self, k, task, cz, gfp, order):
        """``do_try_to_free_pages``: priorities 12..0 until SWAP_CLUSTER_MAX pages are
        reclaimed.  Returns (pages reclaimed > 0, the round)."""
        rr = B.ReclaimRound()
        total = pending = 0
        if not self.NAPS and self.nothing_to_reclaim(k, cz, gfp):
            # every pass would scan without freeing or changing anything: do the arithmetic
            total = self.noop_round(k, cz, self.file_lru(k, cz))
            if total:
                yield (CPU, total, False)
            self.reclaim_cost[task.pid] = total
            B.note_reclaim(k, task, rr, False, task is not k.kswapd)
            return False, rr
        lru = None
        for prio in range(DEF_PRIORITY, -1, -1):
            ver = k.version
            if lru is None:                        # the LRU sizes change only with the machine
                lru = (self.file_lru(k, cz), self.anon_lru(k, cz))
            scanned, cost = self.shrink_zones(k, rr, cz, gfp, prio,
                                              M.SWAP_CLUSTER_MAX - rr.freed, lru)
            total += cost
            pending += cost
            if ver != k.version:
                # the pass changed the machine: spend its time now, so that other tasks see
                # the change when they would have (a pass that changed nothing is charged
                # with the next one: nobody could have told the difference)
                lru = None
                yield (CPU, pending, False)
                pending = 0
            if rr.freed >= M.SWAP_CLUSTER_MAX:
                break
            if scanned and prio < DEF_PRIORITY - 2 and pending:
                yield (CPU, pending, False)
                pending = 0
            yield from self.priority_nap(k, scanned, prio)
        if pending:
            yield (CPU, pending, False)
        self.reclaim_cost[task.pid] = total
        B.note_reclaim(k, task, rr, rr.freed >= M.SWAP_CLUSTER_MAX, task is not k.kswapd)
        return rr.freed > 0, rr

    # ------------------------------------------------------------------ 4. OOM
    def out_of_memory(self, k, task):
        """``out_of_memory`` (2.6.36).  Returns True if something was done (a kill, or the
        caller marked to die)."""
        if k.fatal_pending(task):                      # "automatically select" a dying caller
            task.flags |= PF_MEMDIE
            k.boost(task, M.HZ * M.JIFFY_US)
            return True
        victim, table = self.select_bad_process(k)
        yield (CPU, int(len(k.live) * k.costs.oom_scan_us_per_task), False)
        if isinstance(table, Aborted):
            k.emit("oom_call", task.pid, 0)
            return False
        if victim is None:
            raise RuntimeError("Out of memory and no killable processes...")   # panic()
        k.emit("oom_call", task.pid, 1)
        self.oom_kill_process(k, task, victim, table)
        if not task.flags & PF_MEMDIE:
            yield (DWAIT, k.now + M.JIFFY_US)       # schedule_timeout_uninterruptible(1)
        return True

    # ------------------------------------------------------------------ 5. selection
    def unkillable(self, p) -> bool:
        """``oom_unkillable_task``: global init and kernel threads."""
        return p.pid == 1 or p.kthread

    def has_cap_sys_admin(self, p) -> bool:
        """``has_capability_noaudit(p, CAP_SYS_ADMIN)``: root's effective set has every
        capability."""
        return "CAP_SYS_ADMIN" in p.caps or p.euid == 0

    def mm_points(self, p) -> int:
        """rss + page tables + swap entries, in pages (``get_mm_rss`` counts resident anonymous
        pages and the program text mapped in)."""
        mm = p.mm
        text = sum(mm.text.mapped) if mm.text is not None else 0
        return sum(mm.anon) + text + mm.nr_ptes + mm.swapped

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

    def select_bad_process(self, k):
        """``select_bad_process`` (2.6.36): task list order, strict ``>`` from 0; meeting a
        TIF_MEMDIE task aborts the scan."""
        chosen, best = None, 0
        table = []
        inline = self.inline_badness26
        total = max(1, self.totalpages)
        for p in k.live.values():
            if inline:                        # badness, without the method calls
                if p.state in DEAD or p.pid == 1 or p.kthread:     # not alive, unkillable
                    continue
                if p.flags & PF_MEMDIE:
                    return None, Aborted(((p.pid, p.name, -1),))
                mm = p.mm
                if mm is None:
                    continue
                adj = p.oom_score_adj
                if adj == OOM_SCORE_ADJ_MIN:
                    pts = 0
                else:
                    text = mm.text
                    a, pt = mm.anon, mm.pt
                    points = (a[0] + a[1] + a[2] + (sum(text.mapped) if text is not None else 0)
                              + pt[0] + pt[1] + pt[2] + mm.swapped) * 1000 // total
                    if "CAP_SYS_ADMIN" in p.caps or p.euid == 0:
                        points -= 30
                    points += adj
                    pts = 1 if points <= 0 else min(points, 1000)
            else:
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
        table.sort(key=lambda r: -r[2])
        return chosen, tuple(table[:5])

    # ------------------------------------------------------------------ 6. kill
    def sacrifice_child(self, k, p):
        """``oom_kill_process``: the child (with an mm of its own) with the most points dies in
        its parent's place, if any has points."""
        victim, best = p, 0
        for c in p.children:
            if not c.alive or c.mm is None or c.mm is p.mm:
                continue
            pts = self.badness(k, c)
            if pts > best:
                victim, best = c, pts
        return victim

    def oom_kill_process(self, k, killer, p, table):
        victim = self.sacrifice_child(k, p)
        if victim.mm is None:
            return False
        victim.flags |= PF_MEMDIE                      # set_tsk_thread_flag(p, TIF_MEMDIE)
        k.signal(victim, SIGKILL)
        k.boost(victim, M.HZ * M.JIFFY_US)             # boost_dying_task_prio: SCHED_FIFO
        B.record_kill(k, victim, SIGKILL, table, killer)
        return True


# ---------------------------------------------------------------------------- reclaim blocks
def text_in_use(k, memo: dict) -> set:
    """Program text ``shrink_page_list`` leaves mapped: text a runnable task is executing
    (young ptes: ``page_referenced``), and text a task asleep in D state is faulting in (the
    pages under read are locked: ``trylock_page`` fails).  The engine counts a major fault's
    pages as mapped from the moment they are allocated; without the second rule reclaim could
    unmap them before the read is done, and the faulting task would read them forever.
    Departure: every D sleep counts, not only a wait on a page.  ``memo`` is the caller's
    per-run cache (valid until a task changes state)."""
    hit = memo.get("busy")
    if hit is not None and hit[0] == k.state_epoch:
        return hit[1]
    busy = k.text_ids(dstate=True)
    memo["busy"] = (k.state_epoch, busy)
    return busy


def unmap_text(k, cz: int, n: int, memo: dict) -> int:
    """``try_to_unmap`` of up to ``n`` mapped text pages that are not in use
    (:func:`text_in_use`), coldest files first: they become clean, unmapped cache."""
    if not any(z.mapped for z in k.zones[: cz + 1]):
        return 0
    return B.drop_text(k, cz, n, busy=text_in_use(k, memo))

def shrink_slab(k, scanned: int, lru_pages: int) -> int:
    """``shrink_slab`` for the dentry and inode caches (``DEFAULT_SEEKS`` 2): scan
    ``4 * scanned / seeks * cache / (lru_pages + 1)`` objects; an unused one is freed (one page
    each here).  Returns pages freed."""
    if not scanned:
        return 0
    freed = 0
    for z in k.zones:
        if z.dcache:
            n = min(z.dcache, 2 * scanned * z.dcache // (lru_pages + 1))
            if n:
                z.dcache -= n
                k.free_to_zone(z.idx, n)
                freed += n
    return freed


def swap_out_anon(k, cz: int, nr: int, written) -> int:
    """``shrink_page_list`` on anonymous pages with free swap: ``add_to_swap``,
    ``try_to_unmap`` and an asynchronous ``pageout``; the page is freed when its write is done.
    Pages are taken from the mm's in task-list order, round robin from a cursor; ``written(arg)``
    runs when a write completes.  Returns the pages queued."""
    mms, seen = [], set()
    for t in k.live.values():
        if t.mm is not None and id(t.mm) not in seen:
            seen.add(id(t.mm))
            mms.append(t.mm)
    return B.swap_anon(k, mms, cz, nr, written)



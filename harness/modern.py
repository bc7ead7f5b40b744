"""The modern base: what every kernel from 2.6 on shares, and the hooks where they differ.

:class:`Modern` is to 2.6.36 ... 4.15 what :class:`harness.policy.Policy` is to 2.4: the
mechanisms its policies share (tree ``torvalds/linux``; files and functions below), and a
declared :data:`HOOKS` table for every point where the versions differ.  ``policies/linux26.py``
(2.6.36) and ``policies/oom_reaper.py`` (4.15) subclass it; ``docs/adding-a-policy.md`` is the
guide.

Shared here:

* ``mm/page_alloc.c``: ``init_per_zone_wmark_min`` / ``setup_per_zone_wmarks`` /
  ``setup_per_zone_lowmem_reserve`` (:meth:`Modern.setup_watermarks`, the watermark/reserve
  hook), ``zone_watermark_ok`` (:meth:`Modern.thresholds`), ``gfp_to_alloc_flags``,
  ``wake_all_kswapd``, the fast pass of ``__alloc_pages_nodemask``,
  ``__alloc_pages_direct_reclaim`` (PF_MEMALLOC saved and restored);
* ``mm/vmscan.c``: ``do_try_to_free_pages`` -- priorities 12..0 of ``shrink_zones`` (file LRU
  ``>> priority``, anonymous LRU only with free swap, ``swappiness`` splitting the two, the
  ``nr_saved_scan`` batching below SWAP_CLUSTER_MAX), ``shrink_slab``, stop at SWAP_CLUSTER_MAX
  reclaimed; the nap between priorities is a hook (:meth:`Modern.priority_nap`);
* ``mm/oom_kill.c``: ``out_of_memory``'s frame (a dying caller, the scan, panic, the kill, the
  sleep after it), ``oom_unkillable_task``, ``has_capability_noaudit(CAP_SYS_ADMIN)``, the pages
  ``oom_badness`` counts, the "sacrifice child" of ``oom_kill_process``; the OOM lock
  (``try_set_zonelist_oom`` / ``mutex_trylock(&oom_lock)``).

The file LRU is :mod:`harness.lru`'s two lists (``shrink_active_list``,
``page_check_references``, refault detection), one per run as ``k.lru``
(:meth:`Modern.make_lru`; ``lru_rules`` and ``workingset_kernel`` choose the generation,
2.6.36 here: no ``workingset.c``); :meth:`Modern.shrink_zones` hands it the file LRU's scan
of each priority.

Departures: zones have no holes, so ``present_pages`` is the zone size; the LRU's own
departures are in :mod:`harness.lru` (one lruvec, counts in runs);
``wakeup_flusher_threads`` is left to kupdated; ``congestion_wait`` sleeps its whole timeout
unless the disk is busy, when it ends with the disk's queue; kswapd is the shared 2.4-shaped
loop around this reclaim (``balance_pgdat``'s own priority walk is not modelled); 2.4 GFP masks
carry ``__GFP_HIGH`` in GFP_KERNEL, which 2.6 dropped, so ALLOC_HIGH is given to ``__GFP_HIGH``
callers that cannot sleep (GFP_ATOMIC) only.  A reclaim pass that changes nothing is charged
together with the next one (no other task could tell the difference).  The speed shortcuts
that replay these loops are in :mod:`harness.replay`.
"""
from __future__ import annotations

from functools import partial
from math import isqrt

from . import blocks as B
from . import machine as M
from . import replay
from .engine import CPU, DWAIT, WAITQ, WaitQueue
from .lru import ClassicLRU
from .machine import PF_MEMALLOC, PF_MEMDIE, ZONE_HIGHMEM
from .policy import COMMON_HOOKS, Base, Hook
from .sched import CFS_2_6_36, cfs_slice

DEF_PRIORITY = 12                  # include/linux/mmzone.h (2.6)
PAGE_ALLOC_COSTLY_ORDER = 3
WMARK_MIN, WMARK_LOW, WMARK_HIGH = 0, 1, 2
ALLOC_HIGH, ALLOC_HARDER, ALLOC_OOM, ALLOC_NO_WATERMARKS = 0x1, 0x2, 0x4, 0x8
OOM_SCORE_ADJ_MIN = -1000
WHICH = {"low": WMARK_LOW, "min": WMARK_MIN, "retry": WMARK_MIN, "high": WMARK_HIGH,
         "atomic": WMARK_MIN}


DEAD = ("Z", "X")                  # the task states that are not ``alive``


Aborted = B.Aborted


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


# ---------------------------------------------------------------------------- reclaim blocks
def text_in_use(k, memo: dict) -> set:
    """(The file-granular reclaim of before :mod:`harness.lru`; kept for a policy that
    reclaims without ``k.lru``.)  Program text ``shrink_page_list`` leaves mapped: text a runnable task is executing
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



# ---------------------------------------------------------------------------- the hook table
#: the modern base's hooks: discovery checks that an overriding method takes these arguments and
#: is a generator function where marked; the guide's tables are made from this one
HOOKS = {
    **COMMON_HOOKS,
    "fast_path": COMMON_HOOKS["fast_path"]._replace(
        default="__alloc_pages_nodemask's pass at low, else the slow path"),
    "slow_path": COMMON_HOOKS["slow_path"]._replace(
        default="**required**: __alloc_pages_slowpath of the version modelled"),
    "try_to_free_pages": COMMON_HOOKS["try_to_free_pages"]._replace(
        default="2.6.36 do_try_to_free_pages: priorities 12..0 of shrink_zones + shrink_slab "
                "until SWAP_CLUSTER_MAX reclaimed"),
    "need_balance": COMMON_HOOKS["need_balance"]._replace(
        default="some zone from cz down at or below its high watermark"),
    "badness": COMMON_HOOKS["badness"]._replace(
        default="**required**: oom_badness of the version modelled"),
    "setup_watermarks": Hook(("k",), False,
                             "(wm, reserve): wm[zone] = (min, low, high), reserve[i][j] the "
                             "pages zone i keeps back from a classzone-j allocation",
                             "once, by reset", "2.6.36 setup_per_zone_wmarks / "
                             "setup_per_zone_lowmem_reserve (MANAGED_PAGES, "
                             "WATERMARK_SCALE_FACTOR: 4.x)"),
    "watermarks": Hook(("k", "zl", "order", "gfp", "which"), False,
                       "thresholds, one per zone of zl, for k.take",
                       "by fast_path ('low'); must not change anything",
                       "zone_watermark_ok with the lowmem reserve"),
    "reserve_flags": Hook(("k", "task"), False,
                          "ALLOC_* flags of the reserves the task may use (0: none)",
                          "by the slow path before each attempt",
                          "2.6: ALLOC_NO_WATERMARKS for PF_MEMALLOC and TIF_MEMDIE"),
    "should_reclaim_retry": Hook(("k", "req", "flags", "progress", "loops"), True,
                                 "(retry?, no_progress_loops)",
                                 "by the slow path after a direct reclaim round",
                                 "2.6.36 should_alloc_retry: retry while order <= 3"),
    "priority_nap": Hook(("k", "scanned", "prio"), True, "nothing",
                         "by try_to_free_pages after each priority",
                         "2.6.36: congestion_wait(HZ/10) below priority 10 if it scanned"),
    "take_oom_lock": Hook(("k", "task"), False, "bool: the lock was taken (or is held by task)",
                          "by the slow path before out_of_memory",
                          "try_set_zonelist_oom / mutex_trylock(&oom_lock)"),
    "release_oom_lock": Hook(("k", "task"), False, "nothing", "after out_of_memory",
                             "unlock if task holds it"),
    "out_of_memory": Hook(("k", "task"), True,
                          "bool: progress (something was done: a kill, the caller marked, a "
                          "victim still exiting) -- not 2.4's 'the caller was chosen'",
                          "by the policy's slow path (may_oom)",
                          "dying_caller, select_bad_process, the scan's CPU, oom_kill_process, "
                          "after_kill"),
    "dying_caller": Hook(("k", "task"), False,
                         "bool: the caller is already dying and has been handled (no scan)",
                         "first in out_of_memory",
                         "2.6.36: a caller with SIGKILL pending gets TIF_MEMDIE and the boost"),
    "select_bad_process": Hook(("k", "current"), False,
                               "(victim or None, table); table an Aborted to kill nobody new",
                               "by out_of_memory, told the allocating task (current; None when "
                               "called from outside); must not change anything",
                               "**required**"),
    "oom_kill_process": Hook(("k", "killer", "p", "table"), False,
                             "bool: a kill was delivered",
                             "by out_of_memory with the chosen task p", "**required**"),
    "after_kill": Hook(("k", "task"), True, "nothing", "by out_of_memory after a kill",
                       "2.6.36: schedule_timeout_uninterruptible(1) unless TIF_MEMDIE"),
}
#: the hooks a concrete modern policy must end up with other than the base class's
REQUIRED_HOOKS = ("slow_path", "badness", "select_bad_process", "oom_kill_process")


class Modern(Base):
    """The modern base class (2.6 and later): per-zone watermarks with the lowmem reserve, the
    2.6 reclaim, the OOM killer's frame and lock.  A policy writes the :data:`REQUIRED_HOOKS`
    (the slow path and whom the OOM killer kills) or subclasses one that has them."""

    HOOKS = HOOKS
    REQUIRED_HOOKS = REQUIRED_HOOKS
    params = {"lowmem_reserve_ratio": (256, 32), "swappiness": 60}

    #: versions differ in these (4.x: managed pages and watermark_scale_factor)
    MANAGED_PAGES = False
    WATERMARK_SCALE_FACTOR = None

    #: the file LRU (harness.lru API): its class, the vmscan.c generation of its rules and the
    #: workingset.c generation of its refault detection (None: no workingset.c, before 3.15)
    LRU = ClassicLRU
    lru_rules = "2.6.36"
    workingset_kernel = None
    cfs_tunables = CFS_2_6_36          # the scheduler's slices (harness.sched.cfs_slice)

    def make_lru(self, k):
        """The run's file LRU (``k.lru``): :attr:`LRU` with this class's generations."""
        return self.LRU(k, self.lru_rules, self.workingset_kernel)

    def reset(self, k):
        k.sched_slice = partial(cfs_slice, tunables=self.cfs_tunables)   # CFS, not 2.4's slice
        k.lru = self.make_lru(k)
        self.wm, self.reserve = self.setup_watermarks(k)
        self._thresholds = {}
        self.totalpages = totalram_pages(k) + k.swap_total
        self.oom_lock = None               # the task holding the zonelist OOM lock / oom_lock
        self.oom_lock_waiters = []         # tasks asleep in mutex_lock(&oom_lock), in order
        self.oom_lock_wait = WaitQueue()
        self.reclaim_cost = {}             # pid -> CPU us of its last try_to_free_pages
        self._memo = {}                    # text_in_use, per task-state epoch
        self.swapped_free = 0              # swap-cache pages written and freed, not yet counted
        self.saved_scan = [0, 0]           # nr_saved_scan of the anonymous and file LRUs
        self.oom_mm = {}                   # pid -> mm of every OOM victim alive (signal->oom_mm)
        self.skip_mms = {}                 # id(mm) -> mm with MMF_OOM_SKIP (ids stay unique)
        self.replay = replay.plan(self)    # the shortcuts exact for this class (harness.replay)

    # ------------------------------------------------------------------ watermarks
    def setup_watermarks(self, k):
        """``setup_per_zone_wmarks`` and ``setup_per_zone_lowmem_reserve``."""
        return (zone_watermarks(k, self.MANAGED_PAGES, self.WATERMARK_SCALE_FACTOR),
                lowmem_reserve(k, self.lowmem_reserve_ratio, self.MANAGED_PAGES))

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

    # ------------------------------------------------------------------ the allocator
    def reserve_flags(self, k, task) -> int:
        """ALLOC_NO_WATERMARKS for PF_MEMALLOC (reclaimers) and TIF_MEMDIE (OOM victims)."""
        return ALLOC_NO_WATERMARKS if task.flags & (PF_MEMALLOC | PF_MEMDIE) else 0

    def fast_path(self, k, req):
        """``__alloc_pages_nodemask``: the fast pass at ``low``; else the slow path."""
        return k.take(req, self.watermarks(k, req.zl, req.order, req.gfp, "low")) or None

    def slow_path(self, k, req):
        """Generator; required: ``__alloc_pages_slowpath`` of the version modelled."""
        raise NotImplementedError
        yield  # pragma: no cover

    def direct_reclaim(self, k, req):
        """``__alloc_pages_direct_reclaim``: reclaim with PF_MEMALLOC set."""
        task = req.task
        had = B.memalloc_enter(task)
        try:
            return (yield from self.try_to_free_pages(k, task, req.zl[0], req.gfp, req.order))
        finally:
            B.memalloc_exit(task, had, memdie_keeps=False)

    def should_reclaim_retry(self, k, req, flags, progress, loops):
        """2.6.36 ``should_alloc_retry``: always for order <= PAGE_ALLOC_COSTLY_ORDER.  Returns
        (retry?, no_progress_loops unchanged)."""
        return req.order <= PAGE_ALLOC_COSTLY_ORDER, loops
        yield  # pragma: no cover

    def take_oom_lock(self, k, task) -> bool:
        """``try_set_zonelist_oom`` (4.x: ``mutex_trylock(&oom_lock)``)."""
        holder = self.oom_lock
        if holder is not None and holder is not task and holder.alive:
            return False
        self.oom_lock = task
        return True

    def release_oom_lock(self, k, task):
        """``clear_zonelist_oom`` / ``mutex_unlock(&oom_lock)``: a task asleep in
        :meth:`lock_oom_lock` gets it next."""
        if self.oom_lock is not task:
            return
        self.oom_lock = None
        while self.oom_lock_waiters:
            w = self.oom_lock_waiters.pop(0)
            if w.alive:
                self.oom_lock = w
                k.wake_queue(self.oom_lock_wait)
                break

    def lock_oom_lock(self, k, task):
        """``mutex_lock(&oom_lock)``: take it, or sleep (uninterruptibly) until it is handed
        over."""
        if self.take_oom_lock(k, task):
            return
        self.oom_lock_waiters.append(task)
        while self.oom_lock is not task:
            holder = self.oom_lock
            if holder is None or not holder.alive:
                if task in self.oom_lock_waiters:
                    self.oom_lock_waiters.remove(task)
                self.oom_lock = task
                break
            yield (WAITQ, self.oom_lock_wait, False)

    # ------------------------------------------------------------------ reclaim
    def zone_reclaimable_pages(self, k, zi: int) -> int:
        """File LRU pages, and anonymous ones while there is free swap."""
        z = k.zones[zi]
        n = z.clean + z.mapped + z.dirty + z.wb
        if k.nr_swap_pages > 0:
            n += z.anon + z.swapc
        return n

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
        if scan_file and k.lru is not None:
            # the two-list file LRU (harness.lru): shrink_node's file part
            got, n, lru_cost = k.lru.shrink(cz, prio, left, scan_file, gfp,
                                            rr.direct)
            scanned += n
            cost += lru_cost - n * c.lru_scan_us      # (the scan is charged below)
            if got:
                rr.freed += got
                left -= got
                if rr.first_zone is None:
                    rr.first_zone = cz
        elif scan_file:
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

    def try_to_free_pages(self, k, task, cz, gfp, order):
        """``do_try_to_free_pages``: priorities 12..0 until SWAP_CLUSTER_MAX pages are
        reclaimed.  Returns (pages reclaimed > 0, the round)."""
        rr = B.ReclaimRound()
        rr.direct = task is not k.kswapd
        total = pending = 0
        if self.replay.noop_round and replay.nothing_to_reclaim(self, k, cz, gfp):
            # every pass would scan without freeing or changing anything: the arithmetic
            total = replay.noop_round(self, k, cz, self.file_lru(k, cz))
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
        if k.lru is not None:
            k.lru.end_round()                      # snapshot_refaults
        self.reclaim_cost[task.pid] = total
        B.note_reclaim(k, task, rr, rr.freed >= M.SWAP_CLUSTER_MAX, task is not k.kswapd)
        return rr.freed > 0, rr

    # ------------------------------------------------------------------ OOM
    def out_of_memory(self, k, task):
        """``out_of_memory``: a dying caller is only marked; else scan (``select_bad_process``,
        told the allocating task), panic if nobody is killable, kill, and let the caller sleep.
        Returns True for progress: something was done, or a victim is still on its way out."""
        if self.dying_caller(k, task):
            return True
        victim, table = self.replay.select(k, task)     # select_bad_process, or its replay
        yield (CPU, int(len(k.live) * k.costs.oom_scan_us_per_task), False)
        if isinstance(table, Aborted):
            k.emit("oom_call", task.pid, 0)
            return True
        if victim is None:
            raise RuntimeError("Out of memory and no killable processes...")   # panic()
        k.emit("oom_call", task.pid, 1)
        self.oom_kill_process(k, task, victim, table)
        yield from self.after_kill(k, task)
        return True

    def dying_caller(self, k, task) -> bool:
        """2.6.36: a caller with a fatal signal pending is "automatically selected": it gets
        TIF_MEMDIE and the dying task's boost, and nobody else is killed."""
        if not k.fatal_pending(task):
            return False
        task.flags |= PF_MEMDIE
        k.boost(task, M.HZ * M.JIFFY_US)
        return True

    def after_kill(self, k, task):
        """2.6.36: ``schedule_timeout_uninterruptible(1)`` unless the caller is the victim."""
        if not task.flags & PF_MEMDIE:
            yield (DWAIT, k.now + M.JIFFY_US)

    # -- OOM victims as 4.6+ tracks them (signal->oom_mm, MMF_OOM_SKIP); 2.6.36 has only TIF_MEMDIE
    def is_oom_victim(self, p) -> bool:
        """``tsk_is_oom_victim``: ``signal->oom_mm`` is set."""
        return p.pid in self.oom_mm

    def oom_skip(self, mm) -> bool:
        return mm is not None and id(mm) in self.skip_mms

    def set_oom_skip(self, mm):
        if mm is not None:
            self.skip_mms[id(mm)] = mm

    def mark_oom_victim(self, k, p):
        """``mark_oom_victim``: TIF_MEMDIE and ``signal->oom_mm``."""
        if p.flags & PF_MEMDIE and p.pid in self.oom_mm:
            return
        p.flags |= PF_MEMDIE
        if p.pid not in self.oom_mm and p.mm is not None:
            self.oom_mm[p.pid] = p.mm
        k.changed()

    def task_will_free_mem(self, k, p) -> bool:
        """``task_will_free_mem``: ``p`` is dying (a fatal signal is pending) and so is every
        process sharing its mm; not once the reaper has been there."""
        mm = p.mm
        if mm is None or not k.fatal_pending(p) or self.oom_skip(mm):
            return False
        return all(k.fatal_pending(q) for q in k.live.values()
                   if q is not p and q.alive and q.mm is mm)

    def badness(self, k, p) -> int:
        """Required: ``oom_badness`` of the version modelled."""
        raise NotImplementedError

    def select_bad_process(self, k, current=None):
        """Required: ``select_bad_process`` of the version modelled, told the allocating task."""
        raise NotImplementedError

    def oom_kill_process(self, k, killer, p, table) -> bool:
        """Required: ``oom_kill_process`` of the version modelled."""
        raise NotImplementedError

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



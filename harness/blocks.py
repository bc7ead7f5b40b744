"""Building blocks that policy files compose: watermark tests, reclaim, the OOM rate limiter,
badness, victim selection and kill delivery.

Each block names the kernel function it models (tree, file, function) and where it departs.
Blocks are plain functions or tiny classes over the engine's read/write API; generator blocks
are called with ``yield from`` so their CPU cost lands on the calling task.
"""
from __future__ import annotations

from operator import attrgetter

from . import machine as M
from .engine import CPU, DWAIT, REPEAT
from .machine import PF_MEMALLOC, PF_MEMDIE, SIGKILL, SIGTERM

# ============================================================================ 1. watermark tests

WM_INDEX = {"min": 0, "low": 1, "high": 2}
_WM_GET = {"min": attrgetter("pages_min"), "low": attrgetter("pages_low"),
           "high": attrgetter("pages_high")}


def summed_thresholds(k, zl, order: int, which: str, shift: int = 0):
    """Mainline 2.4 ``__alloc_pages`` (S1/S2 mm/page_alloc.c): ``min += z->pages_X`` over the
    zonelist, so each later zone must clear the sum of every earlier zone's watermark."""
    get = _WM_GET[which]
    zones = k.zones
    acc = 1 << order
    out = []
    for zi in zl:
        acc += get(zones[zi]) >> shift
        out.append(acc)
    return out


def per_zone_thresholds(k, zl, order: int, which: str, shift: int = 0):
    """akpm's fix (M1): each zone judged against its own watermark, ``(1<<order) + z->pages_X``."""
    get = _WM_GET[which]
    zones = k.zones
    return [(1 << order) + (get(zones[zi]) >> shift) for zi in zl]


def classzone_watermarks(k, ratios=(256, 32)):
    """-aa ``free_area_init_core`` (S4 mm/page_alloc.c; M8): ``wm[zone][class] = (min, low, high)``.

    A zone's own class gets {mask, 2mask, 3mask}; each lower zone, seen from class j, gets its own
    {m, 2m, 3m} plus ``realsize_above / lower_zone_reserve_ratio[idx]``.
    """
    zones = k.zones
    wm = [[None] * 3 for _ in zones]
    for j, zj in enumerate(zones):
        if not zj.size:
            continue
        wm[j][j] = (zj.pages_min, zj.pages_low, zj.pages_high)
        realsize = zj.size
        for idx in range(j - 1, -1, -1):
            lz = zones[idx]
            if not lz.size:
                continue
            m = lz.pages_min
            reserve = realsize // ratios[idx]
            wm[idx][j] = (m + reserve, 2 * m + reserve, 3 * m + reserve)
            realsize += lz.size
    return wm


def classzone_thresholds(k, wm, zl, order: int, which: str, shift: int = 0):
    """-aa ``__alloc_pages`` (S4): ``zone_free(z) - (1<<order) > z->watermarks[class_idx].X``."""
    ci = zl[0]
    i = WM_INDEX[which]
    return [(wm[zi][ci][i] >> shift) + (1 << order) for zi in zl]


# ============================================================================ 3. reclaim

def lru_counts(k, cz: int):
    """Page-cache pages on the LRU in zones ``<= cz`` (memclass): clean, dirty, under I/O, mapped."""
    c = d = w = m = 0
    for z in k.zones[: cz + 1]:
        c += z.clean
        d += z.dirty
        w += z.wb
        m += z.mapped
    return c, d, w, m


def evict_clean(k, cz: int, n: int, lowest: int = 0):
    """Free ``n`` clean, unmapped cache pages of zones ``cz`` down to ``lowest``, coldest files
    first.  Returns (pages freed, zone of the first freed page or None)."""
    left = n
    first = None
    for f in k.files.values():
        if left <= 0:
            break
        clean = f.clean
        if not (clean[0] or clean[1] or clean[2]):          # not any(f.clean)
            continue
        for zi in range(cz, lowest - 1, -1):
            take = min(left, clean[zi])
            if take:
                clean[zi] -= take
                k.zones[zi].clean -= take
                k.zones[zi].free += take
                left -= take
                if first is None:
                    first = zi
    if left != n:
        k.changed()
    return n - left, first


def drop_text(k, cz: int, n: int, busy=None) -> int:
    """Unmap up to ``n`` mapped file pages (program text) of programs not in use -- by default
    no runnable task is running them (``busy``: ids of the files in use) -- coldest files
    first: they become clean, unmapped cache (rmap's ``try_to_unmap``).  Returns pages."""
    if not any(z.mapped for z in k.zones[: cz + 1]):
        return 0
    hot = k.hot_text() if busy is None else busy
    left = n
    for f in k.files.values():
        if left <= 0:
            break
        if not f.mappers or id(f) in hot or not any(f.mapped):
            continue
        left -= k.file_move(f, "mapped", "clean", left, range(cz, -1, -1))
    if left != n:
        k.changed()
    return n - left


def start_dirty_writeback(k, cz: int, n: int) -> int:
    """``writepage`` on up to ``n`` dirty cache pages of the coldest files."""
    left = n
    for f in list(k.files.values()):
        if left <= 0:
            break
        dirty = f.dirty
        if not (dirty[0] or dirty[1] or dirty[2]):          # nothing to write
            continue
        for zi in range(cz, -1, -1):
            take = min(left, dirty[zi])
            if take:
                k.start_writeback(f, zi, take)
                left -= take
    return n - left


class ReclaimRound:
    """What one ``try_to_free_pages`` call did: pages freed, cost, first freed zone."""

    __slots__ = ("freed", "first_zone", "scanned", "wait_until", "direct")

    def __init__(self):
        self.freed = 0
        self.first_zone = None
        self.scanned = 0
        self.wait_until = 0
        self.direct = True           # direct reclaim (not kswapd): the modern LRU's early stop


def shrink_cache(k, rr: ReclaimRound, cz: int, gfp: int, nr: int, max_scan: int):
    """-aa / 2.4.19 ``shrink_cache`` (S4/S2 mm/vmscan.c) on page counts.

    The inactive list is walked from its cold end; the walk meets clean, dirty, locked and mapped
    pages in proportion to their numbers (departure: no page order).  Clean unmapped pages are
    freed until ``nr`` are; dirty ones get ``writepage`` when ``__GFP_FS``; pages under write-back
    make a ``__GFP_FS`` caller ``wait_on_page``; mapped ones are skipped.  Anonymous pages are not
    on the LRU until they enter the swap cache (``vm_anon_lru = 0``).  Returns ``nr`` left and
    the mapped pages met (for ``max_mapped``).
    """
    c, d, w, m = lru_counts(k, cz)
    total = c + d + w + m
    if total == 0 or max_scan <= 0:
        return nr, 0
    need = -(-nr * total // c) if c else max_scan
    scan = min(max_scan, need)
    freed = min(nr, c) if scan >= need else min(nr, c, scan * c // total)
    rr.scanned += scan
    if freed:
        got, first = evict_clean(k, cz, freed)
        rr.freed += got
        if rr.first_zone is None:
            rr.first_zone = first
        nr -= got
    if gfp & M.GFPF_FS:
        dirty_seen = scan * d // total
        if dirty_seen:
            start_dirty_writeback(k, cz, dirty_seen)
        if w and scan * w // total and k.disk_busy_until > k.now:
            rr.wait_until = max(rr.wait_until, min(k.disk_busy_until,
                                                   k.now + k.costs.disk_request_us))
    return nr, scan * m // total


def swap_out(k, cz: int, nr: int = M.SWAP_CLUSTER_MAX):
    """``swap_out`` (S4/S2 mm/vmscan.c) on counts: walk every mm's ptes for ``nr`` droppable ones.

    A pte of a file page (program text) is simply dropped; an anonymous pte is unmapped into the
    swap cache only if a swap slot is free (``get_swap_page``), its write queued at once
    (departure: the swap-cache page is freed when that write completes, not by a later
    ``shrink_cache``).  The first visit only clears the young bit, so a pte is dropped on the
    second pass: the scan costs twice the ptes walked.  Returns (success, ptes scanned,
    anonymous pages queued to swap); ``k.swap_write_done`` is when the last queued write ends.
    """
    anon_ok = k.nr_swap_pages > 0
    mms = []
    if anon_ok:
        seen = set()
        ptes = 0
        for t in k.live.values():
            mm = t.mm
            if mm is not None and id(mm) not in seen:
                seen.add(id(mm))
                mms.append(mm)
                ptes += sum(mm.anon)
    else:
        # the same sum: a zone's anonymous pages are those of the live tasks' mm's
        # (check_pages), and the mm's are only needed to swap out
        ptes = sum(z.anon for z in k.zones)
    # text pages of a program that some task is running are young and on the active list:
    # try_to_swap_out skips them (ptep_test_and_clear_young, PageActive); departure: "active"
    # is approximated as "mapped by a runnable task"
    hot = k.hot_text()
    text = [f for f in k.files.values()
            if f.mappers and id(f) not in hot and sum(f.mapped[: cz + 1])]
    text_pages = sum(sum(f.mapped[: cz + 1]) * f.mappers for f in text)
    ptes += sum(sum(f.mapped) * f.mappers for f in k.files.values() if f.mappers)
    anon_pages = sum(sum(mm.anon[: cz + 1]) for mm in mms) if anon_ok else 0
    droppable = text_pages + anon_pages
    if droppable == 0:
        return False, 2 * ptes, 0
    scan = min(2 * ptes, -(-2 * nr * ptes // droppable))
    want = min(nr, droppable)
    # text first in proportion, then anonymous pages
    from_text = min(want, -(-want * text_pages // droppable)) if text_pages else 0
    dropped = 0
    for f in text:
        dropped += k.file_move(f, "mapped", "clean", from_text - dropped, range(cz, -1, -1))
    left = want - dropped
    queued = 0
    if left and anon_ok:
        queued = swap_anon(k, mms, cz, left)
        dropped += queued
    if dropped:
        k.changed()
    return dropped >= nr, scan, queued


def swap_anon(k, mms, cz: int, nr: int, written=None) -> int:
    """Unmap up to ``nr`` anonymous pages of zones ``<= cz`` into the swap cache while swap slots
    are free (``add_to_swap`` + unmap), taking the mm's round robin from ``k.swap_cursor``, and
    queue their writes; ``written(arg)`` (default: free the page) runs when a write completes.
    Returns the pages queued."""
    written = written or _swap_written
    left = min(nr, k.nr_swap_pages)
    queued = 0
    if not mms:
        return 0
    start = k.swap_cursor % len(mms)
    for i in range(len(mms)):
        if left <= 0:
            break
        mm = mms[(start + i) % len(mms)]
        for zi in range(cz, -1, -1):
            n = min(left, mm.anon[zi])
            if n > 0:
                mm.anon[zi] -= n
                mm.swapc[zi] += n
                mm.swapped += n
                k.nr_swap_pages -= n
                k.move(zi, "anon", "swapc", n)
                done = k.disk_io(n)
                k.at(done, written, (k, mm, zi, n))
                k.swap_write_done = done
                left -= n
                queued += n
    k.swap_cursor = start + 1
    if queued:
        k.changed()
    return queued


def _swap_written(arg):
    k, mm, zi, n = arg
    n = min(n, mm.swapc[zi])
    if n:
        mm.swapc[zi] -= n
        k.zones[zi].swapc -= n
        k.free_to_zone(zi, n)


def shrink_vfs(k, ratio: int = 6) -> int:
    """``shrink_dcache_memory`` + ``shrink_icache_memory`` + ``kmem_cache_reap``: free 1/ratio of
    the unused dentry/inode cache (at least one page while any is left).  Returns pages freed."""
    freed = 0
    for z in k.zones:
        if z.dcache:
            n = max(1, z.dcache // ratio)
            z.dcache -= n
            z.free += n
            freed += n
    if freed:
        k.changed()
    return freed


def aa_reclaim_round(k, task, cz: int, gfp: int, vm_passes: int = 60, scan_ratio: int = 6,
                     mapped_ratio: int = 100):
    """One round of -aa ``try_to_free_pages_zone`` (S4 mm/vmscan.c; M1 diff context):
    ``vm_passes`` x (``shrink_caches``; dcache/icache shrink; ``swap_out`` until it fails).

    Returns a :class:`ReclaimRound`; ``rr.freed >= SWAP_CLUSTER_MAX`` is success ("return 1").
    CPU is charged per pass, so other tasks interleave as they did on the real box.
    """
    c = k.costs
    rr = ReclaimRound()
    nr = M.SWAP_CLUSTER_MAX
    failed_swapout = not (gfp & M.GFPF_IO)
    swapped = 0
    i = 0
    while i < vm_passes:
        v0 = k.version
        latched = failed_swapout          # no swap_out call in this pass: its cost is the steady one
        i += 1
        cost = c.vfs_shrink_us
        cl, d, w, m = lru_counts(k, cz)
        max_scan = (cl + d + w + m) // scan_ratio
        nr, mapped_seen = shrink_cache(k, rr, cz, gfp, nr, max_scan)
        if mapped_seen > mapped_ratio * M.SWAP_CLUSTER_MAX and not failed_swapout:
            ok, ptes, queued = swap_out(k, cz)
            failed_swapout = not ok
            swapped += queued
            cost += ptes * c.pte_scan_us
        shrink_vfs(k)
        cost += rr.scanned * c.lru_scan_us
        rr.scanned = 0
        if nr > 0 and not failed_swapout:
            ok, ptes, queued = swap_out(k, cz)
            failed_swapout = not ok
            swapped += queued
            cost += ptes * c.pte_scan_us
        if (nr > 0 and k.version == v0 and latched and i < vm_passes
                and rr.wait_until <= k.now):
            # this pass changed nothing, so the passes left are the same pass again: charge them
            # in one go, stopping early (exactly at a pass boundary) if the machine changes
            done = yield (REPEAT, int(cost), vm_passes - i + 1)
            i += done - 1
            continue
        yield (CPU, int(cost), False)
        if swapped and nr > 0 and gfp & M.GFPF_IO:
            # the swap-cache pages this round queued are freed when written: wait for them
            # (shrink_cache's wait_on_page of laundered pages) and count them as ours
            if k.swap_write_done > k.now:
                yield (DWAIT, k.swap_write_done)
            nr -= swapped
            rr.freed += swapped
            if rr.first_zone is None:
                rr.first_zone = cz if k.zones[cz].free else 0
            swapped = 0
        elif rr.wait_until > k.now:
            yield (DWAIT, rr.wait_until)
            rr.wait_until = 0
        if nr <= 0:
            break
    return rr


def note_reclaim(k, task, rr, ok: bool, direct: bool):
    k.emit("reclaim", task.pid, rr.freed, int(ok), int(direct))


def mainline_need_balance(k, cz: int) -> bool:
    """2.4.17-22 ``check_classzone_need_balance`` (S1/S2 mm/vmscan.c): no need as soon as ANY zone
    from the classzone down has ``free > pages_high`` (its own high watermark)."""
    for z in k.zones[cz::-1]:
        if z.free > z.pages_high:
            return False
    return True


def classzone_need_balance(k, wm, cz: int) -> bool:
    """-aa ``check_classzone_need_balance`` (S4): the same test against the point-of-view
    watermarks ``z->watermarks[class_idx].high``."""
    for zi in range(cz, -1, -1):
        z = k.zones[zi]
        if z.size and z.free > wm[zi][cz][2]:
            return False
    return True


# ============================================================================ 4. OOM trigger

class OOMRateLimiter:
    """2.4 ``out_of_memory()`` (S2/S1 mm/oom_kill.c; §3.3): first/last/count, optional lastkill.

    All callers share one instance per run (kswapd included).  Times are jiffies, starting at 0.
    ``__call__`` returns True when the caller should go on to ``oom_kill()``; each call, in order:

    * ``swap_check`` and free swap (``k.nr_swap_pages > 0``): no, and nothing is updated;
    * ``since = now - last; last = now``; ``since > 5*HZ`` (a quiet spell): reset
      (``first = now, count = 0``), no;
    * ``now - first < HZ`` (failing for less than a second): no, not counted;
    * ``++count < 10``: no;
    * ``lastkill`` (2.4.19 final; not in 2.4.19-pre6 nor akpm's patch) and
      ``now - lastkill < 5*HZ``: no (``count`` stays >= 10, so the first call after the gate
      opens kills);
    * else yes: ``lastkill = now``, reset.

    It never looks at the tasks: whether an earlier victim is still alive plays no part, so the
    limiter alone decides whether a second OOM pass happens while a victim is on its way out
    (the next kill needs 10 calls counted after the first second since the last one, none more
    than 5 s apart, and with ``lastkill`` also 5 s since it).  It sets a ``k.alarm`` at the
    time a gate opens, so a fast-forward of a loop calling it stops there.
    """

    def __init__(self, lastkill: bool, swap_check: bool = True):
        self.use_lastkill = lastkill
        self.swap_check = swap_check
        self.first = self.last = self.count = self.lastkill = 0

    def __call__(self, k) -> bool:
        if self.swap_check and k.nr_swap_pages > 0:
            return False
        now = k.now // M.JIFFY_US
        since = now - self.last
        self.last = now
        if since > 5 * M.HZ:
            self._reset(now)
            k.changed()
            return False
        if now - self.first < M.HZ:
            # the answer stays "no" until first + HZ: a loop calling us changes nothing till then
            k.alarm(self, (self.first + M.HZ) * M.JIFFY_US)
            return False
        self.count += 1
        if self.count < 10:
            k.changed()
            return False
        if self.use_lastkill and now - self.lastkill < 5 * M.HZ:
            k.alarm(self, (self.lastkill + 5 * M.HZ) * M.JIFFY_US)
            return False
        self.lastkill = now
        self._reset(now)
        k.changed()
        return True

    def _reset(self, now):
        self.first = now
        self.count = 0


# ============================================================================ 5. victim selection

def jiffies(us: int) -> int:
    return us // M.JIFFY_US


def badness_24(k, p, memdie_skip: bool) -> int:
    """2.4 ``badness()`` (S1 mm/oom_kill.c; §3.1): total_vm / sqrt(cpu) / sqrt(sqrt(runtime)),
    x2 if niced, /4 for root or CAP_SYS_ADMIN, /4 for CAP_SYS_RAWIO.  2.4.22 scores a PF_MEMDIE
    task 0 (``memdie_skip``); 2.4.19 does not."""
    if p.mm is None or p.kthread:
        return 0
    if memdie_skip and p.flags & PF_MEMDIE:
        return 0
    points = p.mm.total_vm
    cpu_time = jiffies(p.utime + p.stime) >> (M.SHIFT_HZ + 3)
    run_time = (jiffies(k.now) - jiffies(p.start_us)) >> (M.SHIFT_HZ + 10)
    points //= M.int_sqrt(cpu_time)
    points //= M.int_sqrt(M.int_sqrt(run_time))
    if p.nice > 0:
        points *= 2
    if "CAP_SYS_ADMIN" in p.caps or p.uid == 0 or p.euid == 0:
        points //= 4
    if "CAP_SYS_RAWIO" in p.caps:
        points //= 4
    return points


def select_bad_process(k, score, skip_pid_le: int = 0, skip_no_mm: bool = False):
    """2.4 ``select_bad_process`` (S2/S1; M1 for akpm's filters): the task list in order, strict
    ``>`` against a running maximum from 0, so ties go to the earlier task and 0 never wins.
    Returns (victim or None, table of (pid, name, points) for the trace)."""
    best, maxp = None, 0
    table = []
    for p in k.live.values():
        if not p.alive or p.pid <= skip_pid_le:
            continue
        if skip_no_mm and p.mm is None:
            continue
        pts = score(k, p)
        if pts:
            table.append((p.pid, p.name, pts))
        if pts > maxp:
            best, maxp = p, pts
    table.sort(key=lambda r: -r[2])
    return best, tuple(table[:5])


# ============================================================================ 6. kill delivery

def oom_kill_task_24(k, p):
    """2.4 ``oom_kill_task`` (S2): timeslice boost (5*HZ), PF_MEMALLOC|PF_MEMDIE, and
    ``force_sig`` of SIGTERM to a CAP_SYS_RAWIO task, SIGKILL to anyone else.  The flags stay
    until the task exits (``do_exit`` clears them); nothing else clears them."""
    k.boost(p, 5 * M.HZ * M.JIFFY_US)
    p.flags |= PF_MEMALLOC | PF_MEMDIE
    sig = SIGTERM if "CAP_SYS_RAWIO" in p.caps else SIGKILL
    k.signal(p, sig)
    return sig


def record_kill(k, victim, sig, table, killer):
    """The ``kill`` trace event the metrics count, for a kill just delivered (``oom_kill``'s
    printk).  Sets ``victim.killed_at`` to now at its first recorded kill (a fault kill, the
    engine's ``mm.fault_kill``, never does); a kill of a task already killed and still alive is
    a repeat."""
    repeat = victim.killed_at is not None and victim.alive
    if victim.killed_at is None:
        victim.killed_at = k.now
    k.emit("kill", victim.pid, victim.name, sig, int(repeat), killer.pid, table, k.nr_swap_pages)


def oom_kill_24(k, killer, victim, table):
    """2.4 ``oom_kill`` (S2): kill every task sharing the victim's mm (:func:`oom_kill_task_24`
    and :func:`record_kill` each); the caller then yields.  Returns whether ``killer`` itself
    now has PF_MEMDIE.  ``victim`` ``None``: raises ``RuntimeError`` as 2.4 panics ("Out of
    memory and no killable processes..."); the run ends as an error (``bench``: status
    ``error``).  A policy that should kill nobody then does not call this."""
    if victim is None:
        raise RuntimeError("Out of memory and no killable processes...")   # panic()
    mm = victim.mm
    for q in k.tasks:
        if q.alive and (q is victim or (mm is not None and q.mm is mm)):
            sig = oom_kill_task_24(k, q)
            record_kill(k, q, sig, table, killer)
    return killer.flags & PF_MEMDIE != 0


class Aborted(tuple):
    """The badness table of a scan that ``select_bad_process`` gave up (2.6+ ``ERR_PTR(-1UL)``):
    a victim is still on its way out, so nobody new is killed."""


def badness_table(table: list) -> tuple:
    """The tail of every 2.6+ ``select_bad_process``: the top five ``(pid, name, points)`` rows,
    most points first (ties in task-list order), for the ``kill`` trace event."""
    table.sort(key=lambda r: -r[2])
    return tuple(table[:5])


def memalloc_enter(task) -> int:
    """Set PF_MEMALLOC on a task about to reclaim for its own allocation (2.4
    ``balance_classzone``, -rmap ``__alloc_pages``, 2.6+ ``__alloc_pages_direct_reclaim``: the
    reclaimer may dip into the reserves).  Returns whether it had it before, for
    :func:`memalloc_exit`."""
    had = task.flags & PF_MEMALLOC
    task.flags |= PF_MEMALLOC
    return had


def memalloc_exit(task, had: int, memdie_keeps: bool):
    """After reclaim: clear PF_MEMALLOC again unless the task had it before, or
    (``memdie_keeps``, 2.4) has been chosen by the OOM killer meanwhile, whose kill sets
    PF_MEMALLOC with PF_MEMDIE for good.  (Two calls around a ``try``/``finally`` rather than a
    generator wrapper: reclaim is entered tens of thousands of times a run.)"""
    if not had and not (memdie_keeps and task.flags & PF_MEMDIE):
        task.flags &= ~PF_MEMALLOC

"""The classic two-list file LRU of ``mm/vmscan.c``, for the modern models.

The 2.4 models keep their own reclaim (``harness.blocks``: file-granular, ``k.lru`` is None
for them).  A modern policy (:class:`harness.modern.Modern`) makes one of these per run
(``Modern.LRU``, ``Modern.make_lru``) and the engine and the base's reclaim talk to it through
``k.lru``.  Another LRU (MGLRU) can take its place by offering the same API.

API
---
What the engine calls (``harness/mm.py``), all cheap and none taking simulated time:

``add(f, got, how, lock=None) -> (lock, stall)``
    Pages just allocated and assigned to file ``f`` (``got``: pages per zone, as
    ``AllocReq.got`` was before ``k.assign``): ``add_to_page_cache_lru``.  ``how`` is
    ``"fault"`` (a major text fault, ``filemap_fault``), ``"read"`` (``generic_file_read``
    misses) or ``"write"`` (new dirty pages, ``generic_perform_write``).  A fault or read takes
    shadows off the file for the pages read back (refault detection, ``workingset_refault``),
    counts them in ``k.refaults`` and puts the pages on the active list if it says so.  The
    pages of a fault or read are locked (PG_locked, not uptodate) until :meth:`unlock_at`'s
    time: reclaim skips them.  ``lock`` from an earlier call of the same read-ahead window
    shares one lock.  ``stall`` is True when some page got PG_workingset back: the disk wait
    is then a memory stall (``folio_wait_bit_common``) and the engine wraps it in
    ``k.memstall``.
``unlock_at(lock, when)``
    The read of the pages under ``lock`` completes at ``when`` (``unlock_page`` in the end_io).
``accessed(f, n)``
    ``mark_page_accessed`` on ``n`` resident pages of ``f`` (read hits).

What the modern base's reclaim calls (``Modern.shrink_zones`` / ``try_to_free_pages``):

``shrink(cz, prio, nr_to_reclaim, nr_scan, gfp, direct) -> (freed, scanned, cost_us)``
    One priority's file-LRU part of ``shrink_node`` for classzone ``cz``: ``nr_scan`` pages
    (the base's ``get_scan_count`` total for the file LRU) split over the two lists by size,
    scanned in SWAP_CLUSTER_MAX chunks (``shrink_node_memcg``), ``shrink_active_list`` only
    while ``inactive_is_low``.  ``freed`` pages are back in the zones' free counts.
``end_round()``
    ``snapshot_refaults`` at the end of ``do_try_to_free_pages`` / ``balance_pgdat``.
``size(cz) -> (inactive, active)``; ``pages(cz) -> int``
    File LRU sizes of zones ``<= cz`` (``lruvec_lru_size(..., reclaim_idx)``).
``check()``
    The LRU's own conservation: every resident page of every file is on exactly one list
    (raises ``AssertionError``); ``Model.check_pages`` calls it.

The mechanism (tree ``torvalds/linux``; ``rules`` picks the generation):

* Lists and pages.  Two lists per lruvec, ``inactive`` and ``active``, each a deque of runs
  (:class:`Run`: ``n`` pages of one file in one zone with the same flags), head at the right
  (``list_add``), tail at the left (``lru_to_page``).  A run's flags are PG_referenced,
  PG_workingset, PG_locked (while its read is in flight) and "faulted" (the young pte left by
  the access that faulted it in).  Which pages of a file are mapped, clean, dirty or under
  write-back is the file's count, apportioned over a run when it is scanned (the model's
  pages are counts; mapped pages are program text).
* VM_EXEC.  Program text is mapped ``PROT_READ | PROT_EXEC``, as a program's text is and as
  the real runner maps it (``csrc/vmreal.c`` OP_TEXT), so the two executable-page rules below
  apply to every mapped page; a file in :attr:`ClassicLRU.noexec` is mapped without VM_EXEC
  (the runner mapped text ``PROT_READ`` only when the issue's 3.4 % PSI was measured).
* Referenced (``page_referenced`` / ``folio_referenced``).  A mapped page's ptes are young in
  every mm that ran user code since the page was last scanned: the engine's record of what
  ran (``task.utime``), read for a file's mappers whenever reclaim or a fault looks at its
  pages (:meth:`ClassicLRU._update`; one epoch per reclaim pass, :meth:`ClassicLRU.refresh`),
  plus one young pte from the faulting access (the access that faulted completes when the
  task runs).  The count is ``referenced_ptes``; scanning clears them.
* ``shrink_active_list``: a referenced page of a ``VM_EXEC`` file mapping "gets one more trip
  around the active list"; every other page is deactivated (``ClearPageActive``; 4.20+ and
  6.1 ``SetPageWorkingset``) to the head of the inactive list.
* ``shrink_page_list`` -> ``page_check_references`` (4.15) / ``folio_check_references`` (6.1):
  referenced ptes -> PG_referenced set, and activate if PG_referenced was already set, or
  more than one pte was young, or the mapping is ``VM_EXEC``; else keep (back to the head of
  the inactive list).  2.6.36 activates on the already-set PG_referenced only: the two other
  rules are 3.3's (commits 34dbc67a644f "vmscan: promote shared file mapped pages" and
  c909e99364c8 "vmscan: activate executable pages after first usage").  No young pte -> reclaim: a mapped page is unmapped (``try_to_unmap``)
  and, clean, freed (``__remove_mapping``), leaving a shadow (``workingset_eviction``).
  Dirty pages get ``pageout`` (``__GFP_FS`` callers) and are kept; pages under write-back and
  locked pages are kept.
* How far the active list is shrunk: 2.6.36 ``inactive_file_is_low_global`` (``active >
  inactive``); 4.15 ``inactive_list_is_low`` (``inactive * ratio < active``, ratio
  ``int_sqrt(10 * gb)`` or 1, and 0 -- always deactivate -- when WORKINGSET_ACTIVATE moved
  since the last ``snapshot_refaults``, commit 2a2e48854d70, v4.12); 6.1 ``prepare_scan_count``
  (``sc->may_deactivate`` when the activations moved or ``inactive_is_low``).
* Refaults: :mod:`harness.workingset` of the generation given (none for 2.6.36: workingset.c
  is 3.15, commit a528910e12ec; its refaults are plain reads, inactive, never activated by
  distance).  Shadows are kept per file, oldest first; a refault of ``n`` pages takes the
  oldest ``n`` (FIFO: the longest distances).  A text fault reads the working set, whose
  non-resident pages are the evicted ones, so it takes shadows first; a file read goes through
  the file, so its misses are never-read pages first and refaults only once every page of the
  file has been read.  ``k.refaults`` counts every page read back after an eviction, also
  under 2.6.36 (the engine knows what the kernel did not record).

Departures: one lruvec for all zones (4.8+ is per node; 2.6.36 had one per zone), isolation
skips runs of zones above the classzone and puts them back at the head (4.15
``isolate_lru_pages``); the file LRU's scan total per priority is the base's (with its
``nr_saved_scan`` batching), split over the two lists by their sizes; runs are scanned
whole when locked (a locked page is never split off); pages under write-back are not rotated
to the tail when it ends (``rotate_reclaimable_page``); ``mark_page_accessed`` on read hits
takes a file's inactive runs oldest first, then its active ones (a read in the model names
no offsets); minor faults (a resident unmapped text page mapped again) do not touch the LRU.
"""
from __future__ import annotations

from collections import deque
from math import isqrt

from . import machine as M
from .workingset import Workingset

INACTIVE, ACTIVE = 0, 1

# run flags
REFERENCED = 1         # PG_referenced
WORKINGSET = 2         # PG_workingset
FAULTED = 4            # one young pte: the access that faulted the page in

RULES = ("2.6.36", "4.15", "6.1")
DEF_PRIORITY = 12


class Run:
    """``n`` pages of file ``f`` in zone ``zi`` next to each other on one list, with the same
    flags.  ``epoch``: the :meth:`ClassicLRU.refresh` at which their ptes were last cleared
    (a mm that ran after it has them young).  ``lock``: a one-item list ``[True]`` while the
    read is in flight (shared by the runs of one read, so a split run stays locked), else
    None."""

    __slots__ = ("f", "zi", "n", "flags", "epoch", "lock")

    def __init__(self, f, zi, n, flags, epoch, lock=None):
        self.f, self.zi, self.n, self.flags, self.epoch, self.lock = f, zi, n, flags, epoch, lock

    def locked(self) -> bool:
        return self.lock is not None and self.lock[0]

    def __repr__(self):
        return (f"<Run {self.f.name} z{self.zi} n={self.n} f={self.flags} e={self.epoch}"
                f"{' L' if self.locked() else ''}>")


class ClassicLRU:
    """The active and inactive file lists of one lruvec, with refault detection."""

    name = "classic"

    def __init__(self, k, rules: str = "6.1", workingset: str | None = "6.1"):
        if rules not in RULES:
            raise ValueError(f"lru: unknown rules {rules!r}; use one of {', '.join(RULES)}")
        self.k = k
        self.rules = rules
        total = sum(z.size - z.reserved for z in k.zones)
        self.ws = Workingset(workingset, totalram_pages=total) if workingset else None
        self.lists = (deque(), deque())
        self.nr = ([0, 0, 0], [0, 0, 0])          # pages per list per zone
        self.shadows = {}                          # id(f) -> deque of [shadow, nr]
        self.shadowed = {}                         # id(f) -> pages with a shadow
        self.epoch = 0                             # refreshes so far
        self.ran = {}                              # mm -> epoch at which it last ran
        self.last_utime = {}                       # pid -> utime at the last refresh
        self.mappers = {}                          # id(f) -> the mms mapping it
        self._seen_pid = 1                         # tasks below this pid are indexed
        self._tasks_of = {}                        # id(f) -> live tasks with f as text
        self._checked = {}                         # id(f) -> epoch of its last _update
        self.noexec = set()                        # ids of files mapped without VM_EXEC
        self.snap_refaults = 0                     # lruvec->refaults (snapshot_refaults)
        self.activate_count = 0                    # WORKINGSET_ACTIVATE(_FILE)
        # /proc/vmstat-like counters
        self.nr_evicted = 0
        self.nr_activated = 0
        self.nr_deactivated = 0
        self.nr_rotated = 0
        self.nr_refault_stall = 0                  # refaulted pages flagged workingset

    # ------------------------------------------------------------------ sizes
    def size(self, cz: int = 2):
        ni, na = self.nr
        return sum(ni[: cz + 1]), sum(na[: cz + 1])

    def pages(self, cz: int = 2) -> int:
        i, a = self.size(cz)
        return i + a

    # ------------------------------------------------------------------ list primitives
    def _push(self, lst: int, f, zi: int, n: int, flags: int, epoch: int, lock=None):
        """``list_add`` at the head of list ``lst``, merged into the head run when equal."""
        if n <= 0:
            return None
        d = self.lists[lst]
        if d and lock is None:
            h = d[-1]
            if (h.f is f and h.zi == zi and h.flags == flags
                    and (h.lock is None or not h.lock[0])
                    and (h.epoch == epoch or self._same_age(f, h.epoch, epoch))):
                h.n += n
                h.lock = None
                self.nr[lst][zi] += n
                return h
        r = Run(f, zi, n, flags, epoch, lock)
        d.append(r)
        self.nr[lst][zi] += n
        return r

    def _same_age(self, f, e1: int, e2: int) -> bool:
        """Pages of ``f`` scanned at refreshes ``e1`` and ``e2`` answer every future
        :meth:`referenced_ptes` alike: no mm mapping ``f`` ran between the two."""
        lo, hi = (e1, e2) if e1 < e2 else (e2, e1)
        ran = self.ran
        for m in self.mappers.get(id(f), ()):
            if lo < ran.get(m, 0) <= hi:
                return False
        return True

    def _take(self, lst: int, r: Run, n: int) -> Run:
        """Split ``n`` pages off the tail run ``r`` (``d[0]``) and remove them from the list."""
        d = self.lists[lst]
        self.nr[lst][r.zi] -= n
        if n >= r.n:
            d.popleft()
            return r
        r.n -= n
        return Run(r.f, r.zi, n, r.flags, r.epoch, r.lock)

    # ------------------------------------------------------------------ referenced
    def refresh(self):
        """A reclaim pass begins: a new epoch.  Which mms ran since a file was last looked at
        is read when its pages are (:meth:`_update`): the same answers as reading every task
        now, at the cost of the mappings reclaim actually walks."""
        self.epoch += 1
        k = self.k
        if self._seen_pid != k.next_pid:
            by_pid = k.by_pid
            tasks_of = self._tasks_of
            for pid in range(self._seen_pid, k.next_pid):
                t = by_pid.get(pid)
                if t is not None and t.mm is not None and t.mm.text is not None:
                    tasks_of.setdefault(id(t.mm.text), []).append(t)
                    self._checked.pop(id(t.mm.text), None)
            self._seen_pid = k.next_pid

    def _update(self, f):
        """The engine's record of what ran, for the tasks mapping ``f``: a mm some task of
        which gained user time since ``f`` was last looked at ran since then (its ptes of
        ``f`` are young for every page scanned before)."""
        fid = id(f)
        e = self.epoch
        if self._checked.get(fid) == e:
            return
        self._checked[fid] = e
        tasks = self._tasks_of.get(fid)
        if not tasks:
            self.mappers[fid] = ()
            return
        last = self.last_utime
        ran = self.ran
        alive = []
        mms = {}                                      # (a dict: ordered, no duplicates)
        for t in tasks:
            mm = t.mm
            if mm is None or mm.text is not f:        # exited, or its text unmapped
                continue
            alive.append(t)
            # the mm itself as the key, not id(mm): an exited task's mm is freed and its id
            # given to a new one, which would inherit its epoch (and with it a young pte) in
            # an order that depends on the Python heap -- two runs of one seed differed
            m = mm
            u = t.utime
            if last.get(t.pid, 0) != u:
                last[t.pid] = u
                ran[m] = e
            mms[m] = None
        if len(alive) != len(tasks):
            self._tasks_of[fid] = alive
        self.mappers[fid] = tuple(mms)

    def referenced_ptes(self, r: Run) -> int:
        """``page_referenced``'s count for a mapped page of run ``r`` (0, 1 or 2 = "more")."""
        refs = 0
        e = r.epoch
        ran = self.ran
        for m in self.mappers.get(id(r.f), ()):
            if ran.get(m, 0) > e:
                refs += 1
                if refs > 1:
                    return 2
        if not refs and r.flags & FAULTED:
            refs = 1
        return refs

    def is_vm_exec(self, f) -> bool:
        """The file is mapped ``VM_EXEC`` (program text, every mapping the engine makes), unless
        its id is in :attr:`noexec`."""
        return id(f) not in self.noexec

    def _apportion(self, f, zi: int, n: int):
        """How many of ``n`` pages of ``f`` in zone ``zi`` are mapped, clean, dirty, under
        write-back: in proportion to the file's counts (largest kinds first for the rest)."""
        m, c, d, w = kinds = (f.mapped[zi], f.clean[zi], f.dirty[zi], f.wb[zi])
        total = m + c + d + w
        if total == m:                         # all mapped (program text): the usual case
            return [n, 0, 0, 0]
        if total == c:                         # all clean cache
            return [0, n, 0, 0]
        if total <= 0:
            raise AssertionError(f"lru: run of {f.name} zone {zi} has no resident pages")
        if n >= total:
            return list(kinds)
        out = [n * x // total for x in kinds]
        left = n - sum(out)
        for i in sorted(range(4), key=lambda i: -kinds[i]):
            if left <= 0:
                break
            room = kinds[i] - out[i]
            add = room if room < left else left
            out[i] += add
            left -= add
        return out

    # ------------------------------------------------------------------ eviction / refault
    def _evict(self, f, zi: int, n: int, kind: str, workingset: bool):
        """``__remove_mapping`` -> ``workingset_eviction``: free ``n`` clean pages (mapped
        ones were unmapped first), leaving one shadow."""
        z = self.k.zones[zi]
        if kind == "mapped":
            f.mapped[zi] -= n
            z.mapped -= n
        else:
            f.clean[zi] -= n
            z.clean -= n
        z.free += n
        ws = self.ws
        shadow = ws.evict(bool(workingset), n) if ws is not None else 0
        fid = id(f)
        q = self.shadows.get(fid)
        if q is None:
            q = self.shadows[fid] = deque()
        q.append([shadow, n])
        self.shadowed[fid] = self.shadowed.get(fid, 0) + n
        self.nr_evicted += n

    def _sync_lruvec(self):
        lv = self.ws.lruvec
        ni, na = self.nr
        lv.nr_inactive_file = ni[0] + ni[1] + ni[2]
        lv.nr_active_file = na[0] + na[1] + na[2]
        zs = self.k.zones
        lv.nr_active_anon = sum(z.anon for z in zs)
        lv.nr_inactive_anon = sum(z.swapc for z in zs)
        lv.nr_swap_pages = self.k.nr_swap_pages

    def _refault(self, f, n: int):
        """Take shadows for ``n`` pages read back: [(pages, activate, workingset), ...]."""
        q = self.shadows.get(id(f))
        out = []
        left = n
        ws = self.ws
        if ws is not None:
            self._sync_lruvec()
        while left > 0 and q:
            head = q[0]
            take = head[1] if head[1] <= left else left
            if take == head[1]:
                q.popleft()
            else:
                head[1] -= take
            left -= take
            if ws is not None:
                act, wsf = ws.refault(head[0], file=True, nr=take)
                if act:
                    self.activate_count += take
            else:
                act = wsf = False
            out.append((take, act, wsf))
        got = n - left
        if got:
            self.shadowed[id(f)] -= got
            self.k.refaults += got
        return out

    # ------------------------------------------------------------------ the engine's calls
    def add(self, f, got, how: str, lock=None):
        """``add_to_page_cache_lru`` of the pages just assigned to ``f`` (see the module
        docstring).  Returns (lock, stall)."""
        n = got[0] + got[1] + got[2]
        if n <= 0:
            return lock, False
        flags = 0
        if how == "write":
            refault = 0
            flags = REFERENCED                    # mark_page_accessed in the write path
        else:
            if lock is None:
                lock = [True]
            shadowed = self.shadowed.get(id(f), 0)
            if how == "fault":
                refault = n if n < shadowed else shadowed
                flags = FAULTED
            else:
                never = f.size - (f.resident - n) - shadowed
                if never < 0:
                    never = 0
                refault = n - never if n > never else 0
                if refault > shadowed:
                    refault = shadowed
                flags = REFERENCED                # filemap_read: mark_page_accessed
        plan = self._refault(f, refault) if refault > 0 else []
        stall = False
        # zones of the pages: in the order the allocator filled them (highest zone first)
        zones = [(zi, got[zi]) for zi in (2, 1, 0) if got[zi]]
        self._update(f)                 # what ran before the fault is not a reference to it
        epoch = self.epoch
        taken = sum(p for p, _, _ in plan)
        if n > taken:
            plan.append((n - taken, False, False))
        for pages, act, wsf in plan:
            if wsf:
                stall = True
                self.nr_refault_stall += pages
            fl = flags | (WORKINGSET if wsf else 0)
            lst = ACTIVE if act else INACTIVE
            while pages > 0:
                zi, avail = zones[0]
                m = pages if pages < avail else avail
                self._push(lst, f, zi, m, fl, epoch, lock if how != "write" else None)
                pages -= m
                if m == avail:
                    zones.pop(0)
                else:
                    zones[0] = (zi, avail - m)
        self.k.changed()
        return lock, stall

    def unlock_at(self, lock, when: int):
        if lock is not None:
            self.k.at(when, self._unlock, lock)

    def _unlock(self, lock):
        lock[0] = False
        self.k.changed()

    def accessed(self, f, n: int):
        """``mark_page_accessed`` (``mm/swap.c``) on ``n`` resident pages of ``f``: inactive
        and PG_referenced -> ``activate_page`` (+ ``workingset_activation``); inactive ->
        PG_referenced; active -> PG_referenced."""
        if n <= 0:
            return
        changed = False
        for lst in (INACTIVE, ACTIVE):
            if n <= 0:
                break
            d = self.lists[lst]
            keep = deque()
            moved = []
            while d:
                r = d.popleft()
                if n > 0 and r.f is f and not r.locked():
                    take = r.n if r.n <= n else n
                    n -= take
                    if take < r.n:
                        keep.append(Run(r.f, r.zi, r.n - take, r.flags, r.epoch, r.lock))
                        r = Run(r.f, r.zi, take, r.flags, r.epoch, r.lock)
                    if lst == INACTIVE and r.flags & REFERENCED:
                        self.nr[INACTIVE][r.zi] -= take
                        r.flags &= ~REFERENCED
                        moved.append(r)
                        if self.ws is not None:
                            self.ws.activation(take)
                        changed = True
                        continue
                    if not r.flags & REFERENCED:
                        r.flags |= REFERENCED
                        changed = True
                keep.append(r)
            self.lists[lst].extend(keep)
            for r in moved:
                self._push(ACTIVE, r.f, r.zi, r.n, r.flags, r.epoch, r.lock)
                self.nr_activated += r.n
        if changed:
            self.k.changed()

    # ------------------------------------------------------------------ reclaim
    def inactive_is_low(self, cz: int) -> bool:
        """Should the active file list be shrunk?  (See the module docstring per rules.)"""
        inactive, active = self.size(cz)
        if self.rules == "2.6.36":
            return active > inactive                       # inactive_file_is_low_global
        if self.activate_count != self.snap_refaults:      # 4.15 refaults / 6.1 may_deactivate
            return active > 0
        gb = (inactive + active) >> (30 - 12)
        ratio = isqrt(10 * gb) if gb else 1
        return inactive * ratio < active

    def end_round(self):
        """``snapshot_refaults``."""
        self.snap_refaults = self.activate_count

    def _isolate(self, lst: int, cz: int, nr: int) -> list:
        """``isolate_lru_pages``: up to ``nr`` pages from the tail (a locked run whole), runs of
        zones above ``cz`` put back at the head (not counted).  Returns the runs taken off."""
        d = self.lists[lst]
        counts = self.nr[lst]
        out = []
        skipped = None
        taken = 0
        budget = len(d)
        while taken < nr and budget > 0:
            budget -= 1
            r = d[0]
            n = r.n
            if r.zi > cz:
                d.popleft()
                counts[r.zi] -= n
                if skipped is None:
                    skipped = []
                skipped.append(r)
                continue
            want = nr - taken
            if n <= want or (r.lock is not None and r.lock[0]):
                d.popleft()
            else:
                r.n = n - want
                r = Run(r.f, r.zi, want, r.flags, r.epoch, r.lock)
                n = want
            counts[r.zi] -= n
            taken += n
            out.append(r)
        if skipped:
            for r in skipped:
                d.append(r)
                counts[r.zi] += r.n
        return out

    def shrink(self, cz: int, prio: int, nr_to_reclaim: int, nr_scan: int, gfp: int,
               direct: bool):
        """One priority of ``shrink_node`` on the file LRU.  Returns (freed, scanned, cost)."""
        inactive, active = self.size(cz)
        total = inactive + active
        if total <= 0 or nr_scan <= 0:
            return 0, 0, 0.0
        self.refresh()
        nr_i = nr_scan * inactive // total
        nr_a = nr_scan - nr_i
        freed = scanned = ptes = 0
        # 6.1 prepare_scan_count: may_deactivate decided once per shrink_node
        deact = self.inactive_is_low(cz) if self.rules == "6.1" else None
        early_stop = not (direct and prio == DEF_PRIORITY)
        while nr_i > 0 or nr_a > 0:
            if nr_i > 0:
                s = min(nr_i, M.SWAP_CLUSTER_MAX)
                nr_i -= s
                f, sc, p = self.shrink_inactive(cz, s, gfp)
                freed += f
                scanned += sc
                ptes += p
            if nr_a > 0:
                s = min(nr_a, M.SWAP_CLUSTER_MAX)
                nr_a -= s
                if deact if deact is not None else self.inactive_is_low(cz):
                    sc, p = self.shrink_active(cz, s)
                    scanned += sc
                    ptes += p
            if freed >= nr_to_reclaim and early_stop:
                break
        if scanned:
            self.k.changed()
        c = self.k.costs
        return freed, scanned, scanned * c.lru_scan_us + ptes * c.pte_scan_us

    def shrink_active(self, cz: int, nr: int):
        """``shrink_active_list``.  Returns (scanned, ptes looked at)."""
        scanned = ptes = 0
        e = self.epoch
        set_ws = WORKINGSET if self.rules == "6.1" else 0
        rotate, deact = [], []
        mappers, ran, noexec = self.mappers, self.ran, self.noexec
        checked = self._checked
        for r in self._isolate(ACTIVE, cz, nr):
            n = r.n
            scanned += n
            if r.lock is not None and r.lock[0]:   # page_referenced: trylock fails, no vm_flags
                deact.append(r)
                continue
            f = r.f
            zi = r.zi
            if checked.get(id(f)) != e:
                self._update(f)
            mapped = f.mapped[zi]
            if mapped and mapped + f.clean[zi] + f.dirty[zi] + f.wb[zi] != mapped:
                mapped = self._apportion(f, zi, n)[0]
            elif mapped > n:
                mapped = n
            refs = 0
            if mapped:
                ms = mappers.get(id(f), ())
                ptes += mapped * (len(ms) or 1)
                # referenced_ptes, inline
                re = r.epoch
                for m in ms:
                    if ran.get(m, 0) > re:
                        refs += 1
                        if refs > 1:
                            break
                if not refs and r.flags & FAULTED:
                    refs = 1
            r.epoch = e
            r.flags &= ~FAULTED
            if refs and id(f) not in noexec:
                # "one more trip around the active list" for the mapped pages
                if mapped < n:
                    deact.append(Run(f, zi, n - mapped, r.flags, e))
                    r.n = mapped
                rotate.append(r)
                continue
            deact.append(r)
        push = self._push
        if rotate:
            rotated = 0
            for r in rotate:
                push(ACTIVE, r.f, r.zi, r.n, r.flags, r.epoch, r.lock)
                rotated += r.n
            self.nr_rotated += rotated
            if self.ws is not None:
                self.ws.activation(rotated, by_reclaim=True)
        for r in deact:
            push(INACTIVE, r.f, r.zi, r.n, r.flags | set_ws, r.epoch, r.lock)
            self.nr_deactivated += r.n
        return scanned, ptes

    def shrink_inactive(self, cz: int, nr: int, gfp: int):
        """``shrink_inactive_list`` -> ``shrink_page_list``.  Returns (freed, scanned, ptes)."""
        k = self.k
        freed = scanned = ptes = 0
        e = self.epoch
        keep, activate = [], []
        mappers, ran, noexec = self.mappers, self.ran, self.noexec
        # 3.3+ (commits 34dbc67a644f, c909e99364c8): a page young in more than one mm, or
        # mapped VM_EXEC, is activated on its first reference; 2.6.36 only on the second
        first_use = self.rules != "2.6.36"
        checked = self._checked
        evict = self._evict
        for r in self._isolate(INACTIVE, cz, nr):
            n = r.n
            scanned += n
            if r.lock is not None and r.lock[0]:     # trylock_page fails: keep
                keep.append(r)
                continue
            f, zi = r.f, r.zi
            if checked.get(id(f)) != e:
                self._update(f)
            m0 = f.mapped[zi]
            if m0 and m0 + f.clean[zi] + f.dirty[zi] + f.wb[zi] == m0:
                mapped, clean, dirty, wb = n, 0, 0, 0        # all text: the usual case
            else:
                mapped, clean, dirty, wb = self._apportion(f, zi, n)
            rflags = r.flags
            flags = rflags & ~(FAULTED | REFERENCED)
            if mapped:
                ms = mappers.get(id(f), ())
                ptes += mapped * (len(ms) or 1)
                # referenced_ptes, inline
                refs = 0
                re = r.epoch
                for m in ms:
                    if ran.get(m, 0) > re:
                        refs += 1
                        if refs > 1:
                            break
                if not refs and rflags & FAULTED:
                    refs = 1
                if refs:
                    # page_check_references: SetPageReferenced; activate on the second
                    # reference, or more than one young pte, or VM_EXEC
                    if mapped == n:
                        r.flags, r.epoch, r.lock = flags | REFERENCED, e, None
                        part = r
                    else:
                        part = Run(f, zi, mapped, flags | REFERENCED, e)
                    if rflags & REFERENCED or first_use and (refs > 1 or id(f) not in noexec):
                        activate.append(part)
                    else:
                        keep.append(part)
                else:
                    evict(f, zi, mapped, "mapped", rflags & WORKINGSET)   # try_to_unmap, free
                    freed += mapped
            if clean:
                evict(f, zi, clean, "clean", rflags & WORKINGSET)
                freed += clean
            if dirty:
                if gfp & M.GFPF_FS:
                    k.start_writeback(f, zi, dirty)              # pageout
                keep.append(Run(f, zi, dirty, flags, e))
            if wb:
                keep.append(Run(f, zi, wb, flags, e))
        push = self._push
        if activate:
            act = 0
            for r in activate:
                push(ACTIVE, r.f, r.zi, r.n, r.flags, r.epoch)
                act += r.n
            self.nr_activated += act
            if self.ws is not None:
                self.ws.activation(act, by_reclaim=True)
        for r in keep:
            push(INACTIVE, r.f, r.zi, r.n, r.flags, r.epoch, r.lock)
        if freed:
            k.changed()
        return freed, scanned, ptes

    # ------------------------------------------------------------------ checks
    def check(self):
        """Every resident page of every file on exactly one list; the list counts right."""
        per = {}
        for lst in (INACTIVE, ACTIVE):
            counts = [0, 0, 0]
            for r in self.lists[lst]:
                if r.n <= 0:
                    raise AssertionError(f"lru: empty run {r!r}")
                counts[r.zi] += r.n
                key = (id(r.f), r.zi)
                per[key] = per.get(key, 0) + r.n
            if counts != self.nr[lst]:
                raise AssertionError(f"lru: list {lst} holds {counts}, its count says "
                                     f"{self.nr[lst]}")
        for f in self.k.files.values():
            for zi in range(3):
                res = f.clean[zi] + f.mapped[zi] + f.dirty[zi] + f.wb[zi]
                have = per.get((id(f), zi), 0)
                if res != have:
                    raise AssertionError(f"lru: file {f.name} zone {zi}: {res} resident, "
                                         f"{have} on the LRU")

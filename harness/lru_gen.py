"""The multi-gen LRU of Linux 6.1 (``CONFIG_LRU_GEN``) on page counts, and its thrashing guard.

Tree ``torvalds/linux`` v6.1, ``mm/vmscan.c`` (the ``CONFIG_LRU_GEN`` part), ``mm/swap.c``
``folio_add_lru``, ``include/linux/mm_inline.h`` ``lru_gen_add_folio``, ``mm/workingset.c``
``lru_gen_eviction``/``lru_gen_refault``.  What is modelled:

* **Generations** (``struct lru_gen_struct``): sequence numbers ``min_seq`` (the oldest) to
  ``max_seq`` (the youngest), between ``MIN_NR_GENS`` (2) and ``MAX_NR_GENS`` (4) of them;
  each has a birth time, ``timestamps[gen]``, set by ``inc_max_seq`` when the generation is
  made.  ``lru_gen_init_lruvec``: ``max_seq = MIN_NR_GENS + 1``, ``min_seq = 0``, generations
  0..3 born at boot.  Pages are counted per generation and per file (:class:`Generations`).
* **Where a new page goes** (``lru_gen_add_folio``): a page added in a page fault is active
  (``folio_add_lru``: ``lru_gen_in_fault()`` -> ``folio_set_active``) and joins the youngest
  generation; a clean page added through a file descriptor (``read``/``write``) joins the
  oldest.
* **Aging** (``try_to_inc_max_seq`` -> ``walk_mm``/``iterate_mm_list``, then ``inc_max_seq``):
  the page tables of every mm that ran since the last walk (``lru_gen_use_mm`` on the context
  switch sets its bit; ``should_skip_mm`` skips the others) are walked, every page behind a
  young pte goes to the youngest generation (``folio_update_gen``), the young bits are
  cleared; then ``inc_max_seq`` makes a new, empty generation born now
  (``WRITE_ONCE(lrugen->timestamps[next], jiffies)``), first folding the oldest into the next
  (``inc_min_seq``) if there are ``MAX_NR_GENS`` already.  ``should_run_aging`` decides when:
  always with ``MIN_NR_GENS`` generations (eviction would stall), never with more than
  ``MIN_NR_GENS + 1``, and with exactly that many when the youngest holds more than
  ``1/MIN_NR_GENS`` of the pages or the oldest-but-one fewer than ``1/(MIN_NR_GENS + 2)``.
* **Eviction** (``evict_folios`` -> ``scan_folios``/``isolate_folio``, ``shrink_folio_list``,
  then ``try_to_inc_min_seq``): up to ``MIN_LRU_BATCH`` pages at a time from the oldest
  generation.  A mapped page whose pte is young, or one that is locked for a read in flight,
  is kept (``folio_check_references``: a referenced VM_EXEC file page is FOLIOREF_ACTIVATE;
  ``trylock`` fails) and goes back to the youngest generation (``evict_folios``:
  ``folio_set_active`` before ``move_folios_to_lru``); a mapped page without a young pte is
  unmapped and freed like a clean one; a dirty page gets its write-back started and, like one
  under write-back, is put in the oldest-but-one generation ("don't add rejected pages to the
  oldest generation"); pages of zones above the caller's classzone are moved there too
  (``scan_folios``: ``zone > sc->reclaim_idx`` -> ``folio_inc_gen``).  An empty oldest
  generation is dropped while more than ``MIN_NR_GENS`` remain.
* **The shrinker's loop** (:func:`shrink_lruvec`: ``lru_gen_shrink_lruvec`` with
  ``get_nr_to_scan``): ``nr_to_scan = total >> priority``; when aging is due, direct reclaim
  ages itself (but not at ``DEF_PRIORITY``) and kswapd leaves it to ``lru_gen_age_node``.
* **The thrashing guard** (:func:`age_node`: ``lru_gen_age_node`` -> ``age_lruvec``, called by
  kswapd at the top of each ``balance_pgdat`` priority, ``kswapd_age_node``): with ``min_ttl``
  set, the lruvec is not reclaimable while its oldest file generation was born less than
  ``min_ttl`` ago (``time_is_after_jiffies(birth + min_ttl)``), nor when ``total >> priority``
  is 0 below ``DEF_PRIORITY`` ("the size is likely too small to be helpful"); if no lruvec is
  and the order is 0, kswapd calls ``out_of_memory()`` under ``mutex_trylock(&oom_lock)``.
  The ``memcgs_need_aging`` flag of ``scan_control`` (clear at each ``balance_pgdat``) makes
  the first call of a balance pass only set it, and an eviction that reclaimed
  ``MIN_LRU_BATCH`` pages without needing aging clear it again.  (Later kernels, Yu Zhao's
  "remove aging fairness safeguard", Dec 2022, moved the test into ``lruvec_is_reclaimable``
  with the same TTL comparison.)

Departures:

* Only file pages are on the generations (the file type; 6.1 scans anon too when it can swap:
  ``for (type = !can_swap; ...)``).  Anonymous pages keep the modern base's reclaim, and the
  TTL test reads ``min_seq[LRU_GEN_FILE]`` as 6.1 does.  One lruvec (no memcg, one node).
* Pages are counts per (generation, file), so which of a file's pages a generation holds is
  not known: the pages a walk promotes (a file's mapped pages, at most) are taken from its
  oldest generations first, and a batch taken from the oldest generation is split between the
  file's mapped, clean, dirty and under-write-back pages, and between its zones, in
  proportion to their counts.
* "A young pte" is the engine's record of who ran: a task whose user time grew since the last
  walk has touched its text working set (``mm.compute`` maps it before running), so every
  mapped page of its program's file is young.  A look-around in eviction
  (``lru_gen_look_around``) clears no young bit here; only the walk does.  Text a task in D
  state is faulting in counts as locked (the engine maps a major fault's pages from the
  moment they are allocated, as :func:`harness.modern.text_in_use` explains).
* No tiers, no PID controller, no refault feedback (``lru_gen_refault``'s tier counters): a
  page read twice through a file descriptor is not protected; no Bloom filters (the walk
  visits exactly the mm's that ran).
* The engine tells the generations of every page-cache page it adds through ``k.lru.add``
  (the API of :mod:`harness.lru`, whose place this LRU takes); :meth:`MultiGenLRU.sync`
  catches any other change of a file's resident count when reclaim looks (placement is the
  same, since generations change only inside reclaim).
* jiffies are the engine's (HZ 100); ``min_ttl_ms`` 1000 is 100 jiffies at HZ 100 as at
  HZ 250 (250), so the test is the same.
"""
from __future__ import annotations

from . import machine as M
from .blocks import ReclaimRound, lru_counts, note_reclaim
from .engine import CPU
from .modern import shrink_slab, swap_out_anon

MIN_NR_GENS = 2                   # include/linux/mmzone.h
MAX_NR_GENS = 4
MIN_LRU_BATCH = 64                # BITS_PER_LONG on a 64-bit build
DEF_PRIORITY = 12


class Generations:
    """``lrugen`` of the file type of one lruvec: ``min_seq``..``max_seq``, each generation's
    birth (jiffies) and its pages per owner (file name -> count), in order of arrival."""

    __slots__ = ("max_seq", "min_seq", "timestamps", "pages", "sizes")

    def __init__(self, now_j: int):
        """``lru_gen_init_lruvec``."""
        self.max_seq = MIN_NR_GENS + 1
        self.min_seq = 0
        self.timestamps = {seq: now_j for seq in range(MIN_NR_GENS + 2)}
        self.pages = {seq: {} for seq in range(MIN_NR_GENS + 2)}
        self.sizes = {seq: 0 for seq in range(MIN_NR_GENS + 2)}    # nr_pages per generation

    # ---- reading
    def nr_gens(self) -> int:
        return self.max_seq - self.min_seq + 1

    def size(self, seq: int) -> int:
        return self.sizes[seq]

    def total(self) -> int:
        return sum(self.sizes.values())

    def held(self, key) -> int:
        return sum(g.get(key, 0) for g in self.pages.values())

    def birth(self) -> int:
        """``timestamps[lru_gen_from_seq(min_seq[LRU_GEN_FILE])]``."""
        return self.timestamps[self.min_seq]

    # ---- pages in and out
    def add(self, key, n: int, hot: bool):
        """``lru_gen_add_folio``: an active page (added in a fault) to ``max_seq``, a clean
        inactive one to ``min_seq``."""
        if n <= 0:
            return
        seq = self.max_seq if hot else self.min_seq
        g = self.pages[seq]
        g[key] = g.get(key, 0) + n
        self.sizes[seq] += n

    def _take(self, seq: int, key, n: int) -> int:
        g = self.pages[seq]
        have = g.get(key, 0)
        n = min(n, have)
        if n:
            if have == n:
                del g[key]
            else:
                g[key] = have - n
            self.sizes[seq] -= n
        return n

    def move(self, key, n: int, frm: int, to: int) -> int:
        n = self._take(frm, key, n)
        if n:
            g = self.pages[to]
            g[key] = g.get(key, 0) + n
            self.sizes[to] += n
        return n

    def remove(self, key, n: int) -> int:
        """Pages of ``key`` gone without reclaim (truncated, or seen gone by ``sync``): from the
        oldest generation up."""
        left = n
        for seq in range(self.min_seq, self.max_seq + 1):
            if left <= 0:
                break
            left -= self._take(seq, key, left)
        return n - left

    def promote(self, key, n: int) -> int:
        """``folio_update_gen`` for ``n`` young pages of ``key``: into ``max_seq``, from the
        oldest generations first.  Returns pages moved."""
        left = n
        for seq in range(self.min_seq, self.max_seq):
            if left <= 0:
                break
            left -= self.move(key, left, seq, self.max_seq)
        return n - left

    # ---- generations
    def should_run_aging(self, priority: int) -> tuple[bool, int]:
        """``should_run_aging`` (file type only): (need aging, ``nr_to_scan = total >> priority``)."""
        sizes, max_seq = self.sizes, self.max_seq
        total = sum(sizes.values())
        nr_to_scan = total >> priority
        if self.min_seq + MIN_NR_GENS > max_seq:
            return True, nr_to_scan
        if self.min_seq + MIN_NR_GENS < max_seq:
            return False, nr_to_scan
        young = sizes[max_seq]
        old = sizes.get(max_seq - MIN_NR_GENS, 0)
        if young * MIN_NR_GENS > total:
            return True, nr_to_scan
        if old * (MIN_NR_GENS + 2) < total:
            return True, nr_to_scan
        return False, nr_to_scan

    def inc_min_seq(self):
        """``inc_min_seq``: the oldest generation's pages into the next one, then drop it."""
        old = self.pages.pop(self.min_seq)
        nxt = self.pages[self.min_seq + 1]
        for key, n in old.items():
            nxt[key] = nxt.get(key, 0) + n
        self.sizes[self.min_seq + 1] += self.sizes.pop(self.min_seq)
        del self.timestamps[self.min_seq]
        self.min_seq += 1

    def try_to_inc_min_seq(self) -> bool:
        """``try_to_inc_min_seq``: drop empty oldest generations while more than
        ``MIN_NR_GENS`` remain.  Returns whether ``min_seq`` moved."""
        moved = False
        while self.nr_gens() > MIN_NR_GENS and not self.pages[self.min_seq]:
            del self.pages[self.min_seq]
            del self.sizes[self.min_seq]
            del self.timestamps[self.min_seq]
            self.min_seq += 1
            moved = True
        return moved

    def inc_max_seq(self, now_j: int):
        """``inc_max_seq``: a new youngest generation born now (after folding the oldest into
        the next if there are ``MAX_NR_GENS``)."""
        if self.nr_gens() >= MAX_NR_GENS:
            self.inc_min_seq()
        self.max_seq += 1
        self.timestamps[self.max_seq] = now_j
        self.pages[self.max_seq] = {}
        self.sizes[self.max_seq] = 0

    def is_reclaimable(self, now_j: int, min_ttl_j: int, priority: int) -> bool:
        """``age_lruvec``'s answer with ``min_ttl`` set: False while the oldest generation is
        younger than ``min_ttl`` (``time_is_after_jiffies(birth + min_ttl)``) or, below
        ``DEF_PRIORITY``, when ``total >> priority`` is 0."""
        if now_j < self.birth() + min_ttl_j:
            return False
        _need, nr_to_scan = self.should_run_aging(priority)
        return not (not nr_to_scan and priority != DEF_PRIORITY)


# ---------------------------------------------------------------------------- on the engine
def _free_clean(k, f, cz: int, n: int) -> tuple[int, int | None]:
    """Free up to ``n`` clean unmapped cache pages of ``f`` from zones ``cz`` down
    (``__remove_mapping``).  Returns (freed, zone of the first)."""
    left, first = n, None
    for zi in range(cz, -1, -1):
        take = min(left, f.clean[zi])
        if take:
            f.clean[zi] -= take
            k.zones[zi].clean -= take
            k.zones[zi].free += take
            left -= take
            if first is None:
                first = zi
    return n - left, first


def _low(f, cz: int):
    """``f``'s mapped, clean, dirty and under-write-back pages in zones ``<= cz``."""
    m = c = d = w = 0
    for zi in range(cz + 1):
        m += f.mapped[zi]
        c += f.clean[zi]
        d += f.dirty[zi]
        w += f.wb[zi]
    return m, c, d, w


class MultiGenLRU:
    """The file generations of the one lruvec and what reclaim does with them on the engine's
    files: ``k.lru`` of a policy that mixes in :class:`LruGenReclaim`, with the API of
    :class:`harness.lru.ClassicLRU` (``add``, ``unlock_at``, ``accessed`` from the engine;
    ``shrink``, ``end_round``, ``size``, ``pages``, ``check``), so it takes the classic
    LRU's place.

    Refaults (``lru_gen_eviction`` / ``lru_gen_refault``): an evicted batch leaves a shadow
    holding ``min_seq`` at eviction (the token) with its file, oldest first; pages a fault or
    read brings back take the oldest shadows (a fault: shadows first; a read: pages never read
    first, as in :mod:`harness.lru`).  ``k.refaults`` counts every page read back, as the
    classic LRU's does; a refault in a page fault whose token still equals ``min_seq`` gets
    PG_workingset (``lru_gen_in_fault()``), so its read is a memory stall.  The read's pages
    are locked while a task waits for them in D state (the engine's ``dstate``: locked pages
    of program text are kept by eviction); ``unlock_at`` and ``accessed`` (tiers) do nothing."""

    def __init__(self, k, min_ttl_ms: int = 0):
        self.k = k
        self.shadows = {}         # file name -> [[min_seq at eviction, pages], ...] oldest first
        self.gens = Generations(k.now // M.JIFFY_US)
        self.min_ttl_j = -(-min_ttl_ms * M.HZ // 1000)        # msecs_to_jiffies
        self.seen = {}            # file name -> pages the generations hold for it
        self.walked = {}          # pid -> utime at the last walk (mm_state: the mm_list bit)
        self.need_aging = False   # scan_control.memcgs_need_aging (kswapd's current pass)
        self.synced = -1          # k.version at the last sync


    # ---- the harness.lru API
    def add(self, f, got, how: str, lock=None):
        """``add_to_page_cache_lru`` -> ``lru_gen_refault`` and ``lru_gen_add_folio``: the
        pages of a fault to the youngest generation, of a read or write to the oldest.
        Returns (lock, stall)."""
        n = sum(got)
        if n <= 0:
            return lock, False
        stall = False
        sh = self.shadows.get(f.name)
        if sh and how != "write":
            held = sum(x[1] for x in sh)
            if how == "fault":
                back = min(n, held)
            else:                                     # never-read pages come first
                never = max(0, f.size - (f.resident - n) - held)
                back = min(held, max(0, n - never))
            left = back
            while left > 0 and sh:
                seq, m = sh[0]
                take = min(m, left)
                if seq == self.gens.min_seq and how == "fault":
                    stall = True                      # the token matches, in a fault
                if take == m:
                    sh.pop(0)
                else:
                    sh[0][1] = m - take
                left -= take
            self.k.refaults += back
        self.gens.add(f.name, n, hot=how == "fault")
        self.seen[f.name] = self.seen.get(f.name, 0) + n
        return lock, stall

    def unlock_at(self, lock, when: int):
        """The read is done; locked text is the faulting task's D state here."""

    def accessed(self, f, n: int):
        """``folio_mark_accessed``: tiers are not modelled."""

    def shrink(self, cz: int, prio: int, nr_to_reclaim: int, nr_scan: int, gfp: int,
               direct: bool):
        """``lru_gen_shrink_lruvec`` for a caller of the classic API (``nr_scan`` unused: MGLRU
        scans ``total >> priority``).  Returns (freed, scanned, cost)."""
        rr = ReclaimRound()
        scanned, cost = self.shrink_lruvec(self.k, rr, cz, gfp, nr_to_reclaim, prio,
                                           not direct)
        return rr.freed, scanned, cost

    def end_round(self):
        """No ``snapshot_refaults`` (no refault feedback)."""

    def pages(self, cz: int = 2) -> int:
        c, d, w, m = lru_counts(self.k, cz)
        return c + d + w + m

    def size(self, cz: int = 2):
        """(inactive, active) as ``lru_gen``'s compatibility counts: the two youngest
        generations active, the rest inactive (of all zones: generations are not per zone)."""
        g = self.gens
        active = g.size(g.max_seq) + g.size(g.max_seq - 1)
        return g.total() - active, active

    def check(self):
        """Every resident page of every file in exactly one generation."""
        self.sync(self.k)
        for name, f in self.k.files.items():
            have = self.gens.held(name)
            if have != f.resident:
                raise AssertionError(f"lru_gen: file {name}: {f.resident} resident, {have} in "
                                     "the generations")
        if sum(self.gens.sizes.values()) != sum(sum(g.values()) for g in self.gens.pages.values()):
            raise AssertionError("lru_gen: generation sizes out of step with their pages")

    # ---- what the engine did
    def sync(self, k):
        """Pages the page cache gained since reclaim last looked join the generations as
        ``lru_gen_add_folio`` would have put them (a program text's pages were faulted in:
        the youngest; other files' were read or written: the oldest); pages it lost leave
        from the oldest generation."""
        if self.synced == k.version:             # no page allocated or freed since
            return
        self.synced = k.version
        seen, gens = self.seen, self.gens
        for name, f in k.files.items():
            res = f.resident
            old = seen.get(name, 0)
            if res == old:
                continue
            if res > old:
                gens.add(name, res - old, hot=f.mappers > 0)
            else:
                gens.remove(name, old - res)
            seen[name] = res

    def _candidates(self, k):
        """The tasks whose mm's bit is set on the mm_list: put on a CPU since the last walk
        (``lru_gen_use_mm``, the engine's ``switched_in``), and those on a CPU now."""
        cand = dict(k.switched_in)
        for c in k.cpus:
            if c.task is not None:
                cand.setdefault(c.task.pid, c.task)
        return cand

    def ran(self, k) -> set:
        """Names of the text files of tasks that ran user code since the last walk (young ptes),
        and of those a task in D state is faulting in (locked pages)."""
        walked = self.walked
        out = set()
        for t in self._candidates(k).values():
            mm = t.mm
            if mm is not None and mm.text is not None and t.utime > walked.get(t.pid, 0):
                out.add(mm.text.name)
        for t in k.dstate.values():
            if t.mm is not None and t.mm.text is not None:
                out.add(t.mm.text.name)
        return out

    # ---- aging
    def try_to_inc_max_seq(self, k) -> int:
        """``try_to_inc_max_seq``: walk the mm's that ran (their text's mapped pages to
        ``max_seq``, young bits cleared), then ``inc_max_seq``.  Returns the CPU cost (us):
        ``pte_scan_us`` per pte of the mm's walked."""
        self.sync(k)
        gens, walked = self.gens, self.walked
        ptes = 0
        young = set()
        cand = self._candidates(k)
        k.switched_in.clear()                    # the walk clears the bits (should_skip_mm)
        for t in cand.values():
            mm = t.mm
            if mm is None or not t.alive or t.utime <= walked.get(t.pid, 0):
                continue
            walked[t.pid] = t.utime
            ptes += sum(mm.anon)
            if mm.text is not None:
                young.add(mm.text.name)
                ptes += sum(mm.text.mapped)
        for name in young:
            f = k.files.get(name)
            if f is not None:
                gens.promote(name, sum(f.mapped))
        gens.inc_max_seq(k.now // M.JIFFY_US)
        if young:                                 # young bits cleared: eviction may differ
            k.changed()
        return int(ptes * k.costs.pte_scan_us)

    # ---- eviction
    def evict_folios(self, k, cz: int, gfp: int, nr: int, young=None):
        """``evict_folios``: up to ``MIN_LRU_BATCH`` pages of the oldest generation, until
        ``nr`` are freed; ``young``: :meth:`ran`, if the caller has it.  Returns (scanned,
        freed, zone of the first freed page)."""
        gens = self.gens
        seq = gens.min_seq
        old = gens.pages[seq]
        keep_seq = seq + 1
        if young is None:
            young = self.ran(k)
        scanned = freed = 0
        first = None
        fs = gfp & M.GFPF_FS
        for name in list(old):
            if scanned >= MIN_LRU_BATCH or freed >= nr:
                break
            n = min(old[name], MIN_LRU_BATCH - scanned)
            scanned += n
            f = k.files.get(name)
            if f is None:
                gens.remove(name, n)
                continue
            res = f.resident
            m, c, d, w = _low(f, cz)
            low = m + c + d + w
            if res <= 0:
                gens.remove(name, n)
                self.seen[name] = gens.held(name)
                continue
            high = n * (res - low) // res               # zones above the classzone
            if high:
                gens.move(name, high, seq, keep_seq)
            rest = n - high
            if rest <= 0 or low <= 0:
                continue
            n_m = rest * m // low
            n_d = rest * d // low
            n_w = rest * w // low
            n_c = min(c, rest - n_m - n_d - n_w)
            n_m = rest - n_d - n_w - n_c if m else n_m  # rounding left over: mapped ones
            if n_m:
                if name in young:                       # referenced or locked: activate
                    gens.move(name, n_m, seq, gens.max_seq)
                else:                                    # try_to_unmap, then freed
                    n_m = k.file_move(f, "mapped", "clean", n_m, range(cz, -1, -1))
                    n_c += n_m
            if n_d or n_w:
                if n_d and fs:
                    left = n_d
                    for zi in range(cz, -1, -1):
                        take = min(left, f.dirty[zi])
                        if take:
                            k.start_writeback(f, zi, take)
                            left -= take
                gens.move(name, n_d + n_w, seq, keep_seq)
            if n_c:
                got, z = _free_clean(k, f, cz, n_c)
                if got:
                    gens._take(seq, name, got)
                    sh = self.shadows.setdefault(name, [])            # lru_gen_eviction
                    if sh and sh[-1][0] == seq:
                        sh[-1][1] += got          # one entry per token: same answer, fewer
                    else:
                        sh.append([seq, got])
                    self.seen[name] = self.seen.get(name, 0) - got
                    freed += got
                    if first is None:
                        first = z
        if freed:
            k.changed()
        gens.try_to_inc_min_seq()
        return scanned, freed, first

    def shrink_lruvec(self, k, rr, cz: int, gfp: int, nr_to_reclaim: int, priority: int,
                      kswapd: bool) -> tuple[int, int]:
        """``lru_gen_shrink_lruvec`` with ``get_nr_to_scan``: evict until ``nr_to_scan`` are
        scanned or ``nr_to_reclaim`` freed; aging as ``get_nr_to_scan`` does it.  Adds to
        ``rr`` (freed, first zone).  Returns (pages scanned, CPU cost in us)."""
        self.sync(k)
        gens = self.gens
        scanned = cost = 0
        freed_before = rr.freed
        needed = False
        young = None                                     # who ran: no task runs meanwhile
        while True:
            need, nr_to_scan = gens.should_run_aging(priority)
            if need:
                needed = True
                if priority == DEF_PRIORITY:            # skip the aging path
                    if gens.min_seq + MIN_NR_GENS > gens.max_seq:
                        nr_to_scan = 0
                elif kswapd:                             # leave it to lru_gen_age_node()
                    nr_to_scan = 0
                else:
                    cost += self.try_to_inc_max_seq(k)
                    young = None                         # the walk cleared the young bits
            if not nr_to_scan:
                break
            if young is None:
                young = self.ran(k)
            delta, freed, first = self.evict_folios(k, cz, gfp, nr_to_reclaim -
                                                     (rr.freed - freed_before), young)
            if not delta:
                break
            rr.freed += freed
            if rr.first_zone is None:
                rr.first_zone = first
            scanned += delta
            if scanned >= nr_to_scan or rr.freed - freed_before >= nr_to_reclaim:
                break
        if kswapd and rr.freed - freed_before >= MIN_LRU_BATCH and not needed:
            self.need_aging = False                      # "see the comment in lru_gen_age_node()"
        return scanned, int(cost + scanned * k.costs.lru_scan_us)

    # ---- kswapd
    def age_node(self, k, priority: int, order: int) -> tuple[bool, int]:
        """``lru_gen_age_node`` (kswapd, each ``balance_pgdat`` priority).  Returns (call
        ``out_of_memory()``: no lruvec is reclaimable, ``min_ttl`` is set and the order is 0;
        CPU cost of the aging in us)."""
        if not self.need_aging:
            self.need_aging = True
            return False, 0
        self.sync(k)
        gens = self.gens
        cost = 0
        need, _nr = gens.should_run_aging(priority)
        success = True
        if self.min_ttl_j and not gens.is_reclaimable(k.now // M.JIFFY_US, self.min_ttl_j,
                                                        priority):
            success = False
        elif need:
            cost = self.try_to_inc_max_seq(k)
        return (not success and bool(self.min_ttl_j) and order == 0), cost


# ---------------------------------------------------------------------------- the reclaim
class LruGenReclaim:
    """Reclaim of a modern policy (:class:`harness.modern.Modern` subclass) with the multi-gen
    LRU in place of the base's file LRU: mix in before the base (``class P(LruGenReclaim,
    OomReaper)``); the class sets ``min_ttl_ms`` (a parameter: 0 = off).

    :meth:`try_to_free_pages` is 6.1 ``do_try_to_free_pages`` / ``balance_pgdat``: priorities
    12..0; for kswapd each starts with the ``pgdat_balanced`` test (balanced: done) and
    ``kswapd_age_node`` -> :meth:`MultiGenLRU.age_node`
    (and its ``out_of_memory()`` under ``mutex_trylock(&oom_lock)``); each then runs
    ``shrink_node``: :meth:`MultiGenLRU.shrink_lruvec` for file pages, the base's anonymous
    reclaim while there is free swap (``swappiness`` split, ``nr_saved_scan``) and
    ``shrink_slab``; it stops once SWAP_CLUSTER_MAX pages are reclaimed.  Departures: the
    base's (kswapd is the shared loop around this; a pass that changes nothing is charged
    with the next one)."""

    def make_lru(self, k):
        """``k.lru``: the generations in the classic LRU's place."""
        return MultiGenLRU(k, self.min_ttl_ms)

    def reset(self, k):
        super().reset(k)
        self.lrugen = k.lru

    def _anon_pass(self, k, rr, cz: int, prio: int, left: int, file_scanned: int):
        """The base's anonymous part of a ``shrink_zones`` pass, and ``shrink_slab``.  Returns
        (pages scanned, CPU cost in us)."""
        c = k.costs
        cost = scanned = 0
        if self.swapped_free:
            rr.freed += self.swapped_free
            left -= self.swapped_free
            self.swapped_free = 0
        anon = self.anon_lru(k, cz) if k.nr_swap_pages > 0 else 0
        if anon:
            ap, fp = self.swappiness + 1, 200 - self.swappiness + 1
            scan = (anon >> prio) * ap // (ap + fp + 1) if prio else anon
            scan = self.scan_batch(0, scan)
            if scan and left > 0:
                queued = swap_out_anon(k, cz, min(scan, left), self.swap_written)
                scanned += scan
                cost += queued * c.pte_scan_us + scan * c.lru_scan_us
        freed = shrink_slab(k, scanned + file_scanned, self.file_lru(k, cz) + anon)
        if freed:
            rr.freed += freed
            cost += c.vfs_shrink_us
        return scanned, int(cost)

    def try_to_free_pages(self, k, task, cz, gfp, order):
        lru = self.lrugen
        rr = ReclaimRound()
        kswapd = task is k.kswapd
        if kswapd:
            lru.need_aging = False                    # a new balance_pgdat scan_control
        total = pending = 0
        for prio in range(DEF_PRIORITY, -1, -1):
            ver = k.version
            if kswapd:
                if not self.need_balance(k, cz):
                    break                      # balance_pgdat: pgdat_balanced -> goto out
                oom, cost = lru.age_node(k, prio, order)
                pending += cost
                if oom and self.take_oom_lock(k, task):           # mutex_trylock(&oom_lock)
                    if pending:
                        yield (CPU, pending, False)
                        total += pending
                        pending = 0
                    try:
                        yield from self.out_of_memory(k, task)
                    finally:
                        self.release_oom_lock(k, task)
            cost = (cz + 1) * k.costs.alloc_pass_us
            scanned, c1 = lru.shrink_lruvec(k, rr, cz, gfp, M.SWAP_CLUSTER_MAX - rr.freed,
                                            prio, kswapd)
            _s, c2 = self._anon_pass(k, rr, cz, prio, M.SWAP_CLUSTER_MAX - rr.freed, scanned)
            pending += int(cost) + c1 + c2
            if ver != k.version or rr.freed >= M.SWAP_CLUSTER_MAX:
                yield (CPU, pending, False)
                total += pending
                pending = 0
            if rr.freed >= M.SWAP_CLUSTER_MAX:
                break
        if pending:
            yield (CPU, pending, False)
            total += pending
        self.reclaim_cost[task.pid] = total
        note_reclaim(k, task, rr, rr.freed >= M.SWAP_CLUSTER_MAX, not kswapd)
        return rr.freed > 0, rr

"""Refault detection of the classic (two-list) LRU: shadow entries and the refault distance.

Models ``mm/workingset.c`` of three kernel generations, chosen by ``kernel=``:

``"4.15"`` (v4.9-v4.19, the ``oom_reaper`` model's tree)
    ``workingset_eviction``: ``eviction = atomic_long_inc_return(&lruvec->inactive_age)`` -- the
    counter is bumped *before* the snapshot is taken.  ``workingset_refault(shadow)`` returns
    ``refault_distance <= NR_ACTIVE_FILE``; the caller (``add_to_page_cache_lru``) then does
    ``SetPageActive`` + ``workingset_activation`` (``inactive_age++``).  No PG_workingset: the
    shadow holds no workingset bit and nothing counts a refault as a memory stall (PSI is 4.20).
``"4.20"`` (v4.20-v5.8)
    As 4.15, plus commit 1899ad18c607 "mm: workingset: tell cache transitions from workingset
    thrashing": ``pack_shadow(..., PageWorkingset(page))``; an activated refault of a page that
    was workingset at eviction gets ``SetPageWorkingset`` (WORKINGSET_RESTORE).
``"6.1"`` (v5.9 and later; Debian 12's kernel)
    ``lruvec->nonresident_age``: ``workingset_eviction`` reads it (``>> bucket_order``) and
    *then* ``workingset_age_nonresident(lruvec, nr)``; activations age it too
    (``workingset_activation``, the activating refault, and vmscan's ``move_pages_to_lru`` for
    pages reclaim puts back active, which includes the VM_EXEC rotation of
    ``shrink_active_list``).  ``workingset_refault`` (v6.1: inline; v6.5+: split out as
    ``workingset_test_recent``) compares the distance with the *workingset size*::

        workingset_size = NR_ACTIVE_FILE
        if not file:              workingset_size += NR_INACTIVE_FILE
        if nr_swap_pages > 0:     workingset_size += NR_ACTIVE_ANON
                                  (+ NR_INACTIVE_ANON if file)
        activate = refault_distance <= workingset_size

    On activation: ``folio_set_active``, ``workingset_age_nonresident(lruvec, nr)``,
    WORKINGSET_ACTIVATE; and only then, if the shadow's workingset bit is set,
    ``folio_set_workingset`` (WORKINGSET_RESTORE).  A refault whose distance is too long is
    counted (WORKINGSET_REFAULT) and nothing else: the page comes back inactive *without*
    PG_workingset.

Why it matters for thrashing: ``PG_workingset`` is what makes the read a memory stall
(``mm/filemap.c`` ``folio_wait_bit_common``: ``!folio_test_uptodate && folio_test_workingset``
-> ``psi_memstall_enter``; ``filemap_read_folio`` and ``readahead.c`` ``read_pages`` the same).
The bit reaches a file page only on deactivation (``vmscan.c`` ``shrink_active_list``:
``folio_clear_active; folio_set_workingset``) and on an *activated* refault.  Without swap the
workingset size is ``NR_ACTIVE_FILE`` alone; with a hog's anonymous memory holding most of RAM
that list is small, program text refaults with a distance longer than it, is neither activated
nor flagged, and its reads are not memstall: PSI stays low while the machine thrashes.

The caller (the engine's mm) owns the LRU: it keeps the four list sizes and the free swap of
:class:`Lruvec` current, sets a page's workingset flag where the kernel does, and calls
:meth:`Workingset.evict` / :meth:`Workingset.refault` / :meth:`Workingset.activation` at the
kernel's call sites.  A batch of ``nr`` pages evicted together is treated as one folio of
``nr`` pages (one shadow, age advanced by ``nr``) -- the kernel's large-folio path.

Departures:
- One lruvec (no memcg, one node): the memcg id / node id fields of the shadow are not packed,
  ``parent_lruvec`` ageing and the "memcg deleted since eviction" test do not exist.
- The shadow is packed as the kernel packs it (timestamp ``& EVICTION_MASK``, workingset bit,
  ``bucket_order``), so distances wrap as the kernel's do; the defaults are those of a 64-bit
  build (``timestamp_bits`` 36).  The shadow-node shrinker (``count_shadow_nodes``), which
  drops old shadows when they exceed ~1/8 of memory in xarray nodes, is not modelled.
- MGLRU (``lru_gen_eviction`` / ``lru_gen_refault``: generation tokens, tiers, PG_workingset
  on any refault through a page fault) is a different mechanism and not modelled here.
"""
from __future__ import annotations

from dataclasses import dataclass

KERNELS = ("4.15", "4.20", "6.1")


def fls_long(x: int) -> int:
    """``fls_long``: 1-based index of the most significant set bit, 0 for 0."""
    return x.bit_length()


@dataclass
class Lruvec:
    """The per-lruvec state ``workingset.c`` reads: the ageing counter and the LRU list sizes.

    ``nonresident_age`` is ``lruvec->nonresident_age`` (``inactive_age`` before v5.9); only
    :class:`Workingset` advances it.  The list sizes (``NR_*`` in pages) and ``nr_swap_pages``
    (free swap, ``mem_cgroup_get_nr_swap_pages``) are the mm's to keep current."""
    nonresident_age: int = 0
    nr_active_file: int = 0
    nr_inactive_file: int = 0
    nr_active_anon: int = 0
    nr_inactive_anon: int = 0
    nr_swap_pages: int = 0
    # /proc/vmstat counters (v5.9+ names; before that only the file ones existed, unsuffixed)
    workingset_refault_file: int = 0
    workingset_refault_anon: int = 0
    workingset_activate_file: int = 0
    workingset_activate_anon: int = 0
    workingset_restore_file: int = 0
    workingset_restore_anon: int = 0


class Workingset:
    """Shadow entries and refault decisions for one :class:`Lruvec`.

    ``evict(workingset, nr) -> shadow``; ``refault(shadow, file, nr) -> (activate, workingset)``
    where ``activate`` says the page goes to the active list (the kernel's ``folio_set_active``)
    and ``workingset`` says it gets PG_workingset -- its read is then a memory stall.
    ``activation(nr)`` is ``workingset_activation``: call it when a resident page is promoted.
    """

    def __init__(self, kernel: str = "6.1", totalram_pages: int = 0, timestamp_bits: int = 36):
        if kernel not in KERNELS:
            raise ValueError(f"workingset: unknown kernel {kernel!r}; "
                             f"use one of {', '.join(KERNELS)}")
        self.kernel = kernel
        self.lruvec = Lruvec()
        # v4.20+ keep one bit of the entry for the workingset flag (WORKINGSET_SHIFT 1)
        self._ws_shift = 0 if kernel == "4.15" else 1
        self.eviction_mask = (1 << timestamp_bits) - 1
        # workingset_init: coarser buckets only if RAM has more pages than the timestamp covers
        max_order = fls_long(totalram_pages - 1) if totalram_pages > 1 else 0
        self.bucket_order = max(0, max_order - timestamp_bits)

    # -- shadow packing (pack_shadow / unpack_shadow) -------------------------------------------

    def _pack(self, eviction: int, workingset: bool) -> int:
        if self.kernel != "6.1":           # 4.x shift inside pack_shadow, 6.1 in the caller
            eviction >>= self.bucket_order
        eviction &= self.eviction_mask
        return (eviction << self._ws_shift) | (int(workingset) if self._ws_shift else 0)

    def _unpack(self, shadow: int) -> tuple[int, bool]:
        workingset = bool(shadow & 1) if self._ws_shift else False
        return (shadow >> self._ws_shift) << self.bucket_order, workingset

    # -- the kernel's entry points --------------------------------------------------------------

    def evict(self, workingset: bool = False, nr: int = 1) -> int:
        """``workingset_eviction``: the shadow left in the page cache slot of an evicted page.

        ``workingset`` is the page's PG_workingset at eviction (ignored by 4.15)."""
        lv = self.lruvec
        if self.kernel == "6.1":
            eviction = lv.nonresident_age >> self.bucket_order
            lv.nonresident_age += nr          # workingset_age_nonresident
        else:
            # atomic_long_inc_return, once per page (no page-cache folios in 4.x): the batch's
            # shadow carries its first page's stamp
            eviction = lv.nonresident_age + 1
            lv.nonresident_age += nr
        return self._pack(eviction, workingset)

    def distance(self, shadow: int) -> int:
        """The refault distance of ``shadow`` now: ``(refault - eviction) & EVICTION_MASK``."""
        eviction, _ = self._unpack(shadow)
        return (self.lruvec.nonresident_age - eviction) & self.eviction_mask

    def workingset_size(self, file: bool = True) -> int:
        """What the distance is compared with (see the module docstring for each kernel)."""
        lv = self.lruvec
        size = lv.nr_active_file
        if self.kernel != "6.1":
            return size
        if not file:
            size += lv.nr_inactive_file
        if lv.nr_swap_pages > 0:
            size += lv.nr_active_anon
            if file:
                size += lv.nr_inactive_anon
        return size

    def refault(self, shadow: int, file: bool = True, nr: int = 1) -> tuple[bool, bool]:
        """``workingset_refault``: activate the refaulting page?  flag it PG_workingset?"""
        lv = self.lruvec
        if file:
            lv.workingset_refault_file += nr
        else:
            lv.workingset_refault_anon += nr
        refault_distance = self.distance(shadow)
        _, was_workingset = self._unpack(shadow)
        if refault_distance > self.workingset_size(file):
            return False, False
        # activation: folio_set_active + workingset_age_nonresident (4.x: add_to_page_cache_lru
        # calls SetPageActive + workingset_activation, inactive_age++ per page)
        lv.nonresident_age += nr
        if file:
            lv.workingset_activate_file += nr
        else:
            lv.workingset_activate_anon += nr
        if not was_workingset:
            return True, False
        if file:
            lv.workingset_restore_file += nr
        else:
            lv.workingset_restore_anon += nr
        return True, True

    def activation(self, nr: int = 1, by_reclaim: bool = False) -> None:
        """A resident page was promoted: age the non-resident pages with it.

        ``by_reclaim=False``: ``workingset_activation`` from ``folio_mark_accessed`` (every
        kernel).  ``by_reclaim=True``: reclaim put
        the page back on the active list (``shrink_page_list`` activate_locked, and
        ``shrink_active_list``'s rotation of referenced VM_EXEC pages); v5.9+ age the
        counter there (``move_pages_to_lru``: ``if (PageActive) workingset_age_nonresident``),
        4.x do not."""
        if self.kernel == "6.1" or not by_reclaim:
            self.lruvec.nonresident_age += nr

"""Constants of the simulated 2.4 i386 machine: GFP masks, zones, watermarks, cost constants.

Kernel facts come from ``shared/spec/kernel-2.4.md`` (cited as §N) and the trees it names:
pristine 2.4.22 (S1), 2.4.19 (S2), 2.4.32 with the merged -aa VM (S4).
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

PAGE_SIZE = 4096
PAGES_PER_MB = 256
HZ = 100                    # asm-i386/param.h
SHIFT_HZ = 7                # linux/timex.h for HZ=100
JIFFY_US = 1_000_000 // HZ  # one jiffy in simulated microseconds

# --- GFP flags, linux/mm.h (2.4.19, S2) ---------------------------------------------------
__GFP_DMA = 0x01
__GFP_HIGHMEM = 0x02
__GFP_WAIT = 0x10
__GFP_HIGH = 0x20
__GFP_IO = 0x40
__GFP_HIGHIO = 0x80
__GFP_FS = 0x100

# the same bits under names that Python does not mangle inside class bodies
GFPF_DMA, GFPF_HIGHMEM, GFPF_WAIT, GFPF_HIGH, GFPF_IO, GFPF_FS = (
    __GFP_DMA, __GFP_HIGHMEM, __GFP_WAIT, __GFP_HIGH, __GFP_IO, __GFP_FS)

GFP_ATOMIC = __GFP_HIGH
GFP_NOFS = __GFP_HIGH | __GFP_WAIT | __GFP_IO | __GFP_HIGHIO
GFP_NOIO = __GFP_HIGH | __GFP_WAIT
GFP_KERNEL = __GFP_HIGH | __GFP_WAIT | __GFP_IO | __GFP_HIGHIO | __GFP_FS
GFP_USER = __GFP_WAIT | __GFP_IO | __GFP_HIGHIO | __GFP_FS
GFP_HIGHUSER = GFP_USER | __GFP_HIGHMEM
GFP_KSWAPD = GFP_USER
GFP_DMA = __GFP_DMA
GFP_ZONEMASK = 0x0F

GFP_NAMES = {
    "GFP_ATOMIC": GFP_ATOMIC, "GFP_NOIO": GFP_NOIO, "GFP_NOFS": GFP_NOFS, "GFP_KERNEL": GFP_KERNEL,
    "GFP_USER": GFP_USER, "GFP_HIGHUSER": GFP_HIGHUSER, "GFP_DMA": GFP_DMA,
    "GFP_KERNEL|GFP_DMA": GFP_KERNEL | GFP_DMA, "GFP_ATOMIC|GFP_DMA": GFP_ATOMIC | GFP_DMA,
}

# --- zones (arch/i386/mm/init.c zone_sizes_init) ---------------------------------------------
ZONE_DMA, ZONE_NORMAL, ZONE_HIGHMEM = 0, 1, 2
ZONE_NAMES = ("DMA", "Normal", "HighMem")
DMA_LIMIT_PAGES = 16 * PAGES_PER_MB        # MAX_DMA_ADDRESS = PAGE_OFFSET + 16 MB
LOWMEM_LIMIT_PAGES = 896 * PAGES_PER_MB    # 4 GB - 128 MB vmalloc/fixmap = 896 MB lowmem

# mm/page_alloc.c (S1/S2/S3): zone_balance_ratio / _min / _max
ZONE_BALANCE_RATIO = (128, 128, 128)
ZONE_BALANCE_MIN = (20, 20, 20)
ZONE_BALANCE_MAX = (255, 255, 255)

# mm/vmscan.c / linux/swap.h
DEF_PRIORITY = 6
SWAP_CLUSTER_MAX = 32

# task flags (linux/sched.h)
PF_MEMALLOC = 0x00000800
PF_MEMDIE = 0x00001000
PF_FREE_PAGES = 0x00002000

SIGKILL, SIGTERM = 9, 15


def zone_sizes(ram_pages: int) -> tuple[int, int, int]:
    """Split RAM into DMA / NORMAL / HIGHMEM page counts as i386 ``zone_sizes_init`` does."""
    dma = min(ram_pages, DMA_LIMIT_PAGES)
    normal = max(0, min(ram_pages, LOWMEM_LIMIT_PAGES) - DMA_LIMIT_PAGES)
    high = max(0, ram_pages - LOWMEM_LIMIT_PAGES)
    return dma, normal, high


def zone_watermarks(idx: int, realsize: int) -> tuple[int, int, int]:
    """``free_area_init_core`` (2.4, S1): mask = clamp(realsize/ratio, min, max); {mask, 2m, 3m}."""
    mask = realsize // ZONE_BALANCE_RATIO[idx]
    mask = max(ZONE_BALANCE_MIN[idx], min(ZONE_BALANCE_MAX[idx], mask))
    return mask, 2 * mask, 3 * mask


def build_zonelist(gfp: int, sizes) -> tuple[int, ...]:
    """``build_zonelists`` (S1): indexed by gfp & 0x0f, highest usable zone first, empty zones skipped."""
    if gfp & __GFP_DMA:
        order = (ZONE_DMA,)
    elif gfp & __GFP_HIGHMEM:
        order = (ZONE_HIGHMEM, ZONE_NORMAL, ZONE_DMA)
    else:
        order = (ZONE_NORMAL, ZONE_DMA)
    return tuple(z for z in order if sizes[z] > 0)


def int_sqrt(x: int) -> int:
    """2.4 ``mm/oom_kill.c int_sqrt`` (S1): a deliberately rough square root, never 0."""
    out = x
    while x & ~1:
        x >>= 2
        out >>= 1
    if x:
        out -= out >> 2
    return out if out else 1


@dataclass(frozen=True)
class Costs:
    """Machine cost constants, in simulated microseconds.  Set once for every policy and workload.

    The box is a 2002 uniprocessor i386 (~500 MHz PIII, PC100 SDRAM, one IDE disk).

    Per-item costs, first estimates from the hardware:

    * ``page_zero_us`` 4: clear_page of 4 KiB at ~1 GB/s.  ``fault_us`` 2: trap, vma lookup, pte.
    * ``user_touch_us`` 4: a user memset of one page (usemem, cc1 growing its heap).
    * ``alloc_pass_us`` 1: one walk of a 2-3 zone zonelist in ``__alloc_pages``.
    * ``lru_scan_us``: one page visited by ``shrink_cache`` (lru lock, two cache misses on
      ``struct page``, list move): ~1 us.
    * ``pte_scan_us``: one pte visited by ``swap_out`` (test-and-clear young; without swap an
      anonymous page is unmapped, fails ``get_swap_page`` and is restored, with a TLB flush):
      ~0.5 us.
    * ``vfs_shrink_us``: one ``kmem_cache_reap`` + ``shrink_dcache_memory`` +
      ``shrink_icache_memory`` call, walking the cache chain and unused dentry/inode lists:
      ~300 us.
    * ``oom_scan_us_per_task`` 2: one task visited by ``select_bad_process``.
    * disk: 8 ms per request (seek + rotation) and 10 MB/s transfer (400 us a page).

    Calibration (the only one, done once): Morton reports for his patched kernel (our
    ``mainline_akpm_fix``) on the canonical workload that the VM "will spin madly for five or ten
    seconds before giving up and calling the oom killer.  And then another five seconds elapses
    before the oom killer decides to actually kill something."  With the estimates above that
    policy showed medians of 5.4 s and 3.3 s over seeds 0-19 (pressure onset to the first
    ``out_of_memory()`` call, and from there to the kill): our box was faster than his.  The
    three reclaim costs were therefore multiplied by 1.2 (``lru_scan_us`` 1.2, ``pte_scan_us``
    0.6, ``vfs_shrink_us`` 360), which gives medians of 6.2 s and 3.9 s.

    Why not a factor that puts the second interval at a full 5 s?  That interval is one cycle of
    the reclaiming tasks' ``out_of_memory()`` calls, which arrive in bursts (every task calls
    once per ``vm_oom_kill_passes`` + 1 failed rounds, and the tasks' rounds run in step).  The
    2.4 rate limiter forgets everything after a 5 s gap, so if the cycle is longer than 5 s it
    never kills at all: at 1.5, 4 seeds of 20 livelock that way, at 1.3 one.  Morton saw kills,
    so his cycle was under 5 s; at 1.2 our longest is 5.1 s from first call to kill (median
    3.9 s).  That cliff is itself a result worth knowing about the 2.4 limiter.
    No constant here is changed per policy or per workload; a workload may override them
    (``[machine.costs]``) only for a sweep.
    """

    page_zero_us: float = 4.0
    fault_us: float = 2.0
    user_touch_us: float = 4.0
    alloc_pass_us: float = 1.0
    lru_scan_us: float = 1.2
    pte_scan_us: float = 0.6
    vfs_shrink_us: float = 360.0
    oom_scan_us_per_task: float = 2.0
    disk_request_us: int = 8000
    disk_page_us: int = 400
    timeslice_us: int = 50_000

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    def with_overrides(self, over: dict) -> "Costs":
        return replace(self, **over) if over else self


@dataclass(frozen=True)
class MachineSpec:
    """The machine a workload asks for (RAM, swap, CPUs, boot reservation, costs)."""

    ram_mb: int = 64
    swap_mb: int = 0
    cpus: int = 1
    reserved_kb: int = 2560          # kernel image (~1.3 MB) + mem_map (64 B/page) + boot allocations
    boot_slab_kb: int = 1024         # slab in use at boot, not shrinkable
    dcache_kb: int = 1024            # unused dentries/inodes, shrinkable by reclaim
    costs: Costs = field(default_factory=Costs)

    @property
    def ram_pages(self) -> int:
        return self.ram_mb * PAGES_PER_MB

    @property
    def swap_pages(self) -> int:
        return self.swap_mb * PAGES_PER_MB

"""The machine's laws: what every run must obey, whatever its policy does.

A policy (or a bug in the engine) that breaks one of these has not made a result: the run gets
status ``invalid`` with the law, the simulated time and the zone, is counted as failed and is
left out of every statistic (``shared/spec/metrics.md``: only ``status == "ok"`` rows are
aggregated).  The laws are those the 2.4 page allocator keeps by construction
(``mm/page_alloc.c``: a page is on exactly one free list or owned by exactly one user, and
``zone->free_pages`` counts the free lists; ``mm/swapfile.c``: ``nr_swap_pages`` counts the
free slots of the swap areas; ``kernel/exit.c do_exit`` -> ``exit_mm``/``__exit_mm`` and
``free_task_struct``: a dead task owns nothing):

* **no negative count**: ``free`` and every per-use count of a zone are >= 0;
* **free never above the zone size**;
* **page conservation per zone**: ``free`` + the pages of every use == the zone's size, and
  each use's count equals the sum over its owners (mm's anonymous pages, page tables and swap
  cache; the files' page cache; tasks' kernel allocations and task_structs);
* **swap within its size**: 0 <= free swap slots <= the swap size;
* **every dead task's memory returned**: a task in state X has no mm, no kernel pages and no
  task_struct pages;
* **the measurements in range** (at the end of a run, :func:`check_measures`): PSI full <=
  some <= run time, every window's progress within 0..100 %.

:func:`check_instant` holds at any moment, even inside a step (the cheap zone-level laws
without conservation, which an allocation in flight breaks for an instant); :func:`check_zones`
holds between engine steps; :func:`check_all` adds the owners and the dead tasks and is run at
the end of every run.  :class:`Periodic` is the engine's sampling hook (``Kernel.on_sample``):
:func:`check_zones` at the first zone sample ``ZONE_US`` simulated microseconds after the last
check, and :func:`check_all` at the first one ``FULL_US`` after the last full one (a sample is
taken every 100 simulated ms while the machine steps; none while it fast-forwards).
"""
from __future__ import annotations

from operator import attrgetter

import numpy as np

from .engine import X, Zone

#: simulated us between two zone-level checks during a run (at 1 s they cost ~3 % of a run)
ZONE_US = 10_000_000
#: simulated us between two full checks (owners and dead tasks: O(tasks), ~0.1-1 ms) during a run
FULL_US = 100_000_000

_KINDS = attrgetter(*Zone.KINDS)


class LawBroken(Exception):
    """A run broke a law of the machine: ``law``, simulated time ``t_us``, ``zone``, detail."""

    def __init__(self, law: str, t_us, zone: str, detail: str):
        self.law, self.t_us, self.zone, self.detail = law, t_us, zone, detail
        super().__init__(f"law broken: {law}, at t={t_us / 1e6:.6f} s, zone {zone}: {detail}")


def _instant(k, conserve: bool):
    now = k.now
    for z in k.zones:
        free = z.free
        counts = _KINDS(z)
        if free < 0 or min(counts) < 0:
            bad = "free" if free < 0 else next(n for n, v in zip(Zone.KINDS, counts) if v < 0)
            raise LawBroken("no negative count", now, z.name,
                            f"{bad} = {free if bad == 'free' else getattr(z, bad)}")
        if free > z.size:
            raise LawBroken("free never above the zone size", now, z.name,
                            f"free {free} > size {z.size}")
        if conserve:
            used = sum(counts)
            if free + used != z.size:
                raise LawBroken("page conservation", now, z.name,
                                f"free {free} + used {used} != size {z.size}")
    swap = k.nr_swap_pages
    if not 0 <= swap <= k.swap_total:
        raise LawBroken("swap within its size", now, "swap",
                        f"{swap} free slots, swap size {k.swap_total}")


def check_instant(k):
    """The laws that hold at every instant: no negative count, free <= size, swap in range."""
    _instant(k, False)


def check_zones(k):
    """:func:`check_instant` and page conservation per zone (between engine steps): O(zones)."""
    _instant(k, True)


def check_owners(k):
    """Each use's count of each zone equals the sum over its owners (the live tasks' mms, kernel
    allocations and task_structs, the files' page cache); O(tasks + files)."""
    per = k.owner_counts()
    for z in k.zones:
        want = per[z.idx]
        for kind in ("anon", "clean", "mapped", "dirty", "wb", "swapc", "pt", "ts", "kmem"):
            have = getattr(z, kind)
            if have != want[kind]:
                raise LawBroken("page conservation", k.now, z.name,
                                f"{kind}: the zone counts {have}, its owners hold {want[kind]}")


def check_dead(k):
    """Every dead task's memory returned: no mm, no kernel pages, no task_struct."""
    for t in k.tasks:
        if t.state != X:
            continue
        if t.mm is not None:
            held = [n + m for n, m in zip(t.mm.anon, t.mm.pt)]
            what = "its mm"
        elif any(t.kmem):
            held, what = t.kmem, f"{sum(t.kmem)} kernel pages"
        elif t.ts_zone is not None:
            held, what = [int(i == t.ts_zone) for i in range(3)], "its task_struct"
        else:
            continue
        zone = next((k.zones[i].name for i, n in enumerate(held) if n), "none")
        raise LawBroken("every dead task's memory returned", k.now, zone,
                        f"pid {t.pid} ({t.name}) is dead and still holds {what}")


def check_lru(k):
    """The modern file LRU (``k.lru``, :mod:`harness.lru`) holds every resident file page
    exactly once, and its list counts are right; O(runs + files).  Nothing to check for a
    model without one (2.4)."""
    lru = getattr(k, "lru", None)
    if lru is None:
        return
    try:
        lru.check()
    except AssertionError as e:
        raise LawBroken("page conservation", k.now, "none", str(e)) from None


def check_measures(k):
    """The engine's measurements are what they measure (``kernel/sched/psi.c``: FULL is a
    part of SOME, a stall total is a weighted mean of per-CPU times, so never more than the
    time elapsed; :mod:`harness.progress`: a step is at most 100 % productive and lies in its
    task's alive time): ``0 <= psi full <= psi some <= run time`` and every 10-s window's
    pooled progress within ``[0, 1]``."""
    tot = k.psi.totals(k.now)
    if not 0 <= tot["full"] <= tot["some"] <= k.now:
        raise LawBroken("PSI full <= some <= run time", k.now, "psi",
                        f"full {tot['full']} us, some {tot['some']} us, run {k.now} us")
    t, c, a, q = k.prog.window_arrays(k.now)
    bad = np.flatnonzero((c < 0) | (c > a) | (q < 0) | (q > a))
    if len(bad):
        t, c, a, q = (int(col[bad[0]]) for col in (t, c, a, q))       # the first
        raise LawBroken("progress within 0..100 %", k.now, "progress",
                        f"window ending {t / 1e6:g} s: {c} us of nominal work and {q} us "
                        f"queued for a CPU in {a} us of goal-task time")


def check_all(k):
    """Every law: the end-of-run check."""
    check_zones(k)
    check_dead(k)
    check_owners(k)
    check_lru(k)
    check_measures(k)


class Periodic:
    """The engine's ``on_sample`` hook: the zone laws every ``zone_us`` simulated
    microseconds, all of them every ``full_us``."""

    __slots__ = ("zone_us", "full_us", "next_zone", "next_full")

    def __init__(self, zone_us: int = ZONE_US, full_us: int = FULL_US):
        self.zone_us, self.full_us = zone_us, full_us
        self.next_zone, self.next_full = zone_us, full_us

    def __call__(self, k):
        now = k.now
        if now < self.next_zone:
            return
        self.next_zone = now + self.zone_us
        if now >= self.next_full:
            self.next_full = now + self.full_us
            check_all(k)
        else:
            _instant(k, True)

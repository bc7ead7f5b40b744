"""Speed shortcuts that replay kernel loops: the one place where the harness does a policy's
arithmetic faster than the policy's own code would.  Each is proven equal to the plain code --
the same trace, event for event -- by ``tests/test_fastpaths.py``, and each is used only while
the functions it replays are those it was proven against.

A policy class declares, in ``REPLAYS``, the shortcuts proven for it; :func:`plan` (run by
:meth:`harness.modern.Modern.reset`) gives each instance the ones still exact: a shortcut is
exact for a subclass while every function of its ``mirrors`` resolves to the same function as in
the class that declared it (and no instance attribute wraps one).  Otherwise that subclass gets
the plain code -- never a silently changed result -- and ``python -m harness check`` says which
(:func:`describe`).

The loops replayed (tree ``torvalds/linux``):

* ``noop_round`` -- ``mm/vmscan.c`` ``do_try_to_free_pages`` when no pass can free anything
  (:func:`nothing_to_reclaim`): the 13 priorities' ``nr_saved_scan`` arithmetic and CPU cost
  in one step (:func:`noop_round`), remembered per LRU size, saved scan and classzone.
* ``noop_retries`` -- ``mm/page_alloc.c`` 4.15 ``__alloc_pages_slowpath``'s ``retry:`` loop
  after an iteration that changed nothing: the iterations are made by the engine through an
  ``ITER`` command, many at a time (:func:`noop_retries`).
* ``abort_restarts`` -- ``mm/page_alloc.c`` 2.6.36 ``__alloc_pages_slowpath``'s ``restart:`` loop
  after an iteration that changed nothing: a reclaim round that could scan nothing
  (:func:`idle_round`) and an ``out_of_memory`` whose ``select_bad_process`` met a TIF_MEMDIE
  task; the engine makes the round and the task-list scan through an ``ITER`` command, many at
  a time (:func:`abort_restarts`).
* ``select_26`` / ``select_415`` -- ``mm/oom_kill.c`` ``select_bad_process`` with
  ``oom_badness`` (2.6.36 / 4.15) computed inline: one task-list scan without the method calls
  (:func:`select_26`, :func:`select_415`).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

from . import blocks as B
from . import machine as M
from .engine import ITER, REPEAT
from .machine import PF_MEMALLOC, PF_MEMDIE

DEAD = ("Z", "X")                  # the task states that are not ``alive``
OOM_SCORE_ADJ_MIN = -1000
MAX_RECLAIM_RETRIES = 16           # mm/internal.h (M12)


class Shortcut(NamedTuple):
    replays: str                   # the kernel loop, in words
    mirrors: tuple                 # the policy methods whose code it reproduces


SHORTCUTS = {
    "noop_round": Shortcut(
        "do_try_to_free_pages' 13 priorities when no pass can free anything",
        ("try_to_free_pages", "shrink_zones", "file_lru", "anon_lru", "scan_batch",
         "priority_nap")),
    "noop_retries": Shortcut(
        "4.15 __alloc_pages_slowpath's retry loop after an iteration that changed nothing",
        ("slow_path", "gfp_flags", "wake_all_kswapd", "reserve_flags", "is_oom_victim",
         "thresholds", "direct_reclaim", "try_to_free_pages", "shrink_zones", "file_lru",
         "anon_lru", "scan_batch", "priority_nap", "should_reclaim_retry",
         "zone_reclaimable_pages")),
    "abort_restarts": Shortcut(
        "2.6.36 __alloc_pages_slowpath's restart loop after an iteration in which reclaim "
        "scanned nothing and out_of_memory met a TIF_MEMDIE task",
        ("slow_path", "wake_all_kswapd", "gfp_flags", "thresholds", "reserve_flags",
         "direct_reclaim", "try_to_free_pages", "shrink_zones", "file_lru", "anon_lru",
         "scan_batch", "priority_nap", "may_oom", "take_oom_lock", "release_oom_lock",
         "out_of_memory", "dying_caller", "select_bad_process", "badness", "unkillable",
         "mm_points", "has_cap_sys_admin")),
    "select_26": Shortcut(
        "2.6.36 select_bad_process with oom_badness inline",
        ("select_bad_process", "badness", "unkillable", "mm_points", "has_cap_sys_admin")),
    "select_415": Shortcut(
        "4.15 select_bad_process / oom_evaluate_task with oom_badness inline",
        ("select_bad_process", "badness", "unkillable", "oom_skip", "mm_points",
         "has_cap_sys_admin", "is_oom_victim")),
}


def status(cls, name: str, instance=None) -> tuple[bool, str]:
    """(exact?, why) of shortcut ``name`` for ``cls``."""
    decl = next((c for c in cls.__mro__ if name in c.__dict__.get("REPLAYS", ())), None)
    if decl is None:
        return False, "not declared"
    for m in SHORTCUTS[name].mirrors:
        if getattr(cls, m, None) is not getattr(decl, m, None):
            owner = next((c for c in cls.__mro__ if m in c.__dict__), cls)
            return False, f"plain path: {owner.__name__} overrides {m}"
        if instance is not None and m in instance.__dict__:
            return False, f"plain path: the instance wraps {m}"
    return True, f"exact (proven for {decl.__name__})"


def describe(cls) -> list[str]:
    """One line per shortcut declared for ``cls``: exact, or the plain path and why."""
    names = [n for c in cls.__mro__ for n in c.__dict__.get("REPLAYS", ())]
    out = []
    for n in dict.fromkeys(names):
        ok, why = status(cls, n)
        out.append(f"{n}: {why}")
    return out


class Plan:
    """The shortcuts one policy instance uses for one run, and their memory."""

    def __init__(self, policy):
        cls = type(policy)
        self.noop_round = status(cls, "noop_round", policy)[0]
        self.retries = self.noop_round and status(cls, "noop_retries", policy)[0]
        self.restarts = status(cls, "abort_restarts", policy)[0]
        if status(cls, "select_415", policy)[0]:
            self.select = partial(select_415, policy)
        elif status(cls, "select_26", policy)[0]:
            self.select = partial(select_26, policy)
        else:
            self.select = policy.select_bad_process
        self.nothing_key = self.nothing = None
        self.noop_rounds = {}      # (file LRU, saved scan, cz) -> (cost, saved scan)


def plan(policy) -> Plan:
    return Plan(policy)


# ---------------------------------------------------------------------------- noop_round
def nothing_to_reclaim(policy, k, cz: int, gfp: int) -> bool:
    """No clean or (for ``__GFP_FS``) dirty cache, no text that could be unmapped, no
    dentry cache, no swap to write to: a reclaim pass can only scan.  With the modern file
    LRU (``k.lru``): no dentry cache, no swap, and no priority of the round would hand the
    LRU a page to scan (:func:`lru_round_idle`; a scan of any page changes the LRU).
    (Remembered until the machine or the saved scan changes.)"""
    p = policy.replay
    key = (k.version, k.state_epoch, cz, gfp & M.GFPF_FS, policy.saved_scan[1])
    if p.nothing_key == key:
        return p.nothing
    p.nothing_key = key
    p.nothing = _nothing_to_reclaim(policy, k, cz, gfp)
    return p.nothing


def _nothing_to_reclaim(policy, k, cz: int, gfp: int) -> bool:
    zones = k.zones[: cz + 1]
    fs, swap = gfp & M.GFPF_FS, k.nr_swap_pages > 0
    if k.lru is not None:
        if swap and (policy.anon_lru(k, cz) or policy.file_lru(k, cz)):
            return False           # (with swap, shrink_zones scales the file scan by swappiness)
        if any(z.dcache for z in k.zones):
            return False
        return lru_round_idle(policy.file_lru(k, cz), policy.saved_scan[1])
    mapped = False
    for z in zones:
        if z.clean or (fs and z.dirty) or (swap and z.anon):
            return False
        mapped = mapped or z.mapped
    for z in k.zones:
        if z.dcache:
            return False
    if mapped:
        hit = policy._memo.get("busy")            # text_in_use(k, policy._memo), if at hand
        busy = hit[1] if hit is not None and hit[0] == k.state_epoch else None
        for f in k.files.values():
            if f.mappers and any(f.mapped[: cz + 1]) and not (
                    id(f) in busy if busy is not None else k.text_in_use(f, dstate=True)):
                return False
    return True


def lru_round_idle(file_pages: int, saved: int) -> bool:
    """With ``k.lru``: the 13 priorities of a round, from the file LRU's saved scan
    ``saved``, never reach SWAP_CLUSTER_MAX (``nr_scan_try_batch``), so no pass gives the
    LRU anything to scan.  (Only without swap: :func:`_nothing_to_reclaim` asks first.)"""
    total = _ROUND_SCANS.get(file_pages)
    if total is None:
        if len(_ROUND_SCANS) > 4096:
            _ROUND_SCANS.clear()
        total = _ROUND_SCANS[file_pages] = sum(file_pages >> prio for prio in range(13))
    # the priorities' running sums only grow: the last one, ``saved + total``, is the largest
    return saved + total < M.SWAP_CLUSTER_MAX


_ROUND_SCANS: dict = {}         # file LRU pages -> the 13 priorities' scans added up


def noop_round(policy, k, cz: int, file_pages: int) -> int:
    """The arithmetic of a round in which no pass can free anything (:func:`nothing_to_reclaim`):
    advance the file LRU's ``nr_saved_scan`` as the 13 priorities would and return their CPU
    cost (remembered per file LRU size, saved scan and classzone)."""
    key = (file_pages, policy.saved_scan[1], cz)
    rounds = policy.replay.noop_rounds
    hit = rounds.get(key)
    if hit is None:
        per_zone = (cz + 1) * k.costs.alloc_pass_us
        saved = key[1]
        total = 0
        for prio in range(12, -1, -1):                   # DEF_PRIORITY .. 0
            saved += file_pages >> prio                  # nr_scan_try_batch
            scan, saved = (saved, 0) if saved >= M.SWAP_CLUSTER_MAX else (0, saved)
            total += int(per_zone + scan * k.costs.lru_scan_us)
        hit = rounds[key] = (total, saved)
    total, policy.saved_scan[1] = hit
    return total


# ---------------------------------------------------------------------------- noop_retries
def noop_retries(policy, k, req, loops):
    """Generator: the iterations of ``policy.slow_path``'s retry loop that follow one that
    changed nothing at all, up to the return of ``direct_reclaim`` in the last one made;
    returns (``no_progress_loops``, the saved scans its round started from).

    While the machine stays as it was (its version), every test of an iteration gives the
    answer it gave last time: kswapd is already woken, the watermark pass fails, the reclaim
    round is the no-op one (:func:`noop_round`: only ``nr_saved_scan`` moves), there is no
    progress and ``should_reclaim_retry`` says retry.  So the engine makes the iterations
    (an ``ITER`` command): ``boundary`` does an iteration's tail (the ``reclaim`` event,
    PF_MEMALLOC cleared, ``no_progress_loops`` + 1) and the next one's head (PF_MEMALLOC, the
    round; never the ``spin_point``, which the loop passes at a count of 0 only) at the
    instant the generator would have, and gives the generator back, untouched, the first time
    the machine has changed, the retries are used up or the round would be repeated
    identically (the ``REPEAT`` case)."""
    self = policy
    task, cz = req.task, req.zl[0]
    version = k.version
    file_pages = self.file_lru(k, cz)
    direct = task is not k.kswapd
    rr = B.ReclaimRound()
    saved_scan = self.saved_scan
    event = ("reclaim", task.pid, rr.freed, 0, int(direct))      # B.note_reclaim's

    noop_rounds = self.replay.noop_rounds
    reclaim_cost, pid = self.reclaim_cost, task.pid
    lru = k.lru is not None and file_pages > 0     # rounds stay no-ops only while idle
    s0 = s1 = 0                 # nr_saved_scan as the current round found it

    def head():
        # (no spin point: the plain loop passes it at no_progress_loops 0 only, and a
        # retry that follows one without progress has counted at least 1)
        nonlocal s0, s1
        s0, s1 = saved_scan
        task.flags |= PF_MEMALLOC                           # direct_reclaim
        hit = noop_rounds.get((file_pages, s1, cz))
        if hit is None:
            return noop_round(self, k, cz, file_pages)      # try_to_free_pages
        saved_scan[1] = hit[1]                              # noop_round, remembered
        return hit[0]

    def boundary():
        nonlocal loops, total, s0, s1
        if (k.version != version or loops >= MAX_RECLAIM_RETRIES
                or (saved_scan[0] == s0 and saved_scan[1] == s1)
                or (lru and not lru_round_idle(file_pages, saved_scan[1]))):
            return None
        reclaim_cost[pid] = total
        if k.trace_on:
            k.trace.append((k.now,) + event)
        loops += 1
        # PF_MEMALLOC cleared at the tail and set again at the head: it stays set.  The
        # head, inline: the round (no spin point: no_progress_loops is not 0)
        s0, s1 = saved_scan
        hit = noop_rounds.get((file_pages, s1, cz))
        if hit is None:
            total = noop_round(self, k, cz, file_pages)
        else:
            saved_scan[1] = hit[1]
            total = hit[0]
        return total

    def many(now, limit):
        """``boundary`` again and again, from ``now``, while the rounds are remembered ones
        that end before ``limit``."""
        nonlocal loops, total, s0, s1
        if k.version != version:
            return 0, 0, 0
        n = spent = 0
        ended = total
        trace = k.trace if k.trace_on else None
        while loops < MAX_RECLAIM_RETRIES and (saved_scan[0] != s0 or saved_scan[1] != s1):
            if lru and not lru_round_idle(file_pages, saved_scan[1]):
                break
            hit = noop_rounds.get((file_pages, saved_scan[1], cz))
            if hit is None or now + spent + hit[0] >= limit:
                break
            if trace is not None:
                trace.append((now + spent,) + event)
            loops += 1
            s0, s1 = saved_scan
            saved_scan[1] = hit[1]
            ended, total = total, hit[0]
            n += 1
            spent += total
        if n:
            reclaim_cost[pid] = ended
        return n, spent, total

    total = head()
    if total:
        yield (ITER, total, False, boundary, many)
    self.reclaim_cost[task.pid] = total
    B.note_reclaim(k, task, rr, False, direct)
    task.flags &= ~PF_MEMALLOC
    return loops, (s0, s1)



def same_rounds(policy, k, req, loops, ver, saved, top):
    """Generator: after a retry round without progress that ``should_reclaim_retry`` would
    repeat.  If the round changed nothing at all (the machine's version ``ver`` and the saved
    scans ``saved`` as it found them), the retries left are the same round again: they are
    charged in one engine ``REPEAT`` (the model's arithmetic; it stops early, at a round
    boundary, if the machine changes meanwhile).  Else, when ``noop_retries`` is exact and no
    pass could free anything, the next iterations are replayed (``same``).  Returns (retry?,
    no_progress_loops, same)."""
    task = req.task
    if k.version == ver and tuple(policy.saved_scan) == saved:
        left = MAX_RECLAIM_RETRIES + 1 - loops
        cost = policy.reclaim_cost.get(task.pid, 0)
        if left > 0 and cost > 0:
            done = yield (REPEAT, int(cost), left)
            loops += done
            return done < left, loops, False
    same = (policy.replay.retries and k.version == top
            and nothing_to_reclaim(policy, k, req.zl[0], req.gfp))
    return True, loops, same


# ---------------------------------------------------------------------------- abort_restarts
def idle_round(policy, k, cz: int) -> bool:
    """``do_try_to_free_pages``' 13 priorities would scan nothing and free nothing, from the
    saved scans as they are: no swap-cache page written and freed waiting to be counted, no
    free swap (or no page on either LRU: with swap, ``shrink_zones`` scales the scans by
    ``swappiness``, which :func:`noop_round` does not), and the file LRU's
    ``nr_scan_try_batch`` never reaching SWAP_CLUSTER_MAX (:func:`lru_round_idle`).  Each
    priority then only walks the zonelist (``shrink_slab`` is not called for a pass that
    scanned nothing, and ``priority_nap`` naps only after a scan)."""
    if policy.swapped_free:
        return False
    file_pages = policy.file_lru(k, cz)
    if k.nr_swap_pages > 0 and (file_pages or policy.anon_lru(k, cz)):
        return False               # (with swap, shrink_zones scales the file scan by swappiness)
    return lru_round_idle(file_pages, policy.saved_scan[1])


def abort_restarts(policy, k, req):
    """Generator, in place of ``direct_reclaim`` in 2.6.36 ``slow_path``'s restart loop after
    an iteration that changed nothing at all (the machine's version and the task's flags as
    the iteration found them), in which the reclaim round was idle (:func:`idle_round`) and
    ``out_of_memory`` met a TIF_MEMDIE task (``select_bad_process`` aborted).  Returns the
    blocks ``may_oom`` got, 0 to ``goto restart``.

    While the machine's version stays, every test of an iteration gives the answer it gave
    last time: the watermark passes fail, the round is idle (only ``nr_saved_scan`` moves, as
    :func:`noop_round` computes), ``select_bad_process`` aborts.  So the engine makes the
    iterations (an ``ITER`` command) in two steps each, the two CPU spans of the plain code:
    the round (then its tail -- ``snapshot_refaults``, the ``reclaim`` event, PF_MEMALLOC
    cleared -- and ``__alloc_pages_may_oom`` up to the task-list scan: the OOM lock taken)
    and the scan (then the ``oom_call`` event, the lock released, and the restart up to the
    next round: the spin point, PF_MEMALLOC, the round).  It gives the generator back,
    untouched, at the end of a span whose next step would see the machine changed, another
    task holding the OOM lock or waiting for it, a fatal signal, or a round that would scan.
    (The caller has made the restart's head up to the spin point.)"""
    self = policy
    task, cz = req.task, req.zl[0]
    pid = task.pid
    version = k.version
    file_pages = self.file_lru(k, cz)
    saved_scan = self.saved_scan
    noop_rounds = self.replay.noop_rounds
    reclaim_cost = self.reclaim_cost
    lru = k.lru
    direct = int(task is not k.kswapd)
    reclaim_event = ("reclaim", pid, 0, 0, direct)    # note_reclaim of a round that freed 0
    oom_event = ("oom_call", pid, 0)                    # out_of_memory: the scan aborted
    scan_cost = int(len(k.live) * k.costs.oom_scan_us_per_task)
    # lru_round_idle(file_pages, saved) <=> saved < idle_below (the priorities' scans add up)
    idle_below = M.SWAP_CLUSTER_MAX - sum(file_pages >> prio for prio in range(13))
    phase = 0                   # the CPU span being spent: 0 the round, 1 the scan
    total = 0                   # the round's CPU

    def round_cost():
        """try_to_free_pages' idle round: its CPU, nr_saved_scan advanced (noop_round)."""
        hit = noop_rounds.get((file_pages, saved_scan[1], cz))
        if hit is None:
            return noop_round(self, k, cz, file_pages)
        saved_scan[1] = hit[1]
        return hit[0]

    def lock_free() -> bool:
        holder = self.oom_lock
        return holder is None or holder is task or not holder.alive

    def boundary():
        nonlocal phase, total
        if k.version != version:
            return None
        if phase == 0:
            # the round ends: its tail, then __alloc_pages_may_oom up to the scan's CPU
            if not lock_free() or k.fatal_pending(task):
                return None
            if lru is not None:
                lru.end_round()                              # snapshot_refaults
            reclaim_cost[pid] = total
            k.emit(*reclaim_event)
            task.flags &= ~PF_MEMALLOC                       # direct_reclaim's exit
            self.oom_lock = task                             # try_set_zonelist_oom
            phase = 1
            return scan_cost
        # the scan ends: out_of_memory's tail, the restart up to the next round's CPU
        if self.oom_lock_waiters or self.swapped_free or saved_scan[1] >= idle_below:
            return None
        k.emit(*oom_event)
        self.oom_lock = None                                 # clear_zonelist_oom
        if task.spin_ver != version:
            k.spin_point(task)
        task.flags |= PF_MEMALLOC
        total = round_cost()
        phase = 0
        return total

    def many(now, limit):
        """``boundary`` again and again from ``now``, while each span ends before ``limit``
        and the spin point would change nothing (nothing else can change meanwhile: no
        other task runs, so the OOM lock, the signals and the LRU's counters stay).  Once a
        round leaves ``nr_saved_scan`` as it found it, the iterations are all alike: their
        events are written at once."""
        nonlocal phase, total
        if (k.version != version or task.spin_ver != version or self.oom_lock_waiters
                or k.fatal_pending(task) or not lock_free() or self.swapped_free):
            return 0, 0, 0
        n = spent = last = 0
        trace = k.trace if k.trace_on else None
        if lru is not None:
            lru.end_round()                  # (idempotent while nothing else runs)
        while True:
            t0 = now + spent
            if phase == 0:
                hit = noop_rounds.get((file_pages, saved_scan[1], cz))
                if (hit is not None and hit[1] == saved_scan[1] and hit[0] == total
                        and saved_scan[1] < idle_below):
                    # a fixed point: pairs of spans (the scan, the same round) until limit
                    period = scan_cost + total
                    m = (limit - 1 - t0) // period
                    if m > 0:
                        m = int(m)
                        if trace is not None:
                            ev = [None] * (2 * m)
                            ev[0::2] = [(t0 + i * period,) + reclaim_event for i in range(m)]
                            ev[1::2] = [(t0 + i * period + scan_cost,) + oom_event
                                        for i in range(m)]
                            trace.extend(ev)
                        reclaim_cost[pid] = total
                        n += 2 * m
                        spent += m * period
                        last = total
                        continue
                if t0 + scan_cost >= limit:
                    break
                reclaim_cost[pid] = total
                if trace is not None:
                    trace.append((t0,) + reclaim_event)
                task.flags &= ~PF_MEMALLOC
                self.oom_lock = task
                phase = 1
                last = scan_cost
            else:
                if saved_scan[1] >= idle_below:
                    break
                hit = noop_rounds.get((file_pages, saved_scan[1], cz))
                if hit is None or t0 + hit[0] >= limit:
                    break
                if trace is not None:
                    trace.append((t0,) + oom_event)
                self.oom_lock = None
                task.flags |= PF_MEMALLOC
                saved_scan[1] = hit[1]
                total = last = hit[0]
                phase = 0
            n += 1
            spent += last
        return n, spent, last

    task.flags |= PF_MEMALLOC                                # direct_reclaim's enter
    total = round_cost()
    if total:
        yield (ITER, total, False, boundary, many)
    if phase == 1:
        # the scan ended: out_of_memory returns, __alloc_pages_may_oom releases the lock
        k.emit(*oom_event)
        self.release_oom_lock(k, task)
        return 0
    if lru is not None:
        lru.end_round()
    reclaim_cost[pid] = total
    B.note_reclaim(k, task, B.ReclaimRound(), False, bool(direct))
    task.flags &= ~PF_MEMALLOC
    return (yield from self.may_oom(k, req))


# ---------------------------------------------------------------------------- select_bad_process
def select_26(policy, k, current=None):
    """``select_bad_process`` (2.6.36) with ``oom_badness`` inline: task list order, strict
    ``>`` from 0; meeting a TIF_MEMDIE task aborts the scan."""
    chosen, best = None, 0
    table = []
    total = max(1, policy.totalpages)
    for p in k.live.values():
        if p.state in DEAD or p.pid == 1 or p.kthread:     # not alive, unkillable
            continue
        if p.flags & PF_MEMDIE:
            return None, B.Aborted(((p.pid, p.name, -1),))
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
        if pts:
            table.append((p.pid, p.name, pts))
        if pts > best:
            chosen, best = p, pts
    return chosen, B.badness_table(table)


def select_415(policy, k, current=None):
    """``select_bad_process`` / ``oom_evaluate_task`` (4.15) with ``oom_badness`` inline: a
    victim aborts the scan unless its mm has MMF_OOM_SKIP; ties keep the first."""
    chosen, best = None, 0
    table = []
    oom_mm, skip_mms = policy.oom_mm, policy.skip_mms
    adj_unit = policy.totalpages // 1000
    text_pages = {}                 # the mapped pages of each program text met, in this scan
    for p in k.live.values():
        if p.state in DEAD or p.pid == 1 or p.kthread:     # not alive, unkillable
            continue
        if p.pid in oom_mm:
            if id(oom_mm[p.pid]) in skip_mms:     # (an oom_mm is never None)
                continue
            return None, B.Aborted(((p.pid, p.name, -1),))
        mm = p.mm
        adj = p.oom_score_adj
        if mm is None or adj == OOM_SCORE_ADJ_MIN or id(mm) in skip_mms:
            continue                              # 0 points
        text = mm.text
        a, pt = mm.anon, mm.pt
        points = a[0] + a[1] + a[2] + pt[0] + pt[1] + pt[2] + mm.swapped
        if text is not None:                      # (shared by every task of one program)
            tp = text_pages.get(text)
            if tp is None:
                m = text.mapped
                tp = text_pages[text] = m[0] + m[1] + m[2]
            points += tp
        if p.euid == 0 or "CAP_SYS_ADMIN" in p.caps:
            points -= points * 3 // 100
        points += adj * adj_unit
        pts = points if points > 0 else 1
        if pts < best:
            continue
        table.append((p.pid, p.name, pts))
        if chosen is not None and pts == best:
            continue                      # a tie keeps the (thread-group leader) first
        chosen, best = p, pts
    return chosen, B.badness_table(table)

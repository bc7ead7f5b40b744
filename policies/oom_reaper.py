"""oom_reaper: Linux 4.15 -- the OOM reaper, should_reclaim_retry, oom_score_adj.

The answer of 2016 to Andrea's objection of 2002 (the OOM killer "can select a task in D state"):
a kernel thread takes the victim's ``mmap_sem`` for reading and unmaps its anonymous and private
memory while the victim still sleeps, then marks the mm MMF_OOM_SKIP so the selector may move
on (``shared/spec/kernel-2.4.md`` §7; M13 "mm, oom: introduce oom reaper", 4.6; M12 "mm, oom:
rework oom detection", 4.7).

Models (tree ``torvalds/linux`` ~v4.15, S6: ``mm/oom_kill.c`` @ c797bc88f77b,
``mm/page_alloc.c``; the rest from ``linux26``):

* ``mm/oom_kill.c``: ``oom_badness`` = rss + swap entries + page tables, minus 3 % for
  CAP_SYS_ADMIN, plus ``oom_score_adj * (totalpages / 1000)``, at least 1; -1000, MMF_OOM_SKIP,
  init and kernel threads score 0.  ``oom_evaluate_task``/``select_bad_process``: a victim
  (``tsk_is_oom_victim``) aborts the scan unless its mm has MMF_OOM_SKIP, then it is skipped;
  ties keep the first.  ``out_of_memory``: ``task_will_free_mem(current)`` (a caller already
  dying is marked and handed to the reaper), panic when nobody is killable, else
  ``oom_kill_process`` (``task_will_free_mem(victim)`` shortcut; sacrifice a child; SIGKILL;
  ``mark_oom_victim``; SIGKILL to every other process sharing the mm; ``wake_oom_reaper``) and
  ``schedule_timeout_killable(1)``.  The reaper (``oom_reaper``, ``oom_reap_task``,
  ``__oom_reap_task_mm``): a kthread started at boot, woken with the victim (a LIFO list); it
  takes ``oom_lock``, then ``down_read_trylock(mmap_sem)``; on success it frees the resident
  anonymous pages and the swap slots already written, and unmaps the program text; on failure
  it sleeps HZ/10 and tries again, ``MAX_OOM_REAP_RETRIES`` = 10 attempts; then, reaped or not,
  MMF_OOM_SKIP.
* ``mm/page_alloc.c`` (``__alloc_pages_slowpath``, 4.15): wake kswapd, pass at ``min``;
  ``retry:`` reserves -- ALLOC_NO_WATERMARKS for PF_MEMALLOC, ALLOC_OOM (half the min
  watermark) for an OOM victim; direct reclaim; ``should_reclaim_retry`` (``no_progress_loops``
  back to 0 after progress for order <= 3, else +1; past MAX_RECLAIM_RETRIES = 16 give up;
  else retry while some zone's free + reclaimable pages would pass its min watermark, after a
  ``congestion_wait(HZ/10)`` when reclaim made no progress and over half of that is dirty or
  under write-back, swap included -- NR_ZONE_WRITE_PENDING); then ``__alloc_pages_may_oom`` (``mutex_trylock(&oom_lock)`` -- taken: a
  jiffy's sleep counts as progress; a pass at ``high``; no OOM for order > 3, a classzone
  below NORMAL, or a caller without ``__GFP_FS``, which is told "progress"); an OOM victim
  whose ALLOC_OOM pass failed gets NULL; progress -> ``no_progress_loops = 0``, retry.
* ``mm/vmscan.c`` (4.15 ``do_try_to_free_pages``): as ``linux26`` without the per-priority
  ``congestion_wait``; ``setup_per_zone_wmarks``/``lowmem_reserve`` count ``managed_pages``
  (without the boot reservation), and ``watermark_scale_factor`` 10.

Departures: the engine has no ``mmap_sem``, so no task ever holds it for writing and the
reaper's ``down_read_trylock`` succeeds at the first attempt (:meth:`OomReaper.mmap_sem_trylock`
is where a model of the lock would go; the tests make it fail to time the retries).  The
reaper's work costs ``pte_scan_us`` per page unmapped.  The engine's scheduler is a round robin
of 50 ms slices that queues a woken task behind every runnable one, where CFS would run a task
that slept (the reaper, a killed sleeper) almost at once: both get the engine's boost for one
timeslice to stand for that (without it, every allocating task spins through its whole slice
before the victim or the reaper gets the CPU).  An OOM victim whose allocation fails even with
ALLOC_OOM takes the engine's i386 fault path (it is killed on the spot, counted as a fault
kill) instead of ``pagefault_out_of_memory``.  No ``PF_EXITING`` window (an exiting task leaves
at once).  A retry round that changed nothing is charged again with the engine's ``REPEAT``
for the retries left (the same arithmetic, fewer Python steps).
"""
from harness import blocks as B
from harness import machine as M
from harness.engine import CPU, DWAIT, ITER, REPEAT, SLEEP, WAITQ, WaitQueue
from harness.machine import PF_MEMALLOC, PF_MEMDIE, SIGKILL, ZONE_NORMAL

from policies.linux26 import (ALLOC_NO_WATERMARKS, ALLOC_OOM, DEAD, OOM_SCORE_ADJ_MIN,
                              PAGE_ALLOC_COSTLY_ORDER, WMARK_HIGH, WMARK_MIN, Aborted, Linux26,
                              congestion_wait)

MAX_RECLAIM_RETRIES = 16           # mm/internal.h (M12)
MAX_OOM_REAP_RETRIES = 10          # mm/oom_kill.c
REAP_RETRY_JIFFIES = M.HZ // 10    # schedule_timeout_idle(HZ/10)


class OomReaper(Linux26):
    name = "oom_reaper"
    description = ("4.15: the oom_reaper frees a victim's memory even in D state; "
                   "MAX_RECLAIM_RETRIES 16; oom_score_adj")
    params = {"lowmem_reserve_ratio": (256, 32), "swappiness": 60}

    MANAGED_PAGES = True
    WATERMARK_SCALE_FACTOR = 10

    def reset(self, k):
        super().reset(k)
        self.oom_mm = {}             # pid -> mm of every OOM victim alive (signal->oom_mm)
        self.skip_mms = {}           # id(mm) -> mm with MMF_OOM_SKIP (kept, so ids stay unique)
        self.reap_list = []          # oom_reaper_list (LIFO)
        self.reaper_wait = WaitQueue()
        self.reaper = None
        self.oom_lock_waiters = []   # tasks asleep in mutex_lock(&oom_lock), in order
        self.oom_lock_wait = WaitQueue()
        self.fast_retries = self._fast_retries_exact()
        self.inline_badness = self._not_overridden(self.BADNESS_PARTS)
        self.inline_noop_round = self._not_overridden(("noop_round",))

    def boot(self, k):
        """``oom_init``: ``kthread_run(oom_reaper, NULL, "oom_reaper")``."""
        self.reaper = k.new_task("oom_reaper", lambda t: self.oom_reaper(k, t),
                                 role="protected", kthread=True, daemon=True)

    # ------------------------------------------------------------------ victims
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

    def wake_oom_reaper(self, k, p):
        if self.reaper is None or p in self.reap_list:
            return
        self.reap_list.insert(0, p)
        k.boost(self.reaper, k.costs.timeslice_us)     # CFS: a woken sleeper runs next
        k.wake_queue(self.reaper_wait)

    # ------------------------------------------------------------------ oom_lock
    def release_oom_lock(self, k, task):
        """``mutex_unlock(&oom_lock)``: a task asleep in ``mutex_lock`` gets it next."""
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

    # ------------------------------------------------------------------ allocator
    def reserve_flags(self, k, task) -> int:
        """``__gfp_pfmemalloc_flags``: PF_MEMALLOC -> ALLOC_NO_WATERMARKS, an OOM victim ->
        ALLOC_OOM."""
        if task.flags & PF_MEMALLOC:
            return ALLOC_NO_WATERMARKS
        if self.is_oom_victim(task):
            return ALLOC_OOM
        return 0

    def slow_path(self, k, req):
        """``__alloc_pages_slowpath`` (4.15)."""
        task, zl, order, gfp = req.task, req.zl, req.order, req.gfp
        flags = self.gfp_flags(gfp)
        self.wake_all_kswapd(k, zl)
        n = k.take(req, self.thresholds(k, zl, order, WMARK_MIN, flags))
        if n:
            return n
        loops = 0                                               # no_progress_loops
        same = False                # the last iteration changed nothing (see noop_retries)
        while True:                                             # retry:
            if same:
                top = ver = k.version
                loops, saved = yield from self.noop_retries(k, req, loops)
                progress = False
            else:
                top = k.version
                self.wake_all_kswapd(k, zl)
                reserve = self.reserve_flags(k, task)
                if reserve:
                    flags = reserve
                if flags & ALLOC_NO_WATERMARKS:
                    n = k.take_nowatermark(req, 1)
                else:
                    n = k.take(req, self.thresholds(k, zl, order, WMARK_MIN, flags))
                if n:
                    return n
                if not gfp & M.GFPF_WAIT or task.flags & PF_MEMALLOC:
                    return 0
                k.spin_point(task)
                ver, saved = k.version, tuple(self.saved_scan)
                progress, _rr = yield from self.direct_reclaim(k, req)
                if progress:
                    n = k.take(req, self.thresholds(k, zl, order, WMARK_MIN, flags))
                    if n:
                        return n
            same = False
            retry, loops = yield from self.should_reclaim_retry(k, req, flags, progress, loops)
            if retry and not progress and k.version == ver and tuple(self.saved_scan) == saved:
                # this round changed nothing, so the retries left are the same round again:
                # charge them in one go, stopping early (at a round boundary) if the machine
                # changes meanwhile
                left = MAX_RECLAIM_RETRIES + 1 - loops
                cost = self.reclaim_cost.get(task.pid, 0)
                if left > 0 and cost > 0:
                    done = yield (REPEAT, int(cost), left)
                    loops += done
                    if done < left:
                        continue
                    retry = False
            if retry:
                same = (self.fast_retries and not progress and k.version == top
                        and self.nothing_to_reclaim(k, zl[0], gfp))
                continue
            n, oom_progress = yield from self.may_oom(k, req)
            if n:
                return n
            if self.is_oom_victim(task) and flags == ALLOC_OOM:
                return 0
            if oom_progress:
                loops = 0
                continue
            return 0

    def noop_retries(self, k, req, loops):
        """Generator: the iterations of :meth:`slow_path`'s retry loop that follow one that
        changed nothing at all, up to the return of ``direct_reclaim`` in the last one made;
        returns (``no_progress_loops``, the saved scans its round started from).

        While the machine stays as it was (its version), every test of an iteration gives the
        answer it gave last time: kswapd is already woken, the watermark pass fails, the reclaim
        round is the no-op one (``noop_round``: only ``nr_saved_scan`` moves), there is no
        progress and ``should_reclaim_retry`` says retry.  So the engine makes the iterations
        (an ``ITER`` command): ``boundary`` does an iteration's tail (the ``reclaim`` event,
        PF_MEMALLOC cleared, ``no_progress_loops`` + 1) and the next one's head (``spin_point``,
        PF_MEMALLOC, the round) at the instant the generator would have, and gives the
        generator back, untouched, the first time the machine has changed, the retries are
        used up or the round would be repeated identically (the ``REPEAT`` case)."""
        task, cz = req.task, req.zl[0]
        version = k.version
        file_pages = self.file_lru(k, cz)
        direct = task is not k.kswapd
        rr = B.ReclaimRound()
        saved_scan = self.saved_scan
        event = ("reclaim", task.pid, rr.freed, 0, int(direct))      # B.note_reclaim's

        noop_rounds = self._noop_rounds
        inline_round = self.inline_noop_round
        reclaim_cost, pid = self.reclaim_cost, task.pid
        s0 = s1 = 0                 # nr_saved_scan as the current round found it

        def head():
            nonlocal s0, s1
            if task.spin_seen != version or task.spin_ver != version:
                k.spin_point(task)                              # (else it would do nothing)
            s0, s1 = saved_scan
            task.flags |= PF_MEMALLOC                           # direct_reclaim
            hit = noop_rounds.get((file_pages, s1, cz)) if inline_round else None
            if hit is None:
                return self.noop_round(k, cz, file_pages)       # try_to_free_pages
            saved_scan[1] = hit[1]                              # noop_round, remembered
            return hit[0]

        def boundary():
            nonlocal loops, total, s0, s1
            if (k.version != version or loops >= MAX_RECLAIM_RETRIES
                    or (saved_scan[0] == s0 and saved_scan[1] == s1)):
                return None
            reclaim_cost[pid] = total
            if k.trace_on:
                k.trace.append((k.now,) + event)
            loops += 1
            # PF_MEMALLOC cleared at the tail and set again at the head: it stays set.  The
            # head, inline: spin_point (a no-op from the second round on), the round
            if task.spin_ver != version:
                k.spin_point(task)
            s0, s1 = saved_scan
            hit = noop_rounds.get((file_pages, s1, cz)) if inline_round else None
            if hit is None:
                total = self.noop_round(k, cz, file_pages)
            else:
                saved_scan[1] = hit[1]
                total = hit[0]
            return total

        def many(now, limit):
            """``boundary`` again and again, from ``now``, while the rounds are remembered ones
            that end before ``limit`` (from the third round on: the second made the spin
            point's one change)."""
            nonlocal loops, total, s0, s1
            if k.version != version or task.spin_ver != version or not inline_round:
                return 0, 0, 0
            n = spent = 0
            ended = total
            trace = k.trace if k.trace_on else None
            while loops < MAX_RECLAIM_RETRIES and (saved_scan[0] != s0 or saved_scan[1] != s1):
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

    #: what :meth:`noop_retries` stands for: a class that overrides one of these gets the plain
    #: loop, unless the class that defines it lists it in its own ``FAST_RETRY_SAME`` (an
    #: override that behaves the same for a task in the allocator's retry loop)
    FAST_RETRY_MIRRORS = ("gfp_flags", "wake_all_kswapd", "reserve_flags", "is_oom_victim",
                          "thresholds", "direct_reclaim", "try_to_free_pages",
                          "nothing_to_reclaim", "_nothing_to_reclaim", "file_lru", "noop_round",
                          "should_reclaim_retry", "zone_reclaimable_pages")

    @classmethod
    def _not_overridden(cls, names) -> bool:
        """Each method of ``names`` is this file's (or a base class's), or the class that
        overrides it lists it in its own ``FAST_RETRY_SAME``."""
        for m in names:
            owner = next(c for c in cls.__mro__ if m in c.__dict__)
            if not issubclass(OomReaper, owner) and m not in owner.__dict__.get(
                    "FAST_RETRY_SAME", ()):
                return False
        return True

    @classmethod
    def _fast_retries_exact(cls) -> bool:
        return not cls.NAPS and cls._not_overridden(cls.FAST_RETRY_MIRRORS)

    def zone_reclaimable_pages(self, k, zi: int) -> int:
        """File LRU pages, and anonymous ones while there is free swap."""
        z = k.zones[zi]
        n = z.clean + z.mapped + z.dirty + z.wb
        if k.nr_swap_pages > 0:
            n += z.anon + z.swapc
        return n

    def should_reclaim_retry(self, k, req, flags, progress, loops):
        """``should_reclaim_retry`` (4.15).  Returns (retry?, no_progress_loops)."""
        if progress and req.order <= PAGE_ALLOC_COSTLY_ORDER:
            loops = 0
        else:
            loops += 1
        if loops > MAX_RECLAIM_RETRIES:
            return False, loops
        thr = self.thresholds(k, req.zl, req.order, WMARK_MIN, flags)
        for i, zi in enumerate(req.zl):
            z = k.zones[zi]
            reclaimable = self.zone_reclaimable_pages(k, zi)
            if z.free + reclaimable > thr[i]:
                if not progress and 2 * (z.dirty + z.wb + z.swapc) > reclaimable:
                    yield from congestion_wait(k, M.HZ // 10)
                return True, loops
        return False, loops

    def may_oom(self, k, req):
        """``__alloc_pages_may_oom`` (4.15).  Returns (blocks, did_some_progress)."""
        task, zl, order, gfp = req.task, req.zl, req.order, req.gfp
        if not self.take_oom_lock(k, task):
            yield (DWAIT, k.now + M.JIFFY_US)          # schedule_timeout_uninterruptible(1)
            return 0, True
        try:
            n = k.take(req, self.thresholds(k, zl, order, WMARK_HIGH, 0))
            if n:
                return n, False
            if order > PAGE_ALLOC_COSTLY_ORDER or zl[0] < ZONE_NORMAL:
                return 0, False
            if not gfp & M.GFPF_FS and not self.task_will_free_mem(k, task):
                return 0, True           # out_of_memory: "does not compensate for IO-less reclaim"
            progress = yield from self.out_of_memory(k, task)
            return 0, bool(progress)
        finally:
            self.release_oom_lock(k, task)

    NAPS = False

    def priority_nap(self, k, scanned, prio):
        """4.15 reclaim takes no nap between priorities."""
        return
        yield  # pragma: no cover

    # ------------------------------------------------------------------ OOM
    def out_of_memory(self, k, task):
        """``out_of_memory`` (4.15).  Returns True for progress (``!!oc->chosen``)."""
        if self.task_will_free_mem(k, task):
            self.mark_oom_victim(k, task)
            self.wake_oom_reaper(k, task)
            return True
        victim, table = self.select_bad_process(k)
        yield (CPU, int(len(k.live) * k.costs.oom_scan_us_per_task), False)
        if isinstance(table, Aborted):
            k.emit("oom_call", task.pid, 0)
            return True
        if victim is None:
            raise RuntimeError("Out of memory and no killable processes...")   # panic()
        k.emit("oom_call", task.pid, 1)
        self.oom_kill_process(k, task, victim, table)
        yield (SLEEP, k.now + M.JIFFY_US)              # schedule_timeout_killable(1)
        return True

    def badness(self, k, p):
        """``oom_badness`` (4.15): pages, not a share."""
        if self.unkillable(p) or p.mm is None:
            return 0
        adj = p.oom_score_adj
        if adj == OOM_SCORE_ADJ_MIN or self.oom_skip(p.mm):
            return 0
        points = self.mm_points(p)
        if self.has_cap_sys_admin(p):
            points -= points * 3 // 100
        points += adj * (self.totalpages // 1000)
        return points if points > 0 else 1

    #: what :meth:`select_bad_process` computes inline (one task list scan per OOM kill)
    #: while no subclass overrides it
    BADNESS_PARTS = ("badness", "unkillable", "oom_skip", "mm_points", "has_cap_sys_admin",
                     "is_oom_victim")

    def _badness_inline(self, p) -> int:
        """:meth:`badness` of a killable task (not init, not a kernel thread), the same
        arithmetic without the method calls."""
        mm = p.mm
        if mm is None:
            return 0
        adj = p.oom_score_adj
        if adj == OOM_SCORE_ADJ_MIN or id(mm) in self.skip_mms:
            return 0
        text = mm.text
        points = (sum(mm.anon) + (sum(text.mapped) if text is not None else 0) + sum(mm.pt)
                  + mm.swapped)
        if "CAP_SYS_ADMIN" in p.caps or p.euid == 0:
            points -= points * 3 // 100
        points += adj * (self.totalpages // 1000)
        return points if points > 0 else 1

    def select_bad_process(self, k):
        """``select_bad_process`` / ``oom_evaluate_task`` (4.15)."""
        chosen, best = None, 0
        table = []
        inline = self.inline_badness
        oom_mm, skip_mms = self.oom_mm, self.skip_mms
        adj_unit = self.totalpages // 1000
        for p in k.live.values():
            if inline:                                  # _badness_inline, without the call
                if p.state in DEAD or p.pid == 1 or p.kthread:     # not alive, unkillable
                    continue
                if p.pid in oom_mm:
                    if id(oom_mm[p.pid]) in skip_mms:     # (an oom_mm is never None)
                        continue
                    return None, Aborted(((p.pid, p.name, -1),))
                mm = p.mm
                adj = p.oom_score_adj
                if mm is None or adj == OOM_SCORE_ADJ_MIN or id(mm) in skip_mms:
                    pts = 0
                else:
                    text = mm.text
                    a, pt = mm.anon, mm.pt
                    points = (a[0] + a[1] + a[2] + (sum(text.mapped) if text is not None else 0)
                              + pt[0] + pt[1] + pt[2] + mm.swapped)
                    if "CAP_SYS_ADMIN" in p.caps or p.euid == 0:
                        points -= points * 3 // 100
                    points += adj * adj_unit
                    pts = points if points > 0 else 1
            else:
                if not p.alive or self.unkillable(p):
                    continue
                if self.is_oom_victim(p):
                    if self.oom_skip(self.oom_mm[p.pid]):
                        continue
                    return None, Aborted(((p.pid, p.name, -1),))
                pts = self.badness(k, p)
            if not pts or pts < best:
                continue
            if pts:
                table.append((p.pid, p.name, pts))
            if chosen is not None and pts == best:
                continue                      # a tie keeps the (thread-group leader) first
            chosen, best = p, pts
        table.sort(key=lambda r: -r[2])
        return chosen, tuple(table[:5])

    def oom_kill_process(self, k, killer, p, table):
        """``oom_kill_process`` (4.15)."""
        if self.task_will_free_mem(k, p):
            self.mark_oom_victim(k, p)
            self.wake_oom_reaper(k, p)
            return True
        victim = self.sacrifice_child(k, p)
        if victim.mm is None:
            return False
        mm = victim.mm
        k.signal(victim, SIGKILL)
        k.boost(victim, k.costs.timeslice_us)          # CFS: a woken sleeper runs next
        self.mark_oom_victim(k, victim)
        B.record_kill(k, victim, SIGKILL, table, killer)
        can_reap = True
        for q in k.live.values():
            if q is victim or not q.alive or q.mm is not mm:
                continue
            if q.pid == 1:
                can_reap = False
                self.set_oom_skip(mm)
                continue
            if q.kthread:
                continue
            k.signal(q, SIGKILL)
            B.record_kill(k, q, SIGKILL, table, killer)
        if can_reap:
            self.wake_oom_reaper(k, victim)
        return True

    # ------------------------------------------------------------------ the reaper
    def mmap_sem_trylock(self, k, mm) -> bool:
        """``down_read_trylock(&mm->mmap_sem)``.  The engine models no mmap_sem: nobody holds
        it for writing, so the read lock is always had."""
        return True

    def oom_reaper(self, k, t):
        """The ``oom_reaper`` kthread: sleep until a victim is queued, reap it, again."""
        while True:
            if not self.reap_list:
                yield (WAITQ, self.reaper_wait, True)
                continue
            tsk = self.reap_list.pop(0)
            yield from self.oom_reap_task(k, t, tsk)

    def oom_reap_task(self, k, t, tsk):
        """``oom_reap_task``: up to MAX_OOM_REAP_RETRIES attempts HZ/10 apart; then
        MMF_OOM_SKIP whatever happened."""
        mm = self.oom_mm.get(tsk.pid)
        if not tsk.alive:                              # exit_mmap got there first
            self.set_oom_skip(mm)
            return
        attempts = 0
        reaped = False
        while attempts < MAX_OOM_REAP_RETRIES:
            attempts += 1
            reaped = yield from self.oom_reap_task_mm(k, t, tsk, mm)
            if reaped:
                break
            yield (DWAIT, k.now + REAP_RETRY_JIFFIES * M.JIFFY_US)
        k.emit("oom_reap", tsk.pid, attempts, int(reaped))
        self.set_oom_skip(mm)
        k.changed()

    def oom_reap_task_mm(self, k, t, tsk, mm):
        """``__oom_reap_task_mm``: under ``oom_lock`` and the read side of ``mmap_sem``, free
        the victim's resident anonymous pages and written-out swap slots and unmap its text."""
        yield from self.lock_oom_lock(k, t)
        try:
            return (yield from self._reap_mm(k, t, tsk, mm))
        finally:
            self.release_oom_lock(k, t)

    def _reap_mm(self, k, t, tsk, mm):
        if mm is None or mm.users <= 0 or not tsk.alive:
            return True                                # mmget_not_zero failed: already gone
        if not self.mmap_sem_trylock(k, mm):
            return False
        freed = 0
        for zi in range(len(mm.anon)):
            n = mm.anon[zi]
            if n:
                mm.anon[zi] = 0
                k.zones[zi].anon -= n
                k.free_to_zone(zi, n)
                freed += n
        slots = mm.swapped - sum(mm.swapc)             # free_swap_and_cache of written pages
        if slots > 0:
            mm.swapped -= slots
            k.nr_swap_pages += slots
        if mm.text is not None:                        # private file mappings are unmapped too
            k.unmap_text(mm.text)
            mm.text = None
        k.changed()
        if freed:
            yield (CPU, int(freed * k.costs.pte_scan_us), False)
        return True

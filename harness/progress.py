"""Progress of the goal tasks and the ``thrashing`` rule (``shared/spec/metrics.md``, issue 9).

Measured from outside the policy, like a stopwatch: the engine (or a real run's runner) reports
each *step* a goal task completed -- a burst of CPU it asked for, a sleep, an I/O -- with the
time it began, the time it ended and its *nominal* time (the CPU asked for, the sleep asked
for, the I/O at the modelled disk's speed).  Nothing here looks at names or policies.

Definitions chosen where the issue leaves room:

- **Rate.**  A step's nominal time is spread evenly over the time it took: the credit it gives
  up to time ``x`` is ``floor(nominal * (x - start) / (end - start))`` microseconds (integer,
  so every window's credit is exact and the credits of one step add up to its nominal).  A step
  is at most 100 % productive: its nominal is capped at the time it took (a read served from
  the page cache is faster than the disk it is measured against; it must not make up for a
  starving task beside it).  So a step of zero duration credits nothing.
- **Alive time.**  A goal task counts from :meth:`task_start` (default: its first step's start)
  to :meth:`task_exit` (default: the end of the run; the engine: its exit, or the fatal
  signal that kills it -- a dying task's last moments are the kill's, not the work's), except
  while :meth:`suspend`-ed (the
  engine: while it waits for a child, whose own steps measure the work waited for; the
  engine tracks a goal task's descendants as goal tasks).  Alive time outside any completed
  step -- a gap between steps, or a step still unfinished when the task exits or the run ends
  (a fault that never completed) -- earns no credit: it is time that produced nothing.
- **Waiting for a CPU is not a lack of progress.**  Time a goal task spends runnable in the
  run queue (:meth:`queued`, from the scheduler: from the moment it is queued to the moment it
  is put on a CPU) is taken out of its alive time: twenty compile jobs sharing one CPU each
  progress at 1/20 of their nominal rate, yet the machine is doing all the work it can -- that
  is CPU contention, not thrashing.  What stays in is time on a CPU (direct reclaim, a fault)
  and asleep (a disk read, a D wait), where memory pressure shows.  A step's credit is still
  spread over its whole duration, queued parts included, so a window's credit may exceed its
  queue-free alive time: the window's progress is capped at 100 %.
- **Window progress.**  Pooled over the goal tasks: ``P(W) = min(1, sum credit(W) /
  (sum alive(W) - sum queued(W)))``, the share of goal-task time in ``W`` that did nominal
  work.  One starved task among healthy
  ones lowers ``P`` in proportion, it does not decide it alone.  ``W`` is ``window_s`` (10 s)
  long, ends on a grid of ``step_s`` (0.1 s), the first window ends ``window_s`` after time 0.
  A window with no goal task alive has no progress (it neither starts nor continues a stretch).
- **Stretch.**  A maximal run of consecutive windows with ``P < 20 %`` (exactly:
  ``5 * credit < alive - queued``).  It starts at the end ``s`` of its first window and ends at the end
  ``e`` of the first window after it that is not below (or at the end of the run); its length
  is ``e - s``.  ``thrash_s`` is the longest length.
- **Ended by a kill.**  A stretch that ended before the run did is ended by the last kill or
  allocation failure (:meth:`kill`, :meth:`alloc_failure`) in ``[max(s, e - window_s), e]``,
  if any (a kill more than a window before the stretch ended did not end it: the window
  ending at ``e`` lies wholly after it).
  ``thrash_to_kill_s`` is that kill's time minus ``s`` for the longest stretch (``None`` if no
  kill ended it).
- **thrashing.**  Some stretch held for at least ``thrash_limit_s`` before anything ended it:
  ``(k - s if ended by a kill at k else e - s) >= thrash_limit_s``.  So a kill at 75 s into a
  stretch still leaves a thrashing run (the machine was useless for 75 s), a kill at 55 s
  does not, even though the window lag then lets the stretch itself reach 60 s.
"""
from __future__ import annotations

from itertools import chain

import numpy as np

WINDOW_US = 10_000_000
_INT64_SAFE = 1 << 62        # bound of the products of a step spread in int64
STEP_US = 100_000
THRASH_LIMIT_US = 60_000_000


class Progress:
    """Per-run progress bookkeeping; feed it events, then :meth:`finish` returns the columns.

    Tasks are any hashable keys (the engine uses pids).  A task is *tracked* once
    :meth:`task_start` (or its first :meth:`step_done`) named it; the events of untracked tasks
    (:meth:`task_exit`, :meth:`suspend`, :meth:`resume`) are ignored."""

    def __init__(self, thrash_limit_s: float = 60.0, window_s: float = 10.0,
                 step_s: float = 0.1):
        self.step = round(step_s * 1e6)
        self.window = round(window_s * 1e6)
        self.limit = round(thrash_limit_s * 1e6)
        if self.step <= 0 or self.window % self.step:
            raise ValueError("progress: window_s must be a whole number of step_s")
        self.credit: list[int] = []       # per grid bucket, nominal us credited (but:)
        self.whole: list[int] = []        # +1/-1 at the ends of runs of buckets credited a
                                          # whole ``step`` each (100 % productive steps)
        self.partial: list = []           # (start, end, nominal) of partly productive steps
                                          # over several buckets, not yet spread
        self.spread = np.zeros(0, dtype=np.int64)   # their credit per bucket, once spread
        self._converted: dict = {}        # closed, waits as arrays so far (:meth:`_pairs`)
        self.start: dict = {}             # task -> when it started (tracked tasks)
        self.open: dict = {}              # task -> start of its current alive interval
        self.closed: list = []            # (a, z) alive intervals that ended
        self.waits: list = []             # (a, z) run-queue waits inside alive intervals
        self.exited: set = set()
        self.kills: list[int] = []

    @classmethod
    def at_scale(cls, thrash_limit_s: float, time_scale: float = 1.0) -> "Progress":
        """The windows of a run whose times are compressed by ``time_scale`` (a real run at
        that scale, and its model, ``workload.time_scaled``): ``10 s x scale`` on a
        ``0.1 s x scale`` grid (kept a whole number of microseconds and of steps);
        ``thrash_limit_s`` is given already scaled."""
        step_us = max(1, round(STEP_US * time_scale))
        return cls(thrash_limit_s=thrash_limit_s, step_s=step_us / 1e6,
                   window_s=step_us * (WINDOW_US // STEP_US) / 1e6)

    # -- events ------------------------------------------------------------------------------

    def task_start(self, task, t_us: int) -> None:
        if task not in self.start:
            self.start[task] = t_us
            self.open[task] = t_us

    def task_exit(self, task, t_us: int) -> None:
        if task in self.start and task not in self.exited:
            self.exited.add(task)
            self.suspend(task, t_us)

    def suspend(self, task, t_us: int) -> None:
        """``task`` stops counting as alive (it waits for a child, whose own steps measure the
        work it waits for)."""
        a = self.open.pop(task, None)
        if a is not None and t_us > a:
            self.closed.append((a, t_us))

    def resume(self, task, t_us: int) -> None:
        if task in self.start and task not in self.exited and task not in self.open:
            self.open[task] = t_us

    def queued(self, task, a_us: int, z_us: int) -> None:
        """``task`` waited in the run queue from ``a_us`` to ``z_us`` (the scheduler, when it
        puts the task on a CPU).  Counted only inside the task's current alive interval."""
        a0 = self.open.get(task)
        if a0 is None:
            return
        if a_us < a0:
            a_us = a0
        if z_us > a_us:
            self.waits.append((a_us, z_us))

    def kill(self, t_us: int) -> None:
        """An OOM kill (kernel or user-space killer) or a fault kill."""
        self.kills.append(t_us)

    def alloc_failure(self, t_us: int) -> None:
        self.kills.append(t_us)

    def step_done(self, task, t_start_us: int, t_end_us: int, nominal_us: int) -> None:
        if t_end_us < t_start_us:
            raise ValueError(f"progress: step of {task!r} ends before it starts")
        self.task_start(task, t_start_us)
        dur = t_end_us - t_start_us
        if nominal_us > dur:
            nominal_us = dur                # a step is at most 100 % productive
        if nominal_us <= 0:
            return
        step = self.step
        b = t_start_us // step
        last = (t_end_us - 1) // step           # the bucket holding the step's last us
        c = self.credit
        if last >= len(c):
            grow = [0] * (last + 1 - len(c))
            c.extend(grow)
            self.whole.extend(grow)
        if b == last:
            c[last] += nominal_us
        elif nominal_us == dur:
            # 100 % productive: every whole bucket gets ``step`` (the same floors, summed):
            # those between the ends through the difference array ``whole`` (O(1), not
            # O(buckets): a goal task's sleep of minutes is thousands of buckets)
            c[b] += (b + 1) * step - t_start_us
            if last > b + 1:
                w = self.whole
                w[b + 1] += 1
                w[last] -= 1
            c[last] += t_end_us - last * step
        elif dur * (dur + step) < _INT64_SAFE:
            # partly productive over several buckets: spread in one go, in int64, when the
            # windows are next read (:meth:`_spread_partial`)
            self.partial.append((t_start_us, t_end_us, nominal_us))
        else:
            ups = [nominal_us * ((i + 1) * step - t_start_us) // dur for i in range(b, last)]
            c[b:last] = [x + u - d for x, u, d in zip(c[b:last], ups, [0] + ups[:-1])]
            c[last] += nominal_us - ups[-1]

    # -- the columns -------------------------------------------------------------------------

    def _pairs(self, name: str) -> "np.ndarray":
        """The ``(a, z)`` list ``name`` (``closed``, ``waits``: only ever appended to) as an
        int64 array of two columns, converting only what was appended since the last call."""
        lst = getattr(self, name)
        done, arr = self._converted.get(name, (None, None))
        if done is None or done[0] is not lst or done[1] > len(lst):
            done, arr = (lst, 0), np.zeros((0, 2), dtype=np.int64)
        n = done[1]
        if len(lst) > n:
            tail = np.fromiter(chain.from_iterable(lst[n:]), dtype=np.int64,
                               count=2 * (len(lst) - n)).reshape(-1, 2)
            arr = np.concatenate((arr, tail))
        self._converted[name] = ((lst, len(lst)), arr)
        return arr

    def _alive(self, nb: int, iv: "np.ndarray") -> "np.ndarray":
        """Alive us per grid bucket, pooled over the intervals ``iv`` (rows ``(a, z)``): the
        partial buckets at an interval's ends directly, the whole ones between through a
        difference array (O(intervals + buckets), in numpy's int64: a bucket holds at most
        ``step`` us per task)."""
        step = self.step
        alive = np.zeros(nb, dtype=np.int64)
        a, z = iv[:, 0], np.minimum(iv[:, 1], nb * step)
        keep = a < z
        a, z = a[keep], z[keep]
        b, e = a // step, (z - 1) // step
        one = b == e
        np.add.at(alive, b[one], (z - a)[one])
        many = ~one
        b, e, a, z = b[many], e[many], a[many], z[many]
        np.add.at(alive, b, (b + 1) * step - a)
        np.add.at(alive, e, z - e * step)
        whole = np.zeros(nb + 1, dtype=np.int64)   # +1 at the first whole bucket, -1 after the last
        np.add.at(whole, b + 1, 1)
        np.add.at(whole, e, -1)
        alive += np.cumsum(whole[:nb]) * step
        return alive

    def _spread_partial(self) -> None:
        """Credit the buckets of the steps in ``partial`` into ``spread``: bucket ``j`` of a
        step gets its credit up to the bucket's end (``floor(nominal * (x - start) / dur)``,
        all of ``nominal`` at the last) less its credit up to the bucket's start, as the
        step's own loop would have added them (``step_done`` keeps ``dur * (dur + step)``
        below 2**62 for these: no int64 product overflows)."""
        steps = np.array(self.partial, dtype=np.int64).reshape(-1, 3)
        self.partial = []
        step = self.step
        a, z, nominal = steps[:, 0], steps[:, 1], steps[:, 2]
        b, last = a // step, (z - 1) // step
        count = last - b + 1
        which = np.repeat(np.arange(len(steps)), count)
        off = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
        j = b[which] + off
        a, z, nominal, last = a[which], z[which], nominal[which], last[which]
        dur = z - a
        upto = np.where(j < last, nominal * ((j + 1) * step - a) // dur, nominal)
        before = np.where(off > 0, nominal * (j * step - a) // dur, 0)
        if len(self.spread) < len(self.credit):
            self.spread = np.concatenate(
                (self.spread, np.zeros(len(self.credit) - len(self.spread), dtype=np.int64)))
        np.add.at(self.spread, j, upto - before)

    def _credit(self, nb: int) -> "np.ndarray":
        """Nominal us credited per grid bucket: ``credit``, plus ``step`` per run of
        ``whole`` covering the bucket, plus the partly productive steps' ``spread``."""
        if self.partial:
            self._spread_partial()
        n = min(nb, len(self.credit))
        out = np.zeros(nb, dtype=np.int64)
        out[:n] = self.credit[:n]
        out[:n] += np.cumsum(np.array(self.whole[:n], dtype=np.int64)) * self.step
        m = min(nb, len(self.spread))
        out[:m] += self.spread[:m]
        return out

    def window_arrays(self, t_end_us: int):
        """``(window end us, credit us, alive us, queued us)`` of every full window up to
        ``t_end_us`` as four int64 arrays (:meth:`windows` as columns): each window's sums
        are differences of the buckets' running sums."""
        step, n = self.step, self.window // self.step
        nb = t_end_us // step
        if nb < n:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty, empty
        opened = np.array([(a, t_end_us) for a in self.open.values()],
                          dtype=np.int64).reshape(-1, 2)
        cols = []
        for per in (self._credit(nb),
                    self._alive(nb, np.concatenate((self._pairs("closed"), opened))),
                    self._alive(nb, self._pairs("waits"))):
            run = np.concatenate(([0], np.cumsum(per)))
            cols.append(run[n:] - run[:nb + 1 - n])
        ends = np.arange(n, nb + 1, dtype=np.int64) * step
        return ends, cols[0], cols[1], cols[2]

    def windows(self, t_end_us: int):
        """``(window end us, credit us, alive us, queued us)`` of every full window up to
        ``t_end_us`` (``queued``: the part of ``alive`` spent waiting for a CPU), as ints."""
        return zip(*(col.tolist() for col in self.window_arrays(t_end_us)))

    @staticmethod
    def rate(c: int, a: int, q: int):
        """A window's progress: credit over queue-free alive time, at most 1; None when no
        goal task could work in it."""
        w = a - q
        return None if w <= 0 else min(1.0, c / w)

    def finish(self, t_end_us: int) -> dict:
        """The metrics columns: ``progress_min10``, ``thrash_s``, ``thrash_to_kill_s``,
        ``thrash_start_s`` (start of the longest stretch) and ``thrashing``."""
        t, c, a, q = self.window_arrays(t_end_us)
        w = a - q
        worked = w > 0
        # the windows' progress: int64 / int64 is float64 of exact integers (< 2**53), so
        # each quotient is the correctly rounded one, as Python's int / int
        lowest = float(np.minimum(1.0, c[worked] / w[worked]).min()) if worked.any() else None
        below = worked & (5 * c < w)
        edges = np.diff(below.astype(np.int8), prepend=np.int8(0), append=np.int8(0))
        starts = t[np.flatnonzero(edges == 1)].tolist()
        ends = np.flatnonzero(edges == -1)              # the first window not below, or len(t)
        stretches = []                      # (s, e, ended before the run did)
        for s, i in zip(starts, ends.tolist()):
            stretches.append((s, int(t[i]), True) if i < len(t) else (s, t_end_us, False))
        thrashing = False
        best = None                         # (length, s, ending kill or None)
        for s, e, ended in stretches:
            ender = None
            if ended:
                inside = [k for k in self.kills if max(s, e - self.window) <= k <= e]
                ender = max(inside) if inside else None
            held = (ender if ender is not None else e) - s
            if held >= self.limit:
                thrashing = True
            if best is None or e - s > best[0]:
                best = (e - s, s, ender)
        return {
            "progress_min10": None if lowest is None else round(lowest, 6),
            "thrash_s": 0.0 if best is None else best[0] / 1e6,
            "thrash_start_s": None if best is None else best[1] / 1e6,
            "thrash_to_kill_s": None if best is None or best[2] is None
            else (best[2] - best[1]) / 1e6,
            "thrashing": thrashing,
        }

"""Progress of the goal tasks and the ``thrashing`` rule (``shared/spec/metrics.md``, issue 9).

Measured from outside the policy, like a stopwatch: the engine (or a real run's runner) reports
each *step* a goal task completed -- a burst of CPU it asked for, a sleep, an I/O -- with the
time it began, the time it ended and its *nominal* time (the CPU asked for, the sleep asked
for, the I/O at the modelled disk's speed).  Nothing here looks at names or policies.

Definitions chosen where the issue leaves room:

- **Rate.**  A step's nominal time is spread evenly over the time it took: the credit it gives
  up to time ``x`` is ``floor(nominal * (x - start) / (end - start))`` microseconds (integer,
  so every window's credit is exact and the credits of one step add up to its nominal).  A step
  of zero duration credits its nominal at its start.
- **Alive time.**  A goal task counts from :meth:`task_start` (default: its first step's start)
  to :meth:`task_exit` (default: the end of the run).  Alive time outside any completed step --
  a gap between steps, or a step still unfinished when the task exits or the run ends (a fault
  that never completed) -- earns no credit: it is time that produced nothing.
- **Window progress.**  Pooled over the goal tasks: ``P(W) = sum credit(W) / sum alive(W)``,
  the share of goal-task time in ``W`` that did nominal work.  One starved task among healthy
  ones lowers ``P`` in proportion, it does not decide it alone.  ``W`` is ``window_s`` (10 s)
  long, ends on a grid of ``step_s`` (0.1 s), the first window ends ``window_s`` after time 0.
  A window with no goal task alive has no progress (it neither starts nor continues a stretch).
- **Stretch.**  A maximal run of consecutive windows with ``P < 20 %`` (exactly:
  ``5 * credit < alive``).  It starts at the end ``s`` of its first window and ends at the end
  ``e`` of the first window after it that is not below (or at the end of the run); its length
  is ``e - s``.  ``thrash_s`` is the longest length.
- **Ended by a kill.**  A stretch that ended before the run did is ended by the last kill or
  allocation failure (:meth:`kill`, :meth:`alloc_failure`) in ``[s, e]``, if any.
  ``thrash_to_kill_s`` is that kill's time minus ``s`` for the longest stretch (``None`` if no
  kill ended it).
- **thrashing.**  Some stretch held for at least ``thrash_limit_s`` before anything ended it:
  ``(k - s if ended by a kill at k else e - s) >= thrash_limit_s``.  So a kill at 75 s into a
  stretch still leaves a thrashing run (the machine was useless for 75 s), a kill at 55 s
  does not, even though the window lag then lets the stretch itself reach 60 s.
"""
from __future__ import annotations

WINDOW_US = 10_000_000
STEP_US = 100_000
THRASH_LIMIT_US = 60_000_000


class Progress:
    """Per-run progress bookkeeping; feed it events, then :meth:`finish` returns the columns."""

    def __init__(self, thrash_limit_s: float = 60.0, window_s: float = 10.0,
                 step_s: float = 0.1):
        self.step = round(step_s * 1e6)
        self.window = round(window_s * 1e6)
        self.limit = round(thrash_limit_s * 1e6)
        if self.step <= 0 or self.window % self.step:
            raise ValueError("progress: window_s must be a whole number of step_s")
        self.credit: list[int] = []       # per grid bucket, nominal us credited
        self.start: dict = {}
        self.exit: dict = {}
        self.kills: list[int] = []

    # -- events ------------------------------------------------------------------------------

    def task_start(self, task, t_us: int) -> None:
        self.start.setdefault(task, t_us)

    def task_exit(self, task, t_us: int) -> None:
        self.exit.setdefault(task, t_us)

    def kill(self, t_us: int) -> None:
        """An OOM kill (kernel or user-space killer) or a fault kill."""
        self.kills.append(t_us)

    def alloc_failure(self, t_us: int) -> None:
        self.kills.append(t_us)

    def step_done(self, task, t_start_us: int, t_end_us: int, nominal_us: int) -> None:
        if t_end_us < t_start_us:
            raise ValueError(f"progress: step of {task!r} ends before it starts")
        self.start.setdefault(task, t_start_us)
        if t_end_us == t_start_us:
            self._add(t_start_us // self.step, nominal_us)
            return
        dur = t_end_us - t_start_us
        b = t_start_us // self.step
        done = 0
        while True:
            edge = min((b + 1) * self.step, t_end_us)
            upto = nominal_us * (edge - t_start_us) // dur
            self._add(b, upto - done)
            done = upto
            if edge == t_end_us:
                return
            b += 1

    def _add(self, b: int, v: int) -> None:
        c = self.credit
        if b >= len(c):
            c.extend([0] * (b + 1 - len(c)))
        c[b] += v

    # -- the columns -------------------------------------------------------------------------

    def _alive(self, nb: int, t_end: int) -> list[int]:
        alive = [0] * nb
        step = self.step
        for task, a in self.start.items():
            z = min(self.exit.get(task, t_end), nb * step)
            b = a // step
            while a < z:
                edge = min((b + 1) * step, z)
                alive[b] += edge - a
                a = edge
                b += 1
        return alive

    def windows(self, t_end_us: int):
        """``(window end us, credit us, alive us)`` of every full window up to ``t_end_us``."""
        step, n = self.step, self.window // self.step
        nb = t_end_us // step
        credit = (self.credit + [0] * nb)[:nb]
        alive = self._alive(nb, t_end_us)
        c = a = 0
        for b in range(nb):
            c += credit[b]
            a += alive[b]
            if b >= n:
                c -= credit[b - n]
                a -= alive[b - n]
            if b >= n - 1:
                yield (b + 1) * step, c, a

    def finish(self, t_end_us: int) -> dict:
        """The metrics columns: ``progress_min10``, ``thrash_s``, ``thrash_to_kill_s``,
        ``thrash_start_s`` (start of the longest stretch) and ``thrashing``."""
        stretches = []                      # (s, e, ended before the run did)
        s = None
        lowest = None
        for t, c, a in self.windows(t_end_us):
            below = a > 0 and 5 * c < a
            if a > 0:
                p = c / a
                lowest = p if lowest is None else min(lowest, p)
            if below and s is None:
                s = t
            elif not below and s is not None:
                stretches.append((s, t, True))
                s = None
        if s is not None:
            stretches.append((s, t_end_us, False))
        thrashing = False
        best = None                         # (length, s, ending kill or None)
        for s, e, ended in stretches:
            ender = None
            if ended:
                inside = [k for k in self.kills if s <= k <= e]
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

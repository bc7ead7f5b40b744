"""The scheduler: CPUs, run queue, timers, the event loop, the watchdog.

Kernel paths are Python generators that ``yield`` scheduler commands (consume CPU, yield the
CPU, sleep, wait uninterruptibly), so a policy's allocator or reclaim loop reads like the kernel
function it models and is interleaved with every other task exactly as a round-robin scheduler
would interleave it.  Time advances in one place, :func:`charge` (CPU time to a task on a CPU);
the one-CPU loop (:meth:`Scheduler._run1`) is the general one (:meth:`Scheduler._run_n`) with
the per-CPU loops unrolled, proven the same by ``tests/test_engine_loops.py``.
"""
from __future__ import annotations

import heapq
import time

from .model import D, R, S, SimError, Task, WaitQueue

# scheduler commands yielded by kernel/user generators
CPU = 0        # (CPU, us, is_user)
YIELD = 1      # (YIELD,)  sched_yield: to the back of the run queue
SLEEP = 2      # (SLEEP, until_us)  TASK_INTERRUPTIBLE until a time (a signal wakes it)
DWAIT = 3      # (DWAIT, until_us)  TASK_UNINTERRUPTIBLE until a time
WAITQ = 4      # (WAITQ, queue or None, interruptible)  sleep until woken (via the queue)
REPEAT = 5     # (REPEAT, us, count)  ``count`` identical kernel iterations of ``us`` each; the
               # generator is sent how many ran: fewer if the machine changed meanwhile
ITER = 6       # (ITER, us, is_user, fn)  CPU like (CPU, us, is_user); when it is used up the engine
               # calls ``fn()`` instead of resuming the generator: an int > 0 is the CPU time of the
               # next iteration (one event, as a resumption would have been), None resumes the
               # generator.  ``fn`` must do exactly what the generator would have done up to its
               # next yield (a loop's tail and head that consult nothing but the machine).
               # (ITER, us, is_user, fn, many): ``many(now, limit)`` makes in one call the
               # iterations that ``fn`` would make from ``now`` on, each one starting when the
               # one before ended (whole microseconds later) and ending before ``limit``; it
               # stops before one that would not, or that ``fn`` would not make, and changes
               # nothing the engine reads (timers, run queue, spin points).  Returns (how
               # many, their whole-microsecond CPU time, the CPU time of the last)

CMD_YIELD = (YIELD,)
INF = float("inf")


class RunTimeout(Exception):
    """The run exceeded its wall-clock budget (a policy looping without end, say)."""



class CPUState:
    __slots__ = ("task", "slice_left", "idx", "since")

    def __init__(self, idx: int = 0):
        self.task = None
        self.slice_left = 0
        self.idx = idx
        self.since = 0              # when its task was put on it (CFS: the runtime it has had)




def charge(c: CPUState, t: Task, dt: int):
    """The one time-advance: ``dt`` microseconds of CPU to task ``t`` on CPU ``c`` -- its
    command and the CPU's timeslice shrink, its user or system time grows, its OOM boost is
    used up."""
    t.cmd_left -= dt
    c.slice_left -= dt
    if t.cmd_user:
        t.utime += dt
    else:
        t.stime += dt
    if t.boost_us > 0:
        t.boost_us = max(0, t.boost_us - dt)


# CFS (tree ``torvalds/linux``): the defaults of ``sysctl_sched_latency``,
# ``sysctl_sched_min_granularity`` and ``sched_nr_latency`` in us -- ``kernel/sched_fair.c`` of
# 2.6.36, and ``kernel/sched/fair.c`` from 2.6.38 (commit 21406928afe4, "sched: Tweak
# sched_latency and min_granularity") to 6.1 -- and the scheduler tick of Debian's amd64
# kernels (CONFIG_HZ=250)
CFS_2_6_36 = (6000, 2000, 3)
CFS_2_6_38 = (6000, 750, 8)
CFS_TICK_US = 4000
CFS_ALONE_US = 10 ** 15      # the slice of a task alone on its CPU: until another one wakes


def cfs_slice(k, cpu: CPUState, tunables: tuple = CFS_2_6_38) -> int:
    """The CPU time the task on ``cpu`` runs before CFS preempts it, for the modern models
    (2.4's scheduler, the engine's default, gives every task the fixed ``timeslice_us``);
    called when the task is put on the CPU and, while it runs alone, when another task wakes.

    ``sched_slice``: the period ``__sched_period(nr_running)`` -- ``sysctl_sched_latency``, or
    ``nr_running * sysctl_sched_min_granularity`` above ``sched_nr_latency`` tasks -- split over
    the runnable tasks by weight, both tunables (``tunables``: the generation's defaults)
    scaled by ``1 + ilog2(ncpus)``
    (``get_update_sysctl_factor``, SCHED_TUNABLESCALING_LOG).  ``entity_tick`` calls
    ``check_preempt_tick`` at each scheduler tick while more than one task is runnable, and it
    preempts the task once its runtime since it was picked exceeds that ideal share: the task
    leaves the CPU at the first tick after it has run its share (no HRTICK), and a task alone
    runs until another one wakes (:meth:`Scheduler.wake`).

    Departures: every task has nice 0's weight (the engine does not model nice in scheduling);
    ``nr_running`` is this CPU's share of the runnable tasks when the slice is set, not
    recomputed at each tick; a woken task waits at the back of the run queue (no vruntime
    placement, no wakeup preemption) -- with slices of a tick or two that wait is short;
    ``sched_yield`` is the engine's (to the back of the queue)."""
    ncpus = len(k.cpus)
    nr = -(-k.n_runnable // ncpus)
    if nr <= 1:
        return CFS_ALONE_US
    latency, min_granularity, nr_latency = tunables
    factor = min(ncpus, 8).bit_length()                 # 1 + ilog2(min(ncpus, 8))
    if nr > nr_latency:
        ideal = min_granularity * factor
    else:
        ideal = latency * factor // nr
    now = k.now
    end = cpu.since + ideal
    if end < now:
        end = now
    return end - end % CFS_TICK_US + CFS_TICK_US - now


class Scheduler:
    """Run queue, CPUs, timers and the event loop of a :class:`harness.engine.Kernel`."""

    #: the timeslice rule, ``fn(kernel, cpu) -> us`` (:func:`cfs_slice` with a generation's
    #: tunables), set by the modern models' reset; None: 2.4's fixed ``costs.timeslice_us``
    sched_slice = None

    def alarm(self, key, when: int):
        """A time at which some state a loop consults changes by itself (a rate limiter's gate
        opening): fast-forwarding never jumps past it."""
        self.alarms[key] = when

    def spin_point(self, task):
        """Mark the top of a retry loop whose local state is identical on every iteration.

        If nothing changed since this task last passed here, its iteration was a no-op.  When every
        runnable task is in that state the machine is at a fixed point until a timer fires, and the
        scheduler fast-forwards (model.md: the livelock must not cost wall time).
        """
        v = self.version
        if task.spin_seen == v:
            if task.spin_ver != v:
                task.spin_ver = v
                self.spin_count += 1
        else:
            task.spin_seen = v

    def at(self, when: int, fn, arg=None):
        self.tseq += 1
        heapq.heappush(self.timers, (when, self.tseq, fn, arg))

    def wake(self, t: Task):
        if t.state in (S, D):
            if t.state == D:
                self.dstate.pop(t.pid, None)
            t.state = R
            self.state_epoch += 1
            t.sleep_token += 1
            if t.boost_us > 0:
                self.runq.appendleft(t)
            else:
                self.runq.append(t)
            t.rq_since = self.now
            self.n_runnable += 1
            if self.sched_slice is not None:       # a task alone on its CPU has company now
                for c in self.cpus:
                    if c.slice_left > CFS_ALONE_US // 2 and c.task is not None:
                        c.slice_left = max(c.task.boost_us, self.sched_slice(self, c))
            self.changed()
            psi = self.psi                    # psi_enqueue, on the CPU it last ran on
            psi.wake(self.now, t.pid, 0 if psi.ncpus == 1 else psi.cpu_of.get(t.pid, t.pid % psi.ncpus))

    def _timer_wake(self, arg):
        t, token = arg
        if t.sleep_token == token and t.state in (S, D):
            self.wake(t)

    def wake_queue(self, q: WaitQueue):
        ts, q.tasks = q.tasks, []
        for t in ts:
            self.wake(t)

    def runnable(self):
        """The tasks in R state, in no particular order: those on a CPU and those queued."""
        for c in self.cpus:
            if c.task is not None:
                yield c.task
        yield from self.runq

    def _remove_runnable(self, t: Task):
        for c in self.cpus:
            if c.task is t:
                c.task = None
                self.n_runnable -= 1
                return
        try:
            self.runq.remove(t)
            self.n_runnable -= 1
        except ValueError:
            pass

    def _dispatch(self, cpu: CPUState):
        t = self.runq.popleft()
        cpu.task = t
        since = t.rq_since
        if since is not None:                  # its wait for a CPU is not a lack of progress
            t.rq_since = None
            if since < self.now:
                self.prog.queued(t.pid, since, self.now)
        self.switched_in[t.pid] = t            # context_switch -> lru_gen_use_mm
        cpu.since = self.now
        sl = t.slice_len
        if not sl:
            rule = self.sched_slice
            sl = self.costs.timeslice_us if rule is None else rule(self, cpu)
        cpu.slice_left = max(t.boost_us, sl)
        t.slice_len = None
        psi = self.psi                        # psi_task_switch (a migration first, if any)
        if psi.ncpus > 1 and psi.cpu_of.get(t.pid) != cpu.idx:
            psi.migrate(self.now, t.pid, cpu.idx)
        if psi.ms:
            psi.switch(self.now, cpu.idx, t.pid)

    def _preempt(self, cpu: CPUState, t: Task):
        """``t`` leaves ``cpu`` still runnable (its timeslice is used up, or it yields): back to
        the run queue."""
        cpu.task = None
        t.rq_since = self.now
        if t.pid in self.psi.ms:
            self.psi.switch(self.now, cpu.idx, None)

    def _repeat_check(self, t: Task):
        """A REPEAT whose iterations would now see a changed machine stops at the end of the
        current iteration, so the kernel loop observes the change exactly where it would have."""
        if self.version != t.rep_ver:
            per = t.rep_per
            elapsed = t.rep_total - t.cmd_left
            new_total = (elapsed // per + 1) * per
            if new_total < t.rep_total:
                t.cmd_left = new_total - elapsed
                t.rep_total = new_total
            t.rep_ver = self.version

    def _step(self, cpu: CPUState):
        """Run a task's generator until it asks for time or leaves the CPU."""
        t = cpu.task
        fn = t.iter_fn
        if fn is not None:
            us = fn()
            if us is not None and us > 0:
                self.events += 1
                t.cmd_left = us
                return
            t.iter_fn = t.iter_many = None
        gen = t.gen
        if t.rep_per:
            t.send_val = t.rep_total // t.rep_per
            t.rep_per = 0
        while True:
            self.events += 1
            try:
                val, t.send_val = t.send_val, None
                cmd = gen.send(val)
            except StopIteration:
                if t.alive:
                    self.do_exit(t, 0, "exit")
                if cpu.task is t:
                    cpu.task = None
                    self.n_runnable -= 1
                return
            if t.state != R:          # killed synchronously (do_exit inside the generator)
                if cpu.task is t:
                    cpu.task = None
                return
            op = cmd[0]
            if op == CPU:
                us = cmd[1]
                if us <= 0:
                    continue
                t.cmd_left = us
                t.cmd_user = cmd[2]
                return
            if op == ITER:
                us = cmd[1]
                if us <= 0:
                    continue
                t.cmd_left = us
                t.cmd_user = cmd[2]
                t.iter_fn = cmd[3]
                t.iter_many = cmd[4] if len(cmd) > 4 else None
                return
            if op == REPEAT:
                per, count = cmd[1], cmd[2]
                if per <= 0 or count <= 0:
                    t.send_val = count
                    continue
                t.rep_per, t.rep_total, t.rep_ver = per, per * count, self.version
                t.cmd_left = per * count
                t.cmd_user = False
                return
            if op == YIELD:
                if self.runq:
                    self._preempt(cpu, t)
                    if t.boost_us > 0:
                        self.runq.insert(1, t)
                    else:
                        self.runq.append(t)
                    return
                continue
            # sleeping commands
            self.state_epoch += 1
            cpu.task = None
            self.n_runnable -= 1
            t.sleep_token += 1
            self.psi.sleep(self.now, t.pid, op == DWAIT)     # a disk wait is an I/O wait
            if op == SLEEP or op == DWAIT:
                t.state = S if op == SLEEP else D
                if op == DWAIT:
                    self.dstate[t.pid] = t
                if op == SLEEP and self.fatal_pending(t):
                    t.state = S
                    self.wake(t)
                    return
                self.at(cmd[1], self._timer_wake, (t, t.sleep_token))
            elif op == WAITQ:
                t.state = S if cmd[2] else D
                if not cmd[2]:
                    self.dstate[t.pid] = t
                q = cmd[1]
                if q is not None:
                    q.tasks.append(t)
                if cmd[2] and self.fatal_pending(t):
                    if q is not None:
                        q.tasks.remove(t)
                    self.wake(t)
                    return
            else:
                raise SimError(f"unknown command {cmd!r}")
            self.changed()
            return

    def _advance(self, dt: int):
        """``dt`` microseconds pass: :func:`charge` every CPU's task."""
        for c in self.cpus:
            t = c.task
            if t is not None:
                charge(c, t, dt)
        self.now += dt

    def _fast_forward(self, until: int):
        """Every runnable task is spinning in a loop that changes nothing: jump to ``until``."""
        dt = until - self.now
        if dt <= 0:
            return
        share = dt * len(self.cpus) // max(1, self.n_runnable)
        share = min(share, dt)
        for t in self.runq:
            t.stime += share
        for c in self.cpus:
            if c.task is not None:
                c.task.stime += share
        self.now = until
        self.emit("ff", dt)

    def _sample(self):
        z = self.zones
        self.samples.append((self.now, z[0].free, z[1].free, z[2].free))
        self.refault_samples.append(self.refaults)
        self.next_sample = self.now - self.now % self.sample_us + self.sample_us
        hook = self.__dict__.get("on_sample")     # harness.laws.Periodic, set by the runner
        if hook is not None:
            hook(self)

    def run(self, wall_timeout_s: float | None = None):
        """The event loop: dispatch, advance to the next event, fire it; until the run ends.
        ``wall_timeout_s`` bounds the wall time (checked every 4096 loop turns)."""
        if len(self.cpus) == 1:
            self._run1(wall_timeout_s)
        else:
            self._run_n(wall_timeout_s)
        self._sample()
        return self

    def _run1(self, wall_timeout_s):
        """:meth:`_run_n` for a machine with one CPU, turn for turn the same operations in the
        same order, with the per-CPU loops unrolled and the hot attributes held in locals."""
        c = self.cpus[0]
        timers = self.timers
        runq = self.runq
        heappop = heapq.heappop
        debug = self.debug
        alarms = self.alarms
        watchdog_us = self.watchdog_us
        time_limit_us = self.time_limit_us
        step = self._step
        deadline_wall = time.perf_counter() + wall_timeout_s if wall_timeout_s else None
        turns = 0
        while self.finished is None:
            turns += 1
            if deadline_wall is not None and not turns & 4095 and time.perf_counter() > deadline_wall:
                raise RunTimeout(f"run exceeded {wall_timeout_s:g} s of wall time at "
                                 f"t={self.now / 1e6:.3f} s simulated")
            t = c.task
            if t is not None and not t.rep_per:
                # the usual turn, its tests in short: the task's command ends first (before a
                # timer, the end of its timeslice, the next zone sample and the deadline) and
                # no fast-forward is due -- advance to its end, step, fire the timers now due
                now = self.now
                cl = t.cmd_left
                e = now + cl
                n_run = self.n_runnable
                if (0 < cl < c.slice_left and (not timers or e < timers[0][0])
                        and e < self.next_sample and not (n_run and self.spin_count >= n_run)
                        and e < self.last_progress + watchdog_us and e < time_limit_us):
                    cl = int(cl)                # (as _advance: whole microseconds)
                    charge(c, t, cl)
                    self.now = now + cl
                    if t.iter_fn is not None:
                        self._iterate1(c, t)
                    else:
                        step(c)
                    if debug:
                        self.check_pages()
                    while timers and timers[0][0] <= self.now:
                        _, _, fn, arg = heappop(timers)
                        self.events += 1
                        fn(arg)
                        if debug:
                            self.check_pages()
                    continue
            while t is None and runq:
                self._dispatch(c)
                if c.task.cmd_left <= 0:
                    step(c)
                    if debug:
                        self.check_pages()
                t = c.task
            now = self.now
            t_next = timers[0][0] if timers else INF
            if t is not None:
                if t.rep_per:
                    self._repeat_check(t)
                cl, sl = t.cmd_left, c.slice_left
                e = now + (cl if cl < sl else sl)
                if e < t_next:
                    t_next = e
                n_run = self.n_runnable
                if n_run and self.spin_count >= n_run:
                    deadline = self.last_progress + watchdog_us
                    if time_limit_us < deadline:
                        deadline = time_limit_us
                    target = min(timers[0][0] if timers else INF, deadline)
                    for a in alarms.values():
                        if now < a < target:
                            target = a
                    self._fast_forward(int(target))
                    now = self.now
                    if now >= self.next_sample:
                        self._sample()
                    t_next = now
            deadline = self.last_progress + watchdog_us
            if time_limit_us < deadline:
                deadline = time_limit_us
            if t_next >= deadline:
                if t_next == INF and t is None and deadline == INF:
                    self.finished = "idle"
                    break
                if deadline > now:
                    if t is not None:
                        self._advance(int(deadline - now))
                    else:
                        self.now = int(deadline)
                if self._end_by_deadline():
                    break
                continue
            if t_next > now:
                dt = int(t_next - now)
                if t is not None:              # _advance, one CPU
                    charge(c, t, dt)
                now = self.now = now + dt
            if now >= self.next_sample:
                self._sample()
            if t is not None:
                if t.cmd_left <= 0:
                    if t.iter_fn is not None:
                        self._iterate1(c, t)
                    else:
                        step(c)
                    if debug:
                        self.check_pages()
                elif c.slice_left <= 0:
                    self._preempt(c, t)
                    if t.boost_us > 0:
                        runq.appendleft(t)
                    else:
                        runq.append(t)
            while timers and timers[0][0] <= self.now:
                _, _, fn, arg = heappop(timers)
                self.events += 1
                fn(arg)
                if debug:
                    self.check_pages()

    def _iterate1(self, c: CPUState, t: Task):
        """One CPU: an ``ITER`` command is used up.  Call its function, and while the next
        iteration would end before anything else happens -- no timer due by then, within the
        timeslice, before the next zone sample and the watchdog or time limit, no fast-forward
        due -- make the turns of :meth:`_run1` that would only advance time and call it again
        (they consist of nothing else).  Otherwise the main loop takes over with the iteration
        set as the task's CPU command, or the generator is resumed.

        ``lim`` holds the end of the timeslice (``now + slice_left`` does not change while
        both advance together), the next sample and the watchdog/time-limit deadline as they
        were on entry; ``fn`` may only move the deadline later (``progress``), so an iteration
        that reaches the stale one goes back to the main loop, which then makes the same
        decision with the current deadline -- either way the same operations in the same
        order."""
        fn, many = t.iter_fn, t.iter_many
        timers = self.timers
        debug = self.debug
        now = self.now
        lim = now + c.slice_left
        if self.next_sample < lim:
            lim = self.next_sample
        deadline = self.last_progress + self.watchdog_us
        if self.time_limit_us < deadline:
            deadline = self.time_limit_us
        if deadline < lim:
            lim = deadline
        while True:
            us = fn()
            if us is None or us <= 0:
                t.iter_fn = t.iter_many = None
                self._step(c)
                return
            self.events += 1
            t.cmd_left = us
            now = self.now
            e = now + us
            if e >= lim or (timers and timers[0][0] <= e):
                return
            n_run = self.n_runnable
            if n_run and self.spin_count >= n_run:
                return
            if debug:
                self.check_pages()
            d = int(us)                   # (as _advance: whole microseconds)
            charge(c, t, d)               # (t.cmd_left was us)
            self.now = now = now + d
            if many is not None and not debug:
                # the iterations that fit before the stops above, in one call: the same
                # accounting, summed (the fast-forward test cannot change meanwhile)
                n, d, last = many(now, timers[0][0] if timers and timers[0][0] < lim else lim)
                if n:
                    self.events += n
                    self._advance(d)
                    t.cmd_left = last - int(last)

    def _run_n(self, wall_timeout_s):
        """The event loop of a machine with several CPUs."""
        cpus = self.cpus
        timers = self.timers
        heappop = heapq.heappop
        debug = self.debug
        deadline_wall = time.perf_counter() + wall_timeout_s if wall_timeout_s else None
        turns = 0
        while self.finished is None:
            turns += 1
            if deadline_wall is not None and not turns & 4095 and time.perf_counter() > deadline_wall:
                raise RunTimeout(f"run exceeded {wall_timeout_s:g} s of wall time at "
                                 f"t={self.now / 1e6:.3f} s simulated")
            for c in cpus:
                while c.task is None and self.runq:
                    self._dispatch(c)
                    if c.task.cmd_left <= 0:
                        self._step(c)
                        if debug:
                            self.check_pages()
            t_next = timers[0][0] if timers else INF
            busy = False
            for c in cpus:
                t = c.task
                if t is not None:
                    busy = True
                    if t.rep_per:
                        self._repeat_check(t)
                    e = self.now + (t.cmd_left if t.cmd_left < c.slice_left else c.slice_left)
                    if e < t_next:
                        t_next = e
            deadline = self.last_progress + self.watchdog_us
            if self.time_limit_us < deadline:
                deadline = self.time_limit_us
            if busy and self.n_runnable and self.spin_count >= self.n_runnable:
                target = min(timers[0][0] if timers else INF, deadline)
                for a in self.alarms.values():
                    if self.now < a < target:
                        target = a
                self._fast_forward(int(target))
                if self.now >= self.next_sample:
                    self._sample()
                t_next = self.now
            if t_next >= deadline:
                if t_next == INF and not busy and deadline == INF:
                    self.finished = "idle"
                    break
                if deadline > self.now:
                    if busy:
                        self._advance(int(deadline - self.now))
                    else:
                        self.now = int(deadline)
                if self._end_by_deadline():
                    break
                continue
            if t_next > self.now:
                self._advance(int(t_next - self.now))
            if self.now >= self.next_sample:
                self._sample()
            for c in cpus:
                t = c.task
                if t is None:
                    continue
                if t.cmd_left <= 0:
                    self._step(c)
                    if debug:
                        self.check_pages()
                elif c.slice_left <= 0:
                    self._preempt(c, t)
                    if t.boost_us > 0:
                        self.runq.appendleft(t)
                    else:
                        self.runq.append(t)
            while timers and timers[0][0] <= self.now:
                _, _, fn, arg = heappop(timers)
                self.events += 1
                fn(arg)
                if debug:
                    self.check_pages()

    def _end_by_deadline(self) -> bool:
        """The time limit, or the watchdog.  A machine on which no task waits for memory is idle,
        not stuck: the watchdog window then starts again.  Returns True when the run ends."""
        if self.now >= self.time_limit_us:
            self.finished = "time-limit"
            self.emit("time_limit")
            return True
        if not any(t.in_alloc_since is not None for t in self.live.values()):
            self.last_progress = self.now
            return False
        self.finished = "watchdog"
        # livelock: someone is runnable and looping in the allocator/reclaim (CPU busy, nothing
        # achieved); deadlock: everyone waiting for memory is asleep
        spinning = [t for t in self.tasks if t.state == R and t.in_alloc_since is not None]
        self.watchdog_kind = "livelock" if spinning else "deadlock"
        self.emit("watchdog", self.watchdog_kind, tuple(t.pid for t in spinning))
        return True

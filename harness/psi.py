"""Pressure stall information as ``kernel/sched/psi.c`` (v6.1) computes it, for the system group.

The kernel's pieces, kept in their shape:

- Per task, ``psi_flags``: TSK_IOWAIT, TSK_MEMSTALL, TSK_RUNNING, TSK_MEMSTALL_RUNNING,
  TSK_ONCPU (``include/linux/psi_types.h``).  ``psi_memstall_enter``/``leave`` set/clear
  TSK_MEMSTALL | TSK_MEMSTALL_RUNNING on the current task; a task that sleeps in a memstall
  (waiting for the read of a workingset page) keeps TSK_MEMSTALL and loses TSK_RUNNING and
  TSK_MEMSTALL_RUNNING (``psi_task_switch`` with ``sleep``).
- Per CPU, ``psi_group_cpu``: the task counts ``tasks[NR_IOWAIT, NR_MEMSTALL, NR_RUNNING,
  NR_MEMSTALL_RUNNING]``; ``psi_group_change`` updates them, derives the state mask with
  ``test_state`` and, through ``record_times``, adds the time since the last change to every
  state that was on.  For memory (v5.17+, commit cb0e52b77487 "psi: Fix PSI_MEM_FULL state when
  tasks are in memstall and doing reclaim")::

      SOME = tasks[NR_MEMSTALL] > 0
      FULL = tasks[NR_MEMSTALL] > 0 and tasks[NR_RUNNING] == tasks[NR_MEMSTALL_RUNNING]
             or the task on the CPU is in a memstall (a reclaimer on the CPU: nothing
             productive runs there, runnable or not)
      NONIDLE = tasks[NR_IOWAIT] or tasks[NR_MEMSTALL] or tasks[NR_RUNNING]

  i.e. FULL = every non-idle task is stalled, counting a task that is running *as* a stall
  (direct reclaim, kswapd) as unproductive.  Before v5.17 the test was ``!tasks[NR_RUNNING]``.
- ``collect_percpu_times``: per CPU, the state-time deltas since the last collection, weighted
  by that CPU's non-idle time in *jiffies* (``nsecs_to_jiffies``, truncated), summed and
  divided by the total non-idle jiffies; added to ``group->total``.  ``total=`` in
  ``/proc/pressure/memory`` is that in microseconds.
- ``update_averages`` / ``calc_avgs``: every ``psi_period`` = PSI_FREQ = ``2*HZ+1`` jiffies,
  ``sample = total - avg_total`` (capped at the period), ``pct = sample * 100 / period *
  FIXED_1``, and ``avg = calc_load(avg, EXP_n, pct)`` with EXP_10s 1677, EXP_60s 1981, EXP_300s
  2034 (11-bit fixed point, ``include/linux/sched/loadavg.h``: ``calc_load`` rounds up when
  the load rises).  Periods with no activity are folded in at once with
  ``calc_load_n`` (``kernel/sched/loadavg.c``: ``fixed_power_int``).
- ``psi_avgs_work``: the averaging worker runs PSI_FREQ jiffies after the first task change,
  then ``nsecs_to_jiffies(avg_next_update - now) + 1`` jiffies after each run, and stops when a
  whole collection saw no non-idle time (restarted by the next task change).  ``psi_show``
  (reading the file) collects and, if due, updates the averages too -- reading at another
  moment than the worker shifts a period boundary, as in the kernel.

Departures:
- One group, the system one (no cgroups, no ``group->parent`` walk); no triggers/polling
  (``psi_trigger_create``), no IRQ pressure.
- Timer slack: a delayed work runs exactly ``n`` jiffies after it was queued (the kernel's
  timer fires on the next jiffy boundary, a workqueue adds latency).
- The averaging worker is not a task: the kernel's check for the CPU it runs on
  (``tasks[NR_RUNNING] + ... > 1``) is the plain non-idle test here.
- Times are simulated microseconds, kept as nanoseconds (x1000) so every division truncates
  where the kernel's does; the kernel's u32 per-CPU time buckets are unbounded ints here.
"""
from __future__ import annotations

# include/linux/psi_types.h (v6.1)
NR_IOWAIT, NR_MEMSTALL, NR_RUNNING, NR_MEMSTALL_RUNNING = range(4)
NR_PSI_TASK_COUNTS = 4
TSK_IOWAIT = 1 << NR_IOWAIT
TSK_MEMSTALL = 1 << NR_MEMSTALL
TSK_RUNNING = 1 << NR_RUNNING
TSK_MEMSTALL_RUNNING = 1 << NR_MEMSTALL_RUNNING
TSK_ONCPU = 1 << NR_PSI_TASK_COUNTS
(PSI_IO_SOME, PSI_IO_FULL, PSI_MEM_SOME, PSI_MEM_FULL, PSI_CPU_SOME, PSI_CPU_FULL,
 PSI_NONIDLE) = range(7)
NR_PSI_STATES = 7
RES = {"io": 0, "memory": 1, "cpu": 2}

# include/linux/sched/loadavg.h, kernel/sched/psi.c
FSHIFT = 11
FIXED_1 = 1 << FSHIFT
EXP_10s, EXP_60s, EXP_300s = 1677, 1981, 2034
EXPS = (EXP_10s, EXP_60s, EXP_300s)
NSEC_PER_SEC = 1_000_000_000


def calc_load(load: int, exp: int, active: int) -> int:
    """``calc_load`` (loadavg.h, v4.20+): ``(load*exp + active*(FIXED_1-exp)) / FIXED_1``,
    rounded up when the load rises (commit 20878232c523)."""
    newload = load * exp + active * (FIXED_1 - exp)
    if active >= load:
        newload += FIXED_1 - 1
    return newload // FIXED_1


def fixed_power_int(x: int, frac_bits: int, n: int) -> int:
    """``fixed_power_int`` (kernel/sched/loadavg.c): x**n in fixed point, rounding each step."""
    result = 1 << frac_bits
    if n:
        while True:
            if n & 1:
                result = (result * x + (1 << (frac_bits - 1))) >> frac_bits
            n >>= 1
            if not n:
                break
            x = (x * x + (1 << (frac_bits - 1))) >> frac_bits
    return result


def calc_load_n(load: int, exp: int, active: int, n: int) -> int:
    return calc_load(load, fixed_power_int(exp, FSHIFT, n), active)


def load_str(x: int) -> str:
    """``LOAD_INT(x).LOAD_FRAC(x)`` as ``psi_show`` prints it (``%lu.%02lu``)."""
    return f"{x >> FSHIFT}.{((x & (FIXED_1 - 1)) * 100) >> FSHIFT:02d}"


def test_state(tasks, state: int, oncpu: bool) -> bool:
    """``test_state`` (psi.c, v6.1)."""
    if state == PSI_IO_SOME:
        return tasks[NR_IOWAIT] > 0
    if state == PSI_IO_FULL:
        return tasks[NR_IOWAIT] > 0 and not tasks[NR_RUNNING]
    if state == PSI_MEM_SOME:
        return tasks[NR_MEMSTALL] > 0
    if state == PSI_MEM_FULL:
        return tasks[NR_MEMSTALL] > 0 and tasks[NR_RUNNING] == tasks[NR_MEMSTALL_RUNNING]
    if state == PSI_CPU_SOME:
        return tasks[NR_RUNNING] > int(oncpu)
    if state == PSI_CPU_FULL:
        return tasks[NR_RUNNING] > 0 and not oncpu
    return bool(tasks[NR_IOWAIT] or tasks[NR_MEMSTALL] or tasks[NR_RUNNING])


class _Cpu:
    """``struct psi_group_cpu`` plus which task is on the CPU (``cpu_curr``)."""
    __slots__ = ("tasks", "state_mask", "state_start", "times", "times_prev", "curr")

    def __init__(self, now: int):
        self.tasks = [0] * NR_PSI_TASK_COUNTS
        self.state_mask = 0
        self.state_start = now
        self.times = [0] * NR_PSI_STATES
        self.times_prev = [0] * NR_PSI_STATES
        self.curr = None


class PSIGroup:
    """The system PSI group of a machine with ``ncpus`` CPUs; all times in simulated us.

    Drive it with the task's events, at non-decreasing times: :meth:`wake` / :meth:`sleep`
    (runnable or not, ``iowait`` for an I/O sleep), :meth:`switch` (which task is on a CPU),
    :meth:`memstall_enter` / :meth:`memstall_leave` (around direct reclaim, kswapd's
    ``balance_pgdat``, and the wait for a workingset page), :meth:`exit`; or the raw
    :meth:`task_change`.  Read it as ``/proc/pressure/memory`` is read: :meth:`show`,
    :meth:`totals`, :meth:`avgs` (each has ``psi_show``'s side effect of collecting times).
    ``full_avg10_max`` is the highest memory ``full avg10`` any averaging produced."""

    def __init__(self, ncpus: int = 1, hz: int = 250, t0_us: int = 0):
        if NSEC_PER_SEC % hz:
            raise ValueError(f"psi: HZ={hz} does not divide a second into whole nanoseconds")
        self.jiffy_ns = NSEC_PER_SEC // hz
        self.period_ns = (2 * hz + 1) * self.jiffy_ns        # psi_period = PSI_FREQ jiffies
        now = t0_us * 1000
        self.now = now
        self.cpus = [_Cpu(now) for _ in range(ncpus)]
        self.task_cpu: dict = {}
        self.psi_flags: dict = {}
        self.in_memstall: dict = {}
        self.total = [0] * (NR_PSI_STATES - 1)               # group->total[PSI_AVGS], ns
        self.avg_total = [0] * (NR_PSI_STATES - 1)
        self.avg = [[0, 0, 0] for _ in range(NR_PSI_STATES - 1)]
        self.avg_last_update = now                            # group_init
        self.avg_next_update = now + self.period_ns
        self.work_at = None                                   # the pending psi_avgs_work
        self.full_avg10_max = 0

    # -- time ---------------------------------------------------------------------------------

    def _advance(self, t_us: int) -> int:
        now = t_us * 1000
        if now < self.now:
            raise ValueError(f"psi: time went backwards ({t_us} us < {self.now // 1000} us)")
        while self.work_at is not None and self.work_at <= now:
            self._avgs_work(self.work_at)
        self.now = now
        return now

    # -- psi_group_change / record_times --------------------------------------------------------

    def _record_times(self, c: _Cpu, now: int) -> None:
        delta = now - c.state_start
        c.state_start = now
        m = c.state_mask
        for s in range(NR_PSI_STATES):
            if m & (1 << s):
                c.times[s] += delta

    def _group_change(self, cpu: int, clear: int, set_: int, now: int) -> None:
        c = self.cpus[cpu]
        oncpu = c.curr is not None
        for t in range(NR_PSI_TASK_COUNTS):
            if clear & (1 << t):
                if not c.tasks[t]:
                    raise ValueError(f"psi: task underflow cpu={cpu} t={t} clear={clear:#x}")
                c.tasks[t] -= 1
            if set_ & (1 << t):
                c.tasks[t] += 1
        mask = 0
        for s in range(NR_PSI_STATES):
            if test_state(c.tasks, s, oncpu):
                mask |= 1 << s
        # "a memstall is FULL ... also when the CPU is actively reclaiming"
        if oncpu and self.in_memstall.get(c.curr):
            mask |= 1 << PSI_MEM_FULL
        self._record_times(c, now)
        c.state_mask = mask
        if self.work_at is None:                              # wake_clock
            self.work_at = now + self.period_ns

    def task_change(self, t_us: int, pid, clear: int, set_: int) -> None:
        """``psi_task_change``: clear and set ``psi_flags`` bits of task ``pid`` (which must
        have a CPU from :meth:`wake`)."""
        now = self._advance(t_us)
        flags = self.psi_flags.get(pid, 0)
        if (flags & set_) or (flags & clear) != clear:
            raise ValueError(f"psi: inconsistent task state pid={pid} flags={flags:#x} "
                             f"clear={clear:#x} set={set_:#x}")
        self.psi_flags[pid] = (flags & ~clear) | set_
        self._group_change(self.task_cpu[pid], clear & ~TSK_ONCPU, set_ & ~TSK_ONCPU, now)

    # -- the task events ----------------------------------------------------------------------

    def wake(self, t_us: int, pid, cpu: int = 0) -> None:
        """``psi_enqueue`` (wakeup): runnable on ``cpu``; an I/O sleep's TSK_IOWAIT ends.

        Waking on another CPU first moves the task's sleep-persistent states there
        (``psi_ttwu_dequeue`` on the old CPU, requeued on the new one)."""
        flags = self.psi_flags.get(pid, 0)
        old = self.task_cpu.get(pid)
        if old is not None and old != cpu and flags:
            self.task_change(t_us, pid, flags, 0)
            self.task_cpu[pid] = cpu
            self.task_change(t_us, pid, 0, flags)
        self.task_cpu[pid] = cpu
        set_ = TSK_RUNNING | (TSK_MEMSTALL_RUNNING if self.in_memstall.get(pid) else 0)
        self.task_change(t_us, pid, flags & TSK_IOWAIT, set_)

    def sleep(self, t_us: int, pid, iowait: bool = False) -> None:
        """``psi_dequeue`` + the sleep half of ``psi_task_switch``: not runnable; TSK_IOWAIT
        if it sleeps on I/O; a memstall goes on (TSK_MEMSTALL stays) while it sleeps."""
        flags = self.psi_flags.get(pid, 0)
        if self.cpus[self.task_cpu[pid]].curr == pid:
            self.switch(t_us, self.task_cpu[pid], None)
        clear = TSK_RUNNING | (flags & TSK_MEMSTALL_RUNNING)
        self.task_change(t_us, pid, clear, TSK_IOWAIT if iowait else 0)

    def switch(self, t_us: int, cpu: int, pid) -> None:
        """``psi_task_switch``: ``pid`` (``None``: idle) is now the task on ``cpu``."""
        now = self._advance(t_us)
        c = self.cpus[cpu]
        if c.curr is not None:
            self.psi_flags[c.curr] &= ~TSK_ONCPU
        c.curr = pid
        if pid is not None:
            self.task_cpu[pid] = cpu
            self.psi_flags[pid] = self.psi_flags.get(pid, 0) | TSK_ONCPU
        self._group_change(cpu, 0, 0, now)

    def memstall_enter(self, t_us: int, pid) -> None:
        """``psi_memstall_enter`` on the (running) task; nested calls are no-ops."""
        if self.in_memstall.get(pid):
            return
        self.in_memstall[pid] = True
        self.task_change(t_us, pid, 0, TSK_MEMSTALL | TSK_MEMSTALL_RUNNING)

    def memstall_leave(self, t_us: int, pid) -> None:
        """``psi_memstall_leave`` (the task runs again when it leaves)."""
        if not self.in_memstall.get(pid):
            return
        self.in_memstall[pid] = False
        self.task_change(t_us, pid, TSK_MEMSTALL | TSK_MEMSTALL_RUNNING, 0)

    def exit(self, t_us: int, pid) -> None:
        """The task is gone: drop whatever it still counted for."""
        cpu = self.task_cpu.get(pid)
        if cpu is None:
            return
        if self.cpus[cpu].curr == pid:
            self.switch(t_us, cpu, None)
        self.in_memstall[pid] = False
        self.task_change(t_us, pid, self.psi_flags.get(pid, 0) & ~TSK_ONCPU, 0)
        del self.task_cpu[pid], self.psi_flags[pid], self.in_memstall[pid]

    # -- aggregation (collect_percpu_times, update_averages, psi_avgs_work) ---------------------

    def _collect(self, now: int) -> bool:
        """``collect_percpu_times`` for PSI_AVGS; returns whether any CPU had non-idle time."""
        deltas = [0] * (NR_PSI_STATES - 1)
        nonidle_total = 0
        changed = False
        for c in self.cpus:
            times = list(c.times)
            for s in range(NR_PSI_STATES):
                if c.state_mask & (1 << s):
                    times[s] += now - c.state_start
            delta = [times[s] - c.times_prev[s] for s in range(NR_PSI_STATES)]
            c.times_prev = times
            if delta[PSI_NONIDLE]:
                changed = True
            nonidle = delta[PSI_NONIDLE] // self.jiffy_ns      # nsecs_to_jiffies
            nonidle_total += nonidle
            for s in range(NR_PSI_STATES - 1):
                deltas[s] += delta[s] * nonidle
        for s in range(NR_PSI_STATES - 1):
            self.total[s] += deltas[s] // max(nonidle_total, 1)
        return changed

    def _update_averages(self, now: int) -> int:
        expires = self.avg_next_update
        missed = (now - expires) // self.period_ns if now - expires >= self.period_ns else 0
        avg_next_update = expires + (1 + missed) * self.period_ns
        period = now - (self.avg_last_update + missed * self.period_ns)
        self.avg_last_update = now
        for s in range(NR_PSI_STATES - 1):
            sample = min(self.total[s] - self.avg_total[s], period)
            self.avg_total[s] += sample
            avg = self.avg[s]
            if missed:                                         # calc_avgs
                for w in range(3):
                    avg[w] = calc_load_n(avg[w], EXPS[w], 0, missed)
            pct = sample * 100 // period * FIXED_1
            for w in range(3):
                avg[w] = calc_load(avg[w], EXPS[w], pct)
        self.full_avg10_max = max(self.full_avg10_max, self.avg[PSI_MEM_FULL][0])
        return avg_next_update

    def _avgs_work(self, now: int) -> None:
        changed = self._collect(now)
        if now >= self.avg_next_update:
            self.avg_next_update = self._update_averages(now)
        if changed:
            self.work_at = now + ((self.avg_next_update - now) // self.jiffy_ns + 1) * self.jiffy_ns
        else:
            self.work_at = None

    # -- reading (psi_show) -------------------------------------------------------------------

    def _show_update(self, t_us: int) -> None:
        now = self._advance(t_us)
        self._collect(now)
        if now >= self.avg_next_update:
            self.avg_next_update = self._update_averages(now)

    def totals(self, t_us: int, res: str = "memory") -> dict:
        """``some``/``full`` ``total=`` of ``/proc/pressure/<res>`` at ``t_us``, in us."""
        self._show_update(t_us)
        r = RES[res]
        return {"some": self.total[2 * r] // 1000, "full": self.total[2 * r + 1] // 1000}

    def avgs(self, t_us: int, res: str = "memory") -> dict:
        """``some``/``full`` ``(avg10, avg60, avg300)`` at ``t_us``, as percentages with the
        kernel's two truncated decimals (``float(load_str(x))``)."""
        self._show_update(t_us)
        r = RES[res]
        return {k: tuple(float(load_str(x)) for x in self.avg[2 * r + i])
                for i, k in enumerate(("some", "full"))}

    def show(self, t_us: int, res: str = "memory") -> str:
        """The text of ``/proc/pressure/<res>`` (``psi_show``)."""
        self._show_update(t_us)
        r = RES[res]
        lines = []
        for i, k in enumerate(("some", "full")):
            a = self.avg[2 * r + i]
            lines.append(f"{k} avg10={load_str(a[0])} avg60={load_str(a[1])} "
                         f"avg300={load_str(a[2])} total={self.total[2 * r + i] // 1000}")
        return "\n".join(lines) + "\n"


# ============================================================================ the engine's PSI

_SOME, _FULL, _NONIDLE = 1, 2, 4          # MemPSI's state bits (PSI_MEM_SOME, PSI_MEM_FULL, NONIDLE)


class MemPSI:
    """:class:`PSIGroup` restricted to memory pressure and made incremental: the engine's PSI
    (``k.psi``), fed by the scheduler and :meth:`harness.model.Model.memstall` on every state
    change of every task.  Same events, same arithmetic, same results for memory -- ``total=``,
    the three averages, ``full_avg10_max`` -- as :class:`PSIGroup` fed the same events
    (``tests/test_psi_engine.py`` feeds both on whole runs and compares them at every read).

    What makes it cheap (shortcuts that cannot change a memory number):

    - only the states memory and the averaging read: ``SOME``, ``FULL``, ``NONIDLE``
      (``collect_percpu_times`` weights by non-idle time; I/O and CPU pressure are not kept);
    - a task's ``psi_flags`` are set memberships (``running``, ``iow``, ``ms``, ``msr``: the
      pids with TSK_RUNNING, TSK_IOWAIT, ``in_memstall``, TSK_MEMSTALL_RUNNING), the per-CPU
      ``tasks[]`` plain counters;
    - ``record_times`` only when a CPU's state mask changes (``psi_group_change`` calls it on
      every change, but time only accrues to the states that are on, so the sums are equal);
    - :meth:`switch` only looks at whether the task on the CPU is in a memstall (the memory
      states read nothing else of ``cpu_curr``; the engine calls it only while some task is).

    Events must be consistent (a task wakes only when asleep, sleeps only when running); the
    engine's pids are the keys."""

    def __init__(self, ncpus: int = 1, hz: int = 250, t0_us: int = 0):
        if NSEC_PER_SEC % hz:
            raise ValueError(f"psi: HZ={hz} does not divide a second into whole nanoseconds")
        self.ncpus = ncpus
        self.jiffy_ns = NSEC_PER_SEC // hz
        self.period_ns = (2 * hz + 1) * self.jiffy_ns
        now = t0_us * 1000
        self.now = now
        self.niow = [0] * ncpus              # tasks[NR_IOWAIT] per CPU
        self.nms = [0] * ncpus               # tasks[NR_MEMSTALL]
        self.nrun = [0] * ncpus              # tasks[NR_RUNNING]
        self.nmsr = [0] * ncpus              # tasks[NR_MEMSTALL_RUNNING]
        self.mask = [0] * ncpus
        self.start = [now] * ncpus
        self.times = [[0, 0, 0] for _ in range(ncpus)]      # SOME, FULL, NONIDLE ns
        self.times_prev = [[0, 0, 0] for _ in range(ncpus)]
        self.curr_ms = [None] * ncpus        # the memstalling task on the CPU, if any
        self.cpu_of: dict = {}               # pid -> CPU (tasks not on CPU 0 only matter)
        self.running: set = set()
        self.iow: set = set()
        self.ms: set = set()
        self.msr: set = set()
        self.total = [0, 0]                  # group->total[PSI_AVGS][MEM_SOME, MEM_FULL], ns
        self.avg_total = [0, 0]
        self.avg = [[0, 0, 0], [0, 0, 0]]
        self.avg_last_update = now
        self.avg_next_update = now + self.period_ns
        self.work_at = None
        self.full_avg10_max = 0
        self.series: list = []               # (t_us, full avg10 fixed point) at each averaging

    # -- time and the per-CPU state ---------------------------------------------------------

    def _advance(self, t_us: int) -> int:
        now = t_us * 1000
        if now < self.now:
            raise ValueError(f"psi: time went backwards ({t_us} us < {self.now // 1000} us)")
        while self.work_at is not None and self.work_at <= now:
            self._avgs_work(self.work_at)
        self.now = now
        return now

    def _change(self, cpu: int, now: int) -> None:
        """The tail of ``psi_group_change``: the new state mask of ``cpu`` (``test_state`` for
        memory and non-idle, and the reclaimer-on-CPU rule), times recorded when it differs;
        ``wake_clock`` re-arms the averaging worker."""
        if self.nms[cpu]:
            m = _SOME | _NONIDLE
            if self.nrun[cpu] == self.nmsr[cpu] or self.curr_ms[cpu] is not None:
                m = _SOME | _FULL | _NONIDLE
        elif self.nrun[cpu] or self.niow[cpu]:
            m = _NONIDLE
        else:
            m = 0
        old = self.mask[cpu]
        if m != old:
            delta = now - self.start[cpu]
            tm = self.times[cpu]
            if old & _SOME:
                tm[0] += delta
            if old & _FULL:
                tm[1] += delta
            if old & _NONIDLE:
                tm[2] += delta
            self.start[cpu] = now
            self.mask[cpu] = m
        if self.work_at is None:
            self.work_at = now + self.period_ns

    def _off(self, pid, cpu: int) -> None:
        """Drop every count ``pid`` holds on ``cpu`` (``psi_task_change(p, p->psi_flags, 0)``)."""
        if pid in self.running:
            self.nrun[cpu] -= 1
        if pid in self.iow:
            self.niow[cpu] -= 1
        if pid in self.ms:
            self.nms[cpu] -= 1
        if pid in self.msr:
            self.nmsr[cpu] -= 1

    def _on(self, pid, cpu: int) -> None:
        if pid in self.running:
            self.nrun[cpu] += 1
        if pid in self.iow:
            self.niow[cpu] += 1
        if pid in self.ms:
            self.nms[cpu] += 1
        if pid in self.msr:
            self.nmsr[cpu] += 1

    # -- the task events (as PSIGroup's) --------------------------------------------------------

    def wake(self, t_us: int, pid, cpu: int = 0) -> None:
        """``psi_enqueue`` (wakeup) on ``cpu``: TSK_RUNNING (and TSK_MEMSTALL_RUNNING in a
        memstall), TSK_IOWAIT cleared; the sleep-persistent states move off another CPU."""
        now = t_us * 1000
        if now < self.now or (self.work_at is not None and self.work_at <= now):
            now = self._advance(t_us)
        self.now = now
        if self.ncpus > 1:
            old = self.cpu_of.get(pid)
            if old is not None and old != cpu:
                self._off(pid, old)
                self._change(old, now)
                self._on(pid, cpu)
            self.cpu_of[pid] = cpu
        self.running.add(pid)
        self.nrun[cpu] += 1
        if pid in self.iow:
            self.iow.discard(pid)
            self.niow[cpu] -= 1
        if self.nms[cpu] or self.mask[cpu] != _NONIDLE or self.work_at is None:
            if pid in self.ms:
                self.msr.add(pid)
                self.nmsr[cpu] += 1
            self._change(cpu, now)
        # else: no memstall on this CPU, already non-idle, worker armed: nothing changes

    def migrate(self, t_us: int, pid, cpu: int) -> None:
        """A runnable task moves to ``cpu`` (``psi_dequeue`` + ``psi_enqueue``, not a wakeup:
        every flag goes with it)."""
        old = self.cpu_of.get(pid, 0)
        self.cpu_of[pid] = cpu
        if old == cpu:
            return
        now = self._advance(t_us)
        if self.curr_ms[old] == pid:
            self.curr_ms[old] = None
        self._off(pid, old)
        self._change(old, now)
        self._on(pid, cpu)
        self._change(cpu, now)

    def sleep(self, t_us: int, pid, iowait: bool = False) -> None:
        """``psi_dequeue`` + the sleep half of ``psi_task_switch``: TSK_RUNNING and
        TSK_MEMSTALL_RUNNING cleared, TSK_IOWAIT set for an I/O sleep."""
        now = t_us * 1000
        if now < self.now or (self.work_at is not None and self.work_at <= now):
            now = self._advance(t_us)
        self.now = now
        cpu = self.cpu_of.get(pid, 0) if self.ncpus > 1 else 0
        self.running.discard(pid)
        self.nrun[cpu] -= 1
        if iowait:
            self.iow.add(pid)
            self.niow[cpu] += 1
        if self.nms[cpu] or self.work_at is None or not (self.nrun[cpu] or self.niow[cpu]):
            if self.curr_ms[cpu] == pid:
                self.curr_ms[cpu] = None
            if pid in self.msr:
                self.msr.discard(pid)
                self.nmsr[cpu] -= 1
            self._change(cpu, now)
        # else: no memstall on this CPU (so none of this task's), still non-idle, worker
        # armed: nothing changes

    def switch(self, t_us: int, cpu: int, pid) -> None:
        """``psi_task_switch``: ``pid`` (``None``: idle) is now the task on ``cpu``.  Only a
        memstalling task on or off the CPU changes a memory state."""
        new = pid if pid is not None and pid in self.ms else None
        if pid is not None and self.ncpus > 1:
            self.cpu_of[pid] = cpu
        if new == self.curr_ms[cpu]:
            return
        now = self._advance(t_us)
        self.curr_ms[cpu] = new
        self._change(cpu, now)

    def memstall_enter(self, t_us: int, pid) -> None:
        """``psi_memstall_enter`` on the running task (on its CPU); nested calls are no-ops."""
        if pid in self.ms:
            return
        now = self._advance(t_us)
        cpu = self.cpu_of.get(pid, 0) if self.ncpus > 1 else 0
        self.ms.add(pid)
        self.msr.add(pid)
        self.nms[cpu] += 1
        self.nmsr[cpu] += 1
        self.curr_ms[cpu] = pid
        self._change(cpu, now)

    def memstall_leave(self, t_us: int, pid) -> None:
        """``psi_memstall_leave`` (the task runs again when it leaves)."""
        if pid not in self.ms:
            return
        now = self._advance(t_us)
        cpu = self.cpu_of.get(pid, 0) if self.ncpus > 1 else 0
        if self.curr_ms[cpu] == pid:
            self.curr_ms[cpu] = None
        self.ms.discard(pid)
        self.nms[cpu] -= 1
        if pid in self.msr:
            self.msr.discard(pid)
            self.nmsr[cpu] -= 1
        self._change(cpu, now)

    def exit(self, t_us: int, pid) -> None:
        """The task is gone: drop whatever it still counted for."""
        now = self._advance(t_us)
        cpu = self.cpu_of.pop(pid, 0) if self.ncpus > 1 else 0
        if self.curr_ms[cpu] == pid:
            self.curr_ms[cpu] = None
        self._off(pid, cpu)
        self.running.discard(pid)
        self.iow.discard(pid)
        self.ms.discard(pid)
        self.msr.discard(pid)
        self._change(cpu, now)

    # -- aggregation ------------------------------------------------------------------------

    def _collect(self, now: int, prev_times=None, total=None) -> bool:
        """``collect_percpu_times``: for PSI_AVGS (``times_prev``, ``total``) or, given
        them, another aggregator's (PSI_POLL: :meth:`poll_totals`)."""
        if prev_times is None:
            prev_times, total = self.times_prev, self.total
        d_some = d_full = 0
        nonidle_total = 0
        changed = False
        jiffy = self.jiffy_ns
        for cpu in range(self.ncpus):
            tm = self.times[cpu]
            m = self.mask[cpu]
            run = now - self.start[cpu]
            some = tm[0] + (run if m & _SOME else 0)
            full = tm[1] + (run if m & _FULL else 0)
            nonidle = tm[2] + (run if m & _NONIDLE else 0)
            prev = prev_times[cpu]
            ds, df, dn = some - prev[0], full - prev[1], nonidle - prev[2]
            prev[0], prev[1], prev[2] = some, full, nonidle
            if dn:
                changed = True
            w = dn // jiffy
            nonidle_total += w
            d_some += ds * w
            d_full += df * w
        div = nonidle_total if nonidle_total > 0 else 1
        total[0] += d_some // div
        total[1] += d_full // div
        return changed

    def poll_totals(self, t_us: int) -> dict:
        """The stall totals (us) of the PSI_POLL aggregator that ``psi_poll_work`` reads for
        the triggers (``/proc/pressure/memory`` opened for a trigger: lmkd): its own
        ``times_prev`` and ``total``, so reading it changes nothing of the averages."""
        now = self._advance(t_us)
        if not hasattr(self, "poll_prev"):
            self.poll_prev = [[0, 0, 0] for _ in range(self.ncpus)]
            self.poll_total = [0, 0]
        self._collect(now, self.poll_prev, self.poll_total)
        return {"some": self.poll_total[0] // 1000, "full": self.poll_total[1] // 1000}

    def _update_averages(self, now: int) -> int:
        expires = self.avg_next_update
        period_ns = self.period_ns
        missed = (now - expires) // period_ns if now - expires >= period_ns else 0
        avg_next_update = expires + (1 + missed) * period_ns
        period = now - (self.avg_last_update + missed * period_ns)
        self.avg_last_update = now
        for s in (0, 1):
            sample = min(self.total[s] - self.avg_total[s], period)
            self.avg_total[s] += sample
            avg = self.avg[s]
            if missed:
                for w in range(3):
                    avg[w] = calc_load_n(avg[w], EXPS[w], 0, missed)
            pct = sample * 100 // period * FIXED_1
            for w in range(3):
                avg[w] = calc_load(avg[w], EXPS[w], pct)
        full10 = self.avg[1][0]
        if full10 > self.full_avg10_max:
            self.full_avg10_max = full10
        self.series.append((now // 1000, full10))
        return avg_next_update

    def _avgs_work(self, now: int) -> None:
        changed = self._collect(now)
        if now >= self.avg_next_update:
            self.avg_next_update = self._update_averages(now)
        if changed:
            self.work_at = now + ((self.avg_next_update - now) // self.jiffy_ns + 1) * self.jiffy_ns
        else:
            self.work_at = None

    # -- reading (psi_show of /proc/pressure/memory) -------------------------------------------

    def _show_update(self, t_us: int) -> None:
        now = self._advance(t_us)
        self._collect(now)
        if now >= self.avg_next_update:
            self.avg_next_update = self._update_averages(now)

    def totals(self, t_us: int) -> dict:
        """``some``/``full`` ``total=`` of ``/proc/pressure/memory`` at ``t_us``, in us."""
        self._show_update(t_us)
        return {"some": self.total[0] // 1000, "full": self.total[1] // 1000}

    def avgs(self, t_us: int) -> dict:
        """``some``/``full`` ``(avg10, avg60, avg300)`` at ``t_us`` in percent (two decimals)."""
        self._show_update(t_us)
        return {k: tuple(float(load_str(x)) for x in self.avg[i])
                for i, k in enumerate(("some", "full"))}

    def show(self, t_us: int) -> str:
        """The text of ``/proc/pressure/memory``."""
        self._show_update(t_us)
        return "".join(f"{k} avg10={load_str(a[0])} avg60={load_str(a[1])} "
                       f"avg300={load_str(a[2])} total={tot // 1000}\n"
                       for k, a, tot in zip(("some", "full"), self.avg, self.total))

"""The simulated machine: one workload under one policy with one seed.

This is the shared engine of ``shared/spec/model.md``.  Policies (``policies/*.py``) decide;
the engine acts and measures.  :class:`Kernel` is the model (:mod:`harness.model`: zones,
tasks, page accounting, files, trace) and the scheduler (:mod:`harness.sched`: CPUs, timers,
the event loop, the watchdog) together; this module re-exports the names policies import.
"""
from __future__ import annotations

import random
from collections import deque

from . import machine as M
from .model import (MM, AllocReq, D, File, Model, R, S, SimError, Task, WaitQueue, X, Z,
                    Zone)
from .progress import Progress
from .psi import MemPSI
from .sched import (CMD_YIELD, CPU, DWAIT, INF, ITER, REPEAT, SLEEP, WAITQ, YIELD, CPUState,
                    RunTimeout, Scheduler, charge)

__all__ = ["Kernel", "MM", "AllocReq", "D", "File", "R", "S", "SimError", "Task", "WaitQueue",
           "X", "Z", "Zone", "CMD_YIELD", "CPU", "DWAIT", "INF", "ITER", "REPEAT", "SLEEP",
           "WAITQ", "YIELD", "CPUState", "RunTimeout", "charge"]


#: the PSI clock: Debian's kernels are built with HZ=250 (PSI_FREQ = 2*HZ+1 jiffies = 2.004 s)
PSI_HZ = 250


class Kernel(Model, Scheduler):
    """One simulated machine running one workload under one policy with one seed."""

    def __init__(self, spec: M.MachineSpec, policy, seed: int = 0, *, trace: bool = True,
                 debug: bool = False, watchdog_s: float = 120.0, time_limit_s: float = 3600.0,
                 sample_us: int = 100_000, thrash_limit_s: float = 60.0,
                 time_scale: float = 1.0):
        self.spec = spec
        self.costs = spec.costs
        self.policy = policy
        self.rng = random.Random(seed)
        self.seed = seed
        self.debug = debug
        self.now = 0
        self.version = 0
        self.spin_count = 0
        self.state_epoch = 0         # bumped whenever a task changes state (R/S/D/X)
        self._hot_epoch = -1
        self._hot = set()
        sizes = M.zone_sizes(spec.ram_pages)
        self.sizes = sizes
        self.zones = [Zone(i, s) for i, s in enumerate(sizes)]
        self.zonelists = {}
        self.swap_total = spec.swap_pages
        self.nr_swap_pages = spec.swap_pages
        self.tasks = []              # every task ever created, in creation (list) order
        self.live = {}               # pid -> task, for tasks not yet dead (creation order)
        self.by_pid = {}
        self.dstate = {}             # pid -> task, for tasks in D state
        self.next_pid = 1             # pid 0 is the idle task; init is pid 1
        self.runq = deque()
        # pid -> task put on a CPU since the multi-gen LRU's walk last cleared it: the
        # context switch's lru_gen_use_mm (6.1 kernel/sched/core.c), which sets the mm's bit
        # on the mm_list; harness.lru_gen reads and clears it
        self.switched_in = {}
        self.cpus = [CPUState(i) for i in range(max(1, spec.cpus))]
        self.n_runnable = 0
        self.timers = []
        self.tseq = 0
        self.alarms = {}             # key -> time before which a fast-forward must stop
        self.files = {}              # name -> File, in LRU order (oldest first)
        self.disk_busy_until = 0
        self.swap_cursor = 0
        self.swap_write_done = 0
        self.kswapd_wait = WaitQueue()
        self.kswapd = None
        self.watchdog_us = int(watchdog_s * 1e6)
        self.time_limit_us = int(time_limit_s * 1e6)
        self.last_progress = 0
        self.finished = None         # None while running, else "all-exited" / "time-limit" / "watchdog"
        self.watchdog_kind = None
        self.events = 0
        self.trace_on = trace
        self.trace = []
        self.sample_us = sample_us
        self.next_sample = 0
        self.samples = []            # (t_us, free per zone...)
        self.goal_tasks = 0
        self.goal_done = 0
        self.refaults = 0            # file pages read back after eviction (workingset_refault_file)
        self.lru = None              # the modern models' file LRU (harness.lru), set by their reset
        self.refault_samples = []    # k.refaults at each zone sample (the time series' refaults)
        # the engine's measurements, never the policy's: memory pressure as kernel/sched/psi.c
        # computes it (HZ 250 as Debian's kernel; read-only for policies, as
        # /proc/pressure/memory), and the goal tasks' progress (harness.progress)
        self.psi = MemPSI(ncpus=len(self.cpus), hz=PSI_HZ)
        # (a model of a real run at time scale s: its windows compressed as the real run's)
        self.prog = Progress.at_scale(thrash_limit_s, time_scale)
        self._reserve_boot()

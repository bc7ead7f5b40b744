"""The modern models' scheduler: CFS's slices (``harness.sched.cfs_slice``, ``kernel/sched/fair.c``
``sched_slice`` / ``check_preempt_tick`` on Debian's 250 Hz tick) against 2.4's fixed 50 ms
timeslice, with hand-computed numbers."""
from __future__ import annotations

import pytest

from harness import registry
from harness import sched
from harness.engine import CPU, MM, SLEEP, Kernel
from harness.machine import MachineSpec

MS = 1000


def kernel(policy="oom_reaper", cpus=1):
    p = registry.get_policy(policy)()
    k = Kernel(MachineSpec(ram_mb=64, swap_mb=0, cpus=cpus), p, 0, time_limit_s=3.0)
    p.reset(k)
    return k


class _K:
    """What ``cfs_slice`` reads of a kernel."""

    def __init__(self, ncpus, n_runnable, now):
        self.cpus = [sched.CPUState(i) for i in range(ncpus)]
        self.n_runnable = n_runnable
        self.now = now


@pytest.mark.parametrize("ncpus,n_runnable,since,now,slice_us", [
    (1, 1, 1000, 1000, sched.CFS_ALONE_US),  # alone: check_preempt_tick is not called
    (1, 2, 1000, 1000, 7000),      # ideal 6 ms / 2 = 3 ms: ends 4 ms; the first tick after: 8 ms
    (1, 3, 0, 0, 4000),            # ideal 2 ms: the tick at 4 ms
    (1, 8, 0, 0, 4000),            # ideal 0.75 ms (6 ms / 8)
    (1, 9, 3900, 3900, 4100),      # above sched_nr_latency: min_granularity 0.75 ms -> 4.65 -> 8 ms
    (1, 2, 0, 10500, 1500),        # it ran alone past its share: the next tick
    (2, 5, 0, 0, 8000),            # 2 CPUs: factor 2; 3 tasks a CPU: 12 ms / 3 = 4 ms -> 8 ms
    (2, 2, 0, 0, sched.CFS_ALONE_US),   # one task a CPU
    (4, 40, 0, 0, 4000),           # factor 3; 10 a CPU: 2.25 ms
])
def test_cfs_slice_exact(ncpus, n_runnable, since, now, slice_us):
    k = _K(ncpus, n_runnable, now)
    k.cpus[0].since = since
    assert sched.cfs_slice(k, k.cpus[0]) == slice_us


def test_2_6_36_tunables():
    # four runnable tasks, one put on the CPU at 2.1 ms.  2.6.36: above sched_nr_latency 3, the
    # ideal share is min_granularity 2 ms -> 4.1 ms -> the tick at 8 ms.  2.6.38 on: 6 ms / 4
    # = 1.5 ms -> 3.6 ms -> the tick at 4 ms.
    k = _K(1, 4, 2100)
    k.cpus[0].since = 2100
    assert sched.cfs_slice(k, k.cpus[0], sched.CFS_2_6_36) == 5900
    assert sched.cfs_slice(k, k.cpus[0], sched.CFS_2_6_38) == 1900
    assert registry.get_policy("linux26").cfs_tunables == sched.CFS_2_6_36
    for p in ("oom_reaper", "kill_allocating", "psi_userspace", "mglru_ttl"):
        assert registry.get_policy(p).cfs_tunables == sched.CFS_2_6_38


def _two_hogs(policy):
    k = kernel(policy)
    done = {}

    def hog(k, t):
        yield (CPU, 20 * MS, True)
        done[t.name] = k.now

    for name in ("A", "B"):
        k.new_task(name, lambda t: hog(k, t), mm=MM(100, None))
    k.run()
    return done


def test_two_cpu_bound_tasks_alternate_every_tick_under_cfs_and_every_50_ms_under_2_4():
    # CFS: two runnable tasks, 4 ms each (ideal 3 ms, preempted at the 4-ms tick): A runs
    # 0-4, 8-12, ... 32-36 ms, B 4-8 ... 36-40 ms.  2.4: A runs its 20 ms at once, then B.
    assert _two_hogs("oom_reaper") == {"A": 36 * MS, "B": 40 * MS}
    assert _two_hogs("linux26") == {"A": 36 * MS, "B": 40 * MS}
    assert _two_hogs("mainline") == {"A": 20 * MS, "B": 40 * MS}


def test_a_task_alone_runs_until_another_wakes_then_leaves_at_the_next_tick():
    # A computes 30 ms alone.  B sleeps until 10.5 ms, then computes 5 ms.  At B's wake A has
    # run past its share (3 ms of two tasks): preempted at the tick at 12 ms.  B runs 12-16
    # (its slice: ideal 3 ms from 12 ms -> the tick at 16), A 16-20, B 20-21 and exits, A
    # runs its last 14 ms alone: 21-35 ms.
    k = kernel()
    done = {}

    def a(k, t):
        yield (CPU, 30 * MS, True)
        done["A"] = k.now

    def b(k, t):
        yield (SLEEP, 10_500)
        yield (CPU, 5 * MS, True)
        done["B"] = k.now

    k.new_task("A", lambda t: a(k, t), mm=MM(100, None))
    k.new_task("B", lambda t: b(k, t), mm=MM(100, None))
    k.run()
    assert done == {"A": 35 * MS, "B": 21 * MS}


@pytest.mark.parametrize("workload", ["tiny", "init-alloc", "hog-niced"])
def test_a_lone_allocators_bounded_retries_are_no_fixed_point(workload):
    # oom_reaper: a task alone on the CPU in 4.15's no-progress retries (16, then the OOM
    # path) is not at a fixed point, so the engine must not fast-forward it to the next timer
    # (as it did once CFS let the other tasks sleep: the first kill 0.13-0.3 s late).  Every
    # OOM path here kills, so no run has a fixed point at all.
    from harness import runner
    rec, k = runner.run_one("oom_reaper", workload, 0, keep_kernel=True)
    assert rec["kills"] >= 1
    assert [e for e in k.trace if e[1] == "ff"] == []

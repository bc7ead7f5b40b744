"""The engine's measurements of the thrashing issue: PSI fed by the scheduler and
``Model.memstall`` (``k.psi``), the goal tasks' progress (``k.prog``) and the ``thrashing``
outcome, on scripted engine scenarios with hand-computed numbers; and the engine's incremental
PSI (:class:`harness.psi.MemPSI`) equal to the plain one (:class:`harness.psi.PSIGroup`) fed
the same events on whole runs."""
from __future__ import annotations

import pytest

from harness import blocks as B
from harness import metrics, registry, runner
from harness import workload as W
from harness.engine import CPU, DWAIT, MM, SLEEP, Kernel
from harness.machine import SIGKILL, MachineSpec
from harness.psi import PSI_MEM_FULL, PSI_MEM_SOME, PSIGroup

S = 1_000_000


def kernel(cpus=1, time_limit_s=3.0, thrash_limit_s=60.0):
    p = registry.get_policy("oom_reaper")()
    k = Kernel(MachineSpec(ram_mb=64, swap_mb=0, cpus=cpus), p, 0,
               time_limit_s=time_limit_s, thrash_limit_s=thrash_limit_s)
    p.reset(k)
    return k


def spawn(k, name, gen, goal=False):
    return k.new_task(name, lambda t: gen(k, t), mm=MM(100, None), goal=goal)


# ============================================================================ PSI, scripted

def test_one_task_stalled_while_another_runs_is_some_only():
    # A enters a memstall (reclaim) and naps 1 s inside it (asleep, not on the CPU); B computes
    # 1 s.  0-1 s: NR_MEMSTALL 1, NR_RUNNING 1 (B), NR_MEMSTALL_RUNNING 0, B on the CPU not in
    # a memstall: SOME, not FULL.  Both end at 1 s; nothing after.
    k = kernel()

    def a(k, t):
        k.memstall(t, True)
        yield (SLEEP, k.now + S)
        k.memstall(t, False)

    def b(k, t):
        yield (CPU, S, True)

    spawn(k, "A", a), spawn(k, "B", b)
    k.run()
    assert k.psi.totals(k.now) == {"some": S, "full": 0}


def test_all_stalled_is_full():
    # A and B both wait 1 s for the read of a workingset page (memstall around a disk wait):
    # NR_MEMSTALL 2, NR_RUNNING 0 == NR_MEMSTALL_RUNNING 0: FULL for the whole second.
    k = kernel()

    def a(k, t):
        k.memstall(t, True)
        yield (DWAIT, k.now + S)
        k.memstall(t, False)

    spawn(k, "A", a), spawn(k, "B", a)
    k.run()
    assert k.psi.totals(k.now) == {"some": S, "full": S}


def test_reclaimer_on_the_cpu_is_full_the_one_waiting_some():
    # A reclaims (memstall, 0.5 s of CPU) while B computes 0.5 s: one CPU, A first, CFS's
    # slices (harness.sched.cfs_slice: two runnable tasks, an ideal 3 ms, preempted at the
    # first 4-ms tick after it: 4 ms each).  FULL while A is on the CPU (nothing productive
    # runs), SOME while B is on it and A waits runnable inside its memstall.  A leaves at
    # 0.996 s (125 slices of A, 124 of B).
    k = kernel()
    left = {}

    def a(k, t):
        k.memstall(t, True)
        yield (CPU, S // 2, False)
        left["A"] = k.now
        k.memstall(t, False)

    def b(k, t):
        yield (CPU, S // 2, True)

    spawn(k, "A", a), spawn(k, "B", b)
    k.run()
    assert left["A"] == 996_000
    assert k.psi.totals(k.now) == {"some": 996_000, "full": 500_000}


def test_refault_not_flagged_workingset_is_iowait_only():
    # A refaults text twice: a page not flagged workingset (a plain disk wait: TSK_IOWAIT,
    # no memstall), then a flagged one (memstall around the wait: FULL, A is alone).
    k = kernel()

    def a(k, t):
        yield (DWAIT, k.now + 270_000)             # not flagged
        k.memstall(t, True)                        # flagged: folio_wait_bit_common
        yield (DWAIT, k.now + 270_000)
        k.memstall(t, False)

    spawn(k, "A", a)
    k.run()
    assert k.psi.totals(k.now) == {"some": 270_000, "full": 270_000}


def test_kernel_threads_count_and_exit_drops_the_stall():
    # kswapd-like kernel thread in a memstall computing 0.2 s, then killed in it: the stall
    # ends with the task (do_exit), not at the generator's cleanup.
    k = kernel()

    def kt(k, t):
        k.memstall(t, True)
        yield (CPU, 200_000, False)
        k.do_exit(t, -SIGKILL, "oom-kill")
        yield (CPU, 1, False)

    k.new_task("kt", lambda t: kt(k, t), kthread=True, daemon=True)
    k.run()
    assert k.psi.totals(k.now) == {"some": 200_000, "full": 200_000}
    assert not k.psi.ms and not k.psi.running


def test_avg10_of_an_engine_stall():
    # A stalls FULL (alone, memstall around a disk wait) for 1.002 s from t=0; the averaging
    # worker runs at 2.004 s (PSI_FREQ at HZ 250): full avg10 = 9.05 % (test_thrash_blocks
    # derives the fixed point), recorded in the series and as the maximum.
    k = kernel(time_limit_s=5.0)

    def a(k, t):
        k.memstall(t, True)
        yield (DWAIT, k.now + 1_002_000)
        k.memstall(t, False)
        yield (SLEEP, k.now + 2 * S)

    spawn(k, "A", a)
    k.run()
    assert k.psi.avgs(k.now)["full"][0] == 7.41          # 4.012 s: 15189, as the plain one
    assert k.psi.full_avg10_max == 18550
    assert k.psi.series[:2] == [(2_004_000, 18550), (4_012_000, 15189)]


# ============================================================================ progress

def wl(script, *, extra_tasks=(), run=None, cpus=1):
    raw = {"name": "scripted", "machine": {"ram_mb": 64, "cpus": cpus},
           "run": run or {"time_limit_s": 200, "watchdog_s": 120},
           "task": [{"name": "g", "goal": True, "script": script}, *extra_tasks]}
    return W.from_dict(raw)


def record(w, policy="oom_reaper", seed=0):
    rec, k = runner.run_one(policy, w, seed, keep_kernel=True)
    return rec, k


def test_a_task_sleeping_its_sleep_has_full_progress():
    # g's sleep and compute are 100 %; its first window also holds the 450 us it waited in
    # the run queue behind init's first faults at boot (time without a step), which is taken
    # out of its alive time as a wait for the CPU: 1.0.
    rec, k = record(wl([{"sleep_s": 30}, {"compute_ms": 100}]))
    assert rec["progress_min10"] == 1.0
    first = next(iter(k.prog.windows(30 * S)))
    # (end, credit, alive, queued): queued from its start as a goal task, 2 us after it was
    # put in the run queue
    assert first[0] == 10 * S and first[3] == 448
    assert [c for _t, c, a, q in k.prog.windows(30 * S)][-1] == 10 * S
    assert (rec["thrash_s"], rec["thrash_to_kill_s"], rec["outcome"]) == (0.0, None, "completed")


def test_two_goal_tasks_sharing_one_cpu_lose_no_progress():
    # g and h each ask for 25 s of CPU on one CPU: each runs half the time and waits in the
    # run queue the other half.  Waiting for a CPU is contention, not thrashing: it is out of
    # the alive time, so the pooled progress stays 100 % (it would be 50 % counting it).
    h = {"name": "h", "goal": True, "script": [{"compute_ms": 25_000}]}
    rec, k = record(wl([{"compute_ms": 25_000}], extra_tasks=[h]))
    assert rec["progress_min10"] == pytest.approx(1.0, abs=0.002)   # was 0.5 counting the wait
    wins = list(k.prog.windows(40 * S))
    mid = [w for w in wins if w[0] == 20 * S][0]
    assert mid[2] == 20 * S and mid[3] == pytest.approx(10 * S, rel=0.01)   # half queued
    assert mid[1] == pytest.approx(10 * S, rel=0.01)                        # 10 s of work
    assert rec["thrash_s"] == 0.0 and rec["psi_some_s"] == 0.0


def test_a_wait_for_children_is_not_counted_their_steps_are():
    # g forks c (a template: not a goal task itself) and waits: while it waits only c counts;
    # c sleeps its 30 s: 100 % throughout.
    raw = {"name": "scripted", "machine": {"ram_mb": 64}, "run": {"time_limit_s": 100},
           "template": {"c": {"script": [{"sleep_s": 30}]}},
           "task": [{"name": "g", "goal": True, "script": [{"spawn": "c", "wait": True}]}]}
    # (Counted, g's wait would halve it.)  The first window holds 650 us without a step: g's
    # 450 us behind init at boot, and c's first 200 us in the run queue while g finishes the
    # fork (copy_process + exec, FORK_US of CPU, credited to g) -- both waits for the CPU,
    # taken out of the alive time (counted, they would give 0.999935).
    rec, k = record(W.from_dict(raw))
    assert rec["progress_min10"] == 1.0 and rec["outcome"] == "completed"
    assert len(k.prog.start) == 2                  # g and its child


def stuck(k, t, stop_at, kill_at=None):
    """A goal task (the engine's own steps): 0.1 s steps at full speed until ``stop_at``, then
    one step that never completes (a text refault that does not come back)."""
    while k.now < stop_at:
        t0 = k.now
        yield (SLEEP, t0 + 100_000)
        k.prog.step_done(t.pid, t0, k.now, 100_000)
    yield (DWAIT, 10**12)


def killer(k, t, victim, at):
    yield (SLEEP, at)
    k.signal(victim, SIGKILL)
    B.record_kill(k, victim, SIGKILL, (), t)
    k.do_exit(victim, -SIGKILL, "oom-kill")


def thrash_run(kill_at=None, time_limit_s=150.0):
    """Goal task A alone, frozen from 20 s; a killer kills it at ``kill_at``."""
    k = kernel(time_limit_s=time_limit_s)
    a = spawn(k, "A", lambda k, t: stuck(k, t, 20 * S), goal=True)
    k.prog.task_start(a.pid, 0)
    if kill_at is not None:
        spawn(k, "killer", lambda k, t: killer(k, t, a, kill_at))
    k.run()
    return metrics.compute(k)


def test_thrashing_held_for_the_limit():
    # Below 20 % first in the window ending at 28.1 s (credit 20 - 18.1 = 1.9 s: 5 * 1.9 <
    # 10), held to the end of the run (150 s): 121.9 s >= 60 s, no kill.
    r = thrash_run()
    assert (r["outcome"], r["thrash_start_s"], r["thrash_s"], r["thrash_to_kill_s"]) == \
        ("thrashing", 28.1, 121.9, None)
    assert r["progress_min10"] == 0.0


def test_a_kill_before_the_limit_ends_it():
    # Killed at 60 s, 31.9 s into the stretch; the stretch ends with the first window in
    # which no goal task is alive (70 s): 41.9 s long, ended by the kill: recovered.
    r = thrash_run(kill_at=60 * S)
    assert (r["outcome"], r["thrash_s"], r["thrash_to_kill_s"]) == ("recovered", 41.9, 31.9)


def test_a_kill_after_the_limit_leaves_thrashing():
    # Killed at 100 s, 71.9 s into the stretch: it held for the limit first.
    r = thrash_run(kill_at=100 * S)
    assert (r["outcome"], r["thrash_s"], r["thrash_to_kill_s"]) == ("thrashing", 81.9, 71.9)


def test_thrash_limit_is_a_workload_key():
    w = wl([{"sleep_s": 1}], run={"thrash_limit_s": 30})
    assert w.thrash_limit_s == 30.0 and wl([{"sleep_s": 1}]).thrash_limit_s == 60.0
    for bad, msg in ((0, "must be positive"), (-1, "must be positive"),
                     ("x", "expected an integer or a number"), (10**6, "out of range")):
        with pytest.raises(W.WorkloadError, match=msg):
            wl([{"sleep_s": 1}], run={"thrash_limit_s": bad})
    with pytest.raises(W.WorkloadError, match="did you mean 'thrash_limit_s'"):
        wl([{"sleep_s": 1}], run={"thrash_limt_s": 30})


# ============================================================================ lazy == plain

class _All:
    """Contains every pid: the engine then calls ``switch`` on every dispatch/preemption."""

    def __contains__(self, pid):
        return True

    def __bool__(self):
        return True


class Tee:
    """The engine's PSI as the engine sees it (``k.psi``), feeding a :class:`MemPSI` and a
    :class:`PSIGroup` every event, and checking them equal after each."""

    def __init__(self, fast, plain):
        self.fast, self.plain = fast, plain
        self.ms = _All()
        self.ncpus = fast.ncpus
        self.cpu_of = fast.cpu_of
        self.checks = 0

    def check(self, t_us):
        f, p = self.fast, self.plain
        f._advance(t_us)          # the averaging work due by now (a no-op switch skips it)
        assert f.total == [p.total[PSI_MEM_SOME], p.total[PSI_MEM_FULL]]
        assert f.avg == [p.avg[PSI_MEM_SOME], p.avg[PSI_MEM_FULL]]
        assert (f.work_at, f.avg_next_update, f.full_avg10_max) == \
            (p.work_at, p.avg_next_update, p.full_avg10_max)
        self.checks += 1

    def _both(self, name, *a):
        getattr(self.fast, name)(*a)
        getattr(self.plain, name)(*a)
        self.check(a[0])

    def wake(self, t, pid, cpu=0):
        self._both("wake", t, pid, cpu)

    def sleep(self, t, pid, iowait=False):
        self._both("sleep", t, pid, iowait)

    def switch(self, t, cpu, pid):
        self._both("switch", t, cpu, pid)

    def memstall_enter(self, t, pid):
        self._both("memstall_enter", t, pid)

    def memstall_leave(self, t, pid):
        self._both("memstall_leave", t, pid)

    def exit(self, t, pid):
        self._both("exit", t, pid)

    def migrate(self, t, pid, cpu):
        self.fast.migrate(t, pid, cpu)
        p = self.plain
        old = p.task_cpu.get(pid)
        if old is not None and old != cpu:
            flags = p.psi_flags.get(pid, 0)
            if flags:
                p.task_change(t, pid, flags, 0)
            p.task_cpu[pid] = cpu
            if flags:
                p.task_change(t, pid, 0, flags)
        self.check(t)

    def totals(self, t):
        r = self.fast.totals(t)
        assert r == self.plain.totals(t)
        self.check(t)
        return r

    def avgs(self, t):
        r = self.fast.avgs(t)
        assert r == self.plain.avgs(t)
        self.check(t)
        return r

    def __getattr__(self, name):                  # full_avg10_max, series, ...
        return getattr(self.fast, name)


CASES = [("linux26", "morton-make-usemem", 1), ("mainline", "tiny", 0),
         ("psi_userspace[daemon=oomd]", "morton-make-usemem", 2),
         ("psi_userspace[daemon=lmkd]", "tiny", 1), ("oom_reaper", "dstate-victim", 0)]


def _run_teed(spec, workload, seed, cpus=None, monkeypatch=None):
    name, params = spec, {}
    if "[" in spec:
        name, arg = spec[:-1].split("[")
        params = dict([arg.split("=")])
    w = runner.resolve_workload(workload)
    if cpus:
        w = W.from_dict(dict(w.raw, machine=dict(w.raw["machine"], cpus=cpus)))
    tees = []
    plain_init = Kernel.__init__

    def init(self, *a, **kw):
        plain_init(self, *a, **kw)
        self.psi = Tee(self.psi, PSIGroup(ncpus=len(self.cpus), hz=250))
        tees.append(self.psi)

    monkeypatch.setattr(Kernel, "__init__", init)
    k = runner.simulate(registry.get_policy(name)(**params), w, seed)
    monkeypatch.setattr(Kernel, "__init__", plain_init)
    rec = metrics.compute(k)
    return rec, tees[0]


@pytest.mark.parametrize("spec,workload,seed", CASES)
def test_engine_psi_equals_the_plain_psi_on_whole_runs(spec, workload, seed, monkeypatch):
    rec, tee = _run_teed(spec, workload, seed, monkeypatch=monkeypatch)
    plain = runner.run_one(spec.split("[")[0], workload, seed,
                           params=dict([spec[:-1].split("[")[1].split("=")]) if "[" in spec
                           else None)
    assert tee.checks > 150          # (oom_reaper's dstate-victim run is short: ~900 events)
    for c in ("psi_some_s", "psi_full_s", "psi_full_avg10_max", "outcome", "trace_sha256"):
        assert rec[c] == plain[c], c
    if spec.startswith("linux26") or spec.startswith("mainline"):
        assert rec["psi_some_s"] > 0


def test_engine_psi_equals_the_plain_psi_on_two_cpus(monkeypatch):
    rec, tee = _run_teed("linux26", "tiny", 3, cpus=2, monkeypatch=monkeypatch)
    assert tee.checks > 200 and rec["psi_some_s"] > 0


def test_determinism_of_the_new_columns():
    a = runner.run_one("linux26", "tiny", 4)
    b = runner.run_one("linux26", "tiny", 4)
    cols = ("progress_min10", "thrash_s", "thrash_start_s", "thrash_to_kill_s", "refaults",
            "psi_some_s", "psi_full_s", "psi_full_avg10_max", "outcome")
    assert {c: a[c] for c in cols} == {c: b[c] for c in cols}

"""Speed, measured as benchmarks (pytest-benchmark), never as timed assertions.

``make perf`` runs these with timing on and saves ``results/perf/benchmark.json``; each run
benchmark stores the simulated seconds it covered in ``extra_info`` so that simulated seconds
per wall second can be read off the median.  Under ``make test`` they run once, untimed, as
smoke tests."""
from __future__ import annotations

import pytest

from harness import blocks as B
from harness import machine as M
from harness import registry, runner
from harness.engine import MM, AllocReq, Kernel, Task

SEED_POLICIES = ["mainline", "mainline_akpm_fix", "aa", "morton", "rmap"]


@pytest.mark.parametrize("policy", SEED_POLICIES)
def test_canonical_run(benchmark, policy):
    w = runner.resolve_workload("morton-make-usemem")
    rec = benchmark.pedantic(runner.run_one, args=(policy, w, 0), rounds=3, iterations=1)
    benchmark.extra_info["sim_s"] = rec["sim_s"]
    benchmark.extra_info["events"] = rec["events"]
    assert rec["status"] == "ok" and rec["sim_s"] > 0


@pytest.mark.parametrize("policy,workload", [("linux26", "rstate-hang"),
                                             ("linux26", "dstate-victim")])
def test_abort_restarts_run(benchmark, policy, workload):
    """Runs dominated by 2.6.36's restart loop while out_of_memory meets a TIF_MEMDIE victim
    (harness.replay ``abort_restarts``): ~2.5 M and ~28 k events (~0.3 M before the modern
    models' CFS slices: the other tasks now reach the fixed point sooner)."""
    w = runner.resolve_workload(workload)
    rec = benchmark.pedantic(runner.run_one, args=(policy, w, 0), rounds=3, iterations=1)
    benchmark.extra_info["sim_s"] = rec["sim_s"]
    benchmark.extra_info["events"] = rec["events"]
    assert rec["status"] == "ok" and rec["events"] > 20_000


def _kernel():
    cls = registry.get_policy("mainline")
    pol = cls()
    k = Kernel(M.MachineSpec(ram_mb=64), pol, 0)
    pol.reset(k)
    return k


def test_take_fast_path(benchmark):
    """The allocator's fast path: 256-page chunks from a 64 MB machine, then give them back."""
    k = _kernel()
    zl = k.zonelist(M.GFP_HIGHUSER)
    task = Task(99, "bench", mm=MM(0))
    thr = k.policy.watermarks(k, zl, 0, M.GFP_HIGHUSER, "low")

    def cycle():
        got = 0
        for _ in range(40):
            req = AllocReq(task, M.GFP_HIGHUSER, 0, 256, zl, True)
            got += k.take(req, thr)
            for zi in range(3):
                k.zones[zi].free += req.got[zi]
        return got

    assert benchmark(cycle) > 0


def test_badness_scan(benchmark):
    """select_bad_process over 200 tasks with 2.4 badness."""
    k = _kernel()
    for i in range(200):
        t = Task(10 + i, f"t{i}", uid=500 + i % 3, mm=MM(1000 + 37 * i))
        t.utime = 1000 * i
        k.tasks.append(t)
        k.live[t.pid] = t
    k.now = 3600 * 1_000_000
    victim, _table = benchmark(B.select_bad_process, k, lambda k, p: B.badness_24(k, p, False))
    assert victim is not None


@pytest.mark.parametrize("jobs", [1, 2])
def test_default_matrix_throughput(benchmark, jobs):
    """The default matrix (every policy x every workload x 20 seeds), no cache, on the loky pool.
    ``make perf`` only: minutes of work, skipped when benchmarks are disabled (``make test``)."""
    if benchmark.disabled:
        pytest.skip("a throughput benchmark: run with make perf")
    from harness import bench as BN
    from harness import workload as W
    policies, _ = registry.discover()
    workloads, _ = W.load_dir(registry.WORKLOAD_DIR)
    cells = BN.make_cells(policies, workloads, range(20), registry.POLICY_DIR)
    stats = {}
    recs = benchmark.pedantic(BN.run_matrix, args=(cells,),
                              kwargs=dict(jobs=jobs, cache_dir=None, progress=False, stats=stats),
                              rounds=1, iterations=1)
    assert all(r["status"] == "ok" for r in recs)
    benchmark.extra_info.update(runs=len(cells), jobs=jobs,
                                peak_worker_rss_mb=stats["peak_worker_rss_mb"],
                                sim_s=sum(r["sim_s"] for r in recs))


# ---------------------------------------------------------------------------- engine micro-benchmarks
_CLASSES: dict = {}


def _policy(name):
    """A fresh policy object (discovery, which imports every policy file, done once)."""
    if name not in _CLASSES:
        _CLASSES[name] = registry.get_policy(name)
    return _CLASSES[name]()


def _spinner_kernel(cmd_factory, n):
    """A machine with one task that makes ``n`` CPU commands (``cmd_factory(n)`` is its
    generator): the cost of the engine's turn, with nothing else going on."""
    pol = _policy("mainline")
    k = Kernel(M.MachineSpec(ram_mb=64), pol, 0, time_limit_s=1e6, watchdog_s=1e6)
    pol.reset(k)
    k.new_task("spinner", lambda t: cmd_factory(n), mm=MM(10))
    return k


def test_engine_turn(benchmark):
    """10 000 plain CPU commands: one engine turn and one generator resumption each."""
    from harness.engine import CPU

    def commands(n):
        for _ in range(n):
            yield (CPU, 100, False)

    def run():
        return _spinner_kernel(commands, 10_000).run().events

    assert benchmark(run) == 10_001


def test_engine_iter(benchmark):
    """10 000 iterations of one ITER command: the engine calls the loop's function instead of
    resuming the generator (how user computation quanta and no-op reclaim retries run)."""
    from harness.engine import ITER

    def commands(n):
        left = [n]

        def more():
            left[0] -= 1
            return 100 if left[0] > 0 else None
        yield (ITER, 100, False, more)

    def run():
        return _spinner_kernel(commands, 10_000).run().events

    assert benchmark(run) == 10_001


def test_compute_quanta(benchmark):
    """mm.compute: 100 s of user time in 10 ms quanta, with the text working set checked."""
    from harness import mm as MMops
    from harness.engine import File

    def run():
        pol = _policy("mainline")
        k = Kernel(M.MachineSpec(ram_mb=64), pol, 0, time_limit_s=1e6, watchdog_s=1e6)
        pol.reset(k)
        f = k.file("bin/x", 16, 16)
        f.mappers = 1

        def prog(t):
            yield from MMops.compute(k, t, 100_000_000)
        k.new_task("worker", prog, mm=MM(10, f))
        k.run()
        return k.tasks[0].utime

    assert benchmark(run) == 100_000_000


def test_oom_reaper_badness_scan(benchmark):
    """oom_reaper's select_bad_process over 300 tasks (once per OOM kill)."""
    pol = _policy("oom_reaper")
    k = Kernel(M.MachineSpec(ram_mb=64), pol, 0)
    pol.reset(k)
    for i in range(300):
        mm = MM(1000 + 37 * i)
        mm.anon = [0, 10 + i, 0]
        t = Task(10 + i, f"t{i}", uid=500 + i % 3, mm=mm)
        k.tasks.append(t)
        k.live[t.pid] = t
    victim, _table = benchmark(pol.select_bad_process, k)
    assert victim is not None and victim.pid == 309


def test_small_fork_bomb_oom_reaper(benchmark):
    """A fork bomb on 24 MB under oom_reaper: dozens of tasks retrying reclaim that cannot free
    anything (the no-op retries that ``noop_retries`` hands to the engine) and a kill each time
    the retries run out."""
    from test_fastpaths import small_fork_bomb
    rec = benchmark.pedantic(runner.run_one, args=("oom_reaper", small_fork_bomb(), 0),
                             rounds=3, iterations=1)
    benchmark.extra_info["sim_s"] = rec["sim_s"]
    benchmark.extra_info["events"] = rec["events"]
    assert rec["status"] == "ok" and rec["kills"] > 0


def test_progress_measurement_of_a_fork_bomb(benchmark):
    """The engine's progress columns and the measurement law on a finished fork bomb on 24 MB
    (hundreds of goal tasks: each bomblet's 120-s sleep and its fault are steps): what
    ``metrics.compute`` (``Progress.finish``) and every full law check (``check_measures``)
    read."""
    from test_fastpaths import small_fork_bomb

    from harness import laws
    k = runner.simulate(_policy("oom_reaper"), small_fork_bomb(), 0)

    def measure():
        laws.check_measures(k)
        return k.prog.finish(k.now)
    assert benchmark(measure)["thrash_s"] >= 0

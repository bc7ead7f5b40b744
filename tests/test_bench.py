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

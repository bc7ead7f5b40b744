"""The one-CPU event loop (``Kernel._run1``, the usual turn unrolled, ``_iterate1``) is the
general loop (``Kernel._run_n``) made fast: on a one-CPU machine both give the same run, trace
hash and event count included, for every policy on workloads that exercise the fast paths
(``ITER``, ``REPEAT``, fast-forwarded livelocks, OOM kills)."""
from __future__ import annotations

import pytest

from harness import metrics, registry, runner
from harness.engine import Kernel

POLICIES = sorted(registry.discover()[0])
WORKLOADS = ("morton-make-usemem", "dstate-victim", "init-alloc")


def _record(name, workload, seed):
    w = runner.resolve_workload(workload)
    assert w.machine.cpus == 1
    rec = metrics.compute(runner.simulate(registry.get_policy(name)(), w, seed))
    return rec


@pytest.mark.parametrize("workload", WORKLOADS)
@pytest.mark.parametrize("name", POLICIES)
def test_one_cpu_loop_equals_the_general_loop(name, workload, monkeypatch):
    fast = _record(name, workload, 1)
    monkeypatch.setattr(Kernel, "_run1", Kernel._run_n)   # a one-CPU machine, general loop
    general = _record(name, workload, 1)
    assert fast == general
    assert fast["events"] > 100

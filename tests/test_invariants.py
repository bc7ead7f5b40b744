"""Whole-run invariants: page conservation after every step, determinism, the record's columns.

Runs every policy found in ``policies/`` on every workload in ``workloads/``, so a dropped-in
policy or workload file is checked without a test edit: page conservation at the end of every
run, and after every engine step (``debug=True``) on four workloads that cover every kind of
page.
"""
import json
import os
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest

from harness import metrics, registry
from harness import workload as W
from harness.runner import run_one

POLICIES = sorted(registry.discover()[0])
WORKLOADS = sorted(W.load_dir(registry.WORKLOAD_DIR)[0])
CELLS = [(p, w) for p in POLICIES for w in WORKLOADS]
# every-step checking is slow; these workloads between them exercise every kind of page
# (anonymous, page tables, task structs, clean/dirty/mapped cache, swap cache, kernel and
# interrupt allocations); every other cell is checked at the end of its run
DEBUG_WORKLOADS = ["morton-make-usemem", "dstate-victim", "swap-fills", "atomic-irq"]
DEBUG_CELLS = [(p, w) for p in POLICIES for w in DEBUG_WORKLOADS if w in WORKLOADS]
ROOT = Path(__file__).resolve().parent.parent


@lru_cache(maxsize=None)
def _plain(policy, workload, seed):
    """One run without debug, page conservation checked at its end; cached per session."""
    rec, k = run_one(policy, workload, seed, keep_kernel=True)
    k.check_pages()
    return tuple(rec.items())


def plain(policy, workload, seed=0) -> dict:
    return dict(_plain(policy, workload, seed))


def without_wall(rec: dict) -> dict:
    return {c: v for c, v in rec.items() if c != "wall_s"}


# ============================================================================ (a) conservation

@pytest.mark.parametrize("policy, workload", DEBUG_CELLS)
def test_page_conservation_every_step(policy, workload):
    # debug=True: the engine calls k.check_pages() after every step and timer, and once at the
    # end; a violation raises AssertionError out of run_one
    rec = run_one(policy, workload, 0, debug=True)
    assert rec["status"] == "ok", rec["error"]
    assert list(rec) == metrics.COLUMNS
    # checking must not change the run
    assert without_wall(rec) == without_wall(plain(policy, workload))


# ============================================================================ (b) determinism

@pytest.mark.parametrize("policy, workload", CELLS)
def test_same_seed_same_record(policy, workload):
    first = plain(policy, workload)
    again = run_one(policy, workload, 0)
    assert without_wall(again) == without_wall(first)
    assert again["trace_sha256"] == first["trace_sha256"]
    assert len(first["trace_sha256"]) == 64


@pytest.mark.parametrize("policy", POLICIES)
def test_different_seeds_different_traces(policy):
    a = plain(policy, "morton-make-usemem", 0)
    b = plain(policy, "morton-make-usemem", 1)
    assert a["seed"] == 0 and b["seed"] == 1
    assert a["trace_sha256"] != b["trace_sha256"]


CHILD = """
import json, sys
sys.path.insert(0, {root!r})
from harness.runner import run_one
rec = run_one({policy!r}, {workload!r}, 0)
rec.pop("wall_s")
print(json.dumps(rec, sort_keys=True))
"""


@pytest.mark.parametrize("policy", ["aa", "mainline"])
def test_same_record_in_fresh_processes(policy):
    """No hidden global state: string hashing (set/dict order of str keys) and object ids
    differ between interpreter processes, the record must not."""
    workload = "morton-make-usemem"
    outs = []
    for hashseed in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=hashseed)
        cp = subprocess.run([sys.executable, "-c", CHILD.format(root=str(ROOT), policy=policy,
                                                                workload=workload)],
                            env=env, capture_output=True, text=True, timeout=120, check=True)
        outs.append(json.loads(cp.stdout.strip().splitlines()[-1]))
    here = without_wall(plain(policy, workload))
    assert outs[0] == outs[1]
    assert outs[0] == json.loads(json.dumps(here, sort_keys=True))


# ============================================================================ (c) columns

@pytest.mark.parametrize("policy, workload", CELLS)
def test_record_has_exactly_the_columns(policy, workload):
    rec = plain(policy, workload)
    assert list(rec) == metrics.COLUMNS
    assert (rec["policy"], rec["workload"], rec["seed"]) == (policy, workload, 0)
    assert rec["status"] == "ok" and rec["error"] is None
    # metrics.md: exactly one of livelock/deadlock, or neither, and outcome agrees
    assert rec["outcome"] in metrics.OUTCOMES
    assert not (rec["livelock"] and rec["deadlock"])
    assert rec["livelock"] == (rec["outcome"] == "livelock")
    assert rec["deadlock"] == (rec["outcome"] == "deadlock")


def test_columns_are_the_metrics_spec_names():
    # shared/spec/metrics.md, the fixed names
    assert metrics.COLUMNS == [
        "policy", "workload", "seed", "status", "error", "outcome", "livelock", "deadlock",
        "pressure_onset_s", "reclaim_onset_s", "first_kill_s", "first_victim", "time_to_kill_s",
        "max_stall_s", "kills", "fault_kills", "alloc_failures", "victims", "wrong_victims",
        "protected_victims", "repeat_kills", "ineffective_kills", "extra_kills",
        "workload_completed", "completion_s", "progress_min10", "thrash_s", "thrash_start_s",
        "thrash_to_kill_s", "refaults", "psi_some_s", "psi_full_s", "psi_full_avg10_max",
        "sim_s", "wall_s", "events", "trace_sha256"]

"""The April 2002 thread, reproduced on Morton's canonical workload over seeds 0-19.

These are outcomes, not mechanisms: each must come out of the engine and the policy files
without any knowledge of the workload.  ``summaries`` runs the 100 cells once (in parallel)."""
from __future__ import annotations

import statistics

import pytest
from joblib import Parallel, delayed

from harness import machine as M
from harness import runner

SEEDS = range(20)
POLICIES = ["mainline", "mainline_akpm_fix", "aa", "morton", "rmap"]


def summarize(policy, workload, seed):
    rec, k = runner.run_one(policy, workload, seed, keep_kernel=True)
    kills = [(ev[0], ev[2], ev[8]) for ev in k.trace if ev[1] == "kill"]
    fault = {ev[2] for ev in k.trace if ev[1] == "fault_kill"}
    enomem = {ev[2] for ev in k.trace if ev[1] == "enomem"}
    died = {ev[2] for ev in k.trace if ev[1] == "exit"
            and ev[5] in ("oom-kill", "fault-kill", "enomem")}
    return {"rec": rec, "kills": kills, "fault": fault, "enomem": enomem, "died": died}


@pytest.fixture(scope="module")
def canonical():
    cells = [(p, s) for p in POLICIES for s in SEEDS]
    out = Parallel(n_jobs=-1)(delayed(summarize)(p, "morton-make-usemem", s) for p, s in cells)
    by = {}
    for (p, _s), r in zip(cells, out):
        by.setdefault(p, []).append(r)
    return by


def test_mainline_livelocks(canonical):
    runs = canonical["mainline"]
    livelocks = sum(r["rec"]["livelock"] for r in runs)
    assert livelocks >= 18, f"mainline livelocked in {livelocks}/20"
    for r in runs:
        if r["rec"]["livelock"]:
            assert r["rec"]["kills"] == 0          # the OOM killer is never reached


def test_akpm_fix_never_livelocks(canonical):
    runs = canonical["mainline_akpm_fix"]
    assert sum(r["rec"]["livelock"] for r in runs) == 0
    assert all(r["rec"]["kills"] > 0 for r in runs)


def test_aa_fails_allocations_instead(canonical):
    for r in canonical["aa"]:
        rec = r["rec"]
        assert not rec["livelock"] and not rec["deadlock"], rec
        assert rec["kills"] == 0
        assert rec["fault_kills"] > 0
        # every victim is a task whose own fault (or fork/read) failed
        assert r["died"] == r["fault"] | r["enomem"], rec["seed"]
        assert rec["victims"] == len(r["fault"] | r["enomem"])


def test_morton_kills_usemem_first_after_morton_delay(canonical):
    runs = canonical["morton"]
    first = [r["rec"]["first_victim"] for r in runs]
    assert first.count("usemem") >= 18, first
    ttk = [r["rec"]["time_to_kill_s"] for r in runs if r["rec"]["time_to_kill_s"] is not None]
    assert 5 <= statistics.median(ttk) <= 20, sorted(ttk)
    assert not any(r["rec"]["livelock"] or r["rec"]["deadlock"] for r in runs)


def test_rmap_never_kills_twice_within_5s(canonical):
    """The lastkill gate, in the kernel's own clock: jiffies."""
    for r in canonical["rmap"]:
        decisions = sorted({t // M.JIFFY_US for t, _pid, _swap in r["kills"]})
        assert decisions, "rmap should kill on the canonical workload"
        for a, b in zip(decisions, decisions[1:]):
            assert b - a >= 5 * M.HZ, (r["rec"]["seed"], a, b)


def test_no_oom_kill_while_free_swap_remains():
    """2.4's out_of_memory() returns at once while nr_swap_pages > 0 (kernel-2.4.md §3.3)."""
    cells = [(p, s) for p in POLICIES for s in range(10)]
    out = Parallel(n_jobs=-1)(delayed(summarize)(p, "morton-swap", s) for p, s in cells)
    kills = [(p, s, t, swap_free) for (p, s), r in zip(cells, out) for t, _pid, swap_free in r["kills"]]
    assert kills, "the swap-full case should be reached in some run"
    for p, s, t, swap_free in kills:
        assert swap_free == 0, (p, s, t / 1e6, swap_free)

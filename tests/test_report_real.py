"""The real-vs-simulated report (issue 6): exact table values from hand-made records, and the
section in the matrix report when (and only when) real results exist."""
import math

import pandas as pd
import pytest

from harness import metrics
from harness import report as R
from harness import report_real as RR


def rec(policy, workload, seed, first_victim=None, ttk=None, kills=0, wrong=0, **kw):
    r = {c: None for c in metrics.COLUMNS}
    r.update(policy=policy, workload=workload, seed=seed, status="ok", outcome="recovered",
             livelock=False, deadlock=False, first_victim=first_victim,
             first_kill_s=None if first_victim is None else 10.0,
             pressure_onset_s=None if ttk is None else 10.0 - ttk,
             time_to_kill_s=ttk, kills=kills, fault_kills=0, alloc_failures=0,
             victims=kills, wrong_victims=wrong, protected_victims=0, repeat_kills=0,
             ineffective_kills=0, extra_kills=0, workload_completed=False, sim_s=60.0)
    r.update(kw)
    return r


@pytest.fixture
def frames():
    sim = pd.DataFrame(
        [rec("oom_reaper", "w", s, "usemem", 0.5 + s, kills=1) for s in range(3)]
        + [rec("oom_reaper", "w", 3, "cc1", 4.0, kills=2, wrong=1)]
        + [rec("linux26", "w", s, "cc1", 2.0, kills=3, wrong=1) for s in range(4)]
        + [rec("mainline", "w", s) for s in range(4)]
        + [rec("oom_reaper", "other", s) for s in range(2)])
    real = pd.DataFrame(
        [rec("real-memcg-6.1", "w", s, "usemem", 0.2, kills=1) for s in range(4)]
        + [rec("real-memcg-6.1", "w", 4, None, None)]
        + [rec("real-qemu-6.1", "w", s, "cc1", 1.0, kills=2, wrong=1) for s in range(2)])
    real["truncated"] = [False] * 4 + [True] + [False] * 2
    return real, sim


def test_table_values(frames):
    real, sim = frames
    tab = RR.table(real, sim)
    # only workloads with real runs; real sources first, then oom_reaper and its neighbours
    assert list(tab.index) == [("w", "real-memcg-6.1"), ("w", "real-qemu-6.1"),
                               ("w", "oom_reaper"), ("w", "linux26")]
    m = tab.loc[("w", "real-memcg-6.1")]
    assert m.runs_ok == 5 and m.sim_first_victim_mode == "usemem"
    assert m.victim_agreement == pytest.approx(4 / 5)        # the run without a kill is "none"
    assert m.first_victim_mode == "usemem" and m.first_victim_mode_share == pytest.approx(0.8)
    assert m.ttk_median_s == pytest.approx(0.2) and m.no_kill_runs == 1
    assert m.kills_per_run == pytest.approx(4 / 5) and m.truncated_runs == 1
    q = tab.loc[("w", "real-qemu-6.1")]
    assert q.victim_agreement == 0.0 and q.wrong_victims_per_run == pytest.approx(1.0)
    s = tab.loc[("w", "oom_reaper")]
    assert s.kind == "sim" and s.victim_agreement == pytest.approx(3 / 4)
    assert s.ttk_median_s == pytest.approx(2.0)               # median of 0.5, 1.5, 2.5, 4.0
    assert tab.loc[("w", "linux26")].victim_agreement == 0.0


def test_no_reference_no_agreement(frames):
    real, sim = frames
    tab = RR.table(real, sim[sim.policy != "oom_reaper"])
    assert math.isnan(tab.loc[("w", "real-memcg-6.1")].victim_agreement)


def test_write_files_and_display(frames, tmp_path):
    real, sim = frames
    tab, png = RR.write(tmp_path, real, sim, "results/real/x")
    assert png.exists() and png.with_suffix(".svg").exists()
    md = (tmp_path / "real_vs_sim.md").read_text()
    assert "| real-memcg-6.1 | 5 | usemem (80 %) | 80 % (sim: usemem) | 0.20 [0.20, 0.20] | 1 |" in md
    assert "sim oom_reaper" in md and "results/real/x" in md


def test_matrix_report_shows_real_only_when_present(frames, tmp_path):
    real, sim = frames
    R.write_report(tmp_path / "a", sim, {}, timelines=False)
    assert "Real kernel vs simulation" not in (tmp_path / "a" / "summary.md").read_text()
    from harness import results      # the module that puts the two reports together
    results.write_report(tmp_path / "b", sim, {}, timelines=False, real_runs=real, real_dir="x")
    md = (tmp_path / "b" / "summary.md").read_text()
    html = (tmp_path / "b" / "index.html").read_text()
    assert "## Real kernel vs simulation" in md and "plots/real_vs_sim.png" in md
    assert 'id="real"' in html and "real_vs_sim.png" in html


def test_latest(tmp_path, frames):
    real, _ = frames
    assert RR.latest(tmp_path) == (None, None)
    d = tmp_path / "real" / "20260101T000000Z"
    d.mkdir(parents=True)
    real.to_csv(d / "runs.csv", index=False)
    (tmp_path / "real" / "latest").symlink_to(d.name)
    df, where = RR.latest(tmp_path)
    assert len(df) == len(real) and where.endswith("20260101T000000Z")

"""The real-vs-simulated report: each real policy beside its model, exact table and agreement
values from hand-made records, the files, and the section in the matrix report when (and only
when) real results exist."""
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
        + [rec("aa", "w", s, None, None, alloc_failures=2) for s in range(2)]
        + [rec("oom_reaper", "other", s) for s in range(2)])
    pol = dict(real_policy_file="policies/real/x.toml", time_scale=0.1, tcg_fault_factor=3.75,
               tcg_cpu_factor=1.21)
    real = pd.DataFrame(
        [rec("real-memcg", "w", s, "usemem", 0.2, kills=1, model="oom_reaper", **pol)
         for s in range(4)]
        + [rec("real-memcg", "w", 4, None, None, model="oom_reaper", **pol)]
        + [rec("real-6.1", "w", s, "cc1", 1.0, kills=2, wrong=1, model="oom_reaper", **pol)
           for s in range(2)]
        + [rec("real-6.1-overcommit-never", "w", s, None, None, alloc_failures=3, model="aa",
               **pol) for s in range(2)])
    real["truncated"] = [False] * 4 + [True] + [False] * 4
    return real, sim


def test_table_values(frames):
    real, sim = frames
    tab = RR.table(real, sim)
    # only workloads with real runs; each real policy followed by its model
    assert list(tab.index) == [("w", "real-6.1"), ("w", "oom_reaper (for real-6.1)"),
                               ("w", "real-6.1-overcommit-never"), ("w", "aa (for real-6.1-overcommit-never)"),
                               ("w", "real-memcg"), ("w", "oom_reaper (for real-memcg)")]
    m = tab.loc[("w", "real-memcg")]
    assert m.runs_ok == 5 and m.kind == "real" and m.model == "oom_reaper"
    assert m.first_victim_mode == "usemem" and m.first_victim_mode_share == pytest.approx(0.8)
    assert m.ttk_median_s == pytest.approx(0.2) and m.no_kill_runs == 1
    assert m.kills_per_run == pytest.approx(4 / 5) and m.truncated_runs == 1
    assert m.tcg == "faults x3.75, CPU x1.21" and m.time_scale == "0.1"
    s = tab.loc[("w", "oom_reaper (for real-memcg)")]
    assert s.kind == "sim" and s.pair == "real-memcg" and s.runs_ok == 4
    assert s.first_victim_mode == "usemem" and s.first_victim_mode_share == pytest.approx(0.75)
    assert s.ttk_median_s == pytest.approx(2.0)               # median of 0.5, 1.5, 2.5, 4.0
    o = tab.loc[("w", "real-6.1-overcommit-never")]
    assert o.first_victim_mode == "none" and o.alloc_failures_per_run == pytest.approx(3.0)


def test_agreement_values(frames):
    real, sim = frames
    ag = RR.agreement(RR.table(real, sim)).set_index("real")
    assert bool(ag.loc["real-memcg", "victims_agree"])
    # real-6.1's two cc1 against the model's 3 usemem and 1 cc1 (test below): p = 6/15
    assert ag.loc["real-6.1", "victims_p"] == pytest.approx(0.4)
    assert RR.parted(ag) == (1, 0)
    assert ag.loc["real-memcg", "kills_ratio"] == pytest.approx(0.8 / 1.25)
    assert not ag.loc["real-6.1", "victims_agree"]                 # cc1 against usemem
    assert ag.loc["real-6.1", "kills_ratio"] == pytest.approx(2 / 1.25)
    assert bool(ag.loc["real-6.1-overcommit-never", "victims_agree"])   # none and none
    assert ag.loc["real-6.1-overcommit-never", "kills_ratio"] == 1.0     # 0 kills on both
    # by median time to kill: real-memcg 0.2 < real-6.1 1.0 < no kill; the models: 2.0, 2.0, none
    assert [ag.loc[p, "rank_real"] for p in ("real-memcg", "real-6.1",
                                             "real-6.1-overcommit-never")] == [1, 2, 3]
    assert [ag.loc[p, "rank_sim"] for p in ("real-memcg", "real-6.1",
                                            "real-6.1-overcommit-never")] == [1, 1, 2]
    assert RR.agreement_share(ag.reset_index()) == (2, 3)
    roles = {"w": {"usemem": "culprit", "cc1": "bystander"}}
    ag = RR.agreement(RR.table(real, sim), roles).set_index("real")
    assert [ag.loc[p, "roles_agree"] for p in ("real-memcg", "real-6.1",
                                               "real-6.1-overcommit-never")] == [True, False, True]


def _p_two_names(ka, na, kb, nb):
    """The permutation p of a side with ``ka`` of ``na`` runs naming one victim against
    ``kb`` of ``nb`` (the rest another), from the hypergeometric law: with two names the
    total variation distance is |ka/na - kb/nb|, and a split that puts x of the k = ka + kb
    runs of the first name on side a has probability C(k, x) C(n - k, na - x) / C(n, na)."""
    n, k = na + nb, ka + kb
    seen = abs(ka / na - kb / nb)
    return sum(math.comb(k, x) * math.comb(n - k, na - x) for x in range(max(0, na - (n - k)),
                                                                          min(k, na) + 1)
               if abs(x / na - (k - x) / nb) >= seen - 1e-12) / math.comb(n, na)


def test_victims_p_is_the_exact_permutation_test():
    # 2 runs of cc1 against 3 usemem + 1 cc1: of the 15 splits of the six runs, the 6 that
    # put two of one name on the real side are as far apart (0.75) as the observed one
    assert RR.victims_p({"cc1": 2}, {"usemem": 3, "cc1": 1}) == pytest.approx(6 / 15)
    # five runs of one victim against twenty of another: only the observed split is as far
    assert RR.victims_p({"a": 5}, {"b": 20}) == pytest.approx(1 / math.comb(25, 5))
    assert RR.victims_p({"a": 5}, {"a": 20}) == 1.0       # one victim on both sides
    for ka, na, kb, nb in [(3, 5, 4, 20), (0, 5, 12, 20), (5, 5, 10, 20), (2, 4, 7, 9)]:
        p = RR.victims_p({"x": ka, "y": na - ka}, {"x": kb, "y": nb - kb})
        assert p == pytest.approx(_p_two_names(ka, na, kb, nb)), (ka, na, kb, nb)
    assert math.isnan(RR.victims_p({}, {"a": 3}))
    # too many splits to enumerate (C(60, 30)): sampled from a fixed generator, the same p
    # each time, and near the exact one
    big = RR.victims_p({"x": 12, "y": 18}, {"x": 20, "y": 10})
    assert big == RR.victims_p({"x": 12, "y": 18}, {"x": 20, "y": 10})
    assert big == pytest.approx(_p_two_names(12, 30, 20, 30), abs=0.01)


def test_a_missing_model_leaves_the_real_rows(frames):
    real, sim = frames
    tab = RR.table(real, sim[sim.policy != "oom_reaper"])
    assert tab.loc[("w", "oom_reaper (for real-memcg)")].runs_ok == 0
    ag = RR.agreement(tab).set_index("real")
    assert ag.loc["real-memcg", "victims_agree"] is None
    assert math.isnan(ag.loc["real-memcg", "kills_ratio"])


def test_write_files_and_display(frames, tmp_path):
    real, sim = frames
    tab, png = RR.write(tmp_path, real, sim, "results/real/x")
    assert png.name == "real_vs_sim_w.png" and png.exists() and png.with_suffix(".svg").exists()
    md = (tmp_path / "real_vs_sim.md").read_text()
    assert ("| real-memcg (time x0.1) | 5 | usemem (80 %) | 0.80 | 0.00 | 0.20 [0.20, 0.20] real"
            " s (TCG faults x3.75, CPU x1.21) |") in md
    assert "| sim oom_reaper (for real-memcg) | 4 | usemem (75 %) |" in md
    assert "Modal first victims agree in 2 of 3 (pair, workload) cells." in md
    assert "| w | real-6.1 | oom_reaper | cc1 / usemem | no | 0.4 | - | yes | 1.60 | 2 / 1 | no |" in md
    assert ("Of the 1 cell whose modes differ, 0 have first victims that differ at p < 0.05"
            in md)
    assert "results/real/x" in md and "plots/real_vs_sim_w.png" in md
    assert (tmp_path / "real_agreement.csv").exists()


def test_matrix_report_shows_real_only_when_present(frames, tmp_path):
    real, sim = frames
    R.write_report(tmp_path / "a", sim, {}, timelines=False)
    assert "Real kernel vs simulation" not in (tmp_path / "a" / "summary.md").read_text()
    from harness import results      # the module that puts the two reports together
    results.write_report(tmp_path / "b", sim, {}, timelines=False, real_runs=real, real_dir="x")
    md = (tmp_path / "b" / "summary.md").read_text()
    html = (tmp_path / "b" / "index.html").read_text()
    assert "## Real kernel vs simulation" in md and "plots/real_vs_sim_w.png" in md
    assert 'id="real"' in html and "real_vs_sim_w.png" in html


def test_latest(tmp_path, frames):
    real, _ = frames
    assert RR.latest(tmp_path) == (None, None)
    d = tmp_path / "real" / "20260101T000000Z"
    d.mkdir(parents=True)
    real.to_csv(d / "runs.csv", index=False)
    (tmp_path / "real" / "latest").symlink_to(d.name)
    df, where = RR.latest(tmp_path)
    assert len(df) == len(real) and where.endswith("20260101T000000Z")


@pytest.mark.parametrize("name", ["morton-make-usemem", "several-hogs", "desktop-thrash",
                                  "dstate-victim", "ram.ram_mb64", "fork-bomb"])
def test_a_models_workload_is_the_plan_the_real_run_ran(name):
    """``workload.time_scaled(w, s)`` at scale 1 compiles to the plan of ``w`` at scale ``s``:
    the same tasks, start times, operations and the user's and the disk's nominal times (to
    the microsecond of rounding), limits and disk -- all but the runner's compute quantum,
    which the simulator does not scale (a departure its docstring names).  The kernel's own
    work in a step's nominal time (a fault, a fork, an mmap) is scaled on neither side."""
    from harness import runner
    from harness import workload as W
    from harness.real import plan as P
    w = runner.resolve_workload(name)
    kinds = set()
    for scale in (0.1, 0.5):
        ws = W.time_scaled(w, scale)
        assert ws.time_scale == scale and ws.time_limit_s == pytest.approx(w.time_limit_s * scale)
        for seed in (0, 3):
            a, b = P.compile_plan(w, seed, scale), P.compile_plan(ws, seed, 1.0)
            for f in ("limit_s", "watchdog_s", "thrash_limit_s", "disk_request_us",
                      "disk_page_us"):
                assert getattr(a, f) == pytest.approx(getattr(b, f)), f
            assert a.quantum_us == max(100, round(10_000 * scale)) and b.quantum_us == 10_000
            assert len(a.tasks) == len(b.tasks)
            for ta, tb in zip(a.tasks, b.tasks):
                assert (ta.name, ta.goal, ta.parent) == (tb.name, tb.goal, tb.parent)
                assert abs(ta.start_us - tb.start_us) <= 1
                assert [o[0] for o in ta.ops] == [o[0] for o in tb.ops], ta.name
                for oa, ob in zip(ta.ops, tb.ops):
                    assert all(x == y or (isinstance(x, (int, float)) and abs(x - y) <= 1)
                               for x, y in zip(oa, ob)), (ta.name, oa, ob)
                # every step's nominal time alike: the user's, the disk's and the kernel's
                assert [x is None for x in ta.nominal] == [y is None for y in tb.nominal]
                for oa, x, y in zip(ta.ops, ta.nominal, tb.nominal):
                    if x is not None:
                        assert abs(x - y) <= 1, (ta.name, oa, x, y)
                kinds |= {o[0] for o, x in zip(ta.ops, ta.nominal) if x is not None}
    assert kinds & {"touch", "grow"}                # steps with the kernel's work were compared
    assert name != "fork-bomb" or "spawn" in kinds
    # a wall bound given: the model's run ends there, whatever the scale
    assert W.time_scaled(w, 0.1, limit_s=30.0).time_limit_s == 30.0
    assert W.time_scaled(w, 1.0) is w


@pytest.mark.parametrize("scale", [1.0, 0.1, 0.05])
def test_a_model_measures_progress_on_the_real_runs_windows(scale):
    """The model of a real run at time scale s measures its goal tasks' progress on the real
    record's windows (``Progress.at_scale``): 10 s x s on a 0.1 s x s grid, the scaled
    thrashing limit; at scale 1 the simulator's own 10 s, 0.1 s and 60 s."""
    from harness import runner
    from harness import workload as W
    from harness.real import plan as P, record as R
    w = runner.resolve_workload("tiny")
    _, k = runner.run_one("oom_reaper", W.time_scaled(w, scale), 0, keep_kernel=True)
    real = R._progress(P.compile_plan(w, 0, scale))
    assert (k.prog.step, k.prog.window, k.prog.limit) == (real.step, real.window, real.limit)
    assert (real.step, real.window) == (round(100_000 * scale), round(10_000_000 * scale))
    assert real.limit == round(w.thrash_limit_s * scale * 1e6)

"""The report: its statistics against known values, its tables on a hand-made matrix, and the
files ``write_report`` writes (self-contained HTML, every plot in PNG and SVG)."""
from __future__ import annotations

import itertools
import os
import math
import re

import numpy as np
import pandas as pd
import pytest

from harness import fmt, metrics, report, runner


# ---------------------------------------------------------------------------- Fisher
@pytest.mark.parametrize("table, p", [
    ([[3, 1], [1, 3]], 34 / 70),                  # (1+16+16+1)/C(8,4), by hand
    ([[10, 0], [0, 10]], 2 / 184756),             # the two extreme tables of C(20,10)
    ([[8, 0], [2, 6]], 0.006993006993006993),     # reference values: scipy.stats.fisher_exact
    ([[1, 9], [11, 3]], 0.0027594561852200836),
    ([[5, 3], [2, 6]], 0.31468531468531474),
    ([[0, 8], [0, 8]], 1.0),
    ([[0, 0], [0, 0]], 1.0),
])
def test_fisher_known_values(table, p):
    assert report.fisher_exact(table) == pytest.approx(p, rel=1e-12)


def test_fisher_brief_values_and_symmetry():
    assert round(report.fisher_exact([[3, 1], [1, 3]]), 4) == 0.4857
    assert f"{report.fisher_exact([[10, 0], [0, 10]]):.4e}" == "1.0825e-05"
    t = [[7, 1], [3, 5]]
    p = report.fisher_exact(t)
    assert report.fisher_exact([[1, 7], [5, 3]]) == pytest.approx(p)     # swap columns
    assert report.fisher_exact([[3, 5], [7, 1]]) == pytest.approx(p)     # swap rows
    assert report.fisher_exact([[7, 3], [1, 5]]) == pytest.approx(p)     # transpose


# ---------------------------------------------------------------------------- Mann-Whitney
def _u_by_pairs(x, y):
    return sum(1.0 if a > b else 0.5 if a == b else 0.0 for a in x for b in y)


def _p_by_hand(x, y):
    """The normal approximation written out: ties counted by hand, continuity 0.5."""
    n1, n2 = len(x), len(y)
    n = n1 + n2
    u = _u_by_pairs(x, y)
    allv = list(x) + list(y)
    tie = sum(c ** 3 - c for c in (allv.count(v) for v in set(allv)))
    sd = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie / (n * (n - 1))))
    z = (max(u, n1 * n2 - u) - n1 * n2 / 2 - 0.5) / sd
    return min(1.0, math.erfc(z / math.sqrt(2)))


def _p_exact_by_enumeration(x, y):
    """Two-sided exact p: the share of all splits of the pooled values into samples of the
    same sizes whose U is at least as far from its mean as the observed one."""
    both, n1 = list(x) + list(y), len(x)
    u0 = _u_by_pairs(x, y)
    mid = n1 * len(y) / 2
    hits = total = 0
    for idx in itertools.combinations(range(len(both)), n1):
        xs = [both[i] for i in idx]
        ys = [both[i] for i in range(len(both)) if i not in idx]
        total += 1
        hits += abs(_u_by_pairs(xs, ys) - mid) >= abs(u0 - mid) - 1e-9
    return hits / total


@pytest.mark.parametrize("x, y, u, p", [
    ([1, 2, 3], [4, 5, 6], 0.0, 0.1),                               # exact: 2 of C(6,3)
    ([19, 22, 16, 29, 24], [20, 11, 17, 12], 17.0, 0.1111111111111111),   # exact: 14 of 126
    # ties: the normal approximation (scipy.stats.mannwhitneyu(method="asymptotic"))
    ([1, 2, 3, 4, 5], [3, 4, 5, 6, 7, 8], 4.5, 0.066015431521231),
    ([1.1, 2.2, 2.2, 3.3, 5.0], [2.2, 4.0, 5.0, 5.0, 6.1, 7.7, 9.0], 5.0, 0.048082744235140785),
    ([1, 1, 1], [1, 1, 1], 4.5, 1.0),
])
def test_mann_whitney_known_values(x, y, u, p):
    got_u, got_p = report.mann_whitney_u(x, y)
    assert got_u == u
    assert got_p == pytest.approx(p, rel=1e-9)


def test_mann_whitney_exact_and_normal_by_hand():
    """U is the number of (x, y) pairs with x > y (ties half); without ties p is the exact
    permutation p (enumerated here), with ties the normal formula written out; swapping the
    samples changes U to n1*n2 - U, not p."""
    rng = np.random.default_rng(3)
    for n1, n2 in itertools.product((3, 4, 6), (3, 5)):
        for distinct in (True, False):
            if distinct:
                v = rng.permutation(40)[:n1 + n2].tolist()
                x, y = v[:n1], v[n1:]
            else:
                x, y = rng.integers(0, 4, n1).tolist(), rng.integers(0, 4, n2).tolist()
            u, p = report.mann_whitney_u(x, y)
            assert u == _u_by_pairs(x, y)
            if distinct:
                assert p == pytest.approx(_p_exact_by_enumeration(x, y), rel=1e-9)
            elif len(set(x + y)) > 1:
                assert p == pytest.approx(_p_by_hand(x, y), rel=1e-9)
            u2, p2 = report.mann_whitney_u(y, x)
            assert u2 == n1 * n2 - u and p2 == pytest.approx(p)


def test_mann_whitney_separated_samples_exact():
    """Fully separated samples of 8: the exact two-sided p is 2/C(16,8); past MW_EXACT_MAX a
    side, or with a tie, the normal approximation."""
    x, y = list(range(8)), list(range(10, 18))
    assert report.mann_whitney_u(x, y)[1] == pytest.approx(2 / math.comb(16, 8), rel=1e-9)
    big = report.MW_EXACT_MAX + 1
    xb, yb = list(range(big)), list(range(big, 2 * big))
    assert report.mann_whitney_u(xb, yb)[1] == pytest.approx(_p_by_hand(xb, yb), rel=1e-9)


# ---------------------------------------------------------------------------- Holm
def test_holm_known_values():
    # sorted 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> monotone
    got = report.holm([0.01, 0.04, 0.03, 0.005])
    assert got.tolist() == pytest.approx([0.03, 0.06, 0.06, 0.02])
    got = report.holm([0.5, math.nan, 0.01])           # NaN: not a test, not counted
    assert math.isnan(got[1]) and got[[0, 2]].tolist() == pytest.approx([0.5, 0.02])
    assert report.holm([0.9, 0.3]).tolist() == pytest.approx([0.9, 0.6])
    assert report.holm([0.2, 0.3, 0.9]).tolist() == pytest.approx([0.6, 0.6, 0.9])
    assert report.holm([0.5] * 3).tolist() == [1.0] * 3
    assert report.holm([]).size == 0


# ---------------------------------------------------------------------------- bootstrap
def test_bootstrap_median_ci():
    x = [4.1, 4.3, 4.2, 5.0, 3.9, 4.4, 4.6, 4.0]
    med, lo, hi = report.bootstrap_median_ci(x)
    assert med == pytest.approx(np.median(x))
    assert lo <= med <= hi and min(x) <= lo and hi <= max(x)
    assert report.bootstrap_median_ci(x) == (med, lo, hi)            # fixed seed
    assert report.bootstrap_median_ci([2.5]) == (2.5, 2.5, 2.5)
    assert all(math.isnan(v) for v in report.bootstrap_median_ci([np.nan, np.nan]))


def test_policy_colours_fixed():
    a = report.policy_colours(["rmap", "zz", "mainline"])
    b = report.policy_colours(["aa", "mainline", "morton", "rmap", "mainline_akpm_fix", "b", "zz"])
    assert list(a) == ["mainline", "rmap", "zz"]
    assert a["mainline"] == b["mainline"] and a["rmap"] == b["rmap"]
    assert list(b)[:5] == ["mainline", "mainline_akpm_fix", "aa", "morton", "rmap"]
    assert len(set(b.values())) == len(b)


# ---------------------------------------------------------------------------- tables
def rec(policy, workload, seed, **kw):
    r = {c: None for c in metrics.COLUMNS}
    r.update(policy=policy, workload=workload, seed=seed, status="ok", outcome="completed",
             livelock=False, deadlock=False, kills=0, fault_kills=0, alloc_failures=0,
             victims=0, wrong_victims=0, protected_victims=0, repeat_kills=0,
             ineffective_kills=0, extra_kills=0, workload_completed=True, sim_s=100.0,
             events=10, wall_s=0.01)
    r.update(kw)
    return r


def matrix():
    rows = []
    for s in range(4):       # mainline: livelocks, never kills
        rows.append(rec("mainline", "wl-a", s, outcome="livelock", livelock=True,
                        workload_completed=False, sim_s=130.0))
    for s in range(4):       # rmap: kills fast, one protected and one bystander victim
        rows.append(rec("rmap", "wl-a", s, outcome="recovered", kills=2, victims=2,
                        first_kill_s=10.0 + s, time_to_kill_s=1.0 + s, pressure_onset_s=9.0,
                        first_victim="init" if s == 0 else "hog",
                        wrong_victims=2 if s == 0 else 0, protected_victims=1 if s == 0 else 0,
                        repeat_kills=1))
    for s in range(4):       # aa: no OOM killer, fault kills
        rows.append(rec("aa", "wl-a", s, outcome="recovered", fault_kills=1, alloc_failures=1,
                        victims=1))
    rows.append(rec("aa", "wl-a", 4, status="error", error="ValueError: broken | pipe",
                    outcome=None, livelock=None, deadlock=None, kills=None))
    for s in range(3):       # a second workload without mainline
        rows.append(rec("rmap", "wl-b", s))
        rows.append(rec("aa", "wl-b", s, deadlock=True, outcome="deadlock"))
    return pd.DataFrame(rows, columns=metrics.COLUMNS)


INFO = {"wl-a": {"roles": {"hog": "culprit", "init": "protected"}, "question":
                 "Who dies? And when: the second sentence is not shown."}}


def test_aggregate_and_compare():
    agg = report.aggregate(matrix(), info=INFO)
    m, r, a = agg.loc[("wl-a", "mainline")], agg.loc[("wl-a", "rmap")], agg.loc[("wl-a", "aa")]
    assert (m.runs_ok, m.errors, m.livelock_rate, m.stuck_rate) == (4, 0, 1.0, 1.0)
    assert m.no_kill_runs == 4 and math.isnan(m.ttk_median_s) and m.completion_rate == 0
    assert m.kill_runs == 0 and pd.isna(m.first_victim) and math.isnan(m.right_first_share)
    assert (a.runs_ok, a.errors, a.stuck_rate, a.fault_kills_per_run) == (4, 1, 0.0, 1.0)
    assert r.ttk_median_s == 2.5 and r.no_kill_runs == 0 and r.ttk_runs == 4
    assert r.wrong_victim_share == 0.25
    assert (r.protected_per_run, r.bystander_per_run, r.repeat_per_run) == (0.25, 0.25, 1.0)
    assert (r.kill_runs, r.first_victim, r.first_victim_share, r.right_first_share) == (
        4, "hog", 0.75, 0.75)
    assert list(agg.loc["wl-a"].index) == ["mainline", "aa", "rmap"]
    assert agg.loc[("wl-b", "aa")].deadlock_rate == 1.0
    assert math.isnan(report.aggregate(matrix()).loc[("wl-a", "rmap")].right_first_share)

    cmp = report.compare(matrix())
    assert list(cmp.index) == [("wl-a", "aa"), ("wl-a", "rmap")]      # wl-b: no mainline
    c = cmp.loc[("wl-a", "rmap")]
    assert c.stuck_diff == -1.0 and c.baseline == "mainline"
    assert c.stuck_p == pytest.approx(report.fisher_exact([[0, 4], [4, 0]]))
    assert c.wrong_p == pytest.approx(report.fisher_exact([[1, 3], [0, 4]]))
    assert math.isnan(c.ttk_p)                                       # mainline has no kill
    # Holm per metric over the table: two stuck tests, both p = 2/70
    assert cmp.stuck_p_holm.tolist() == pytest.approx([2 * 2 / 70] * 2)
    assert cmp.loc[("wl-a", "aa")].wrong_p_holm == 1.0
    assert report.significance_counts(cmp) == {"stuck": (2, 2, 0), "wrong": (2, 0, 0),
                                               "ttk": (0, 0, 0)}
    other = report.compare(matrix(), baseline="aa")
    assert sorted(other.index) == [("wl-a", "mainline"), ("wl-a", "rmap"), ("wl-b", "rmap")]


def test_choose_baseline():
    assert report.choose_baseline(["rmap", "mainline"]) == ("mainline",
                                                            "baseline mainline (the default)")
    b, note = report.choose_baseline(["rmap", "aa"])
    assert b == "aa" and "mainline was not run" in note
    assert report.choose_baseline(["rmap", "aa"], "rmap")[0] == "rmap"
    with pytest.raises(ValueError, match="'morton' was not run"):
        report.choose_baseline(["rmap", "aa"], "morton")


def test_headline_and_one_sentence():
    agg = report.aggregate(matrix(), info=INFO)
    lines = report.headline(agg)
    assert len(lines) == 3 and lines[0].startswith("workload")
    assert re.match(r"wl-a +mainline 100% +none >= 90% \(best rmap 75%\) +rmap 2\.50$",
                    lines[1])
    assert re.match(r"wl-b +aa 100% +no OOM kill +no kill$", lines[2])
    assert report.one_sentence(INFO["wl-a"]["question"]) == "Who dies?"
    assert report.one_sentence("A leak: how long? Or not.") == "A leak: how long?"
    assert report.one_sentence("It stops at 2.4. Then more.") == "It stops at 2.4."
    assert report.one_sentence("No end") == "No end"


def test_md_table_escapes_and_aligns():
    t = fmt.md_table(pd.DataFrame({"policy": ["a|b"], "n": ["3"], "p": ["**0.01**"]}))
    lines = t.splitlines()
    assert lines[1] == "|---|---:|---:|"
    assert "a\\|b" in lines[2]


# ---------------------------------------------------------------------------- files
def _short_run(policy, workload, seed):
    """The timeline of a short real run whatever the workload asked for."""
    return runner.run_one(policy, "dstate-victim", 0, keep_kernel=True)[1]


def test_unchanged_figures_come_from_the_plot_cache(tmp_path, monkeypatch):
    """With a plot cache, a figure whose data did not change (a workload's ok runs, the
    RunViews of its timeline runs) is copied, byte for byte, instead of drawn again; a
    workload whose runs changed is drawn again, with the figures of every workload."""
    pols = {"wl-a": ["mainline", "rmap", "aa"], "wl-b": ["rmap", "aa"]}
    views = {(p, w, 0): runner.RunView(_short_run(p, w, 0), "recovered")
             for w, ps in pols.items() for p in ps}
    drawn = []
    real_jobs = report._run_plot_jobs

    def spy(jobs, n_jobs, plots_dir):
        drawn.append(sorted((kind, args[1] if kind == "ttk" else
                             args[0] if kind == "timeline" else "") for kind, args in jobs))
        return real_jobs(jobs, n_jobs, plots_dir)
    monkeypatch.setattr(report, "_run_plot_jobs", spy)
    kw = dict(plot_cache=tmp_path / "cache", timeline_views=views, n_jobs=1, info=INFO)
    d = matrix()
    report.write_report(tmp_path / "a", d, {}, **kw)
    assert len(drawn[0]) == 2 + 2 + 2
    d2 = d.copy()
    d2.loc[d2.workload == "wl-b", "sim_s"] = 31.0          # wl-b's runs changed, wl-a's not
    report.write_report(tmp_path / "b", d2, {}, **kw)
    assert drawn[1] == [("heatmap", ""), ("ttk", "wl-b"), ("wrong_victims", "")]
    for f in ("ttk_wl-a", "timeline_wl-a", "timeline_wl-b"):
        for ext in ("png", "svg"):
            a, b = (tmp_path / x / "plots" / f"{f}.{ext}" for x in "ab")
            assert a.read_bytes() == b.read_bytes()
    page = (tmp_path / "b" / "index.html").read_text()
    assert page.count("<img ") == 5


def test_write_report_files(tmp_path):
    meta = {"git_commit": "abc123", "git_dirty": True, "created_utc": "2002-04-18T00:00:00Z",
            "matrix": {"policies": ["aa", "mainline", "rmap"], "workloads": ["wl-a", "wl-b"],
                       "seeds": [0, 1, 2, 3, 4]},
            "skipped_policies": ["policies/broken.py:3: SyntaxError: invalid syntax"]}
    paths = report.write_report(tmp_path, matrix(), meta, timeline_runner=_short_run, n_jobs=1,
                                info=INFO)
    names = {p.relative_to(tmp_path).as_posix() for p in paths}
    plots = {f"plots/{stem}.{ext}" for ext in ("png", "svg") for stem in (
        "heatmap_stuck", "wrong_victims", "ttk_wl-a", "ttk_wl-b", "timeline_wl-a", "timeline_wl-b")}
    assert {"summary.md", "index.html"} | plots <= names
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)

    md = (tmp_path / "summary.md").read_text()
    assert "abc123 (dirty)" in md and "policies/broken.py:3" in md
    assert "1 of 19 runs did not finish" in md
    assert "| aa | wl-a | 4 | error | ValueError: broken \\| pipe |" in md
    assert "### wl-a" in md and "### wl-b" in md and "Against mainline" in md
    assert "*Who dies?*" in md
    assert "| first victim (share of runs with a kill) | first victim right |" in md
    assert "| rmap | 4 | 0 | 0 % | 0 % | 0 % | 0 % | - | - | hog (75 %) |" in md
    # rmap vs mainline, stuck: p = 2/70 = 0.029 < 0.05, but 0.057 after Holm over 2 tests
    assert "| rmap | 0 % vs 100 % | -100 pp | 0.029 | 0.057 |" in md
    assert "stuck rate: 2 of 2 before, 0 after" in md
    assert "Holm's step-down correction per metric" in md
    for p in plots:
        assert p in md

    page = (tmp_path / "index.html").read_text()
    assert not re.search(r"<script[^>]*\ssrc=|<link[^>]*\shref=|https?://|data:image", page)
    srcs = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert sorted(srcs) == ["plots/timeline_wl-a.png", "plots/timeline_wl-b.png",
                            "plots/ttk_wl-a.png", "plots/ttk_wl-b.png", "plots/wrong_victims.png"]
    assert all((tmp_path / s).exists() for s in srcs)
    assert page.count('loading="lazy"') == len(srcs)
    for s in srcs:                                  # its size, so the page does not jump
        w, h = fmt.png_size(tmp_path / s)
        assert f'src="{s}" loading="lazy" decoding="async" width="{w}" height="{h}"' in page
    assert "ValueError: broken | pipe" in page
    assert '<table id="scoreboard"' in page and page.index('id="scoreboard"') < page.index(
        'id="w-wl-a"')
    assert '<p class="q" title="Who dies? And when: the second sentence is not shown.">' \
           "Who dies?</p>" in page
    assert page.count('class="tbl sortable"') == 3   # wl-a: aggregate + comparison, wl-b
    assert "function sortBy(" in page               # harness/static/report.js, inlined


def test_write_report_baseline(tmp_path):
    """No mainline: the first policy is the baseline and the page says so; --baseline
    chooses another."""
    d = matrix()
    d = d[d.policy != "mainline"]
    report.write_report(tmp_path / "a", d, {}, timelines=False)
    md = (tmp_path / "a" / "summary.md").read_text()
    assert "Baseline aa: mainline was not run, so the first policy" in md
    assert "Against aa:" in md and "| rmap | 0 % vs 0 % |" in md
    report.write_report(tmp_path / "b", d, {}, timelines=False, baseline="rmap")
    md = (tmp_path / "b" / "summary.md").read_text()
    assert "Baseline rmap (--baseline)" in md and "Against rmap:" in md
    cmp = pd.read_csv(tmp_path / "b" / "comparison.csv")
    assert set(cmp.baseline) == {"rmap"} and set(cmp.policy) == {"aa"}


def test_write_report_without_timelines(tmp_path):
    paths = report.write_report(tmp_path, matrix(), {}, timelines=False)
    names = {p.name for p in paths}
    assert "heatmap_stuck.png" in names and not any(n.startswith("timeline_") for n in names)


# ---------------------------------------------------------------------------- command line
def _cli(*args):
    import subprocess
    import sys
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True,
                          text=True, timeout=600, env=dict(os.environ, MPLBACKEND="Agg"))


def test_bench_ends_with_a_headline(tmp_path):
    """The end of a bench: the matrix figures (stderr), a line per workload, the page's
    path; the tables stay in summary.md.  --baseline chooses the comparison."""
    r = _cli("bench", "--policies", "mainline,morton,rmap", "--workloads", "tiny,dstate-victim",
             "--seeds", "2", "--jobs", "2", "--out", str(tmp_path), "--baseline", "morton")
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert len(out) <= 6 and out[0].startswith("workload ") and "stuck" in out[0]
    assert re.match(r"dstate-victim +mainline 100%, rmap 100% +none +rmap \d", out[1])
    assert out[2].startswith("tiny ") and "nobody" in out[2]
    assert out[-1].startswith("report") and out[-1].split(": ", 1)[1].split()[0].endswith(
        "index.html")
    assert re.search(r"^12 runs in [\d.]+ s \(12 computed, 0 from the cache\), 0 failed -> ",
                     r.stderr, re.M)
    latest = tmp_path / "latest"
    assert "Baseline morton (--baseline)" in (latest / "summary.md").read_text()
    assert "| first victim (share of runs with a kill) |" in (latest / "summary.md").read_text()
    # a baseline that is not in the matrix: one line, exit 2, nothing run
    r = _cli("bench", "--policies", "mainline,rmap", "--workloads", "tiny", "--seeds", "1",
             "--out", str(tmp_path / "x"), "--baseline", "morton")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0
    assert "--baseline morton is not one of --policies mainline,rmap" in r.stderr
    assert not (tmp_path / "x").exists()
    # redraw with another baseline; and one that was not run
    r = _cli("report", str(latest), "--baseline", "rmap")
    assert r.returncode == 0, r.stderr
    assert "Baseline rmap (--baseline)" in (latest / "summary.md").read_text()
    r = _cli("report", str(latest), "--baseline", "aa")
    assert r.returncode == 2 and "--baseline aa was not run in" in r.stderr


def test_quick_table_has_first_victims():
    r = _cli("quick", "--policies", "rmap,aa", "--workloads", "tiny", "--seeds", "2",
             "--jobs", "1")
    assert r.returncode == 0, r.stderr
    head, *rows = [ln for ln in r.stdout.splitlines() if ln.strip()]
    assert "first victim" in head and "right" in head
    rmap = next(ln for ln in rows if " rmap " in f" {ln} ")
    assert re.search(r"hog \(100 %\) +100 %", rmap)
    assert "4 runs (2 policies x 1 workloads x 2 seeds)" in r.stdout


def test_thrash_to_kill_cell_says_prevented():
    # three runs whose kill came before any window fell below 20 % (thrash_s 0), one whose
    # stretch a kill ended 4 s in, one that thrashed without a kill
    rows = [rec("mglru_ttl", "wl-t", s, outcome="recovered", kills=1, first_kill_s=5.9,
                thrash_s=0.0) for s in range(3)]
    rows.append(rec("mglru_ttl", "wl-t", 3, outcome="recovered", kills=1, first_kill_s=30.0,
                    thrash_s=6.0, thrash_start_s=26.0, thrash_to_kill_s=4.0))
    rows.append(rec("mglru_ttl", "wl-t", 4, outcome="thrashing", thrash_s=90.0,
                    thrash_start_s=10.0))
    rows.append(rec("oom_reaper", "wl-t", 0, outcome="thrashing", thrash_s=90.0,
                    thrash_start_s=10.0))
    agg = report.aggregate(pd.DataFrame(rows, columns=metrics.COLUMNS))
    m, o = agg.loc[("wl-t", "mglru_ttl")], agg.loc[("wl-t", "oom_reaper")]
    assert (m.thrash_killed_runs, m.thrash_prevented_runs, m.thrash_to_kill_median_s) == (1, 3, 4.0)
    assert report.thrash_to_kill_text(m) == "4.00 (n=1); prevented 3/5"
    assert (o.thrash_killed_runs, o.thrash_prevented_runs) == (0, 0)
    assert report.thrash_to_kill_text(o) == report.F.num(math.nan)
    assert report.brief_table(agg).loc[("wl-t", "mglru_ttl"), "thrash to kill s"] \
        == "4.00 (n=1); prevented 3/5"

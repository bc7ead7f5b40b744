"""The report: its statistics against known values, its tables on a hand-made matrix, and the
files ``write_report`` writes (self-contained HTML, every plot in PNG and SVG)."""
from __future__ import annotations

import itertools
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
    return math.erfc(z / math.sqrt(2))


@pytest.mark.parametrize("x, y, u, p", [
    # reference values: scipy.stats.mannwhitneyu(x, y, method="asymptotic")
    ([1, 2, 3], [4, 5, 6], 0.0, 0.08085559837005224),
    ([1, 2, 3, 4, 5], [3, 4, 5, 6, 7, 8], 4.5, 0.066015431521231),
    ([1.1, 2.2, 2.2, 3.3, 5.0], [2.2, 4.0, 5.0, 5.0, 6.1, 7.7, 9.0], 5.0, 0.048082744235140785),
    ([19, 22, 16, 29, 24], [20, 11, 17, 12], 17.0, 0.11134688653314041),
    ([1, 1, 1], [1, 1, 1], 4.5, 1.0),
])
def test_mann_whitney_known_values(x, y, u, p):
    got_u, got_p = report.mann_whitney_u(x, y)
    assert got_u == u
    assert got_p == pytest.approx(p, rel=1e-9)


def test_mann_whitney_u_by_enumeration():
    """U is the number of (x, y) pairs with x > y (ties half) for every small sample with ties,
    and p is the formula written out; swapping the samples changes U to n1*n2 - U, not p."""
    rng = np.random.default_rng(3)
    for n1, n2 in itertools.product((3, 4, 6), (3, 5)):
        x = rng.integers(0, 6, n1).tolist()
        y = rng.integers(0, 6, n2).tolist()
        u, p = report.mann_whitney_u(x, y)
        assert u == _u_by_pairs(x, y)
        if len(set(x + y)) > 1:
            assert p == pytest.approx(min(1.0, _p_by_hand(x, y)), rel=1e-9)
        u2, p2 = report.mann_whitney_u(y, x)
        assert u2 == n1 * n2 - u and p2 == pytest.approx(p)


def test_mann_whitney_separated_samples_exact_vs_normal():
    """Fully separated samples of 8: the exact two-sided p is 2/C(16,8); the normal
    approximation is of the same order and far below 0.05."""
    x, y = list(range(8)), list(range(10, 18))
    exact = 2 / math.comb(16, 8)
    _, p = report.mann_whitney_u(x, y)
    assert exact < p < 0.01


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


def test_aggregate_and_compare():
    agg = report.aggregate(matrix())
    m, r, a = agg.loc[("wl-a", "mainline")], agg.loc[("wl-a", "rmap")], agg.loc[("wl-a", "aa")]
    assert (m.runs_ok, m.errors, m.livelock_rate, m.stuck_rate) == (4, 0, 1.0, 1.0)
    assert m.no_kill_runs == 4 and math.isnan(m.ttk_median_s) and m.completion_rate == 0
    assert (a.runs_ok, a.errors, a.stuck_rate, a.fault_kills_per_run) == (4, 1, 0.0, 1.0)
    assert r.ttk_median_s == 2.5 and r.no_kill_runs == 0 and r.ttk_runs == 4
    assert r.wrong_victim_share == 0.25
    assert (r.protected_per_run, r.bystander_per_run, r.repeat_per_run) == (0.25, 0.25, 1.0)
    assert list(agg.loc["wl-a"].index) == ["mainline", "aa", "rmap"]
    assert agg.loc[("wl-b", "aa")].deadlock_rate == 1.0

    cmp = report.compare(matrix())
    assert list(cmp.index) == [("wl-a", "aa"), ("wl-a", "rmap")]      # wl-b: no mainline
    c = cmp.loc[("wl-a", "rmap")]
    assert c.stuck_diff == -1.0
    assert c.stuck_p == pytest.approx(report.fisher_exact([[0, 4], [4, 0]]))
    assert c.wrong_p == pytest.approx(report.fisher_exact([[1, 3], [0, 4]]))
    assert math.isnan(c.ttk_p)                                       # mainline has no kill


def test_md_table_escapes_and_aligns():
    t = fmt.md_table(pd.DataFrame({"policy": ["a|b"], "n": ["3"], "p": ["**0.01**"]}))
    lines = t.splitlines()
    assert lines[1] == "|---|---:|---:|"
    assert "a\\|b" in lines[2]


# ---------------------------------------------------------------------------- files
def _short_run(policy, workload, seed):
    """The timeline of a short real run whatever the workload asked for."""
    return runner.run_one(policy, "dstate-victim", 0, keep_kernel=True)[1]


def test_write_report_files(tmp_path):
    meta = {"git_commit": "abc123", "git_dirty": True, "created_utc": "2002-04-18T00:00:00Z",
            "matrix": {"policies": ["aa", "mainline", "rmap"], "workloads": ["wl-a", "wl-b"],
                       "seeds": [0, 1, 2, 3, 4]},
            "skipped_policies": ["policies/broken.py:3: SyntaxError: invalid syntax"]}
    paths = report.write_report(tmp_path, matrix(), meta, timeline_runner=_short_run, n_jobs=1)
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
    assert "**" in md                                    # rmap vs mainline: p < 0.05
    for p in plots:
        assert p in md

    page = (tmp_path / "index.html").read_text()
    assert not re.search(r"<script[^>]*\ssrc=|<link[^>]*\shref=|<img[^>]*\ssrc=\"(?!data:)", page)
    assert not re.search(r"https?://", page)
    assert page.count('src="data:image/png;base64,') == 6
    assert "ValueError: broken | pipe" in page


def test_write_report_without_timelines(tmp_path):
    paths = report.write_report(tmp_path, matrix(), {}, timelines=False)
    names = {p.name for p in paths}
    assert "heatmap_stuck.png" in names and not any(n.startswith("timeline_") for n in names)

"""The report of a matrix run: aggregate tables, tests against a baseline policy and plots,
written as ``summary.md`` and ``index.html`` (a scoreboard first, then a section per workload
with sortable tables; its images are the files of ``plots/``, loaded lazily) beside
``runs.csv``.

Everything here is computed from the per-run records (``metrics.COLUMNS``) of the runs that
finished (``status == "ok"``); failed runs are counted and listed, never averaged in.  The
report is deterministic: the bootstrap uses a fixed seed, the tests are exact or closed-form,
and the timelines re-run one seed, which yields the same trace every time.

Statistics (:mod:`scipy.stats`):

* median ``time_to_kill_s`` with a 95 % percentile-bootstrap interval (``bootstrap``, 2000
  resamples); runs without a kill are a count beside it, never a zero;
* Fisher's exact test (``fisher_exact``, two-sided) for rates;
* the Mann-Whitney U test (``mannwhitneyu``, two-sided) for times: exact when no value ties
  and each sample has at most :data:`MW_EXACT_MAX` values, else the normal approximation with
  tie and continuity corrections;
* Holm's step-down correction for multiple comparisons, per metric over every comparison of
  the report (:func:`holm`); "significant" means Holm-adjusted p < :data:`ALPHA`.

The first victim (the task the first OOM kill chose) is judged by the workload's oracle:
"right" when its role is ``culprit`` (:func:`workload_info` reads the roles from the
workload files).
"""
from __future__ import annotations

import hashlib
import html
import json
import math
import os
import pickle
import re
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

from . import fmt as F  # noqa: E402
from . import metrics, plot  # noqa: E402

BASELINE = "mainline"
KNOWN_POLICIES = ["mainline", "mainline_akpm_fix", "aa", "morton", "rmap"]
BOOT_SEED = 20020418        # fixed: the same report for the same runs
BOOT_N = 2000
ALPHA = 0.05
MW_EXACT_MAX = 50         # Mann-Whitney: exact p up to this many values a side (no ties)
DPI = F.DPI
# the timelines (one panel per policy, ~18 in wide) at the width a page shows them (~1460 px)
TIMELINE_DPI = 80
# Axes titles at a fixed height: on axes with their ticks below and no offset text (every
# plot here) matplotlib's automatic placement leaves them there too, after a tick layout of
# the axes per title on every draw (a large share of a figure of many panels).
TITLE_Y = 1.0
BOOL_COLS = ["livelock", "deadlock", "workload_completed"]
KIND_COLOURS = {"protected": "#b2182b", "bystander": "#f4a582", "repeat": "#6a51a3",
                "ineffective": "#92c5de"}
KIND_LABELS = {"protected": "protected victims (init, kernel threads, root daemons)",
               "bystander": "bystander victims (neither culprit nor protected)",
               "repeat": "repeat kills (victim already killed, not yet dead)",
               "ineffective": "ineffective kills (victim alive 10 s after the signal)"}


# ---------------------------------------------------------------------------- palette
def policy_order(policies) -> list[str]:
    """mainline, mainline_akpm_fix, aa, morton, rmap (those present), then the rest A-Z."""
    present = list(dict.fromkeys(policies))
    known = [p for p in KNOWN_POLICIES if p in present]
    return known + sorted(p for p in present if p not in KNOWN_POLICIES)


def policy_colours(policies) -> dict[str, str]:
    """One colour per policy for every plot of a report: tab10 in :func:`policy_order`; the
    five policies of the thread always get the first five colours."""
    tab10 = plt.get_cmap("tab10").colors
    extra = plt.get_cmap("Dark2").colors
    others = sorted(p for p in set(policies) if p not in KNOWN_POLICIES)
    out = {p: matplotlib.colors.to_hex(tab10[i]) for i, p in enumerate(KNOWN_POLICIES)}
    for i, p in enumerate(others):
        j = len(KNOWN_POLICIES) + i
        out[p] = matplotlib.colors.to_hex(tab10[j] if j < 10 else extra[(j - 10) % len(extra)])
    return {p: out[p] for p in policy_order(policies)}


# ---------------------------------------------------------------------------- statistics
def fisher_exact(table) -> float:
    """Two-sided p of Fisher's exact test for the 2x2 table ``[[a, b], [c, d]]``
    (:func:`scipy.stats.fisher_exact`: the summed probability of every table with the observed
    margins that is at most as likely as the observed one)."""
    from scipy import stats     # here: the plot workers import this module, not scipy
    t = np.asarray(table, dtype=np.int64)
    if t.shape != (2, 2) or (t < 0).any():
        raise ValueError(f"expected a 2x2 table of counts, got {table}")
    return float(stats.fisher_exact(t, alternative="two-sided").pvalue)


def mann_whitney_u(x, y) -> tuple[float, float]:
    """(U of ``x``, two-sided p) of the Mann-Whitney U test (:func:`scipy.stats.mannwhitneyu`).

    Exact (the permutation distribution of U) when no value ties and both samples have at
    most :data:`MW_EXACT_MAX` values, which is most cells of a 20-seed matrix; otherwise the
    normal approximation with the tie correction of the variance and a continuity correction
    (scipy's exact distribution assumes no ties)."""
    from scipy import stats     # here: the plot workers import this module, not scipy
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if len(x) == 0 or len(y) == 0:
        raise ValueError("both samples need at least one value")
    both = np.concatenate([x, y])
    if len(np.unique(both)) == 1:                  # all equal: no evidence either way
        return len(x) * len(y) / 2.0, 1.0
    exact = len(np.unique(both)) == len(both) and max(len(x), len(y)) <= MW_EXACT_MAX
    r = stats.mannwhitneyu(x, y, alternative="two-sided", use_continuity=True,
                           method="exact" if exact else "asymptotic")
    return float(r.statistic), float(min(1.0, r.pvalue))


def holm(pvalues) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN and is not counted):
    the i-th smallest of m is multiplied by m - i + 1, then made non-decreasing and capped at 1.
    Rejecting where the adjusted p < alpha keeps the chance of any false "significant" in the
    family at most alpha, whatever the dependence between the tests."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    m = int(ok.sum())
    if m == 0:
        return out
    idx = np.flatnonzero(ok)
    order = idx[np.argsort(p[idx], kind="stable")]
    adj = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adj
    return out


def bootstrap_median_ci(values, n_boot=BOOT_N, level=0.95, seed=BOOT_SEED):
    """(median, low, high): percentile bootstrap interval of the median
    (:func:`scipy.stats.bootstrap`, ``method="percentile"``, ``n_boot`` resamples).  A fresh
    generator with a fixed seed per call, so a cell's interval does not depend on the other
    cells.  NaN values are dropped; one value, or all equal, is its own interval."""
    from scipy import stats     # here: the plot workers import this module, not scipy
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    med = float(np.median(x))
    if len(x) == 1 or (x == x[0]).all():
        return (med, med, med)
    r = stats.bootstrap((x,), np.median, n_resamples=n_boot, confidence_level=level,
                        method="percentile", vectorized=True, rng=np.random.default_rng(seed))
    ci = r.confidence_interval
    return (med, float(ci.low), float(ci.high))


# ---------------------------------------------------------------------------- tables
def prepare(df: pd.DataFrame) -> pd.DataFrame:
    """A copy with the types of ``metrics.COLUMNS`` whatever the source (records or CSV)."""
    d = df.copy()
    for c in metrics.COLUMNS:
        if c not in d.columns:
            d[c] = None
    d["status"] = d["status"].fillna("error").astype(str)
    d["policy"] = d["policy"].astype(str)
    d["workload"] = d["workload"].astype(str)
    for c in BOOL_COLS:
        d[c] = F.as_bool(d[c])
    for c in ["pressure_onset_s", "reclaim_onset_s", "first_kill_s", "time_to_kill_s",
              "max_stall_s", "kills", "fault_kills", "alloc_failures", "victims",
              "wrong_victims", "protected_victims", "repeat_kills", "ineffective_kills",
              "extra_kills", "completion_s", "sim_s", "wall_s", "events", "seed"]:
        d[c] = pd.to_numeric(d[c], errors="coerce")
    return d


def _workload_order(d: pd.DataFrame, meta: dict | None) -> list[str]:
    present = list(dict.fromkeys(d["workload"]))
    listed = [w for w in ((meta or {}).get("matrix") or {}).get("workloads") or [] if w in present]
    return listed + [w for w in present if w not in listed]


def workload_info(workloads, meta: dict | None = None) -> dict:
    """``name -> {"roles": {task name: role}, "question": str}`` of the workloads of a report,
    read from the files ``meta["workload_files"]`` names (else from ``workloads/``); a workload
    found in neither gets nothing (its first victims are then not judged)."""
    from . import registry
    from . import workload as W
    out, files = {}, ((meta or {}).get("workload_files") or {})
    for name in workloads:
        f = (files.get(name) or {}).get("file")
        if not f:
            continue
        path = Path(f) if Path(f).is_absolute() else registry.ROOT / f
        try:
            found = {w.name: w for w in W.load_all(path)}
        except (OSError, W.WorkloadError):
            continue
        if name in found:
            out[name] = found[name]
    missing = [w for w in workloads if w not in out]
    if missing:
        good, _ = W.load_dir(registry.WORKLOAD_DIR)
        out.update({w: good[w] for w in missing if w in good})
    return {n: {"roles": dict(w.roles), "question": str(w.raw.get("question") or "").strip()}
            for n, w in out.items()}


def one_sentence(text: str) -> str:
    """The first sentence of a workload's ``question`` (up to its first ``?`` or ``!``, or
    ``.`` followed by a space)."""
    text = " ".join(str(text or "").split())
    m = re.search(r"[?!]|\.(\s|$)", text)
    return text[:m.start() + 1] if m else text


def choose_baseline(policies, requested: str | None = None) -> tuple[str | None, str]:
    """The policy every other is compared with, and a sentence saying which and why:
    ``requested`` (an error when it was not run), else ``mainline`` when it was run, else the
    first policy of :func:`policy_order`."""
    present = policy_order(policies)
    if requested:
        if requested not in present:
            raise ValueError(f"baseline {requested!r} was not run; policies in these results: "
                             f"{', '.join(present) or 'none'}")
        return requested, f"baseline {requested} (--baseline)"
    if not present:
        return None, "no baseline (no runs)"
    if BASELINE in present:
        return BASELINE, f"baseline {BASELINE} (the default)"
    return present[0], (f"baseline {present[0]}: {BASELINE} was not run, so the first policy "
                        f"(--baseline POLICY chooses another)")


def aggregate(df: pd.DataFrame, workloads=None, info: dict | None = None) -> pd.DataFrame:
    """One row per (workload, policy) with the aggregates of ``metrics.md``; means and rates
    are over the ok runs (NaN when there are none).  The first victim of the runs with an OOM
    kill: the most frequent name and its share, and (when ``info`` gives the workload's roles)
    the share of those runs whose first victim was a culprit."""
    d = prepare(df)
    workloads = workloads or list(dict.fromkeys(d["workload"]))
    info = info or {}
    rows = []
    for w in workloads:
        dw = d[d.workload == w]
        roles = (info.get(w) or {}).get("roles")
        for p in policy_order(dw["policy"]):
            cell = dw[dw.policy == p]
            ok = cell[cell.status == "ok"]
            n = len(ok)

            def mean(s):
                return float(s.mean()) if n else math.nan
            med, lo, hi = bootstrap_median_ci(ok["time_to_kill_s"])
            wrong = ok["wrong_victims"].fillna(0)
            prot = ok["protected_victims"].fillna(0)
            fv = ok["first_victim"].dropna().astype(str)
            fv = fv[fv != ""]
            counts = fv.value_counts()
            mode = (sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0]
                    if len(counts) else (None, 0))
            right = (float(np.mean([roles.get(v) == "culprit" for v in fv]))
                     if roles is not None and len(fv) else math.nan)
            rows.append({
                "workload": w, "policy": p, "runs_ok": n, "errors": len(cell) - n,
                "livelock_rate": mean(ok["livelock"]), "deadlock_rate": mean(ok["deadlock"]),
                "stuck_rate": mean(ok["livelock"] | ok["deadlock"]),
                "thrashing_rate": mean(ok["outcome"] == "thrashing"),
                "thrash_to_kill_median_s": _median(ok.get("thrash_to_kill_s")),
                "thrash_killed_runs": _count(ok.get("thrash_to_kill_s")),
                "thrash_prevented_runs": thrash_prevented(ok),
                "psi_full_avg10_max_median": _median(ok.get("psi_full_avg10_max")),
                "wrong_victim_share": mean(wrong > 0),
                "protected_per_run": mean(prot), "bystander_per_run": mean(wrong - prot),
                "repeat_per_run": mean(ok["repeat_kills"].fillna(0)),
                "ineffective_per_run": mean(ok["ineffective_kills"].fillna(0)),
                "kill_runs": len(fv),
                "first_victim": mode[0], "first_victim_share": mode[1] / len(fv) if len(fv)
                else math.nan,
                "right_first_share": right,
                "ttk_median_s": med, "ttk_ci_low_s": lo, "ttk_ci_high_s": hi,
                "ttk_runs": int(ok["time_to_kill_s"].notna().sum()),
                "no_kill_runs": int(ok["first_kill_s"].isna().sum()),
                "kills_per_run": mean(ok["kills"]), "fault_kills_per_run": mean(ok["fault_kills"]),
                "alloc_failures_per_run": mean(ok["alloc_failures"]),
                "completion_rate": mean(ok["workload_completed"]),
                "sim_s_mean": mean(ok["sim_s"]),
            })
    if not rows:
        return pd.DataFrame(columns=["workload", "policy", "runs_ok", "errors", "stuck_rate"]
                            ).set_index(["workload", "policy"])
    return pd.DataFrame(rows).set_index(["workload", "policy"])


def _count(col) -> int:
    """How many of a column's values are there."""
    return 0 if col is None else int(pd.to_numeric(col, errors="coerce").notna().sum())


def thrash_prevented(ok: pd.DataFrame) -> int:
    """Runs whose kill came before any thrash: an OOM kill (``first_kill_s``) and no 10-s window
    of the goal tasks below 20 % progress in the whole run (``thrash_s`` 0).  Their
    ``thrash_to_kill_s`` is empty because there was no stretch to end (``harness.progress``:
    a stretch starts at the end of its first window below 20 %), not because no kill came;
    the tables say so ("prevented") instead of leaving the cell blank."""
    if "first_kill_s" not in ok or "thrash_s" not in ok:
        return 0
    killed = pd.to_numeric(ok["first_kill_s"], errors="coerce").notna()
    no_stretch = pd.to_numeric(ok["thrash_s"], errors="coerce") == 0
    return int((killed & no_stretch).sum())


def thrash_to_kill_text(r) -> str:
    """The "thrash to kill" cell: the median over the runs whose stretch a kill ended, with
    their count, and the runs where the kill prevented the thrash."""
    parts = []
    n = int(getattr(r, "thrash_killed_runs", 0) or 0)
    if n:
        parts.append(f"{F.num(r.thrash_to_kill_median_s)} (n={n})")
    m = int(getattr(r, "thrash_prevented_runs", 0) or 0)
    if m:
        parts.append(f"prevented {m}/{int(r.runs_ok)}")
    return "; ".join(parts) if parts else F.num(math.nan)


def _median(col) -> float:
    """Median of a column's values that are there (NaN: none, or a record without it)."""
    if col is None:
        return math.nan
    v = pd.to_numeric(col, errors="coerce").dropna()
    return float(v.median()) if len(v) else math.nan


#: the metrics compared against the baseline, each a family of tests corrected by Holm
P_COLS = ("stuck_p", "wrong_p", "ttk_p")


def compare(df: pd.DataFrame, baseline=BASELINE, workloads=None) -> pd.DataFrame:
    """Every policy against ``baseline`` per workload (empty when the baseline is absent):
    livelock+deadlock rate and wrong-victim-run share with Fisher's exact test, time to kill
    with the Mann-Whitney U test (NaN p when either side has fewer than 3 times).  Each
    ``*_p`` has a ``*_p_holm`` beside it: Holm's adjustment over every comparison of that
    metric in the table (all workloads and policies), the family the report tests."""
    d = prepare(df)
    d = d[d.status == "ok"]
    workloads = workloads or list(dict.fromkeys(d["workload"]))
    rows = []
    for w in workloads:
        dw = d[d.workload == w]
        base = dw[dw.policy == baseline]
        if base.empty:
            continue
        b_stuck = int((base.livelock | base.deadlock).sum())
        b_wrong = int((base.wrong_victims.fillna(0) > 0).sum())
        b_ttk = base.time_to_kill_s.dropna().to_numpy()
        nb = len(base)
        for p in policy_order(dw["policy"]):
            if p == baseline:
                continue
            g = dw[dw.policy == p]
            n = len(g)
            if n == 0:
                continue
            stuck = int((g.livelock | g.deadlock).sum())
            wrong = int((g.wrong_victims.fillna(0) > 0).sum())
            ttk = g.time_to_kill_s.dropna().to_numpy()
            mw_p = mann_whitney_u(ttk, b_ttk)[1] if len(ttk) >= 3 and len(b_ttk) >= 3 else math.nan
            rows.append({
                "workload": w, "policy": p, "baseline": baseline, "runs": n, "baseline_runs": nb,
                "stuck_rate": stuck / n, "baseline_stuck_rate": b_stuck / nb,
                "stuck_diff": stuck / n - b_stuck / nb,
                "stuck_p": fisher_exact([[stuck, n - stuck], [b_stuck, nb - b_stuck]]),
                "wrong_share": wrong / n, "baseline_wrong_share": b_wrong / nb,
                "wrong_diff": wrong / n - b_wrong / nb,
                "wrong_p": fisher_exact([[wrong, n - wrong], [b_wrong, nb - b_wrong]]),
                "ttk_median_s": float(np.median(ttk)) if len(ttk) else math.nan,
                "baseline_ttk_median_s": float(np.median(b_ttk)) if len(b_ttk) else math.nan,
                "ttk_runs": len(ttk), "baseline_ttk_runs": len(b_ttk),
                "ttk_p": mw_p,
            })
    cols = ["workload", "policy"]
    if not rows:
        return pd.DataFrame(columns=cols + [c for pc in P_COLS for c in (pc, pc + "_holm")]
                            ).set_index(cols)
    out = pd.DataFrame(rows)
    for c in P_COLS:
        out.insert(out.columns.get_loc(c) + 1, c + "_holm", holm(out[c]))
    return out.set_index(cols)


def significance_counts(cmp: pd.DataFrame, alpha=ALPHA) -> dict:
    """``metric -> (tests, p < alpha, Holm-adjusted p < alpha)`` of a :func:`compare` table."""
    out = {}
    for c in P_COLS:
        p = cmp[c].astype(float) if c in cmp else pd.Series(dtype=float)
        h = cmp[c + "_holm"].astype(float) if c + "_holm" in cmp else pd.Series(dtype=float)
        out[c[:-2]] = (int(p.notna().sum()), int((p < alpha).sum()), int((h < alpha).sum()))
    return out


def headline(agg: pd.DataFrame, workloads=None, width: int = 36) -> list[str]:
    """A line per workload for the end of a bench: who got stuck (livelock or deadlock, in %
    of ok runs), whose first victim was right in at least 90 % of the runs with a kill (else
    the best), and the fastest median time to kill."""
    if agg is None or not len(agg):
        return []
    workloads = workloads or list(dict.fromkeys(agg.index.get_level_values(0)))

    def who(found: pd.Series, everyone, noun="") -> str:
        """``found`` (policy -> share) as names with %, or "all but ..." when shorter."""
        items = [f"{p} {100 * v:.0f}%" for p, v in found.items()]
        text = ", ".join(items)
        if len(text) <= width or len(found) <= 1:
            return text
        rest = [p for p in everyone if p not in found.index]
        if len(rest) <= 3:
            short = (f"all but {', '.join(rest)}" if rest else "all") + \
                f" ({len(found)} of {len(everyone)}{noun})"
            if len(short) <= width + 20:
                return short
        out = f"{len(found)} of {len(everyone)}{noun}:"
        for i, it in enumerate(items):
            more = f", +{len(items) - i} more"
            if i and len(out) + 2 + len(it) + len(more) > width:
                return out + more
            out += (", " if i else " ") + it
        return out

    rows = []
    for w in workloads:
        a = agg.loc[w]
        a = a[a.runs_ok > 0]
        everyone = list(a.index)
        stuck = a.stuck_rate[a.stuck_rate > 0].sort_values(ascending=False, kind="stable")
        s_txt = who(stuck, everyone) or "nobody"
        rf = a.right_first_share.astype(float).dropna() if "right_first_share" in a else \
            pd.Series(dtype=float)
        good = rf[rf >= 0.9].sort_values(ascending=False, kind="stable")
        if len(good):
            r_txt = who(good, list(rf.index), " that killed")
        elif len(rf) and rf.max() > 0:
            r_txt = f"none >= 90% (best {rf.idxmax()} {100 * rf.max():.0f}%)"
        elif len(rf):
            r_txt = "none"
        else:
            r_txt = "no OOM kill" if not (a.get("kill_runs", pd.Series([0])) > 0).any() else "-"
        t = a.ttk_median_s.astype(float).dropna()
        t_txt = f"{t.idxmin()} {t.min():.2f}" if len(t) else "no kill"
        rows.append((w, s_txt, r_txt, t_txt))
    head = ("workload", "stuck (% of runs)", "first victim right (>= 90 % of kills)",
            "fastest median kill (s)")
    wid = [max(len(r[i]) for r in rows + [head]) for i in range(4)]
    fmt_row = (lambda r: "  ".join(f"{v:<{wid[i]}}" for i, v in enumerate(r)).rstrip())
    return [fmt_row(head)] + [fmt_row(r) for r in rows]


# ---------------------------------------------------------------------------- formatting
def _ttk(r):
    if pd.isna(r["ttk_median_s"]):
        return "-"
    return f"{r['ttk_median_s']:.2f} [{r['ttk_ci_low_s']:.2f}, {r['ttk_ci_high_s']:.2f}]"


def _first_victim(r):
    if r.get("first_victim") is None or pd.isna(r.get("first_victim")):
        return "-"
    return f"{r['first_victim']} ({F.pct(r['first_victim_share'])})"


AGG_HEADERS = ["policy", "runs ok", "errors", "stuck", "livelock", "deadlock", "thrashing",
               "median thrash to kill s", "median PSI full avg10 max %",
               "first victim (share of runs with a kill)", "first victim right",
               "runs w/ wrong victim", "protected /run", "bystander /run", "repeat /run",
               "ineffective /run", "median time to kill s [95 % CI]", "no kill", "kills /run",
               "fault kills /run", "alloc failures /run", "completed", "mean sim s"]


def _key(v):
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else v


def _agg_rows(agg_w: pd.DataFrame) -> list[list[tuple[str, object]]]:
    """The aggregate table of one workload: a row per policy of (text, sort key) cells."""
    rows = []
    for p, r in agg_w.iterrows():
        rows.append([(p, p), (str(int(r.runs_ok)), r.runs_ok), (str(int(r.errors)), r.errors),
                     (F.pct(r.stuck_rate), _key(r.stuck_rate)),
                     (F.pct(r.livelock_rate), _key(r.livelock_rate)),
                     (F.pct(r.deadlock_rate), _key(r.deadlock_rate)),
                     (F.pct(r.thrashing_rate), _key(r.thrashing_rate)),
                     (thrash_to_kill_text(r), _key(r.thrash_to_kill_median_s)),
                     (F.num(r.psi_full_avg10_max_median), _key(r.psi_full_avg10_max_median)),
                     (_first_victim(r), _key(r.first_victim_share)),
                     (F.pct(r.right_first_share), _key(r.right_first_share)),
                     (F.pct(r.wrong_victim_share), _key(r.wrong_victim_share)),
                     (F.num(r.protected_per_run), _key(r.protected_per_run)),
                     (F.num(r.bystander_per_run), _key(r.bystander_per_run)),
                     (F.num(r.repeat_per_run), _key(r.repeat_per_run)),
                     (F.num(r.ineffective_per_run), _key(r.ineffective_per_run)),
                     (_ttk(r), _key(r.ttk_median_s)),
                     (f"{int(r.no_kill_runs)}/{int(r.runs_ok)}", r.no_kill_runs),
                     (F.num(r.kills_per_run), _key(r.kills_per_run)),
                     (F.num(r.fault_kills_per_run), _key(r.fault_kills_per_run)),
                     (F.num(r.alloc_failures_per_run), _key(r.alloc_failures_per_run)),
                     (F.pct(r.completion_rate), _key(r.completion_rate)),
                     (F.num(r.sim_s_mean, 1), _key(r.sim_s_mean))])
    return rows


def _cmp_headers(baseline):
    return ["policy", f"stuck (livelock+deadlock) vs {baseline}", "difference", "p (Fisher)",
            "p Holm", f"runs w/ wrong victim vs {baseline}", "difference", "p (Fisher)",
            "p Holm", f"median time to kill s vs {baseline}", "p (Mann-Whitney)", "p Holm"]


#: the columns of the comparison table holding a Holm-adjusted p (marked when < ALPHA)
HOLM_COLS = (4, 8, 11)


def _cmp_rows(cmp_w: pd.DataFrame) -> list[list[tuple[str, object]]]:
    rows = []
    for p, r in cmp_w.iterrows():
        rows.append([(p, p),
                     (f"{F.pct(r.stuck_rate)} vs {F.pct(r.baseline_stuck_rate)}", r.stuck_rate),
                     (F.pp(r.stuck_diff), r.stuck_diff), (F.pval(r.stuck_p), _key(r.stuck_p)),
                     (F.pval(r.stuck_p_holm), _key(r.stuck_p_holm)),
                     (f"{F.pct(r.wrong_share)} vs {F.pct(r.baseline_wrong_share)}", r.wrong_share),
                     (F.pp(r.wrong_diff), r.wrong_diff), (F.pval(r.wrong_p), _key(r.wrong_p)),
                     (F.pval(r.wrong_p_holm), _key(r.wrong_p_holm)),
                     (f"{F.num(r.ttk_median_s)} (n={int(r.ttk_runs)}) vs "
                      f"{F.num(r.baseline_ttk_median_s)} (n={int(r.baseline_ttk_runs)})",
                      _key(r.ttk_median_s)),
                     (F.pval(r.ttk_p), _key(r.ttk_p)), (F.pval(r.ttk_p_holm), _key(r.ttk_p_holm))])
    return rows


def brief_table(agg: pd.DataFrame) -> pd.DataFrame:
    """A terminal table of :func:`aggregate` (``quick``): a row per workload x policy."""
    rows = []
    for (w, p), r in agg.iterrows():
        row = {"workload": w, "policy": p, "runs": int(r.runs_ok), "errors": int(r.errors),
               "stuck": F.pct(r.stuck_rate), "livelock": F.pct(r.livelock_rate),
               "deadlock": F.pct(r.deadlock_rate), "thrashing": F.pct(r.thrashing_rate),
               "thrash to kill s": thrash_to_kill_text(r),
               "first victim": _first_victim(r),
               "right": F.pct(r.right_first_share), "ttk med s": F.num(r.ttk_median_s),
               "no kill": int(r.no_kill_runs), "kills/run": F.num(r.kills_per_run),
               "fault kills/run": F.num(r.fault_kills_per_run),
               "wrong/run": F.num(r.protected_per_run + r.bystander_per_run),
               "completed": F.pct(r.completion_rate), "sim s": F.num(r.sim_s_mean, 1)}
        rows.append(row)
    t = pd.DataFrame(rows).set_index(["workload", "policy"]) if rows else pd.DataFrame()
    if len(t) and not t.errors.any():
        t = t.drop(columns="errors")
    return t


def _md_rows(headers, rows, marked=()) -> str:
    """A markdown table of (text, key) rows; the cells of ``marked`` columns whose key is
    below :data:`ALPHA` in bold."""
    body = [[f"**{t}**" if i in marked and k != "" and k < ALPHA else t
             for i, (t, k) in enumerate(r)] for r in rows]
    return F.md_table(pd.DataFrame(body, columns=headers, dtype=object))


def _html_rows(headers, rows, marked=(), cls="tbl sortable") -> str:
    """A sortable HTML table (``static/report.js``): each cell's sort key in ``data-k``; the
    cells of ``marked`` columns below :data:`ALPHA` in red."""
    e = html.escape
    out = [f'<table class="{cls}"><thead><tr>']
    out += [f'<th scope="col">{e(h)}</th>' for h in headers]
    out.append("</tr></thead><tbody>")
    for r in rows:
        out.append("<tr>")
        for i, (t, k) in enumerate(r):
            kv = "" if k == "" else (f"{float(k):.12g}" if isinstance(k, (int, float, np.number))
                                     and not isinstance(k, bool) else str(k))
            sig = i in marked and k != "" and k < ALPHA
            out.append(f'<td data-k="{e(kv)}"' + (' class="sig"' if sig else "") + f">{e(t)}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


# ---------------------------------------------------------------------------- plots
def plot_heatmap_stuck(agg: pd.DataFrame, workloads, policies, plots_dir, written) -> Path:
    """Policy x workload heatmap of the runs that ended stuck (livelock, deadlock) or
    thrashing: the three outcomes of a machine that stopped doing its work."""
    m = np.full((len(policies), len(workloads)), np.nan)
    counts = {}
    for i, p in enumerate(policies):
        for j, w in enumerate(workloads):
            if (w, p) in agg.index:
                r = agg.loc[(w, p)]
                th = getattr(r, "thrashing_rate", 0.0)
                th = 0.0 if th is None or (isinstance(th, float) and math.isnan(th)) else th
                m[i, j] = r.stuck_rate + th
                counts[i, j] = (r.livelock_rate, r.deadlock_rate, th, int(r.runs_ok))
    cw = max(1.5, 0.085 * max(len(w) for w in workloads))
    fig, ax = plt.subplots(figsize=(2.6 + cw * len(workloads) + 1.4, 1.5 + 0.55 * len(policies)))
    cmap = plt.get_cmap("Reds").with_extremes(bad="0.85")
    im = ax.imshow(np.ma.masked_invalid(m), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for (i, j), (ll, dl, tl, n) in counts.items():
        if n == 0 or np.isnan(m[i, j]):
            ax.text(j, i, "no ok run", ha="center", va="center", fontsize=8, color="0.3")
            continue
        dark = m[i, j] > 0.55
        ax.text(j, i - 0.1, f"{100 * m[i, j]:.0f} %", ha="center", va="center", fontsize=10,
                fontweight="bold", color="white" if dark else "black")
        ax.text(j, i + 0.25, f"L {round(ll * n)} + D {round(dl * n)} + T {round(tl * n)} of {n}",
                ha="center",
                va="center", fontsize=7, color="white" if dark else "0.25")
    for i, p in enumerate(policies):
        for j, w in enumerate(workloads):
            if (i, j) not in counts:
                ax.text(j, i, "not run", ha="center", va="center", fontsize=8, color="0.3")
    ax.set_xticks(range(len(workloads)), workloads, rotation=20 if len(workloads) > 3 else 0,
                  ha="right" if len(workloads) > 3 else "center")
    ax.set_yticks(range(len(policies)), policies)
    ax.set_xticks(np.arange(-0.5, len(workloads)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(policies)), minor=True)
    ax.grid(which="minor", color="white", lw=2)
    ax.tick_params(which="minor", length=0)
    ax.set_xlabel("workload")
    ax.set_ylabel("policy")
    ax.set_title("Runs stuck or thrashing (L = livelock, D = deadlock, T = thrashing)",
                 fontsize=11, y=TITLE_Y)
    cb = fig.colorbar(im, ax=ax, fraction=0.05, pad=0.03)
    cb.set_label("share of ok runs stuck or thrashing")
    cb.ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    F.fix_empty_axis_labels(fig)
    fig.tight_layout()
    return F.save(fig, plots_dir, "heatmap_stuck", written)


def plot_ttk(df_ok: pd.DataFrame, workload: str, policies, colours, plots_dir, written) -> Path:
    """ECDF of time_to_kill_s per policy over all ok runs: the curve stops at the share of
    runs with a kill; the runs without one are counted in the legend."""
    fig, ax = plt.subplots(figsize=(10, 4.6))
    dw = df_ok[df_ok.workload == workload]
    handles = []
    tt = dw.time_to_kill_s.dropna()
    # times spread over decades (a kill in 1 s beside one in 200 s) go on a log axis
    logx = len(tt) > 1 and tt.min() > 0 and tt.max() / tt.min() > 30
    if logx:
        xmin, xmax = tt.min() / 1.5, tt.max() * 1.5
    else:
        lo, hi = (tt.min(), tt.max()) if not tt.empty else (0.0, 0.0)
        xmax = 1.0 if hi <= 0 else hi * 1.08
        # a kill before the pressure onset (a user-space killer acting on PSI) is a negative
        # time: the axis then starts left of zero, which is marked
        xmin = 0.0 if lo >= 0 else lo - 0.08 * (xmax - lo)
    for p in policies:
        g = dw[dw.policy == p]
        if g.empty:
            continue
        n = len(g)
        t = np.sort(g.time_to_kill_s.dropna().to_numpy())
        no_kill = int(g.first_kill_s.isna().sum())
        label = f"{p}: no kill in {no_kill} of {n}"
        if len(t) < n - no_kill:
            label += f", {n - no_kill - len(t)} kill(s) without pressure onset"
        c = colours[p]
        if len(t):
            xs = np.concatenate([[xmin], t, [xmax]])
            ys = np.concatenate([[0.0], np.arange(1, len(t) + 1) / n, [len(t) / n]])
            h, = ax.step(xs, ys, where="post", color=c, lw=1.8, label=label)
            ax.plot(t, np.arange(1, len(t) + 1) / n, "o", color=c, ms=3.5)
            ax.plot([np.median(t)], [-0.035], "^", color=c, ms=7, clip_on=False)
        else:
            h = Line2D([], [], color=c, lw=1.8, ls=":", label=label)
        handles.append(h)
    if dw.time_to_kill_s.notna().any():
        handles.append(Line2D([], [], color="0.3", marker="^", ls="", ms=7,
                              label="median of the runs with a kill"))
    else:
        ax.text(0.5, 0.5, "no ok run had an OOM kill after a pressure onset",
                transform=ax.transAxes, ha="center", va="center", fontsize=10, color="0.4")
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
    elif xmin < 0:
        ax.axvline(0, color="0.35", lw=0.9, ls="--", zorder=1)
        ax.text(0, 1.0, " pressure onset", color="0.35", fontsize=8, va="top", ha="left",
                transform=ax.get_xaxis_transform())
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(-0.06, 1.04)
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.set_xlabel("time to first OOM kill after pressure onset (simulated s"
                  + (", log scale)" if logx else
                     "; < 0: killed before the onset)" if xmin < 0 else ")"))
    ax.set_ylabel("share of ok runs with a kill by then")
    ax.set_title(f"{workload}: time to kill (ECDF over ok runs; the plateau is the share of runs "
                 f"with a kill)", fontsize=10.5, y=TITLE_Y)
    ax.grid(True, alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8,
              frameon=False, borderaxespad=0, title="policy (runs)", title_fontsize=8.5,
              alignment="left")
    F.fix_empty_axis_labels(fig)
    fig.tight_layout()
    return F.save(fig, plots_dir, f"ttk_{F.safe(workload)}", written)


def plot_wrong_victims(agg: pd.DataFrame, workloads, policies, colours, plots_dir, written) -> Path:
    """Wrong victims and wasted kills per run, stacked by kind, a panel per workload."""
    kinds = ["protected", "bystander", "repeat", "ineffective"]
    nw = len(workloads)
    ncols = min(nw, 3)
    nrows = math.ceil(nw / ncols)
    pw = max(3.6, 0.42 * len(policies) + 1.2)
    fig, axes = plt.subplots(nrows, ncols, figsize=(pw * ncols + 0.6, 3.9 * nrows + 1.1),
                             squeeze=False)
    for ax in axes.flat[nw:]:
        ax.set_visible(False)
    for ax, w in zip(axes.flat, workloads):
        ps = [p for p in policies if (w, p) in agg.index]
        bottom = np.zeros(len(ps))
        for kind in kinds:
            v = np.array([agg.loc[(w, p), f"{kind}_per_run"] for p in ps], dtype=float)
            v = np.nan_to_num(v)
            ax.bar(range(len(ps)), v, bottom=bottom, color=KIND_COLOURS[kind], width=0.7,
                   edgecolor="white", lw=0.5)
            bottom += v
        top = max(bottom.max(initial=0), 1e-9)
        for i, p in enumerate(ps):
            r = agg.loc[(w, p)]
            v = bottom[i]
            text = "no ok run" if r.runs_ok == 0 else f"{v:.2f}" if 0 < v < 1 else f"{v:.1f}"
            ax.text(i, bottom[i] + 0.02 * top, text, ha="center", va="bottom", fontsize=7.5)
        ax.set_ylim(0, top * 1.15 if top > 1e-9 else 1)
        ax.set_xticks(range(len(ps)), ps, rotation=35, ha="right", fontsize=8.5)
        for lbl, p in zip(ax.get_xticklabels(), ps):
            lbl.set_color(colours[p])
        ax.set_title(w, fontsize=10, y=TITLE_Y)
        ax.grid(True, axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    for ax in axes[:, 0]:
        ax.set_ylabel("per run (mean over ok runs)")
    fig.suptitle("Wrong victims and wasted kills per run, by kind", fontsize=12)
    fig.legend(handles=[Patch(color=KIND_COLOURS[k], label=KIND_LABELS[k]) for k in kinds],
               loc="lower center", ncol=2, fontsize=8.5, frameon=False, bbox_to_anchor=(0.5, 0))
    F.fix_empty_axis_labels(fig)
    fig.tight_layout(rect=(0, 0.09 if nrows == 1 else 0.05, 1, 0.97))
    return F.save(fig, plots_dir, "wrong_victims", written)


def _default_timeline_runner(policy, workload, seed):
    from . import runner
    return runner.run_one(policy, workload, int(seed), keep_kernel=True)[1]


def plot_timelines(workload, policies, seed, timeline_runner, plots_dir, written,
                   ncols=None) -> Path:
    """One seed of ``workload`` under every policy, a panel per policy on common axes (time,
    free pages, stalled tasks), so the eye finds where the policies part ways."""
    runs = {}
    for p in policies:
        try:
            runs[p] = timeline_runner(p, workload, seed)
        except Exception as e:   # a failed run is a panel saying so, not a missing figure
            runs[p] = f"{type(e).__name__}: {e}"
    kernels = [k for k in runs.values() if not isinstance(k, str)]
    colours = policy_colours(policies)
    n = len(policies)
    ncols = ncols or (1 if n <= 5 else 2)
    nrows = math.ceil(n / ncols)
    panel_w, panel_h = (12.0, 4.3) if ncols == 1 else (7.8, 4.3)
    left_in, right_in, top_in, bottom_in, gap_in = 1.1, 1.3, 1.05, 0.55, 0.62
    W = left_in + right_in + ncols * panel_w + (ncols - 1) * 0.25
    H = top_in + bottom_in + nrows * panel_h + (nrows - 1) * gap_in
    fig = plt.figure(figsize=(W, H))
    gs = fig.add_gridspec(nrows, ncols, left=left_in / W, right=1 - right_in / W,
                          top=1 - top_in / H, bottom=bottom_in / H,
                          wspace=0.25 / panel_w, hspace=gap_in / panel_h)
    xmax = max((k.now / 1e6 for k in kernels), default=1.0)
    ymax = max((plot.free_ymax(k) for k in kernels), default=1)
    stall_top = max((plot.stalled_max(k) for k in kernels), default=1)
    zone_handles = None
    first_ax = first_ax2 = None
    for i, p in enumerate(policies):
        r, c = divmod(i, ncols)
        sub = gs[r, c].subgridspec(3, 1, height_ratios=[3.0, 1, 1.1], hspace=0.08)
        k = runs[p]
        if isinstance(k, str):      # its own axes: clearing shared ticks would clear them all
            ax = fig.add_subplot(sub[0])
            ax.set_title(p, fontsize=10, loc="left", fontweight="bold", color=colours[p],
                         y=TITLE_Y)
            ax.text(0.5, 0.5, f"no timeline: the run failed\n{k[:160]}", transform=ax.transAxes,
                    ha="center", va="center", fontsize=9, color="firebrick", wrap=True)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        ax = fig.add_subplot(sub[0], sharex=first_ax2, sharey=first_ax)
        ax2 = fig.add_subplot(sub[1], sharex=ax if first_ax2 is None else first_ax2,
                              sharey=first_ax2)
        ax3 = fig.add_subplot(sub[2], sharex=ax2)
        ax.set_title(p, fontsize=10, loc="left", fontweight="bold", color=colours[p],
                     y=TITLE_Y)
        ax.tick_params(labelbottom=False)
        last_in_row = c == ncols - 1 or i == n - 1
        info = plot.draw_timeline(ax, ax2, k, xmax=xmax, ymax=ymax, stall_top=stall_top,
                                  compact=True, label_watermarks=False, legend=False,
                                  ylabels=(c == 0), xlabel=False, rasterized=True)
        ax2.tick_params(labelbottom=False)
        plot.draw_thrash(ax3, k, ylabels=(c == 0), rasterized=True)
        if i + ncols >= n:
            ax3.set_xlabel("simulated time (s)")
        if first_ax is None:
            first_ax, first_ax2 = ax, ax2
        zone_handles = zone_handles or info["zone_handles"]
        outcome = getattr(k, "outcome", None) or metrics.compute(k)["outcome"]
        ax.set_title(f"{outcome}: {info['kills']} OOM kills, {info['fault_kills']} fault kills, "
                     f"{info['alloc_failures']} alloc failures", fontsize=8.5, loc="right",
                     y=TITLE_Y)
        if c > 0:
            ax.tick_params(labelleft=False)
            ax2.tick_params(labelleft=False)
        if last_in_row:
            plot._label_right(fig, ax, info["wm_labels"], draw=False)
    fig.suptitle(f"{workload}, seed {seed}: the same run under every policy "
                 f"(common time and page axes)", fontsize=12, y=1 - 0.2 / H, va="top")
    handles = list(zone_handles or []) + plot.event_handles() + plot.thrash_handles()
    fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 9), fontsize=8.5,
               frameon=False, bbox_to_anchor=(0.5, 1 - 0.52 / H))
    return F.save(fig, plots_dir, f"timeline_{F.safe(workload)}", written, dpi=TIMELINE_DPI)


# ---------------------------------------------------------------------------- documents
PLOT_NOTES = {
    "heatmap": "Share of ok runs that ended stuck (the watchdog fired: livelock or deadlock) "
               "or thrashing (pages moved, but the goal tasks' progress stayed below 20 % for "
               "thrash_limit_s before any kill), per policy and workload; darker is worse.",
    "wrong_victims": "Mean per ok run of victims that were not the culprit (protected tasks, "
                     "bystanders) and of wasted kill decisions (repeat kills of a task already "
                     "dying, kills whose victim was still alive 10 s later); the total is above "
                     "each bar.",
    "ttk": "Cumulative share of ok runs whose first OOM kill came within t seconds of the "
           "pressure onset; a curve that stops below 100 % means the other runs had no kill "
           "(counted in the legend, not averaged in as zero). Triangles mark the medians.",
    "timeline": "The same seed under every policy on a common time axis: free pages per zone "
                "with pages_min/low/high (linear near the watermarks, log above), OOM kills "
                "(red lines, first victims named), fault kills and allocation failures (strip "
                "below zero), the watchdog, below each the tasks stalled in the allocator, "
                "and below that the thrashing measures: the goal tasks' progress over 10-s "
                "windows (dotted: the 20 % line of the thrashing rule) and PSI memory full "
                "avg10 in percent, the file refault rate per second (right axis), OOM kills "
                "in red.",
}


def _provenance(meta: dict, d: pd.DataFrame) -> list[tuple[str, str]]:
    m = meta.get("matrix") or {}
    seeds = m.get("seeds") or sorted(int(s) for s in d["seed"].dropna().unique())
    seed_txt = (f"{len(seeds)} ({min(seeds)}-{max(seeds)})"
                if seeds and list(seeds) == list(range(min(seeds), max(seeds) + 1))
                else ", ".join(map(str, seeds)))
    dirty = " (dirty)" if meta.get("git_dirty") else ""
    rows = [("commit", f"{meta.get('git_commit', '?')}{dirty}"),
            ("created (UTC)", str(meta.get("created_utc", "?"))),
            ("policies", ", ".join(m.get("policies") or policy_order(d["policy"]))),
            ("workloads", ", ".join(m.get("workloads") or list(dict.fromkeys(d["workload"])))),
            ("seeds", seed_txt),
            ("runs", f"{len(d)} ({int((d.status == 'ok').sum())} ok)")]
    if meta.get("engine_hash"):
        rows.append(("engine hash", str(meta["engine_hash"])))
    if meta.get("python"):
        rows.append(("python", str(meta["python"])))
    if meta.get("cpu"):
        cpus = f" ({meta['cpus']} cpus)" if meta.get("cpus") else ""
        rows.append(("cpu", f"{meta['cpu']}{cpus}"))
    rs = meta.get("run_stats")
    if isinstance(rs, dict) and rs:
        rows.append(("matrix run", ", ".join(f"{k} {v}" for k, v in rs.items())
                     + " (wall time is metadata, never a result)"))
    pk = meta.get("packages")
    if pk:
        rows.append(("packages", ", ".join(f"{k} {v}" for k, v in pk.items())
                     if isinstance(pk, dict) else str(pk)))
    return rows


def _errors_frame(d: pd.DataFrame) -> pd.DataFrame:
    e = d[d.status != "ok"][["policy", "workload", "seed", "status", "error"]].copy()
    e["seed"] = e["seed"].map(lambda s: "?" if pd.isna(s) else int(s))
    e["error"] = e["error"].map(lambda v: "" if pd.isna(v) else " ".join(str(v).split())[:300])
    return e


def _stats_note(ctx, md: bool) -> str:
    """What the comparisons are, the correction, and how many are significant."""
    b = ctx["baseline"]
    counts = significance_counts(ctx["cmp"])
    total = sum(v[0] for v in counts.values())
    per = "; ".join(f"{name}: {n_sig} of {n} before, {n_holm} after"
                    for name, (n, n_sig, n_holm) in
                    zip(("stuck rate", "wrong-victim share", "time to kill"), counts.values()))
    sig = "**bold**" if md else "red"
    return (f"Rates and per-run means are over the ok runs. Time to kill = first OOM kill minus "
            f"pressure onset; the median is over the runs with a kill, with a 95 % percentile "
            f"bootstrap interval (scipy.stats.bootstrap, {BOOT_N} resamples, fixed seed); "
            f"\"no kill\" counts the others. First victim: the task the first OOM kill chose, "
            f"most frequent name and its share of the runs with a kill; \"right\" when the "
            f"workload's oracle calls it a culprit. {ctx['baseline_note'][0].upper()}"
            f"{ctx['baseline_note'][1:]}. Every policy against {b}: Fisher's exact test "
            f"(two-sided) for the stuck and wrong-victim rates, Mann-Whitney U (two-sided; exact "
            f"when no time ties and each side has at most {MW_EXACT_MAX}, else the normal "
            f"approximation with tie and continuity corrections) for the times (n/a with fewer "
            f"than 3 times on a side); scipy.stats. Multiple comparisons: Holm's step-down "
            f"correction per metric over all the comparisons of this report ({total} tests); "
            f"{sig}: Holm-adjusted p < {ALPHA}. Significant before and after the correction: "
            f"{per}.")


def _summary_md(d, agg, cmp, meta, workloads, plots, files_rel, ctx) -> str:
    out = ["# vmbench report", ""]
    for k, v in _provenance(meta, d):
        out.append(f"- **{k}**: {v}")
    out += [f"- **comparisons**: {ctx['baseline_note']}", ""]
    hl = headline(agg, workloads)
    if hl:
        out += ["## Headline", "", "```", *hl, "```", ""]
    for key, what in (("skipped_policies", "Skipped policies"),
                      ("skipped_workloads", "Skipped workloads")):
        items = meta.get(key) or []
        if items:
            out += [f"## {what}", ""] + [f"- {s}" for s in items] + [""]
    errs = _errors_frame(d)
    out += ["## Failed runs", "", f"{len(errs)} of {len(d)} runs did not finish (status other "
            f"than ok); they are counted per cell and left out of every statistic.", ""]
    if len(errs):
        out += [F.md_table(errs), ""]
    out += ["## Results per workload", "", _stats_note(ctx, md=True), ""]
    b = ctx["baseline"]
    for w in workloads:
        out += [f"### {w}", ""]
        q = one_sentence((ctx["info"].get(w) or {}).get("question"))
        if q:
            out += [f"*{q}*", ""]
        out += [_md_rows(AGG_HEADERS, _agg_rows(agg.loc[w])), ""]
        if len(cmp) and w in cmp.index.get_level_values(0):
            out += [f"Against {b}:", "",
                    _md_rows(_cmp_headers(b), _cmp_rows(cmp.loc[w]), HOLM_COLS), ""]
        elif b is not None and b not in set(d[d.workload == w].policy):
            out += [f"({b} was not run on this workload: no comparison.)", ""]
    out += ["## Plots", "", "Every plot as PNG and SVG; `index.html` shows them with the "
            "tables above.", ""]
    for rel in files_rel:
        if rel.endswith(".png"):
            svg = rel[:-4] + ".svg"
            out.append(f"- [{rel}]({rel})" + (f" ([svg]({svg}))" if svg in files_rel else ""))
    out.append("")
    return "\n".join(out)


def _static(name: str) -> str:
    """A file of ``harness/static/`` (shipped in the wheel), inlined into the page."""
    return (Path(__file__).resolve().parent / "static" / name).read_text()


def _mix(c0, c1, t):
    t = min(1.0, max(0.0, float(t)))
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(c0, c1))


def score_colour(stuck, right) -> tuple[str, str]:
    """(background, text colour) of a scoreboard cell: red, darker the more runs got stuck;
    when none did, green, darker the more first victims were right (grey: no kill judged)."""
    if pd.isna(stuck):
        return "#eeeeee", "#555555"
    if stuck > 0:
        bg = _mix((0xfc, 0xdc, 0xd4), (0xa5, 0x0f, 0x15), stuck)
        return bg, "#ffffff" if stuck > 0.45 else "#222222"
    if pd.isna(right):
        return "#f4f4f4", "#222222"
    return _mix((0xf1, 0xf7, 0xee), (0x8f, 0xd1, 0x8a), right), "#222222"


def _scoreboard(agg, workloads, policies, ctx) -> str:
    """Workloads as rows, policies as columns; each cell: stuck %, first victim right %,
    median time to kill (the fastest of the row underlined), coloured by :func:`score_colour`."""
    e = html.escape
    out = ['<table id="scoreboard" class="score"><thead><tr><th class="wl">workload</th>']
    out += [f'<th scope="col">{e(p).replace("_", "_<wbr>")}</th>' for p in policies]
    out.append("</tr></thead><tbody>")
    for w in workloads:
        a = agg.loc[w]
        t = a.ttk_median_s.astype(float).dropna()
        fastest = t.min() if len(t) else None
        out.append(f'<tr><th scope="row" class="wl"><a href="#w-{e(F.safe(w))}">{e(w)}</a></th>')
        for p in policies:
            if p not in a.index:
                out.append('<td class="na">not run</td>')
                continue
            r = a.loc[p]
            if not r.runs_ok:
                out.append('<td class="na">no ok run</td>')
                continue
            bg, fg = score_colour(r.stuck_rate, r.right_first_share)
            ttk = r.ttk_median_s
            fast = fastest is not None and not pd.isna(ttk) and ttk == fastest
            tip = (f"{p} on {w}: stuck {F.pct(r.stuck_rate)} (livelock {F.pct(r.livelock_rate)}, "
                   f"deadlock {F.pct(r.deadlock_rate)} of {int(r.runs_ok)} ok runs), "
                   f"thrashing {F.pct(r.thrashing_rate)}; first "
                   f"victim {_first_victim(r)}, right {F.pct(r.right_first_share)}; median "
                   f"time to kill {_ttk(r)} s, {int(r.no_kill_runs)} runs without a kill")
            ttk_txt = (("no kill" if not r.kill_runs else "n/a") if pd.isna(ttk)
                       else f"{ttk:.1f}s" if ttk < 100 else f"{ttk:.0f}s")
            rf = ("" if pd.isna(r.right_first_share) else
                  f'<span class="rf">\u2713{100 * r.right_first_share:.0f}%</span>')
            out.append(f'<td style="background:{bg};color:{fg}" title="{e(tip)}">'
                       f'<span class="st">{100 * r.stuck_rate:.0f}%</span>{rf}'
                       f'<span class="tk{" fast" if fast else ""}">{ttk_txt}</span></td>')
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _index_html(d, agg, cmp, meta, workloads, plots, files_rel, ctx) -> str:
    e = html.escape
    policies = ctx["policies"]
    prov = dict(_provenance(meta, d))
    n_bad = int((d.status != "ok").sum())
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>vmbench report</title>", f"<style>{_static('report.css')}</style></head>",
           "<body>", '<header><h1>vmbench report</h1><p class="meta">'
           f"{len(d)} runs, {e(str(len(policies)))} policies x "
           f"{e(str(len(workloads)))} workloads x {e(prov.get('seeds', ''))} seeds &middot; "
           f"commit <code>{e(prov.get('commit', '?'))}</code> &middot; "
           f"{e(prov.get('created (UTC)', '?'))} UTC"
           + (f' &middot; <a class="bad" href="#failed">{n_bad} failed</a>' if n_bad else "")
           + "</p></header>"]
    if len(agg):
        out += ['<section id="score"><p class="legend">Each cell: <b>stuck %</b> (livelock or '
                "deadlock, of the ok runs) &middot; <b>first victim right %</b> (of the runs "
                "with an OOM kill, after &#x2713;) &middot; <b>median time to kill</b> (simulated s after the "
                "pressure onset; <u>underlined</u>: the fastest of the row; n/a: kills but no "
                "pressure onset). "
                '<span class="key" style="background:#c23b2e;color:#fff">red</span> some runs '
                'stuck (darker: more); <span class="key" style="background:#a9dba3">green</span> '
                "none stuck (darker: more first victims right); grey: no kill to judge. Hover "
                "for the counts; a workload's name leads to its tables.</p>",
                _scoreboard(agg, workloads, policies, ctx), "</section>"]
    counts = significance_counts(cmp)
    out.append(f'<p class="note">{e(ctx["baseline_note"][0].upper() + ctx["baseline_note"][1:])}'
               "; every other policy is compared with it per workload (the tables below). "
               f"Significant (p &lt; {ALPHA}) before / after Holm's correction per metric: "
               + "; ".join(f"{name} {n_sig} / {n_holm} of {n}" for name, (n, n_sig, n_holm) in
                           zip(("stuck rate", "wrong-victim share", "time to kill"),
                               counts.values())) + ".</p>")
    for key, what in (("skipped_policies", "Skipped policies"),
                      ("skipped_workloads", "Skipped workloads")):
        items = meta.get(key) or []
        if items:
            out += [f"<h2>{what}</h2><ul>"] + [f"<li><code>{e(str(s))}</code></li>" for s in items]
            out.append("</ul>")
    errs = _errors_frame(d)
    out += ['<h2 id="failed">Failed runs</h2>', f'<p class="note">{len(errs)} of {len(d)} runs '
            "did not finish (status other than ok); they are counted per cell and left out of "
            "every statistic.</p>"]
    if len(errs):
        out.append(f'<div class="scroll">{F.html_table(errs)}</div>')
    out += ["<h2>Results per workload</h2>", f'<p class="note">{e(_stats_note(ctx, md=False))}</p>']
    b = ctx["baseline"]
    for w in workloads:
        out += [f'<section class="wl" id="w-{e(F.safe(w))}"><h3>{e(w)}</h3>']
        q = (ctx["info"].get(w) or {}).get("question")
        if q:
            out.append(f'<p class="q" title="{e(" ".join(q.split()))}">{e(one_sentence(q))}</p>')
        out.append(f'<div class="scroll">{_html_rows(AGG_HEADERS, _agg_rows(agg.loc[w]))}</div>')
        if len(cmp) and w in cmp.index.get_level_values(0):
            out += [f'<p class="note">Against {e(b)} (red: Holm-adjusted p &lt; {ALPHA}):</p>',
                    '<div class="scroll">'
                    + _html_rows(_cmp_headers(b), _cmp_rows(cmp.loc[w]), HOLM_COLS) + "</div>"]
        elif b is not None and b not in set(d[d.workload == w].policy):
            out.append(f'<p class="note">({e(b)} was not run on this workload: no '
                       "comparison.)</p>")
        if w in plots["ttk"]:
            out.append(F.img(plots["ttk"][w], PLOT_NOTES["ttk"]))
        if w in plots["timeline"]:
            out.append(F.img(plots["timeline"][w], PLOT_NOTES["timeline"]))
        out.append("</section>")
    if "wrong_victims" in plots:
        out += ["<h2>Wrong victims, every workload</h2>",
                F.img(plots["wrong_victims"], PLOT_NOTES["wrong_victims"])]
    for extra in ctx.get("sections_html", ()):
        out.append(extra)
    out += ['<h2>Provenance</h2><table class="prov">']
    out += [f"<tr><td>{e(k)}</td><td>{e(v)}</td></tr>" for k, v in _provenance(meta, d)]
    out.append("</table>")
    out += ["<h2>Plot files</h2><ul>"] + [
        f'<li><a href="{e(r)}"><code>{e(r)}</code></a></li>' for r in files_rel]
    out += ["</ul>", f"<script>{_static('report.js')}</script>", "</body></html>", ""]
    return "\n".join(out)


class _ViewsOrRun:
    """A timeline runner that hands out the runs the matrix sent back
    (:class:`harness.runner.RunView`, by policy) and makes the others with ``run``."""

    def __init__(self, views: dict, run):
        self.views, self.run = views, run

    def __call__(self, policy, workload, seed):
        view = self.views.get(policy)
        return view if view is not None else self.run(policy, workload, seed)


def _plot_job(kind, args, plots_dir) -> list[Path]:
    """One figure (PNG and SVG) of the report; returns its files."""
    files: list[Path] = []
    if kind == "heatmap":
        plot_heatmap_stuck(*args, plots_dir, files)
    elif kind == "wrong_victims":
        plot_wrong_victims(*args, plots_dir, files)
    elif kind == "ttk":
        plot_ttk(*args, plots_dir, files)
    else:
        plot_timelines(*args, plots_dir, files)
    return files


def _run_plot_jobs(jobs, n_jobs, plots_dir):
    """The figures, in a process pool when there are several jobs and they can be sent to a
    worker (a timeline runner that does not pickle keeps them here); the same files, in the
    order of ``jobs``, either way.  The timelines (re-runs and many panels) go first."""
    n_jobs = min(n_jobs or os.cpu_count() or 1, len(jobs))
    if n_jobs > 1:
        from joblib import Parallel, delayed
        try:
            try:
                import cloudpickle
            except ImportError:
                from joblib.externals import cloudpickle
            for kind, args in jobs:
                if kind == "timeline":
                    cloudpickle.dumps(args[3])
                    break
        except Exception:
            n_jobs = 1
    if n_jobs <= 1:
        return [_plot_job(kind, args, plots_dir) for kind, args in jobs]
    order = sorted(range(len(jobs)), key=lambda i: jobs[i][0] != "timeline")
    done = Parallel(n_jobs=n_jobs, backend="loky", batch_size=1)(
        delayed(_plot_job)(jobs[i][0], jobs[i][1], plots_dir) for i in order)
    out = [None] * len(jobs)
    for i, files in zip(order, done):
        out[i] = files
    return out


def _plots_key(d: pd.DataFrame, meta: dict, timeline_seed, timelines: bool) -> str:
    """What the plots depend on: the runs (wall time aside), the matrix, the drawing code."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    h.update(d.drop(columns=["wall_s"], errors="ignore").to_csv(index=False).encode())
    h.update(json.dumps({k: meta.get(k) for k in ("matrix", "skipped_policies",
                                                  "skipped_workloads")},
                        sort_keys=True, default=str).encode())
    h.update(repr((timeline_seed, timelines)).encode())
    for f in ("report.py", "plot.py", "fmt.py"):
        h.update((here / f).read_bytes())
    return h.hexdigest()


def _figure_key(kind: str, *parts) -> str:
    """What one figure depends on: its kind, its data (``parts``: text or bytes), the drawing
    code and matplotlib's version.  The same key, the same figure."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256(f"{kind}\0{matplotlib.__version__}\0".encode())
    for f in ("report.py", "plot.py", "fmt.py"):
        h.update((here / f).read_bytes())
    for part in parts:
        h.update(part if isinstance(part, bytes) else repr(part).encode())
        h.update(b"\0")
    return h.hexdigest()


class _FigureCache:
    """Figures kept by :func:`_figure_key` under ``plot_cache/figures/``: a figure whose data
    did not change (a workload's timeline runs, its ok runs) is copied, not drawn again."""

    def __init__(self, root):
        self.root = Path(root) / "figures" if root is not None else None

    def get(self, key, plots_dir: Path) -> list[Path] | None:
        if self.root is None or key is None or not (self.root / key / ".complete").exists():
            return None
        try:
            return [p for p in _copy_tree(self.root / key, plots_dir) if p.name != ".complete"]
        except OSError:
            return None

    def put(self, key, files: list[Path]):
        if self.root is None or key is None:
            return
        try:
            _store_dir(self.root / key, files)
        except OSError:
            pass


def _store_dir(dst: Path, files) -> None:
    """``dst`` becomes a folder of copies of ``files`` with a ``.complete`` mark, replaced
    whole (built beside it, then renamed): a reader sees the old folder or the new one."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        for f in files:
            shutil.copy2(f, tmp / Path(f).name)
        (tmp / ".complete").write_text("")
        shutil.rmtree(dst, ignore_errors=True)
        os.replace(tmp, dst)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _copy_tree(src: Path, dst: Path) -> list[Path]:
    out = []
    for f in sorted(src.iterdir()):
        if f.is_file():
            shutil.copy2(f, dst / f.name)
            out.append(dst / f.name)
    return out


def write_report(out_dir, df, meta, *, timeline_seed=None, timeline_runner=None,
                 timelines: bool = True, n_jobs: int | None = None,
                 plot_cache=None, timeline_views: dict | None = None,
                 baseline: str | None = None, info: dict | None = None,
                 sections=()) -> list[Path]:
    """Write ``summary.md``, ``index.html`` (opens from disk; its images are the files of
    ``plots/``, loaded lazily), ``aggregates.csv``, ``comparison.csv`` and ``plots/*.png|svg``
    into ``out_dir`` from the run records ``df`` (columns of ``metrics.COLUMNS``) and the
    provenance ``meta``; return the written paths.

    ``timeline_runner(policy, workload, seed) -> kernel`` re-runs one cell for the timeline
    figures (default: :func:`harness.runner.run_one` with ``keep_kernel=True``) on
    ``timeline_seed`` (default: the smallest seed in ``df``); ``timelines=False`` skips them.
    The figures are made in ``n_jobs`` processes (default: one per CPU; 1 = in this process).
    ``timeline_views``: ``(policy, workload, seed) -> RunView`` of runs the matrix sent back
    (:func:`harness.bench.run_matrix`); the timelines draw those instead of making them again
    (with the default runner).  ``plot_cache``: a folder where the plots are kept by what
    they depend on, so that an unchanged matrix redraws nothing.  ``baseline``: the policy
    the others are compared with (:func:`choose_baseline`; ValueError when it was not run).
    ``info``: :func:`workload_info` (default: read from the workload files).  ``sections``:
    callables ``(out_dir, runs, written) -> (markdown, html)`` of more sections, placed after
    the workloads (the real-kernel one: :mod:`harness.results`)."""
    out_dir = Path(out_dir)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    meta = dict(meta or {})
    d = prepare(df)
    workloads = _workload_order(d, meta)
    policies = policy_order(d["policy"])
    base, base_note = choose_baseline(policies, baseline)
    colours = policy_colours(policies)
    info = workload_info(workloads, meta) if info is None else info
    agg = aggregate(d, workloads, info)
    cmp = compare(d, base, workloads)
    ctx = {"baseline": base, "baseline_note": base_note, "info": info, "policies": policies,
           "cmp": cmp}
    ok = d[d.status == "ok"]
    written: list[Path] = []
    plots = {"ttk": {}, "timeline": {}}
    cached = None
    if plot_cache is not None:
        cached = Path(plot_cache) / _plots_key(d, meta, timeline_seed, timelines)
        if (cached / ".complete").exists():
            written = [p for p in _copy_tree(cached, plots_dir) if p.name != ".complete"]
            names = {p.name for p in written}
            if "heatmap_stuck.png" in names:
                plots["heatmap"] = plots_dir / "heatmap_stuck.png"
            if "wrong_victims.png" in names:
                plots["wrong_victims"] = plots_dir / "wrong_victims.png"
            for w in workloads:
                for kind in ("ttk", "timeline"):
                    f = f"{kind}_{F.safe(w)}.png"
                    if f in names:
                        plots[kind][w] = plots_dir / f
            timelines = False
            agg_plots = False
        else:
            agg_plots = True
    else:
        agg_plots = True
    jobs = []                                      # (kind, arguments), in the order written
    keys = []                                      # each job's figure key (or None)
    if len(agg) and agg_plots:
        jobs.append(("heatmap", (agg, workloads, policies)))
        jobs.append(("wrong_victims", (agg, workloads, policies, colours)))
        keys += [None, None]
    for w in workloads if agg_plots else ():
        pw = [p for p in policies if (w, p) in agg.index]
        ok_w = ok[ok.workload == w]
        jobs.append(("ttk", (ok_w, w, pw, colours)))
        keys.append(_figure_key("ttk", w, pw, colours, ok_w.drop(
            columns=["wall_s"], errors="ignore").to_csv(index=False)))
    if timelines and len(d):
        seed = timeline_seed if timeline_seed is not None else int(d["seed"].min())
        run = timeline_runner or _default_timeline_runner
        for w in workloads:
            views = {p: v for (p, wv, sv), v in (timeline_views or {}).items()
                     if wv == w and sv == seed} if timeline_runner is None else {}
            pw = [p for p in policies if (w, p) in agg.index]
            jobs.append(("timeline", (w, pw, seed, _ViewsOrRun(views, run) if views else run)))
            # the runs are known (every one sent back by the matrix): the figure is their data
            keys.append(_figure_key("timeline", w, seed, pw, *(
                pickle.dumps(views[p], protocol=4) for p in pw)) if all(p in views for p in pw)
                else None)
    figures = _FigureCache(plot_cache)
    done = [figures.get(key, plots_dir) for key in keys]
    todo = [i for i, files in enumerate(done) if files is None]
    for i, files in zip(todo, _run_plot_jobs([jobs[i] for i in todo], n_jobs, plots_dir)):
        done[i] = files
        figures.put(keys[i], files)
    for (kind, args), files in zip(jobs, done):
        if kind in ("heatmap", "wrong_victims"):
            plots[kind] = files[0]
        else:
            plots[kind][args[1] if kind == "ttk" else args[0]] = files[0]
        written += files
    if cached is not None and agg_plots:
        _store_dir(cached, written)
    extra_md, extra_html = [], []
    for section in sections:
        md_part, html_part = section(out_dir, d, written)
        extra_md.append(md_part)
        extra_html.append(html_part)
    ctx["sections_html"] = extra_html
    files_rel = [p.relative_to(out_dir).as_posix() for p in written if p.suffix in (".png", ".svg")]
    agg_csv, cmp_csv = out_dir / "aggregates.csv", out_dir / "comparison.csv"
    agg.to_csv(agg_csv)
    cmp.to_csv(cmp_csv)
    md, idx = out_dir / "summary.md", out_dir / "index.html"
    md_text = _summary_md(d, agg, cmp, meta, workloads, plots, files_rel, ctx)
    if extra_md:
        md_text = md_text.replace("## Plots\n", "\n".join(extra_md) + "\n## Plots\n", 1)
    md.write_text(md_text)
    idx.write_text(_index_html(d, agg, cmp, meta, workloads, plots, files_rel, ctx))
    return [md, idx, agg_csv, cmp_csv] + written

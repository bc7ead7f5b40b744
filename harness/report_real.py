"""Real kernel beside the simulation: the tables and the plot of issue 6.

The real runs (``python -m harness real``, ``harness/real/``) have the columns of
``metrics.COLUMNS`` with ``policy = real-<backend>-<kernel release>``; they are set beside the
simulated runs of the same workloads under :data:`SIM_REFERENCE` (``oom_reaper``, the model of
the modern kernel's OOM killer) and, when present, the other successors of :data:`SIM_CONTEXT`.

What can be compared, and how (the seeds of a real run and of a simulated one draw different
random numbers, so runs are compared as distributions, never pairwise by seed):

* **victim agreement**: the share of a source's runs whose first OOM victim (task name; "none"
  when nothing was OOM-killed) is the one the reference simulation picks most often on that
  workload (its mode, shown beside it);
* **time to kill**: median ``time_to_kill_s`` of the runs with a kill, with its bootstrap
  interval; real seconds on one side, simulated seconds of a 2002 machine on the other, so it is
  the order of magnitude and the ordering of the sources that carry information;
* kills, wrong victims and alloc failures per run, the completion rate, and (real only) how many
  runs were cut at their wall-time bound (``truncated``).
"""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # files only

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from . import fmt as F  # noqa: E402
from . import report as R  # noqa: E402

SIM_REFERENCE = "oom_reaper"
SIM_CONTEXT = ("linux26", "psi_userspace")
REAL_PREFIX = "real-"
REAL_COLOURS = ["#000000", "#b8860b", "#2f4f4f", "#8b0000"]   # none of them in tab10/Dark2

# The mechanisms by which a real run can part from its simulation, found by comparing them
# (docs/real-kernel.md has the evidence); shown under the table.
DIFFERENCES = [
    ("kernel's own memory",
     "The simulated 2.4 machine keeps ~4 MB for itself; Debian's 6.1 guest kernel with its "
     "initramfs uses ~90 MB. Both backends give the workload what a task of the simulated "
     "machine can get (RAM minus the 2.4 kernel's reserve, boot slab and pages_min: 61 440 KB "
     "of 64 MB), the VM as free memory above its min watermarks, its own use added to -m. "
     "Sized to the whole RAM instead, the VM needed 1 kill per run on several-hogs against 2 "
     "simulated."),
    ("who is largest when memory runs out",
     "Every modern killer (and the oom_reaper model) picks the largest RSS at that instant. "
     "At time scale 0.1 the plan compresses the tasks' CPU, sleeps and disk but not the "
     "kernel's work: under TCG a page fault costs 7-11 us, the model's 2002 machine 7 us, "
     "while a cc1's second of CPU becomes 0.1 s. So the models run that same compressed plan "
     "(workload.time_scaled): usemem is then still small in some runs when memory runs out "
     "and a cc1 is picked first, on both sides (morton-make-usemem: the VM's 6.1 usemem 3 of 5, "
     "its model cc1 12 of 20 and usemem 8; unscaled the model said usemem 20 of 20)."),
    ("what a user-space killer sees",
     "earlyoom acts on MemAvailable, which in the 6.1 guest counts ~8 MB that tasks cannot "
     "get: tracefs's inodes and dentries for every trace event (made at boot, pinned, yet "
     "accounted as reclaimable slab, 9.7 MB; 6.12's eventfs makes them on lookup). On 32-64 MB "
     "workloads earlyoom's 10 % is then not reached before the kernel's OOM killer runs; the "
     "simulated daemon reads the model's own MemAvailable, which has no such slab. oomd's "
     "rule (pressure above 60 % for 30 s) is longer than a run."),
    ("badness: RSS, not total_vm",
     "2.4's badness starts from total_vm; 4.x+ (and the oom_reaper model) from RSS + swap + page "
     "tables. Tasks that have reserved but not touched memory rank differently."),
    ("memcg reclaim vs global reclaim",
     "A memory cgroup reclaims and kills only inside itself, against its limit, without zone "
     "watermarks, kswapd or lowmem reserves; the global killer of the VM sees every process, "
     "init and the runner included."),
    ("time",
     "Real seconds are this machine's (under TCG emulation for qemu), with the workload's CPU, "
     "sleeps, start times and disk multiplied by the run's time scale (shown beside each real "
     "source): CPU and sleeps shrink, touching memory does not. The model runs the same "
     "scaled plan and is cut at the real runs' wall bound, so its simulated seconds are those "
     "of the same compressed run; its kernel costs are the 2002 machine's, close to TCG's "
     "for a fault, several times the host's for real-memcg."),
]


# ---------------------------------------------------------------------------- data
def is_real(policy) -> bool:
    return str(policy).startswith(REAL_PREFIX)


def load_latest(root) -> pd.DataFrame | None:
    """The runs of ``<root>/latest/runs.csv`` (``results/real``), or None when there are none."""
    f = Path(root) / "latest" / "runs.csv"
    if not f.exists():
        return None
    d = pd.read_csv(f)
    return d if len(d) else None


def latest(results_root) -> tuple[pd.DataFrame | None, str | None]:
    """The latest real runs under ``<results_root>/real`` and the folder they came from."""
    root = Path(results_root) / "real"
    d = load_latest(root)
    if d is None:
        return None, None
    return d, str((root / "latest").resolve())


def _mode(names: pd.Series) -> str | None:
    vc = names.value_counts()
    if vc.empty:
        return None
    top = vc[vc == vc.max()].index
    return sorted(str(x) for x in top)[0]          # ties broken by name: deterministic


def _models(real: pd.DataFrame) -> dict[str, str | None]:
    """{real policy: its model's label} (records before real policies: the reference)."""
    out = {}
    for p, g in real.groupby("policy", sort=True):
        m = g["model"].dropna() if "model" in g.columns else pd.Series([], dtype=object)
        if "model" in g.columns and len(g) and g["model"].isna().all() and \
                g.get("real_policy_file", pd.Series([None])).notna().any():
            out[p] = None                          # a real policy without a model
        else:
            out[p] = str(m.iloc[0]) if len(m) else SIM_REFERENCE
    return out


def sources(real: pd.DataFrame, sim: pd.DataFrame) -> list[str]:
    reals = sorted(p for p in real["policy"].unique() if is_real(p))
    return reals


def _summary(ok: pd.DataFrame, n_all: int) -> dict:
    n = len(ok)
    fv = ok["first_victim"].fillna("none").astype(str)
    med, lo, hi = R.bootstrap_median_ci(pd.to_numeric(ok["time_to_kill_s"], errors="coerce"))

    def mean(col):
        return float(pd.to_numeric(ok[col], errors="coerce").fillna(0).mean()) if n else math.nan
    stuck = (F.as_bool(ok["livelock"].fillna(False)) | F.as_bool(ok["deadlock"].fillna(False)))
    return {
        "runs_ok": n, "errors": n_all - n,
        "first_victim_mode": _mode(fv) if n else None,
        "first_victim_mode_share": float((fv == _mode(fv)).mean()) if n else math.nan,
        "first_victim_counts": fv.value_counts().sort_index().to_dict() if n else {},
        "ttk_median_s": med, "ttk_ci_low_s": lo, "ttk_ci_high_s": hi,
        "no_kill_runs": int(ok["first_kill_s"].isna().sum()),
        "kills_per_run": mean("kills"), "wrong_victims_per_run": mean("wrong_victims"),
        "alloc_failures_per_run": mean("alloc_failures"),
        "stuck_share": float(stuck.mean()) if n else math.nan,
        "completion_rate": float(F.as_bool(ok["workload_completed"].fillna(False)).mean())
        if n else math.nan,
        # thrashing (issue 9): the share of runs whose outcome it is, the median time from the
        # start of the longest low-progress stretch to the kill that ended it, and the median
        # highest PSI full avg10 (real: the guest's, sampled; sim: the engine's)
        "thrashing_share": float((ok["outcome"] == "thrashing").mean()) if n else math.nan,
        "thrash_to_kill_median_s": _median(ok, "thrash_to_kill_s"),
        "psi_full_avg10_max_median": _median(ok, "psi_full_avg10_max"),
    }


def _median(ok: pd.DataFrame, col: str) -> float:
    if col not in ok.columns:
        return math.nan
    v = pd.to_numeric(ok[col], errors="coerce").dropna()
    return float(v.median()) if len(v) else math.nan


def table(real: pd.DataFrame, sim: pd.DataFrame) -> pd.DataFrame:
    """One row per (workload, source): each real policy followed by its model's row
    (``kind`` sim, ``pair`` the real policy it stands beside)."""
    r = R.prepare(real)
    for c in ("truncated", "time_scale", "model", "tcg_fault_factor", "tcg_cpu_factor",
              "real_policy_file"):
        r[c] = real[c].values if c in real.columns else None
    s = R.prepare(sim) if sim is not None and len(sim) else R.prepare(real.iloc[:0])
    models = _models(r)
    rows = []
    for w in list(dict.fromkeys(r["workload"])):
        for src in sources(r[r.workload == w], s):
            cell = r[(r.workload == w) & (r.policy == src)]
            ok = cell[cell.status == "ok"]
            scales = sorted(set(pd.to_numeric(ok["time_scale"], errors="coerce").dropna()))
            tcg = pd.to_numeric(ok["tcg_fault_factor"], errors="coerce").dropna()
            tcgc = pd.to_numeric(ok["tcg_cpu_factor"], errors="coerce").dropna()
            row = {"workload": w, "source": src, "kind": "real", "pair": src,
                   "model": models.get(src), **_summary(ok, len(cell)),
                   "time_scale": ",".join(f"{x:g}" for x in scales),
                   "tcg": (f"faults x{tcg.iloc[0]:g}, CPU x{tcgc.iloc[0]:g}" if len(tcg) else ""),
                   "truncated_runs": int(F.as_bool(ok["truncated"].fillna(False)).sum())}
            rows.append(row)
            m = models.get(src)
            if m is None:
                continue
            mc = s[(s.workload == w) & (s.policy == m)]
            mok = mc[mc.status == "ok"]
            rows.append({"workload": w, "source": f"{m} (for {src})", "kind": "sim", "pair": src,
                         "model": m, **_summary(mok, len(mc)), "time_scale": "", "tcg": "",
                         "truncated_runs": 0})
    cols = ["workload", "source"]
    if not rows:
        return pd.DataFrame(columns=cols + ["kind", "runs_ok"]).set_index(cols)
    return pd.DataFrame(rows).set_index(cols)


def _roles() -> dict:
    """{workload: {task name: role}} from the workloads' oracles (read only for the report)."""
    try:
        from . import registry
        from . import workload as W
        found, _ = W.load_dir(registry.WORKLOAD_DIR)
        return {n: dict(w.roles) for n, w in found.items()}
    except Exception:  # noqa: BLE001 - the report works without the roles
        return {}


EXACT_LIMIT = 200_000      # splits enumerated exactly up to this many, else sampled
SAMPLES = 20_000           # splits drawn (a fixed generator: the same p every time)


def victims_p(a: dict, b: dict) -> float:
    """Could two sets of runs whose first victims are counted in ``a`` and ``b`` ({name:
    runs}) come from one distribution?  A permutation test: the runs are pooled and split
    again into groups of the two sizes in every way (exactly when there are at most
    :data:`EXACT_LIMIT` splits, else :data:`SAMPLES` random splits from a fixed generator),
    and p is the share of splits whose two groups are at least as far apart as the observed
    ones, by total variation distance (half the sum of the differences of the shares).  Few
    runs cannot part two distributions: 5 against 20 gives p >= 1/53130 at best, 2 against
    4 gives 1/15.  nan when a side has no run."""
    from itertools import combinations

    names = sorted(set(a) | set(b))
    ca = np.array([a.get(x, 0) for x in names])
    cb = np.array([b.get(x, 0) for x in names])
    na, nb = int(ca.sum()), int(cb.sum())
    if not na or not nb:
        return math.nan
    total = ca + cb
    pooled = np.repeat(np.arange(len(names)), total)
    small = min(na, nb)                      # the group whose members are chosen

    def tvd(in_a):                           # in_a: the counts of side a, per split
        return 0.5 * np.abs(in_a / na - (total - in_a) / nb).sum(axis=-1)
    seen = tvd(ca)
    n = na + nb
    if math.comb(n, small) <= EXACT_LIMIT:
        idx = np.array(list(combinations(range(n), small)), dtype=np.int64)
    else:
        rng = np.random.default_rng(0)
        idx = np.argsort(rng.random((SAMPLES, n)), axis=1)[:, :small]
    chosen = pooled[idx]                     # the names of each split's chosen runs
    firsts = np.stack([(chosen == j).sum(axis=1) for j in range(len(names))], axis=1)
    return float((tvd(firsts if small == na else total - firsts) >= seen - 1e-12).mean())


def agreement(tab: pd.DataFrame, roles: dict | None = None) -> pd.DataFrame:
    """Per (real policy, model) pair and workload: do the modal first victims agree (and their
    roles in the workload's oracle: on several-hogs the four hogs are alike, and which one is
    largest when memory runs out is a draw), the ratio of kills per run (real / sim), and the
    pair's rank by median time to kill among the real policies and among their models (the
    same rank = ranked the same).  ``victims_p``: :func:`victims_p` of the two sides' first
    victims, whether the runs can tell them apart at all (a modal victim that differs with a
    large p is within what so few runs can say)."""
    roles = _roles() if roles is None else roles
    rows = []
    for w in list(dict.fromkeys(tab.index.get_level_values(0))):
        tw = tab.loc[w].reset_index()
        real = tw[tw.kind == "real"]
        sim = tw[tw.kind == "sim"]
        pairs = [(rr, sim[sim.pair == rr.pair].iloc[0]) for rr in real.itertuples()
                 if (sim.pair == rr.pair).any()]
        have = [(a, b) for a, b in pairs if a.runs_ok and b.runs_ok]
        rk_r = _ranks({a.pair: a.ttk_median_s for a, _ in have})
        rk_s = _ranks({a.pair: b.ttk_median_s for a, b in have})
        for a, b in pairs:
            if not a.runs_ok or not b.runs_ok:
                rows.append({"workload": w, "real": a.pair, "model": b.model,
                             "victims_agree": None, "victims_p": math.nan,
                             "roles_agree": None, "thrash_agrees": None,
                             "real_victim": a.first_victim_mode,
                             "sim_victim": b.first_victim_mode, "kills_ratio": math.nan,
                             "rank_real": None, "rank_sim": None, "same_rank": None})
                continue
            ratio = (a.kills_per_run / b.kills_per_run if b.kills_per_run
                     else (math.inf if a.kills_per_run else 1.0))
            rw = roles.get(w, {})

            def role(v):
                return "none" if v == "none" else rw.get(v, "?")
            rows.append({"workload": w, "real": a.pair, "model": b.model,
                         "victims_agree": a.first_victim_mode == b.first_victim_mode,
                         "victims_p": victims_p(a.first_victim_counts, b.first_victim_counts),
                         "roles_agree": role(a.first_victim_mode) == role(b.first_victim_mode)
                         if rw or a.first_victim_mode == "none" else None,
                         "real_victim": a.first_victim_mode, "sim_victim": b.first_victim_mode,
                         # thrashing in most runs, or in few, on both sides
                         "thrash_agrees": (a.thrashing_share > 0.5) == (b.thrashing_share > 0.5),
                         "kills_ratio": ratio, "rank_real": rk_r.get(a.pair),
                         "rank_sim": rk_s.get(a.pair),
                         "same_rank": (rk_r.get(a.pair) == rk_s.get(a.pair)
                                       if len(have) > 1 else None)})
    return pd.DataFrame(rows)


def _ranks(ttk: dict) -> dict:
    """1 = fastest to kill; no kill ranks last (ties share a rank)."""
    key = {k: (math.inf if v is None or (isinstance(v, float) and math.isnan(v)) else v)
           for k, v in ttk.items()}
    order = sorted(set(key.values()))
    return {k: order.index(v) + 1 for k, v in key.items()}


# ---------------------------------------------------------------------------- display
HEADERS = ["source", "runs ok", "first victim (mode, share)", "kills/run", "wrong/run",
           "median time to kill [95 % CI] s", "stuck", "completed", "alloc failures/run",
           "thrashing", "thrash to kill s (median)", "PSI full avg10 max % (median)",
           "cut at wall bound"]


def display(tw: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for src, r in tw.iterrows():
        if r.kind == "sim" and not r.runs_ok and not r.errors:
            fv = "model not simulated"
        elif r.first_victim_mode is None or (isinstance(r.first_victim_mode, float)
                                             and math.isnan(r.first_victim_mode)):
            fv = "-"
        else:
            fv = f"{r.first_victim_mode} ({F.pct(r.first_victim_mode_share)})"
        if pd.isna(r.ttk_median_s):
            ttk = "-"
        else:
            ttk = f"{r.ttk_median_s:.2f} [{r.ttk_ci_low_s:.2f}, {r.ttk_ci_high_s:.2f}]"
            if r.kind == "real":
                ttk += " real s" + (f" (TCG {r.tcg})" if r.get("tcg") else "")
            else:
                ttk += " sim s"
        label = f"sim {src}" if r.kind == "sim" else (
            f"{src} (time x{r.time_scale})" if r.get("time_scale") else src)
        rows.append([label, int(r.runs_ok) + 0, fv, F.num(r.kills_per_run),
                     F.num(r.wrong_victims_per_run), ttk, F.pct(r.stuck_share),
                     F.pct(r.completion_rate), F.num(r.alloc_failures_per_run),
                     F.pct(r.thrashing_share),
                     "-" if pd.isna(r.thrash_to_kill_median_s) else f"{r.thrash_to_kill_median_s:.2f}",
                     "-" if pd.isna(r.psi_full_avg10_max_median)
                     else f"{r.psi_full_avg10_max_median:.2f}",
                     str(int(r.truncated_runs)) if r.kind == "real" else "-"])
    return pd.DataFrame(rows, columns=HEADERS, dtype=object)


AG_HEADERS = ["workload", "real policy", "model", "modal first victim (real / sim)", "agree",
              "first victims differ (p)", "its role agrees", "thrashing (most runs) agrees",
              "kills/run ratio (real / sim)", "rank by time to kill (real / sim)", "same rank"]


def display_agreement(ag: pd.DataFrame) -> pd.DataFrame:
    def yn(x):
        return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else (
            "yes" if x else "no")
    rows = []
    for r in ag.itertuples():
        def name(x):
            return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else str(x)
        sim_v = name(r.sim_victim) if r.sim_victim is not None or r.victims_agree is not None \
            else "-"
        rows.append([r.workload, r.real, r.model, f"{name(r.real_victim)} / {sim_v}",
                     yn(r.victims_agree), F.pval(r.victims_p), yn(r.roles_agree),
                     yn(r.thrash_agrees),
                     "-" if pd.isna(r.kills_ratio) else f"{r.kills_ratio:.2f}",
                     "-" if r.rank_real is None or pd.isna(r.rank_real)
                     else f"{int(r.rank_real)} / {int(r.rank_sim)}", yn(r.same_rank)])
    return pd.DataFrame(rows, columns=AG_HEADERS, dtype=object)


def parted(ag: pd.DataFrame, alpha: float = R.ALPHA) -> tuple[int, int]:
    """(cells whose modal first victims differ, those of them whose first-victim
    distributions differ at ``victims_p < alpha``)."""
    if not len(ag):
        return 0, 0
    d = ag[ag["victims_agree"].map(lambda x: x is not None and not (
        isinstance(x, float) and math.isnan(x)) and not x)]
    return len(d), int((pd.to_numeric(d["victims_p"], errors="coerce") < alpha).sum())


def parted_line(ag: pd.DataFrame) -> str:
    """The sentence under the agreement count: how many of the parted cells the runs can tell
    apart."""
    d, sig = parted(ag)
    if not d:
        return ""
    cells = "the 1 cell whose modes differ" if d == 1 else f"the {d} cells whose modes differ"
    return (f"Of {cells}, {sig} {'has' if sig == 1 else 'have'} first victims that differ at "
            f"p < {R.ALPHA:g} (a permutation test of the two sides' first victims, "
            f"`victims_p`); in the other {d - sig} the runs cannot tell the two sides apart.")


def agreement_share(ag: pd.DataFrame) -> tuple[int, int]:
    v = [x for x in ag["victims_agree"] if x is not None and not
         (isinstance(x, float) and math.isnan(x))] if len(ag) else []
    return sum(bool(x) for x in v), len(v)


INTRO = ("Real rows: the workload's tasks as real processes on a real kernel (`python -m harness "
         "real`), one row per real policy (`policies/real/*.toml`) with its model, the "
         "simulated policy it is held against, below it. The model runs the plan the real "
         "runs ran: the workload with its CPU, sleeps, start times, disk and time limit "
         "multiplied by their time scale, cut at their wall bound (`workload.time_scaled`), "
         "over 20 seeds. Seeds draw different numbers on the two sides, so they are compared "
         "as distributions. Real times are real seconds (under TCG: the measured slowdown is "
         "stated beside them, nothing is rescaled); sim times are simulated seconds of the "
         "same scaled run.")


def _ag_lines(tab) -> list[str]:
    ag = tab.attrs.get("agreement")
    if ag is None or not len(ag):
        return []
    a, n = agreement_share(ag)
    return ["### Agreement of each real policy with its model", "",
            " ".join(x for x in (f"Modal first victims agree in {a} of {n} (pair, workload) "
                                 "cells.", parted_line(ag)) if x),
            "", F.md_table(display_agreement(ag)), ""]


def section_md(tab: pd.DataFrame, plot_rel: str | None, real_dir: str | None = None) -> str:
    out = ["## Real kernel vs simulation", "", INTRO, ""]
    if real_dir:
        out += [f"Real runs from `{real_dir}`.", ""]
    out += _ag_lines(tab)
    plots = tab.attrs.get("plots", {})
    base = str(Path(plot_rel).parent) if plot_rel else "plots"
    for w in list(dict.fromkeys(tab.index.get_level_values(0))):
        out += [f"### {w} (real)", "", F.md_table(display(tab.loc[w])), ""]
        if w in plots:
            out += [f"![{w}: real and simulated]({base}/{Path(plots[w]).name})", ""]
        if w in tab.attrs.get("thrash_plots", {}):
            out += [f"![{w}: thrashing]({base}/{Path(tab.attrs['thrash_plots'][w]).name})", "",
                    THRASH_NOTE, ""]
    out += ["Where the two can part, by mechanism:", ""]
    out += [f"- **{k}**: {v}" for k, v in DIFFERENCES]
    out.append("")
    return "\n".join(out)


def section_html(tab: pd.DataFrame, plot_png: Path | None, real_dir: str | None = None) -> str:
    import html
    e = html.escape
    out = ['<h2 id="real">Real kernel vs simulation</h2>', f'<p class="note">{e(INTRO)}</p>']
    if real_dir:
        out.append(f'<p class="note">Real runs from <code>{e(real_dir)}</code>.</p>')
    ag = tab.attrs.get("agreement")
    if ag is not None and len(ag):
        a, n = agreement_share(ag)
        out += ["<h3>Agreement of each real policy with its model</h3>",
                f'<p class="note">Modal first victims agree in {a} of {n} (pair, workload) '
                f'cells. {e(parted_line(ag).replace("`", ""))}</p>',
                f'<div class="scroll">{F.html_table(display_agreement(ag))}</div>']
    plots = tab.attrs.get("plots", {})
    for w in list(dict.fromkeys(tab.index.get_level_values(0))):
        out += [f"<h3>{e(w)} (real)</h3>",
                f'<div class="scroll">{F.html_table(display(tab.loc[w]))}</div>']
        if w in plots and plot_png is not None:
            out.append(F.img(Path(plot_png).parent / Path(plots[w]).name, PLOT_NOTE))
        tp = tab.attrs.get("thrash_plots", {})
        if w in tp and plot_png is not None:
            out.append(F.img(Path(plot_png).parent / Path(tp[w]).name, THRASH_NOTE))
    out.append('<p class="note">Where the two can part, by mechanism:</p><ul class="note">')
    out += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in DIFFERENCES]
    out.append("</ul>")
    return "\n".join(out)


# ---------------------------------------------------------------------------- plot
PLOT_NOTE = ("Per real policy (black dots) and its model (coloured dots, same axis): time to the "
             "first kill after the pressure onset, one dot a run, bar the median; real seconds "
             "for real runs (TCG slowdown in the table), simulated seconds for the model.")


def colours(srcs) -> dict[str, str]:
    sims = [s for s in srcs if not is_real(s)]
    pc = R.policy_colours(sims) if sims else {}
    out, i = {}, 0
    for s in srcs:
        if is_real(s):
            out[s] = REAL_COLOURS[i % len(REAL_COLOURS)]
            i += 1
        else:
            out[s] = pc[s]
    return out


def plot_workload(w: str, real: pd.DataFrame, sim: pd.DataFrame, tab: pd.DataFrame,
                  plots_dir, written) -> Path:
    """Time to kill of every real policy of ``w`` and of its model on one axis."""
    tw = tab.loc[w].reset_index()
    pairs = list(dict.fromkeys(tw.pair))
    models = sorted({m for m in tw[tw.kind == "sim"].model})
    base = [m.split("[")[0] for m in models]
    pc = R.policy_colours(base) if base else {}
    fig, ax = plt.subplots(figsize=(9, 0.55 * len(pairs) + 1.3))
    for j, p in enumerate(pairs):
        for kind, dy, col, src in (("real", -0.17, "#000000", p),
                                   ("sim", 0.17, None, None)):
            row = tw[(tw.pair == p) & (tw.kind == kind)]
            if not len(row):
                continue
            if kind == "sim":
                src = row.iloc[0].model
                col = pc.get(src.split("[")[0], "#1f77b4")
                d = sim[(sim.workload == w) & (sim.policy == src) & (sim.status == "ok")]
            else:
                d = real[(real.workload == w) & (real.policy == p) & (real.status == "ok")]
            t = pd.to_numeric(d["time_to_kill_s"], errors="coerce").dropna().to_numpy()
            if len(t):
                jit = (np.arange(len(t)) % 5 - 2) * 0.03
                ax.plot(t, j + dy + jit, "o", color=col, ms=4, alpha=0.8,
                        label=(src if kind == "sim" else "real") if j == 0 or kind == "sim"
                        else None)
                ax.plot([np.median(t)] * 2, [j + dy - 0.12, j + dy + 0.12], color=col, lw=2.5)
            else:
                none = (f"{kind}: model not simulated" if kind == "sim" and not row.iloc[0].runs_ok
                        else f"{kind}: no kill after a pressure onset")
                ax.text(0.01, j + dy, " " + none,
                        transform=ax.get_yaxis_transform(), va="center", fontsize=7.5,
                        color="0.45")
    ax.set_yticks(range(len(pairs)), pairs, fontsize=8)
    ax.set_ylim(len(pairs) - 0.5, -0.5)
    ax.set_xlabel("time to kill, s (real: real seconds; model: simulated seconds)", fontsize=8.5)
    ax.grid(True, axis="x", alpha=0.3)
    h, lab = ax.get_legend_handles_labels()
    uniq = dict(zip(lab, h))
    if uniq:
        ax.legend(uniq.values(), uniq.keys(), fontsize=7.5, loc="lower right", frameon=False)
    ax.set_title(f"{w}: real policies (black) and their models", fontsize=10, loc="left")
    fig.tight_layout()
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in w)
    return F.save(fig, Path(plots_dir), f"real_vs_sim_{safe}", written)


THRASH_NOTE = ("One seed per real policy (left) and of its model (right), on the simulator's "
               "time axis (real runs: real seconds / time scale): the goal tasks' progress over "
               "10-s windows, the share of each window PSI counted as memory 'full' (real: "
               "from the guest's sampled totals), file refaults per simulated second, kills "
               "(red lines).  Dotted: the 20 % line of the thrashing rule.")


def _thrashes(w: str, r: pd.DataFrame, s: pd.DataFrame) -> bool:
    """Whether ``w`` thrashed anywhere (a real or simulated run with a low-progress stretch):
    only then is its thrashing plot drawn."""
    def any_low(d):
        d = d[(d.workload == w) & (d.status == "ok")] if len(d) else d
        if not len(d) or "thrash_s" not in d.columns:
            return False
        return bool((pd.to_numeric(d["thrash_s"], errors="coerce").fillna(0) > 0).any())
    return any_low(r) or any_low(s)


def plot_thrash(w: str, r: pd.DataFrame, tab: pd.DataFrame, panels, plots_dir,
                written) -> Path | None:
    """Per real policy of ``w``: its run of the lowest seed beside its model's run of that
    seed (drawn by :func:`harness.plot.draw_thrash`).  ``panels`` (given by
    :mod:`harness.real`, which reads its raw logs and runs the models; this module imports
    neither): ``real(policy, workload, seed, time_scale)`` and ``sim(model label, workload,
    seed)``, each returning what ``draw_thrash`` reads or raising."""
    from . import plot
    tw = tab.loc[w].reset_index()
    rows = []
    for rr in tw[tw.kind == "real"].itertuples():
        d = r[(r.workload == w) & (r.policy == rr.pair) & (r.status == "ok")]
        if not len(d):
            continue
        seed = int(pd.to_numeric(d["seed"]).min())
        scale = float(pd.to_numeric(d[d.seed == seed]["time_scale"]).iloc[0])
        try:
            real_k = panels.real(rr.pair, w, seed, scale)
        except Exception as e:  # noqa: BLE001 - a run that cannot be drawn is a panel saying so
            real_k = f"{type(e).__name__}: {e}"
        rows.append((rr.pair, rr.model, seed, real_k))
    if not rows:
        return None
    sim_runner = panels.sim
    sims = {}
    fig, axes = plt.subplots(len(rows), 2, figsize=(13, 2.3 * len(rows) + 0.9), squeeze=False,
                             sharex=True)
    for i, (pol, model, seed, real_k) in enumerate(rows):
        if model and (model, seed) not in sims:
            try:
                sims[(model, seed)] = sim_runner(model, w, seed)
            except Exception as e:  # noqa: BLE001 - a failed run is a panel saying so
                sims[(model, seed)] = f"{type(e).__name__}: {e}"
        for ax, k, title in ((axes[i][0], real_k, f"{pol} (seed {seed})"),
                             (axes[i][1], sims.get((model, seed), "no model"),
                              f"sim {model} (seed {seed})" if model else "no model")):
            ax.set_title(title, fontsize=8.5, loc="left")
            if isinstance(k, str) or k is None:
                ax.text(0.5, 0.5, str(k), transform=ax.transAxes, ha="center", fontsize=8)
                continue
            plot.draw_thrash(ax, k)
    for ax in axes[-1]:
        ax.set_xlabel("s (simulated; real runs: real s / time scale)", fontsize=8)
    fig.legend(handles=plot.thrash_handles(), loc="lower center", ncol=3, fontsize=8,
               frameon=False)
    fig.suptitle(f"{w}: thrashing, real policies and their models", fontsize=10, x=0.01,
                 ha="left")
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    return F.save(fig, Path(plots_dir), _thrash_name(w), written)


def _thrash_name(w: str) -> str:
    return "real_thrash_" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in w)


def _copy_thrash_plot(w: str, src_dir: Path, plots_dir: Path, written) -> Path | None:
    import shutil
    out = None
    for ext in (".png", ".svg"):
        src = src_dir / (_thrash_name(w) + ext)
        if src.exists():
            dst = Path(plots_dir) / src.name
            if src.resolve() != dst.resolve():
                shutil.copyfile(src, dst)
            written.append(dst)
            out = dst if ext == ".png" else out
    return out


def write(out_dir, real: pd.DataFrame, sim: pd.DataFrame, real_dir: str | None = None,
          written: list | None = None, panels=None) -> tuple[pd.DataFrame, Path | None]:
    """``real_vs_sim.csv``, ``real_vs_sim.md``, ``real_agreement.csv`` and one plot per
    workload ``plots/real_vs_sim_<workload>.{png,svg}`` in ``out_dir``; returns the table (its
    ``attrs`` hold the agreement and the plots) and the first PNG (None when no workload has
    real runs).  Model runs the bench did not make (a model with parameters) are read from
    ``<real_dir>/sim_models.csv`` when it exists."""
    out_dir = Path(out_dir)
    written = [] if written is None else written
    if real_dir and (Path(real_dir) / "sim_models.csv").exists():
        extra = pd.read_csv(Path(real_dir) / "sim_models.csv")
        have = set(sim["policy"]) if sim is not None and len(sim) else set()
        extra = extra[~extra.policy.isin(have)]
        sim = pd.concat([sim, extra], ignore_index=True) if sim is not None else extra
    tab = table(real, sim)
    if tab.empty:
        return tab, None
    ag = agreement(tab)
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    s = R.prepare(sim) if sim is not None and len(sim) else R.prepare(real.iloc[:0])
    r = R.prepare(real)
    plots = {}
    thrash = {}
    for w in list(dict.fromkeys(tab.index.get_level_values(0))):
        plots[w] = plot_workload(w, r, s, tab, plots_dir, written)
        if not _thrashes(w, r, s):
            continue
        t = None
        if panels is not None:
            t = plot_thrash(w, r, tab, panels, plots_dir, written)
        elif real_dir:                 # the bench's report: the real run's own figure
            t = _copy_thrash_plot(w, Path(real_dir) / "plots", plots_dir, written)
        if t is not None:
            thrash[w] = str(t)
    tab.attrs["agreement"] = ag
    tab.attrs["thrash_plots"] = thrash
    tab.attrs["plots"] = {w: str(p) for w, p in plots.items()}
    png = next(iter(plots.values()))
    tab.to_csv(out_dir / "real_vs_sim.csv")
    ag.to_csv(out_dir / "real_agreement.csv", index=False)
    (out_dir / "real_vs_sim.md").write_text(
        "# " + section_md(tab, f"plots/{png.name}", real_dir)[3:])
    written += [out_dir / "real_vs_sim.csv", out_dir / "real_vs_sim.md",
                out_dir / "real_agreement.csv"]
    return tab, png

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
     "Under TCG a page fault costs ~20x native while CPU is scaled, so usemem is sometimes "
     "still small when memory runs out and a cc1 is picked first (morton-make-usemem)."),
    ("badness: RSS, not total_vm",
     "2.4's badness starts from total_vm; 4.x+ (and the oom_reaper model) from RSS + swap + page "
     "tables. Tasks that have reserved but not touched memory rank differently."),
    ("memcg reclaim vs global reclaim",
     "A memory cgroup reclaims and kills only inside itself, against its limit, without zone "
     "watermarks, kswapd or lowmem reserves; the global killer of the VM sees every process, "
     "init and the runner included."),
    ("time",
     "Simulated seconds are those of a ~500 MHz 2002 machine; real seconds are this machine's "
     "(under TCG emulation for qemu), with CPU and sleep times of the workload multiplied by the "
     "run's time scale (shown beside each real source): CPU and sleeps shrink, touching memory "
     "does not."),
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


def sources(real: pd.DataFrame, sim: pd.DataFrame) -> list[str]:
    reals = sorted(p for p in real["policy"].unique() if is_real(p))
    sims = [p for p in (SIM_REFERENCE, *SIM_CONTEXT) if p in set(sim["policy"])]
    return reals + sims


def table(real: pd.DataFrame, sim: pd.DataFrame) -> pd.DataFrame:
    """One row per (workload, source) for every workload that has real runs: the real sources
    first, then the simulated reference and context policies."""
    r = R.prepare(real)
    s = R.prepare(sim) if sim is not None and len(sim) else R.prepare(real.iloc[:0])
    for c in ("truncated", "time_scale"):
        if c in real.columns:
            r[c] = real[c].values
    both = pd.concat([r, s], ignore_index=True)
    rows = []
    for w in list(dict.fromkeys(r["workload"])):
        ref = s[(s.workload == w) & (s.policy == SIM_REFERENCE) & (s.status == "ok")]
        ref_fv = ref["first_victim"].fillna("none").astype(str)
        ref_mode = _mode(ref_fv)
        for src in sources(r[r.workload == w], s[s.workload == w]):
            cell = both[(both.workload == w) & (both.policy == src)]
            ok = cell[cell.status == "ok"]
            n = len(ok)
            fv = ok["first_victim"].fillna("none").astype(str)
            med, lo, hi = R.bootstrap_median_ci(ok["time_to_kill_s"])

            def mean(col):
                return float(pd.to_numeric(ok[col], errors="coerce").fillna(0).mean()) if n \
                    else math.nan
            trunc = ok["truncated"] if "truncated" in ok.columns else pd.Series([], dtype=object)
            scales = (sorted(set(pd.to_numeric(ok["time_scale"], errors="coerce").dropna()))
                      if "time_scale" in ok.columns and is_real(src) else [])
            rows.append({
                "workload": w, "source": src, "kind": "real" if is_real(src) else "sim",
                "runs_ok": n, "errors": len(cell) - n,
                "first_victim_mode": _mode(fv),
                "first_victim_mode_share": float((fv == _mode(fv)).mean()) if n else math.nan,
                "sim_first_victim_mode": ref_mode,
                "victim_agreement": (float((fv == ref_mode).mean())
                                     if n and ref_mode is not None else math.nan),
                "ttk_median_s": med, "ttk_ci_low_s": lo, "ttk_ci_high_s": hi,
                "no_kill_runs": int(ok["first_kill_s"].isna().sum()),
                "kills_per_run": mean("kills"),
                "wrong_victims_per_run": mean("wrong_victims"),
                "alloc_failures_per_run": mean("alloc_failures"),
                "completion_rate": float(ok["workload_completed"].mean()) if n else math.nan,
                "time_scale": ",".join(f"{x:g}" for x in scales),
                "truncated_runs": (int(F.as_bool(trunc.fillna(False)).sum())
                                   if is_real(src) and len(trunc) else 0),
            })
    cols = ["workload", "source"]
    if not rows:
        return pd.DataFrame(columns=cols + ["kind", "runs_ok"]).set_index(cols)
    return pd.DataFrame(rows).set_index(cols)


# ---------------------------------------------------------------------------- display
HEADERS = ["source", "runs ok", "first victim (mode, share)", "victim agreement with sim",
           "median time to kill [95 % CI] s", "no kill", "kills/run", "wrong victims/run",
           "alloc failures/run", "completed", "cut at wall bound"]


def display(tw: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for src, r in tw.iterrows():
        fv = "-" if r.first_victim_mode is None else \
            f"{r.first_victim_mode} ({F.pct(r.first_victim_mode_share)})"
        ag = "-" if pd.isna(r.victim_agreement) else \
            f"{F.pct(r.victim_agreement)} (sim: {r.sim_first_victim_mode})"
        if pd.isna(r.ttk_median_s):
            ttk = "-"
        else:
            ttk = f"{r.ttk_median_s:.2f} [{r.ttk_ci_low_s:.2f}, {r.ttk_ci_high_s:.2f}]"
        label = f"sim {src}"
        if r.kind == "real":
            label = f"{src} (time x{r.time_scale})" if r.get("time_scale") else src
        rows.append([label, int(r.runs_ok) + 0, fv, ag, ttk, int(r.no_kill_runs),
                     F.num(r.kills_per_run), F.num(r.wrong_victims_per_run),
                     F.num(r.alloc_failures_per_run), F.pct(r.completion_rate),
                     str(int(r.truncated_runs)) if r.kind == "real" else "-"])
    return pd.DataFrame(rows, columns=HEADERS, dtype=object)


INTRO = ("Real rows: the workload's tasks as real processes on a real kernel (`python -m harness "
         f"real`); sim rows: the simulated `{SIM_REFERENCE}` policy (the modern kernel's model) "
         "and its neighbours. Seeds draw different numbers on the two sides, so sources are "
         "compared as distributions: victim agreement is the share of a source's runs whose "
         f"first OOM victim is the one `{SIM_REFERENCE}` picks most often (\"none\" = no OOM "
         "kill); times are real seconds beside simulated seconds of a 2002 machine.")


def section_md(tab: pd.DataFrame, plot_rel: str | None, real_dir: str | None = None) -> str:
    out = ["## Real kernel vs simulation", "", INTRO, ""]
    if real_dir:
        out += [f"Real runs from `{real_dir}`.", ""]
    for w in list(dict.fromkeys(tab.index.get_level_values(0))):
        out += [f"### {w} (real)", "", F.md_table(display(tab.loc[w])), ""]
    out += ["Where the two can part, by mechanism:", ""]
    out += [f"- **{k}**: {v}" for k, v in DIFFERENCES]
    out.append("")
    if plot_rel:
        out += [f"![real vs simulated]({plot_rel})", ""]
    return "\n".join(out)


def section_html(tab: pd.DataFrame, plot_png: Path | None, real_dir: str | None = None) -> str:
    import html
    e = html.escape
    out = ['<h2 id="real">Real kernel vs simulation</h2>', f'<p class="note">{e(INTRO)}</p>']
    if real_dir:
        out.append(f'<p class="note">Real runs from <code>{e(real_dir)}</code>.</p>')
    for w in list(dict.fromkeys(tab.index.get_level_values(0))):
        out += [f"<h3>{e(w)} (real)</h3>",
                f'<div class="scroll">{F.html_table(display(tab.loc[w]))}</div>']
    out.append('<p class="note">Where the two can part, by mechanism:</p><ul class="note">')
    out += [f"<li><b>{e(k)}</b>: {e(v)}</li>" for k, v in DIFFERENCES]
    out.append("</ul>")
    if plot_png is not None:
        out.append(F.img(plot_png, PLOT_NOTE))
    return "\n".join(out)


# ---------------------------------------------------------------------------- plot
PLOT_NOTE = ("Per realised workload: time to the first OOM kill after the pressure onset (dots: "
             "runs, bar: median; real seconds for real rows, simulated seconds for sim rows), the "
             "first victims (share of runs per task name), and kills and wrong victims per run.")


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


def plot(real: pd.DataFrame, sim: pd.DataFrame, tab: pd.DataFrame, plots_dir, written) -> Path:
    r = R.prepare(real)
    s = R.prepare(sim) if sim is not None and len(sim) else r.iloc[:0]
    both = pd.concat([r, s], ignore_index=True)
    both = both[both.status == "ok"]
    workloads = list(dict.fromkeys(tab.index.get_level_values(0)))
    nw = len(workloads)
    fig, axes = plt.subplots(nw, 3, figsize=(15, 3.3 * nw + 0.6), squeeze=False,
                             gridspec_kw={"width_ratios": [1.3, 1.2, 1.0]})
    for i, w in enumerate(workloads):
        srcs = list(tab.loc[w].index)
        col = colours(srcs)
        labels = [src if is_real(src) else f"sim {src}" for src in srcs]
        dw = both[both.workload == w]
        # (a) time to kill
        ax = axes[i][0]
        for j, src in enumerate(srcs):
            t = dw[dw.policy == src].time_to_kill_s.dropna().to_numpy()
            if len(t):
                jit = (np.arange(len(t)) % 7 - 3) * 0.045
                ax.plot(t, j + jit, "o", color=col[src], ms=4, alpha=0.75)
                ax.plot([np.median(t)] * 2, [j - 0.32, j + 0.32], color=col[src], lw=2.5)
            else:
                killed = dw[dw.policy == src].first_kill_s.notna().any()
                ax.text(0.01, j, " kills, none after a pressure onset" if killed else " no kill",
                        transform=ax.get_yaxis_transform(), va="center", fontsize=8,
                        color="0.45")
        ax.set_yticks(range(len(srcs)), labels, fontsize=8)
        ax.set_ylim(len(srcs) - 0.5, -0.5)
        tt = dw.time_to_kill_s.dropna()
        if len(tt) > 1 and tt.min() > 0 and tt.max() / tt.min() > 30:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("time to kill, s (real or simulated)", fontsize=8.5)
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_title(f"{w}: time to first OOM kill", fontsize=9.5, loc="left")
        # (b) first victims
        ax = axes[i][1]
        names = sorted(set(dw.first_victim.fillna("none").astype(str)))
        cmap = plt.get_cmap("tab20")
        name_col = {n: ("#dddddd" if n == "none" else cmap(k % 20)) for k, n in enumerate(names)}
        for j, src in enumerate(srcs):
            fv = dw[dw.policy == src].first_victim.fillna("none").astype(str)
            left = 0.0
            for n in names:
                share = float((fv == n).mean()) if len(fv) else 0.0
                if share > 0:
                    ax.barh(j, share, left=left, color=name_col[n], edgecolor="white", height=0.7)
                    if share >= 0.12:
                        ax.text(left + share / 2, j, n[:12], ha="center", va="center", fontsize=7)
                    left += share
        ax.set_yticks(range(len(srcs)), [""] * len(srcs))
        ax.set_ylim(len(srcs) - 0.5, -0.5)
        ax.set_xlim(0, 1)
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.set_title("first OOM victim (share of runs)", fontsize=9.5, loc="left")
        # (c) kills and wrong victims per run
        ax = axes[i][2]
        tw = tab.loc[w]
        y = np.arange(len(srcs))
        ax.barh(y - 0.18, tw.kills_per_run.fillna(0), height=0.34,
                color=[col[x] for x in srcs], label="kills/run")
        ax.barh(y + 0.18, tw.wrong_victims_per_run.fillna(0), height=0.34,
                color=[col[x] for x in srcs], alpha=0.4, hatch="///", label="wrong victims/run")
        ax.set_yticks(y, [""] * len(srcs))
        ax.set_ylim(len(srcs) - 0.5, -0.5)
        ax.set_xlim(0, max(1.0, float(np.nanmax(tw.kills_per_run.fillna(0))) * 1.08))
        ax.grid(True, axis="x", alpha=0.3)
        ax.set_title("kills / wrong victims per run", fontsize=9.5, loc="left")
        if i == 0:
            ax.legend(fontsize=7.5, loc="lower right", frameon=False)
        n_real = sum(1 for x in srcs if is_real(x))
        if 0 < n_real < len(srcs):
            for a in axes[i]:
                a.axhline(n_real - 0.5, color="0.35", lw=0.8, ls="--")
    fig.suptitle("Real kernel (top rows of each panel) vs simulation (below the dashed line)",
                 fontsize=11.5)
    fig.tight_layout()
    return F.save(fig, Path(plots_dir), "real_vs_sim", written)


def write(out_dir, real: pd.DataFrame, sim: pd.DataFrame, real_dir: str | None = None,
          written: list | None = None) -> tuple[pd.DataFrame, Path | None]:
    """``real_vs_sim.csv``, ``real_vs_sim.md`` and ``plots/real_vs_sim.{png,svg}`` in
    ``out_dir``; returns the table and the PNG (None when no workload has real runs)."""
    out_dir = Path(out_dir)
    written = [] if written is None else written
    tab = table(real, sim)
    if tab.empty:
        return tab, None
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    png = plot(real, sim, tab, plots_dir, written)
    tab.to_csv(out_dir / "real_vs_sim.csv")
    (out_dir / "real_vs_sim.md").write_text(
        "# " + section_md(tab, f"plots/{png.name}", real_dir)[3:])
    written += [out_dir / "real_vs_sim.csv", out_dir / "real_vs_sim.md"]
    return tab, png

"""The timeline of one run as a PNG: free pages per zone with their watermarks, the OOM kills,
fault kills, allocation failures and the watchdog above; the number of tasks stalled in the
allocator below.  Reads only a finished kernel's ``samples``, ``trace`` and ``zones``."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")   # files only: no display needed (CI, ssh)

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator, NullLocator  # noqa: E402
from matplotlib.transforms import blended_transform_factory  # noqa: E402

ZONE_COLOURS = {"DMA": "tab:blue", "Normal": "tab:green", "NORMAL": "tab:green",
                "HighMem": "tab:purple", "HIGHMEM": "tab:purple"}
FALLBACK_COLOURS = ["tab:blue", "tab:green", "tab:purple"]
MAX_KILL_LABELS = 12    # beyond this the names are unreadable; the lines are still drawn
WM_STYLES = {"pages_min": (0, (2, 2)), "pages_low": (0, (5, 3)), "pages_high": (0, (9, 3))}


def _symlog_ticks(lin, ymax):
    ticks = [v for v in MaxNLocator(4, integer=True).tick_values(0, lin) if 0 <= v <= lin]
    decade = 10 ** len(str(int(lin)))
    while decade / 10 <= ymax * 1.25:
        for m in (1, 2, 5):
            v = decade / 10 * m
            if lin * 1.8 < v <= ymax * 1.25:
                ticks.append(v)
        decade *= 10
    return ticks


def _label_right(fig, ax, labels, gap_pt=8.5, draw=True):
    """Labels just right of the axes at data heights, pushed apart so none overlap.
    ``draw=False`` skips the full draw when the axes' position and y limits are already
    fixed (no layout engine), which is much faster on a figure of many panels."""
    if draw:
        fig.canvas.draw()     # fixes the transforms
    px = fig.dpi / 72.0
    placed = []
    for y, text, colour in sorted(labels):
        want = ax.transData.transform((0, y))[1]
        at = max(want, placed[-1] + gap_pt * px) if placed else want
        placed.append(at)
        ax.annotate(text, xy=(1.0, y), xycoords=("axes fraction", "data"),
                    xytext=(4, (at - want) / px), textcoords="offset points", va="center",
                    fontsize=7, color=colour, annotation_clip=False,
                    arrowprops=dict(arrowstyle="-", color=colour, lw=0.4, shrinkA=0, shrinkB=0)
                    if at - want > 1 else None)


def _stalled_steps(trace):
    """(times, counts): tasks inside the allocator's slow path, from stall/stall_end events.
    A task that exits while stalled (killed in the allocator) stops counting at its exit."""
    inside = set()
    ts, ns = [0.0], [0]
    for ev in trace:
        kind = ev[1]
        if kind == "stall":
            inside.add(ev[2])
        elif kind in ("stall_end", "exit"):
            if ev[2] not in inside:
                continue
            inside.discard(ev[2])
        else:
            continue
        t = ev[0] / 1e6
        if ts[-1] == t:
            ns[-1] = len(inside)
        else:
            ts.append(t)
            ns.append(len(inside))
    return ts, ns


def _default_title(k):
    from .metrics import compute
    policy = getattr(k.policy, "name", type(k.policy).__name__)
    workload = getattr(k, "workload_name", None) or getattr(getattr(k, "workload", None), "name", "?")
    return f"{policy} / {workload} / seed {k.seed} / {compute(k)['outcome']}"


def free_ymax(k):
    """Top of the free-pages data of run ``k``: the highest free count sampled (or the largest
    zone when nothing was sampled).  Pass the maximum over several runs to
    :func:`draw_timeline` as ``ymax`` to draw them on one scale."""
    zones = [z for z in k.zones if z.size > 0]
    ymax = max([z.size for z in zones] + [1])
    if k.samples:
        ymax = max(max(s[1 + z.idx] for s in k.samples for z in zones), 1)
    return ymax


def stalled_max(k):
    """Most tasks stalled in the allocator at once in run ``k``."""
    return max(_stalled_steps(k.trace)[1])


def event_handles(kills=None, fault_kills=None, fails=None, runs_named=None):
    """Legend entries for the watermarks and the events; counts in the labels when given."""
    def n(x):
        return "" if x is None else f" ({x})"
    kill_label = f"OOM kill{n(kills)}"
    if runs_named is not None:
        kill_label += f"\n(first {runs_named} runs named)"
    handles = [Line2D([], [], color="gray", lw=0.7, ls=st, label=wm)
               for wm, st in WM_STYLES.items()]
    handles += [
        Line2D([], [], color="red", lw=1.0, label=kill_label),
        Line2D([], [], color="darkorange", marker="x", ls="", mew=2,
               label=f"fault kill{n(fault_kills)}"),
        Line2D([], [], color="black", marker="|", ls="", label=f"alloc failure{n(fails)}"),
        Line2D([], [], color="black", lw=2.0, ls="-.", label="watchdog"),
    ]
    return handles


def _fit_labels(ax, texts):
    """Flip a kill label to the other side of its line when it would leave the axes."""
    if not texts:
        return
    renderer = ax.figure.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    for txt in texts:
        ext = txt.get_window_extent(renderer)
        if txt.get_ha() == "left" and ext.x1 > box.x1:
            txt.set_ha("right")
            txt.set_text(txt.get_text().strip() + " ")
        elif txt.get_ha() == "right" and ext.x0 < box.x0:
            txt.set_ha("left")
            txt.set_text(" " + txt.get_text().strip())


def _kill_lines(ax, ax2, kills):
    """The OOM kills as red lines across both axes, a repeat kill (of a task already dying)
    thinner and lighter: one collection per axes, drawn as :meth:`~Axes.axvline` would draw
    each (full height, in kill order), at a fraction of the cost on a run of a thousand kills.
    The lines take no part in the limits: the caller sets them."""
    segs, colours, widths = [], [], []
    for ev in kills:
        x = ev[0] / 1e6
        repeat = bool(ev[5])
        segs.append(((x, 0.0), (x, 1.0)))
        colours.append((1.0, 0.0, 0.0, 0.35 if repeat else 0.75))
        widths.append(0.6 if repeat else 1.0)
    for a in (ax, ax2):
        a.add_collection(LineCollection(segs, colors=colours, linewidths=widths,
                                        capstyle="projecting", zorder=Line2D.zorder,
                                        transform=a.get_xaxis_transform(which="grid")),
                         autolim=False)


def draw_timeline(ax, ax2, k, *, xmax=None, ymax=None, stall_top=None, compact=False,
                  label_watermarks=True, legend=True, ylabels=True, xlabel=True,
                  rasterized=False):
    """Draw the timeline of finished run ``k`` on two given axes: free pages per zone with the
    watermarks and the events on ``ax``, tasks stalled in the allocator on ``ax2`` (both share
    the time axis).  :func:`timeline` is this on a figure of its own.

    For several runs side by side: ``xmax`` (s), ``ymax`` (pages, see :func:`free_ymax`) and
    ``stall_top`` (tasks) put them on common scales; ``compact`` shortens the kill labels
    (at most 3, flipped to stay inside the axes); ``label_watermarks=False`` leaves the
    watermark names out (the caller may place them with :func:`_label_right` from the returned
    ``wm_labels``), ``legend=False`` leaves the legend to the caller (:func:`event_handles`),
    ``ylabels``/``xlabel=False`` leave axis titles out; ``rasterized`` draws the data curves
    as images inside vector output (an SVG of thousands of steps stays small).

    Returns a dict: ``zone_handles``, ``wm_labels``, ``kills``, ``fault_kills``,
    ``alloc_failures``, ``watchdog`` (list of kinds)."""
    fig = ax.figure
    end_s = k.now / 1e6
    zones = [z for z in k.zones if z.size > 0]

    # --- free pages per zone, with pages_min/low/high.  The watermarks are a few hundred pages
    # on a machine of tens of thousands, so the axis is linear up to twice the highest
    # pages_high and logarithmic above: the fight around the watermarks stays visible.
    t = [s[0] / 1e6 for s in k.samples]
    handles, wm_labels = [], []
    for z in zones:
        c = ZONE_COLOURS.get(z.name, FALLBACK_COLOURS[z.idx % 3])
        free = [s[1 + z.idx] for s in k.samples]
        h, = ax.step(t, free, where="post", color=c, lw=1.4, label=f"{z.name} free ({z.size} p)",
                     rasterized=rasterized or None)
        handles.append(h)
        for wm, style in WM_STYLES.items():
            y = getattr(z, wm)
            ax.axhline(y, color=c, lw=0.7, ls=style, alpha=0.8)
            wm_labels.append((y, f"{z.name} {wm[6:]} {y}", c))
    if ymax is None:
        ymax = free_ymax(k)
    lin = max(2 * max((z.pages_high for z in zones), default=0), 16)
    if ymax > 4 * lin:
        ax.set_yscale("symlog", linthresh=lin, linscale=1.5)
        ax.yaxis.set_major_locator(FixedLocator(_symlog_ticks(lin, ymax)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}"))
        ax.yaxis.set_minor_locator(NullLocator())
        if ylabels:
            ax.set_ylabel(f"free pages (4 KB)\nlinear to {lin:.0f}, log above" if compact else
                          f"free pages (4 KB)\nlinear up to {lin:.0f}, log above")
    elif ylabels:
        ax.set_ylabel("free pages (4 KB)")
    strip = (0.22 * lin) if ax.get_yscale() == "symlog" else 0.06 * ymax * 1.25
    ax.set_ylim(-strip, ymax * 1.25)
    ax.axhspan(-strip, 0, color="0.93", zorder=0)
    ax.axhline(0, color="0.6", lw=0.6)
    # (compact panels share a time axis: the right end is usually past a run's events)
    ax.text(0.998 if compact else 0.002, -strip / 2, "fault kills / alloc failures", transform=
            blended_transform_factory(ax.transAxes, ax.transData), fontsize=6.5, color="0.45",
            va="center", ha="right" if compact else "left")
    ax.grid(True, alpha=0.25)
    if label_watermarks:
        _label_right(fig, ax, wm_labels)
    top = blended_transform_factory(ax.transData, ax.transAxes)

    # --- events.  Fault kills and allocation failures go in a strip below zero, where no
    # data can be; runs of OOM kills of the same program get one label.
    kills = [ev for ev in k.trace if ev[1] == "kill"]
    fault_kills = [ev for ev in k.trace if ev[1] == "fault_kill"]
    fails = [ev for ev in k.trace if ev[1] == "alloc_fail"]
    watchdog = [ev for ev in k.trace if ev[1] == "watchdog"]
    span = max(end_s if xmax is None else xmax, 1e-6)
    runs = []                                   # [first kill event, count, last time]
    for ev in kills:
        x = ev[0] / 1e6
        if runs and runs[-1][0][3] == ev[3] and x - runs[-1][2] < 0.1 * span:
            runs[-1][1] += 1
            runs[-1][2] = x
        else:
            runs.append([ev, 1, x])
    if kills:
        _kill_lines(ax, ax2, kills)
    max_labels = 3 if compact else MAX_KILL_LABELS
    kill_texts = []
    for i, (ev, n, _last) in enumerate(runs[:max_labels]):
        if compact:
            text = f"{ev[3]}[{ev[2]}]" + (f" +{n - 1}" if n > 1 else "")
        else:
            sig = {9: "KILL", 15: "TERM"}.get(ev[4], str(ev[4]))
            text = f"{ev[3]}[{ev[2]}] SIG{sig}" + (f" +{n - 1} more {ev[3]}" if n > 1 else "")
        right = ev[0] / 1e6 > 0.72 * span      # near the right edge: write to the left
        kill_texts.append(ax.text(
            ev[0] / 1e6, 0.97 - 0.065 * (i % 3), f"{text} " if right else f" {text}",
            transform=top, color="red", fontsize=6.5 if compact else 7.5, va="top",
            ha="right" if right else "left",
            bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.75)))
    strip = ax.get_ylim()[0]
    if fault_kills:
        ax.plot([ev[0] / 1e6 for ev in fault_kills], [strip * 0.35] * len(fault_kills), "x",
                color="darkorange", ms=7, mew=2)
    if fails:
        ax.plot([ev[0] / 1e6 for ev in fails], [strip * 0.75] * len(fails), "|", color="black",
                ms=6, mew=0.9, alpha=0.7)
    for ev in watchdog:
        x = ev[0] / 1e6
        for a in (ax, ax2):
            a.axvline(x, color="black", lw=2.0, ls="-.")
        ax.text(x, 0.5, f"watchdog: {ev[2]} ", transform=top, rotation=90, ha="right",
                va="center", fontsize=8 if compact else 9, fontweight="bold")

    if legend:
        ax.legend(handles=handles + event_handles(
                      len(kills), len(fault_kills), len(fails),
                      MAX_KILL_LABELS if len(runs) > MAX_KILL_LABELS else None),
                  loc="upper left", bbox_to_anchor=(1.12, 1.0), fontsize=8,
                  frameon=False, borderaxespad=0)

    # --- tasks stalled in the allocator
    ts, ns = _stalled_steps(k.trace)
    ts.append(end_s)
    ns.append(ns[-1])
    ax2.step(ts, ns, where="post", color="tab:brown", lw=1.3, rasterized=rasterized or None)
    ax2.fill_between(ts, ns, step="post", color="tab:brown", alpha=0.2,
                     rasterized=rasterized or None)
    if ylabels:
        ax2.set_ylabel("stalled\ntasks" if compact else "tasks stalled\nin allocator")
    ax2.set_ylim(bottom=0, top=max(1, max(ns) if stall_top is None else stall_top) * 1.15)
    ax2.yaxis.get_major_locator().set_params(integer=True)
    ax2.grid(True, alpha=0.25)
    if xlabel:
        ax2.set_xlabel("simulated time (s)")
    ax2.set_xlim(0, max(end_s if xmax is None else xmax, 1e-3))
    if compact:
        _fit_labels(ax, kill_texts)
    return {"zone_handles": handles, "wm_labels": wm_labels, "kills": len(kills),
            "fault_kills": len(fault_kills), "alloc_failures": len(fails),
            "watchdog": [ev[2] for ev in watchdog]}


def timeline(k, path, title=None):
    """Write the timeline PNG of finished run ``k`` to ``path``."""
    fig, (ax, ax2) = plt.subplots(2, 1, sharex=True, figsize=(12, 7), dpi=110,
                                  gridspec_kw={"height_ratios": [3.2, 1]})
    fig.subplots_adjust(left=0.08, right=0.77, top=0.93, bottom=0.08, hspace=0.08)
    fig.suptitle(title or _default_title(k), fontsize=12)
    draw_timeline(ax, ax2, k)
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_thrash(ax, k, *, ylabels=True, rasterized=False):
    """The thrashing panel of finished run ``k`` (a kernel or a :class:`runner.RunView`):
    the goal tasks' progress over 10-s windows and PSI memory ``full avg10`` (both percent,
    left axis), the file refault rate (pages/s, right axis), OOM kills as red lines."""
    from .runner import thrash_series
    ser = getattr(k, "thrash", None) or thrash_series(k)
    if ser["progress"]:
        x, y = zip(*ser["progress"])
        ax.plot(x, [100 * v for v in y], color="tab:green", lw=1.2, label="progress (10 s)",
                rasterized=rasterized or None)
    if ser["psi_full"]:
        x, y = zip(*ser["psi_full"])
        ax.step(x, y, where="post", color="tab:purple", lw=1.0, label="PSI full avg10",
                rasterized=rasterized or None)
    ax.axhline(20, color="tab:green", lw=0.6, ls=":")
    ax.set_ylim(0, 105)
    ax.grid(True, alpha=0.25)
    if ylabels:
        ax.set_ylabel("%", fontsize=8)
    axr = ax.twinx()
    if ser["refault_rate"]:
        x, y = zip(*ser["refault_rate"])
        axr.plot(x, y, color="tab:orange", lw=0.8, alpha=0.8, label="refaults /s",
                 rasterized=rasterized or None)
    axr.set_ylim(bottom=0)
    axr.tick_params(labelsize=7)
    # the OOM kills, full height.  When the time axis is already fixed (the report's panels:
    # set on the shared axes), one collection drawn as an axvline per kill would draw (in
    # kill order), at a fraction of the cost on a run of thousands of kills; when it still
    # scales to the data, the lines take part in its limits, as axvline's do.
    xs = [ev[0] / 1e6 for ev in k.trace if ev[1] == "kill"]
    if ax.get_autoscalex_on():
        for x in xs:
            ax.axvline(x, color="red", lw=0.8, alpha=0.7)
    elif xs:
        ax.add_collection(LineCollection([((x, 0.0), (x, 1.0)) for x in xs],
                                         colors=[(1.0, 0.0, 0.0, 0.7)], linewidths=0.8,
                                         capstyle="projecting", zorder=Line2D.zorder,
                                         transform=ax.get_xaxis_transform(which="grid")),
                          autolim=False)
    return axr


def thrash_handles():
    """Legend entries of :func:`draw_thrash`."""
    return [Line2D([], [], color="tab:green", lw=1.2, label="progress, 10 s (%)"),
            Line2D([], [], color="tab:purple", lw=1.0, label="PSI full avg10 (%)"),
            Line2D([], [], color="tab:orange", lw=0.8, label="refaults /s (right)")]

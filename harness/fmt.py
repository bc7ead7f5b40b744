"""Formatting shared by the reports (``report`` and ``report_real``): table cells, markdown and
HTML tables, figure files.  Public, so that no report reaches into another's private helpers."""
from __future__ import annotations

import html
import re
import struct
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from PIL import Image  # noqa: E402

#: resolution of every PNG the reports write
DPI = 110


def as_bool(s: pd.Series) -> pd.Series:
    if s.dtype == bool:
        return s
    return s.map(lambda v: str(v).strip().lower() in ("true", "1", "1.0", "yes"))


def pct(x):
    return "-" if pd.isna(x) else f"{100 * x:.0f} %"


def num(x, nd=2):
    return "-" if pd.isna(x) else f"{x:.{nd}f}"


def pval(p):
    """A p-value: two significant digits, exponent notation below 0.001, n/a when none."""
    if pd.isna(p):
        return "n/a"
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def pp(x):
    return "-" if pd.isna(x) else f"{100 * x:+.0f} pp"


def md_cell(v) -> str:
    return str(v).replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


_NUMERIC = re.compile(r"^(\*\*)?([-+]?\d|n/a$|-$)")


def md_table(d: pd.DataFrame) -> str:
    """A GitHub markdown table; columns of numbers (or - and n/a) right-aligned."""
    head = "| " + " | ".join(md_cell(c) for c in d.columns) + " |"
    right = [len(d) > 0 and all(_NUMERIC.match(str(v)) for v in d.iloc[:, i])
             for i in range(len(d.columns))]
    sep = "|" + "|".join("---:" if r else "---" for r in right) + "|"
    body = ["| " + " | ".join(md_cell(v) for v in row) + " |" for row in d.itertuples(index=False)]
    return "\n".join([head, sep] + body)


def html_table(d: pd.DataFrame, escaped_cols=()) -> str:
    """``DataFrame.to_html`` with every cell escaped here except those already HTML."""
    cells = [[v if i in escaped_cols else html.escape(str(v)) for i, v in enumerate(row)]
             for row in d.itertuples(index=False)]
    e = pd.DataFrame(cells, columns=[html.escape(str(c)) for c in d.columns], dtype=object)
    return e.to_html(index=False, escape=False, border=0, classes="tbl")


def safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def fix_empty_axis_labels(fig) -> None:
    """Pin the axis labels that are empty (no room taken, nothing drawn): matplotlib otherwise
    lays out an axis's ticks a second time on every draw and layout pass to place its label,
    even an empty one.  Call once every label is set (before ``tight_layout``)."""
    for ax in fig.axes:
        for axis, xy in ((ax.xaxis, (0.5, 0.0)), (ax.yaxis, (0.0, 0.5))):
            if not axis.label.get_text():
                axis.set_label_coords(*xy)


def save(fig, plots_dir: Path, stem: str, written: list, dpi: int = DPI) -> Path:
    """``stem.png`` (at ``dpi``, as a 256-colour palette PNG: a third of the size of a
    true-colour one for these flat-coloured plots, which keeps a page of them light) and
    ``stem.svg`` of ``fig``, added to ``written``; the figure is closed."""
    png, svg = plots_dir / f"{stem}.png", plots_dir / f"{stem}.svg"
    fix_empty_axis_labels(fig)
    old = fig.dpi
    fig.set_dpi(dpi)
    fig.canvas.draw()
    rgb = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())).convert("RGB")
    fig.set_dpi(old)
    rgb.quantize(colors=256, method=Image.Quantize.FASTOCTREE,
                 dither=Image.Dither.NONE).save(png, format="PNG", compress_level=6)
    with plt.rc_context({"svg.hashsalt": "vmbench"}):   # stable ids: same runs, same file
        fig.savefig(svg, metadata={"Date": None})
    plt.close(fig)
    written += [png, svg]
    return png


def png_size(png: Path) -> tuple[int, int]:
    """(width, height) in pixels, from the PNG's header."""
    with open(png, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{png}: not a PNG file")
    return struct.unpack(">II", head[16:24])


def img(png: Path, note: str) -> str:
    """A figure of ``png`` for a page one folder above it (``plots/NAME.png``): the file
    itself, loaded lazily, with its size so the page does not jump while it loads."""
    w, h = png_size(png)
    rel = f"{png.parent.name}/{png.name}"
    svg = png.with_suffix(".svg").name
    e = html.escape
    return (f'<figure><a href="{e(rel)}"><img alt="{e(png.stem)}" src="{e(rel)}" '
            f'loading="lazy" decoding="async" width="{w}" height="{h}"></a>'
            f"<figcaption>{e(note)} <span class=\"files\">"
            f"(<code>{e(rel)}</code>, <a href=\"{e(png.parent.name)}/{e(svg)}\"><code>"
            f"{e(png.parent.name)}/{e(svg)}</code></a>)</span></figcaption></figure>")

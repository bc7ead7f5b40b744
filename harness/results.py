"""A results folder's reports: the matrix report (:mod:`harness.report`) and, when real-kernel
runs exist (``results/real/latest``), their section (:mod:`harness.report_real`).

The one module that imports both reports, so that neither imports the other (``report_real``
builds on ``report``'s tables); ``bench`` and ``report`` import neither.  ``__main__`` calls
:func:`harness.bench.bench`, then :func:`write`.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import report as R
from . import report_real as RR


def real_section(real_runs: pd.DataFrame, real_dir: str | None):
    """A :func:`harness.report.write_report` section of the real-kernel runs beside the
    simulated ones (``real_vs_sim.*`` and its plot are written with it)."""
    def section(out_dir: Path, sim: pd.DataFrame, written: list):
        tab, png = RR.write(out_dir, real_runs, sim, real_dir, written)
        if png is None:
            return "", ""
        return (RR.section_md(tab, png.relative_to(out_dir).as_posix(), real_dir),
                RR.section_html(tab, png, real_dir))
    return section


def write_report(out_dir, df, meta, *, real_runs: pd.DataFrame | None = None,
                 real_dir: str | None = None, **kw) -> list[Path]:
    """:func:`harness.report.write_report`, with the real-kernel section when ``real_runs``
    has records."""
    sections = list(kw.pop("sections", ()))
    if real_runs is not None and len(real_runs):
        sections.append(real_section(real_runs, real_dir))
    return R.write_report(out_dir, df, meta, sections=sections, **kw)


def write(out_dir, df, meta, results_root, **kw) -> list[Path]:
    """The report of a results folder, with the latest real-kernel runs under
    ``results_root`` when there are any (they are shown, never started here)."""
    real, real_dir = RR.latest(Path(results_root))
    return write_report(out_dir, df, meta, real_runs=real, real_dir=real_dir, **kw)

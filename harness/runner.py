"""Run one cell (policy, workload, seed) and return its record."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from . import laws, metrics, registry
from . import workload as W
from .engine import Kernel


class UnknownWorkload(Exception):
    pass


def resolve_workload(name_or_path, folder=registry.WORKLOAD_DIR) -> W.Workload:
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.exists():
        return W.load(p)
    cand = Path(folder) / f"{name_or_path}.toml"
    if cand.exists():
        ws = W.load_all(cand)
        if len(ws) == 1:
            return ws[0]
    good, _errors = W.load_dir(folder)
    if name_or_path in good:
        return good[name_or_path]
    known = ", ".join(sorted(good)) or "none"
    raise UnknownWorkload(f"unknown workload {name_or_path!r}; known workloads: {known}")


_POLICY_MEMO: dict = {}


def _folder_sig(folders) -> tuple:
    """Name, modification time and size of every ``*.py`` file of the folders."""
    out = []
    for folder in folders:
        try:
            entries = sorted((e.name, e.stat()) for e in os.scandir(folder)
                             if e.name.endswith(".py"))
        except OSError:
            entries = []
        out.append((str(folder), tuple((n, st.st_mtime_ns, st.st_size) for n, st in entries)))
    return tuple(out)


def _policy_class(name: str, policy_dir):
    """``registry.get_policy``, remembered per process while the folders' files are unchanged
    (discovery imports and inspects every file: ~0.1 s, too much to pay for every run; it is
    done once for all the policies of the folders)."""
    folders = ([Path(policy_dir)] if isinstance(policy_dir, (str, Path))
               else [Path(d) for d in policy_dir])          # one folder, or several (--policy-dir)
    sig = _folder_sig(folders)
    key = tuple(str(f) for f in folders)
    hit = _POLICY_MEMO.get(key)
    if hit is None or hit[0] != sig:
        found, _errors = registry.discover(*folders)
        hit = _POLICY_MEMO[key] = (sig, found)
    cls = hit[1].get(name)
    if cls is None:
        return registry.get_policy(name, policy_dir)       # raises, saying what is known
    return cls


def simulate(policy, w: W.Workload, seed: int, *, debug=False, trace=True,
             wall_timeout_s=None) -> Kernel:
    """Build the machine, boot the workload, run to the end; returns the finished kernel."""
    k = Kernel(w.machine, policy, seed, debug=debug, trace=trace,
               watchdog_s=w.watchdog_s, time_limit_s=w.time_limit_s,
               thrash_limit_s=w.thrash_limit_s, time_scale=w.time_scale)
    k.workload_name = w.name
    k.on_sample = laws.Periodic()             # the machine's laws at intervals (harness.laws)
    try:
        policy.reset(k)
        W.Builder(k, w).start()
        k.run(wall_timeout_s)
    except laws.LawBroken:
        raise
    except Exception as e:
        try:
            laws.check_instant(k)             # a broken law explains a failure best: raise it
        except laws.LawBroken as law:
            raise law from e
        except Exception:  # noqa: BLE001 - a machine too broken to read: the error stands
            pass
        raise
    if debug:
        k.check_pages()
    laws.check_all(k)
    return k


def invalid_record(policy_name: str, workload_name: str, seed: int, e: laws.LawBroken) -> dict:
    """The record of a run that broke a law: status ``invalid``, the law, time and zone in
    ``error``, no metric (nothing of it may enter a statistic)."""
    rec = dict.fromkeys(metrics.COLUMNS)
    rec.update(policy=policy_name, workload=workload_name, seed=seed, status="invalid",
               error=str(e))
    return rec


def run_one(policy_name: str, workload, seed: int, params=None, *, debug=False,
            policy_dir=registry.POLICY_DIR, keep_kernel=False, wall_timeout_s=None):
    """One run; the record has every column of ``metrics.COLUMNS``.  A run that breaks a law
    of the machine (:mod:`harness.laws`) gives an ``invalid`` record (and no kernel)."""
    w = workload if isinstance(workload, W.Workload) else resolve_workload(workload)
    cls = _policy_class(policy_name, policy_dir)
    policy = cls(**(params or {}))
    t0 = time.perf_counter()
    try:
        k = simulate(policy, w, seed, debug=debug, wall_timeout_s=wall_timeout_s)
    except laws.LawBroken as e:
        rec = invalid_record(policy_name, w.name, seed, e)
        rec["wall_s"] = round(time.perf_counter() - t0, 4)
        return (rec, None) if keep_kernel else rec
    rec = {"policy": policy_name, "workload": w.name, "seed": seed}
    rec.update(metrics.compute(k))
    rec["wall_s"] = round(time.perf_counter() - t0, 4)
    rec = {c: rec.get(c) for c in metrics.COLUMNS}
    return (rec, k) if keep_kernel else rec


class ZoneView:
    """A zone as the timeline figures read it."""

    __slots__ = ("idx", "name", "size", "pages_min", "pages_low", "pages_high")

    def __init__(self, z):
        for a in self.__slots__:
            setattr(self, a, getattr(z, a))

    def __getstate__(self):
        return [getattr(self, a) for a in self.__slots__]

    def __setstate__(self, state):
        for a, v in zip(self.__slots__, state):
            setattr(self, a, v)


def thrash_series(k, every_s: float = 1.0) -> dict:
    """The thrashing measurements over time of finished run ``k``, for the report's plots:
    ``progress`` (the goal tasks' pooled progress over the 10-s window ending at each point,
    every ``every_s``), ``psi_full`` (memory ``full avg10`` in percent at each averaging, every
    2.004 s), ``refault_rate`` (file refaults per second over each ``every_s``, from the zone
    samples).  Lists of ``(t_s, value)``; about ten points per simulated second in all."""
    from .psi import load_str
    step = round(every_s * 1e6)
    prog = [(t / 1e6, k.prog.rate(c, a, q)) for t, c, a, q in k.prog.windows(k.now)
            if a > q and t % step == 0]
    psi = [(t / 1e6, float(load_str(v))) for t, v in k.psi.series]
    rates, last_t, last_n = [], None, 0
    for (t, *_), n in zip(k.samples, k.refault_samples):
        if last_t is None:
            last_t, last_n = t, n
        elif t - last_t >= step:
            rates.append((t / 1e6, (n - last_n) * 1e6 / (t - last_t)))
            last_t, last_n = t, n
    return {"progress": prog, "psi_full": psi, "refault_rate": rates}


class RunView:
    """What the timeline figures (:mod:`harness.plot`, :func:`harness.report.plot_timelines`)
    read of a finished run -- ``now``, ``seed``, ``zones``, ``samples``, the trace events
    they draw and the thrashing series (:func:`thrash_series`) -- and its ``outcome``: small enough for a bench worker to send back, so that the
    report draws the runs the matrix made instead of making them again."""

    KINDS = frozenset(("stall", "stall_end", "exit", "kill", "fault_kill", "alloc_fail",
                       "watchdog"))

    def __init__(self, k, outcome: str):
        self.now, self.seed, self.outcome = k.now, k.seed, outcome
        self.zones = [ZoneView(z) for z in k.zones]
        self.samples = list(k.samples)
        kinds = self.KINDS
        self.trace = [ev for ev in k.trace if ev[1] in kinds]
        self.thrash = thrash_series(k)


def write_trace(k, path):
    """The event trace as JSON lines: one event per line, then the zone samples."""
    with open(path, "w") as f:
        for ev in k.trace:
            f.write(json.dumps({"t_s": ev[0] / 1e6, "event": ev[1], "fields": list(ev[2:])},
                               default=str) + "\n")
        for s in k.samples:
            f.write(json.dumps({"t_s": s[0] / 1e6, "event": "zone_free",
                                "fields": list(s[1:])}) + "\n")

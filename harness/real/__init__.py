"""Real-kernel ground truth (issue 6): a workload's tasks as real processes on a real kernel.

API shared with the qemu backend (``harness/real/qemu.py``):

* ``harness.real.build.vmreal_path(rebuild=True) -> pathlib.Path``: the static runner binary
  ``.real/bin/vmreal``, (re)built from ``csrc/vmreal.c`` when needed; raises
  ``build.BuildError`` (one line) when it cannot be built.
* ``harness.real.plan.compile_plan(workload, seed, time_scale=1.0) -> Plan``; ``Plan.to_text()``
  is the plan file of ``vmreal run PLAN DATA_DIR [--limit-ms N]``; ``Plan.files`` is
  {name: size_kb} that must exist in DATA_DIR before the run (``Plan.write_files(dir)`` creates
  them); files the run writes are created by the tasks (DATA_DIR must be writable);
  ``Plan.limit_s`` is the run's scaled time limit; raises ``plan.NotRealisable``.
* A backend module has ``available() -> (bool, reason)`` and
  ``run(plan, workload, seed, out_dir, max_wall_s) -> (runner_lines, kernel_lines, extra, meta)``
  (the keys ``record.make_record`` reads are listed in harness/real/record.py); the runner is
  started with ``--limit-ms`` = min(plan.limit_s, max_wall_s) and the backend kills everything
  a grace period later.

This module: :func:`run_real` (one run -> one record), :func:`available`, and the ``real`` /
``real-setup`` commands (``python -m harness real ...``) writing ``results/real/<UTC>/``:
``runs.csv`` (rewritten atomically after every run), ``records/<backend>/<workload>/<seed>.json``
(one per finished run, atomic: an interrupted matrix loses nothing finished), ``raw/<backend>/
<workload>/<seed>.log`` (plan, runner lines, kernel lines, extra, meta), ``meta.json``, and the
link ``results/real/latest``.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from .plan import NotRealisable, compile_plan
from .record import ALL_COLUMNS, make_record

BACKENDS = ("qemu", "memcg")
# real seconds per simulated second of CPU, sleep and start time (see docs/real-kernel.md)
DEFAULT_TIME_SCALE = 0.1
# the longest a run may take on the host (the workload's limit x scale, capped)
MAX_WALL_CAP_S = 30.0
RESULTS = Path(__file__).resolve().parents[2] / "results" / "real"


class BackendUnavailable(RuntimeError):
    pass


def _backend(name: str):
    if name == "memcg":
        from . import memcg
        return memcg
    if name == "qemu":
        try:
            from . import qemu
        except ImportError as e:
            raise BackendUnavailable(f"harness/real/qemu.py cannot be imported: {e}") from None
        return qemu
    raise ValueError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")


def available(backend: str) -> tuple[bool, str]:
    try:
        mod = _backend(backend)
    except BackendUnavailable as e:
        return False, str(e)
    try:
        return mod.available()
    except Exception as e:  # noqa: BLE001 - a probe must not crash the CLI
        return False, f"{type(e).__name__}: {e}"


def default_time_scale(backend: str) -> float:
    if backend == "qemu":
        try:
            return float(getattr(_backend("qemu"), "DEFAULT_TIME_SCALE", DEFAULT_TIME_SCALE))
        except BackendUnavailable:
            pass
    return DEFAULT_TIME_SCALE


def default_max_wall(workload, time_scale: float, backend: str = "memcg") -> float:
    cap = MAX_WALL_CAP_S
    if backend == "qemu":
        try:
            cap = float(getattr(_backend("qemu"), "MAX_WALL_CAP_S", cap))
        except BackendUnavailable:
            pass
    return min(workload.time_limit_s * time_scale, cap)


def _atomic_write(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _policy_columns(rec: dict, policy, meta=None):
    """The real policy's columns of a record: its file, model, kernel package, the settings
    read back in the guest, the daemon, and the TCG slowdown measured by ``real-setup``."""
    meta = meta or {}
    if policy is not None:
        rec["real_policy_file"] = policy.file
        rec["model"] = policy.model_label
    rec["kernel_package"] = meta.get("kernel_package") or rec.get("kernel_package")
    if meta.get("settings") is not None:
        rec["settings"] = json.dumps(meta["settings"], sort_keys=True)
    if meta.get("daemon"):
        rec["daemon"] = json.dumps(meta["daemon"], sort_keys=True)
    if rec.get("backend") == "qemu":
        from . import tcg
        f = tcg.factors()
        if f:
            rec["tcg_fault_factor"] = f.get("fault_factor")
            rec["tcg_cpu_factor"] = f.get("cpu_factor")


def _raw_log(plan, runner_lines, kernel_lines, extra, meta) -> str:
    return "\n".join(
        ["# meta " + json.dumps(meta, default=str, sort_keys=True),
         "# extra " + json.dumps(extra, default=str, sort_keys=True),
         "## plan", plan.to_text().rstrip("\n"),
         "## runner", *runner_lines,
         "## kernel", *kernel_lines]) + "\n"


def run_real(workload, backend: str, seed: int, out_dir=None, time_scale: float | None = None,
             max_wall_s: float | None = None, policy=None) -> dict:
    """One real run of (workload, seed) on a backend: its record (``record.ALL_COLUMNS``).

    Raises ``NotRealisable`` and ``BackendUnavailable``; any other failure of the run becomes a
    record with ``status = error``.  ``KeyboardInterrupt`` propagates after the backend cleaned
    up.  With ``out_dir``, the raw log goes to ``out_dir/raw/<backend>/<workload>/<seed>.log``.
    ``policy``: a real policy (:mod:`harness.real.policies`); its name becomes the record's
    ``policy`` and its backend replaces ``backend``; the raw log goes under its name.
    """
    if policy is not None:
        backend = policy.backend
    if time_scale is None:
        time_scale = default_time_scale(backend)
    if max_wall_s is None:
        max_wall_s = default_max_wall(workload, time_scale, backend)
    plan = compile_plan(workload, seed, time_scale)
    mod = _backend(backend)
    ok, why = (mod.available(policy.kernel) if policy is not None and backend == "qemu"
               else mod.available())
    if not ok:
        raise BackendUnavailable(f"{backend} backend unavailable: {why}")
    from . import build
    try:
        build.vmreal_path()                 # a missing static libc is a skip, not a failed run
    except build.BuildError as e:
        raise BackendUnavailable(f"{backend} backend unavailable: {e}") from None
    tag = policy.name if policy is not None else backend
    raw_dir = Path(out_dir) / "raw" / tag / workload.name if out_dir else None
    work_dir = raw_dir or (Path(__file__).resolve().parents[2] / ".real" / "scratch")
    t0 = time.monotonic()
    try:
        if policy is not None and backend == "qemu":
            runner_lines, kernel_lines, extra, meta = mod.run(plan, workload, seed, work_dir,
                                                              max_wall_s, policy=policy)
        else:
            runner_lines, kernel_lines, extra, meta = mod.run(plan, workload, seed, work_dir,
                                                              max_wall_s)
    except (NotRealisable, KeyboardInterrupt):
        raise
    except Exception as e:  # noqa: BLE001 - one failed run must not sink the matrix
        rec = {c: None for c in ALL_COLUMNS}
        from .qemu import PolicyFailed
        if isinstance(e, PolicyFailed):           # one line naming the file and the key
            err = str(e)
            rec["settings"] = json.dumps(e.settings, sort_keys=True) if e.settings else None
            if raw_dir is not None:
                _atomic_write(raw_dir / f"{seed}.log", "\n".join(
                    [f"# error {err}", "## kernel", *e.kernel_lines]) + "\n")
        else:
            last = traceback.extract_tb(e.__traceback__)[-1]
            err = f"{type(e).__name__}: {e} ({Path(last.filename).name}:{last.lineno})"
        rec.update(policy=(policy.name if policy is not None else
                           f"real-{backend}-{os.uname().release if backend == 'memcg' else '?'}"),
                   workload=workload.name, seed=seed, status="error", backend=backend,
                   error=err, time_scale=time_scale, max_wall_s=max_wall_s,
                   wall_s=round(time.monotonic() - t0, 3))
        _policy_columns(rec, policy)
        return rec
    meta.setdefault("max_wall_s", max_wall_s)
    meta.setdefault("wall_s", round(time.monotonic() - t0, 3))
    rec = make_record(plan, runner_lines, kernel_lines, meta, extra)
    if policy is not None:
        rec["policy"] = policy.name
    _policy_columns(rec, policy, meta)
    if raw_dir is not None:
        _atomic_write(raw_dir / f"{seed}.log", _raw_log(plan, runner_lines, kernel_lines, extra, meta))
    return rec


# ---------------------------------------------------------------------------- CLI
def _resolve_workloads(names):
    from .. import registry, runner
    from .. import workload as W
    good, _ = W.load_dir(registry.WORKLOAD_DIR)
    out = []
    for n in names:
        if n in good:
            out.append(good[n])
            continue
        points = [good[k] for k in sorted(good) if good[k].sweep_point and k.startswith(n + ".")]
        out.extend(points or [runner.resolve_workload(n)])
    return out


def _summary(records) -> str:
    import pandas as pd
    if not records:
        return "(no runs)"
    df = pd.DataFrame(records)
    rows = []
    for (b, w), g in df.groupby(["backend", "workload"], sort=False):
        ok = g[g.status == "ok"]
        ttk = ok.time_to_kill_s.dropna()
        fv = Counter(ok.first_victim.dropna())
        rows.append({
            "backend": b, "workload": w, "runs": len(ok), "failed": len(g) - len(ok),
            "first victims": ", ".join(f"{v} x{c}" for v, c in fv.most_common()) or "-",
            "first kill s (median)": ok.first_kill_s.dropna().median() if len(ok) else None,
            "ttk s (median)": ttk.median() if len(ttk) else None,
            "no kill": int(ok.first_kill_s.isna().sum()),
            "kills/run": ok.kills.mean() if len(ok) else None,
            "wrong/run": ok.wrong_victims.mean() if len(ok) else None,
            "completed": int(ok.workload_completed.fillna(False).astype(bool).sum()),
            "truncated": int(ok.truncated.fillna(False).astype(bool).sum()),
            "wall s": g.wall_s.sum(),
        })
    t = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", None,
                           "display.max_colwidth", 60):
        return t.to_string(index=False, float_format=lambda x: f"{x:.3f}", na_rep="-")


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _seed_list(text: str) -> list[int]:
    out = []
    for part in _csv(text):
        a, _, b = part.partition("-")
        out.extend(range(int(a), int(b) + 1) if b else [int(a)])
    return out


def _usage(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def cmd_real(args) -> int:
    names = []
    for spec in (args.workload, args.workloads):
        if spec:
            names += _csv(spec)
    if not names:
        return _usage("give --workload W or --workloads a,b "
                      "(e.g. morton-make-usemem,several-hogs,streaming-reader)")
    workloads = _resolve_workloads(names)
    try:
        seeds = _seed_list(args.seed_list) if args.seed_list else list(range(args.seeds))
    except ValueError:
        return _usage(f"--seed-list: expected e.g. 0,3,5-9, got {args.seed_list!r}")
    if not seeds:
        return _usage("no seeds: give --seeds N (N >= 1) or --seed-list 0-4")
    if args.time_scale is not None and not args.time_scale > 0:
        return _usage(f"--time-scale must be positive, got {args.time_scale}")
    if args.max_wall is not None and not args.max_wall > 0:
        return _usage(f"--max-wall must be positive, got {args.max_wall}")
    backends = list(BACKENDS) if args.backend == "all" else [args.backend]
    usable = []
    for b in backends:
        ok, why = available(b)
        if ok:
            usable.append(b)
        else:
            print(f"skip: {b} backend unavailable: {why}; run `make real-setup`", file=sys.stderr)
            if args.backend != "all":
                return 2
    cells, skipped = [], []
    for w in workloads:
        try:
            compile_plan(w, seeds[0], 1.0)
        except NotRealisable as e:
            print(f"skip: {e}", file=sys.stderr)
            skipped.append(str(e))
            continue
        cells += [(b, w, s) for b in usable for s in seeds]
    if not cells:
        print("nothing to run", file=sys.stderr)
        return 2 if args.backend != "all" or skipped else 0
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    root = Path(args.out) if args.out else RESULTS
    out = root / stamp
    out.mkdir(parents=True, exist_ok=True)
    meta = {"started": stamp, "argv": sys.argv[1:], "kernel": os.uname().release,
            "backends": usable, "workloads": [w.name for w in workloads], "seeds": seeds,
            "time_scale": args.time_scale, "max_wall_s": args.max_wall, "skipped": skipped,
            "default_time_scale": {b: default_time_scale(b) for b in usable},
            "max_wall_cap_s": MAX_WALL_CAP_S}
    _atomic_write(out / "meta.json", json.dumps(meta, indent=2) + "\n")
    latest = root / "latest"
    tmp = root / f".latest.tmp{os.getpid()}"
    try:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
        tmp.symlink_to(stamp)
        os.replace(tmp, latest)
    except OSError:
        pass
    records = []
    failed = 0
    t_all = time.monotonic()
    for i, (b, w, s) in enumerate(cells, 1):
        scale = args.time_scale if args.time_scale is not None else default_time_scale(b)
        try:
            rec = run_real(w, b, s, out, scale, args.max_wall)
        except NotRealisable as e:                  # backend-specific (e.g. swap on memcg)
            print(f"skip: {b} {w.name} seed {s}: {e}", file=sys.stderr)
            continue
        except BackendUnavailable as e:
            print(f"skip: {e}", file=sys.stderr)
            continue
        records.append(rec)
        _atomic_write(out / "records" / b / w.name / f"{s}.json",
                      json.dumps(rec, default=str, sort_keys=True) + "\n")
        import pandas as pd
        df = pd.DataFrame(records, columns=ALL_COLUMNS)
        _atomic_write(out / "runs.csv", df.to_csv(index=False))
        if rec["status"] != "ok":
            failed += 1
        fk = rec.get("first_kill_s")
        print(f"[{i}/{len(cells)}] {b} {w.name} seed {s}: {rec['status']}"
              + (f" ({rec['error']})" if rec.get("error") else "")
              + f", {rec.get('outcome')}"
              + (f", first victim {rec['first_victim']} at {fk:.3f} s" if fk is not None else ", no kill")
              + f", {rec.get('kills')} kills, victims {rec.get('victim_names') or '-'}"
              + (", truncated" if rec.get("truncated") else "")
              + f" ({float(rec.get('wall_s') or 0):.1f} s wall)", file=sys.stderr)
    print(_summary(records))
    print(f"\n{len(records)} runs in {time.monotonic() - t_all:.1f} s wall -> {out}")
    if records:
        _report(out, records, seeds)

    return 1 if failed else 0


def simulate_reference(workloads, seeds, policies=None,
                       jobs=None, progress=False) -> pd.DataFrame:
    """The simulated runs to hold real runs against: ``policies`` x ``workloads`` x ``seeds``
    through the bench's result cache (``results/cache``), so a second call recomputes nothing."""
    import pandas as pd

    from .. import bench, metrics, registry
    from .. import report_real as RR
    from .. import workload as W
    if policies is None:
        policies = (RR.SIM_REFERENCE, *RR.SIM_CONTEXT)
    found, _ = registry.discover(registry.POLICY_DIR)
    wfound, _ = W.load_dir(registry.WORKLOAD_DIR)
    pol = {p: found[p] for p in policies if p in found}
    wl = {w: wfound[w] for w in workloads if w in wfound}
    cells = bench.make_cells(pol, wl, list(seeds), [registry.POLICY_DIR])
    recs = bench.run_matrix(cells, jobs=jobs, cache_dir=registry.ROOT / "results" / "cache",
                            progress=progress)
    return pd.DataFrame(recs, columns=metrics.COLUMNS)



def _report(out: Path, records: list, seeds: list):
    """``real_vs_sim.{md,csv}`` and ``plots/real_vs_sim.*`` in ``out``: the real runs beside the
    simulated reference policies on the same workloads and seeds (simulated through the bench's
    cache; `make bench`'s report shows the same section from ``results/real/latest``)."""
    import pandas as pd

    from .. import report_real as RR
    real = pd.DataFrame(records, columns=ALL_COLUMNS)
    sim = simulate_reference(list(dict.fromkeys(real.workload)), seeds)
    tab, png = RR.write(out, real, sim, str(out))
    if png is not None:
        print(f"real vs simulated: {out / 'real_vs_sim.md'}, {png}")


def cmd_real_setup(args) -> int:
    from . import build
    try:
        path = build.vmreal_path()
        print(f"vmreal: {path}")
    except build.BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rc = 0
    for b in BACKENDS:
        if b == "qemu":
            try:
                mod = _backend("qemu")
            except BackendUnavailable as e:
                print(f"qemu: unavailable: {e}")
                continue
            if hasattr(mod, "setup"):
                try:
                    mod.setup()
                except Exception as e:  # noqa: BLE001
                    print(f"qemu: setup failed: {e}", file=sys.stderr)
                    rc = 1
        ok, why = available(b)
        print(f"{b}: {'available' if ok else 'unavailable'}: {why}")
    return rc


def add_parsers(sub):
    """The ``real`` and ``real-setup`` subcommands (called by harness/__main__.py)."""
    r = sub.add_parser("real", help="run workloads as real processes on a real kernel "
                                    "(qemu VM or a memory cgroup) and record them")
    r.add_argument("--workload", help="a workload name (a sweep's base name runs every point)")
    r.add_argument("--workloads", help="comma-separated workload names")
    r.add_argument("--backend", choices=(*BACKENDS, "all"), default="all")
    r.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    r.add_argument("--seed-list", help="explicit seeds, e.g. 0,3,5-9")
    r.add_argument("--out", help="results root (default results/real/)")
    r.add_argument("--time-scale", type=float, default=None,
                   help=f"real seconds per simulated second of CPU, sleep and start time "
                        f"(default {DEFAULT_TIME_SCALE} on memcg)")
    r.add_argument("--max-wall", type=float, default=None,
                   help=f"wall seconds a run may take (default: the workload's time limit x "
                        f"scale, at most {MAX_WALL_CAP_S:g} s)")
    r.set_defaults(func=cmd_real)
    s = sub.add_parser("real-setup", help="build the real runner and prepare the backends")
    s.set_defaults(func=cmd_real_setup)

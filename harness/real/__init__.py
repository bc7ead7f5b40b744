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

import contextlib
import json
import os
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

from .plan import NotRealisable, compile_plan  # noqa: F401
from .record import ALL_COLUMNS
from .run import (BACKENDS, DEFAULT_TIME_SCALE, MAX_WALL_CAP_S, RESULTS, BackendUnavailable,  # noqa: F401
                  _atomic_write, _backend, available, default_max_wall, default_time_scale,
                  parse_raw_log, raw_dir, run_real)

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
    for (b, w), g in df.groupby(["policy", "workload"], sort=False):
        ok = g[g.status == "ok"]
        ttk = ok.time_to_kill_s.dropna()
        fv = Counter(ok.first_victim.dropna())
        rows.append({
            "policy": b, "workload": w, "runs": len(ok), "failed": len(g) - len(ok),
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


LEGACY_BACKEND_POLICY = {"qemu": "real-6.1", "memcg": "real-memcg"}


def resolve_policies(spec: str | None, backend: str | None):
    """(policies, error lines): ``--policies a,b`` (default: every real policy in
    ``policies/real/``), or the policies standing for ``--backend`` (qemu: real-6.1, memcg:
    real-memcg, all: both).  A malformed file's line is given when its policy was asked for, or
    when every policy was; an unknown name is a line of its own."""
    from . import policies as P
    good, errors = P.discover()
    if spec:
        names = _csv(spec)
    elif backend:
        names = (list(LEGACY_BACKEND_POLICY.values()) if backend == "all"
                 else [LEGACY_BACKEND_POLICY[backend]])
    else:
        return [good[n] for n in sorted(good)], errors
    bad = {P.POLICY_DIR / f"{n}.toml": n for n in names}
    lines = [e for e in errors if any(e.startswith(P._show(f) + ":") for f in bad)]
    out = []
    for n in names:
        if n in good:
            out.append(good[n])
        elif not (P.POLICY_DIR / f"{n}.toml").exists():
            lines.append(f"unknown real policy {n!r}; known: {', '.join(sorted(good))}")
    return out, lines


def _write_records(out: Path, records: list):
    """``runs.csv`` and ``records/<policy>/<workload>/<seed>.json`` of a results folder."""
    import pandas as pd
    _atomic_write(out / "runs.csv", pd.DataFrame(records, columns=ALL_COLUMNS).to_csv(index=False))
    for r in records:
        _atomic_write(out / "records" / str(r["policy"]) / str(r["workload"]) / f"{r['seed']}.json",
                      json.dumps(r, default=str, sort_keys=True) + "\n")


def remake(src: Path, root: Path, say=None) -> tuple[Path, list]:
    """A new results folder under ``root`` whose records are those of ``src`` made again from
    its raw logs with today's plan compiler and record rules (:func:`run.record_from_raw`);
    the raw logs are linked in, not copied.  A run with no raw log (it came from the cache,
    or it failed) keeps its old record, and one line says how many did.  Returns (folder,
    records)."""
    import math

    import pandas as pd

    from .. import bench
    from ..runner import UnknownWorkload
    from . import matrix, policies as P
    from .run import record_from_raw
    say = say or (lambda m: print(m, file=sys.stderr))
    src = Path(src)
    if not (src / "runs.csv").exists():
        raise FileNotFoundError(f"{src}: no runs.csv here (give a folder of results/real/)")
    old = pd.read_csv(src / "runs.csv")
    pols, _ = P.discover()
    wl: dict = {}
    records, kept = [], Counter()
    for r in old.to_dict("records"):
        r = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        raw = raw_dir(src, str(r["policy"]), str(r["workload"])) / f"{int(r['seed'])}.log"
        why = None
        if r.get("status") != "ok":
            why = "not ok"
        elif not raw.exists():
            why = "no raw log"
        else:
            if r["workload"] not in wl:
                try:
                    wl[r["workload"]] = _resolve_workloads([r["workload"]])[0]
                except UnknownWorkload:
                    wl[r["workload"]] = None
            if wl[r["workload"]] is None:
                why = "a workload not in workloads/"
            else:
                try:
                    r = record_from_raw(raw.read_text(), wl[r["workload"]], int(r["seed"]),
                                        float(r["time_scale"]), pols.get(r["policy"]))
                except Exception as e:  # noqa: BLE001 - one unreadable log keeps its record
                    why = f"{type(e).__name__}: {e}"
        if why is not None:
            kept[why] += 1
        records.append(r)
    out = bench.new_results_dir(Path(root))
    for f in sorted((src / "raw").rglob("*")) if (src / "raw").is_dir() else []:
        if f.is_file():
            dst = out / "raw" / f.relative_to(src / "raw")
            dst.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(f, dst)
            except OSError:
                import shutil
                shutil.copy2(f, dst)
    meta = json.loads((src / "meta.json").read_text()) if (src / "meta.json").exists() else {}
    meta.update(remade_from=str(src), remade=datetime.now(timezone.utc).strftime(
        "%Y%m%dT%H%M%SZ"), runner=matrix.runner_hash())
    _atomic_write(out / "meta.json", json.dumps(meta, indent=2, default=str) + "\n")
    with contextlib.suppress(OSError):
        bench.point_latest(Path(root), out)
    _write_records(out, records)
    n = len(records) - sum(kept.values())
    say(f"{n} of {len(records)} records made again from their raw logs -> {out}"
        + "".join(f"; {c} kept as they were ({w})" for w, c in sorted(kept.items())))
    return out, records


def cmd_real(args) -> int:
    from . import matrix
    if args.from_raw:
        root = Path(args.out) if args.out else RESULTS
        try:
            out, records = remake(Path(args.from_raw), root)
        except FileNotFoundError as e:
            return _usage(str(e))
        print(_summary(records))
        if records and not args.no_report:
            _report(out, records, sorted({int(r["seed"]) for r in records}))
        return 0
    names = []
    for spec in (args.workload, args.workloads):
        if spec:
            names += _csv(spec)
    if not names:
        return _usage("give --workload W or --workloads a,b "
                      "(e.g. morton-make-usemem,several-hogs,streaming-reader)")
    from ..runner import UnknownWorkload
    try:
        workloads = _resolve_workloads(names)
    except UnknownWorkload as e:
        return _usage(str(e))
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
    if args.jobs is not None and args.jobs < 1:
        return _usage(f"--jobs must be at least 1, got {args.jobs}")
    pols, perr = resolve_policies(args.policies, args.backend)
    for e in perr:
        print(f"error: {e}", file=sys.stderr)
    asked = bool(args.policies) or args.backend not in (None, "all")
    usable = []
    for pol in pols:
        ok, why = (available(pol.backend) if pol.backend == "memcg" else _qemu_available(pol))
        if ok:
            usable.append(pol)
        else:
            print(f"skip: {pol.backend} backend unavailable: {why}; run `make real-setup` "
                  f"({pol.name})", file=sys.stderr)
    if not usable:
        print("nothing to run", file=sys.stderr)
        return 2 if asked else 0
    cells, skipped = matrix.make_cells(usable, workloads, seeds, args.time_scale, args.max_wall)
    for sk in dict.fromkeys(skipped):
        print(f"skip: {sk}", file=sys.stderr)
    if not cells:
        print("nothing to run", file=sys.stderr)
        return 2
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    root = Path(args.out) if args.out else RESULTS
    from .. import bench
    out = bench.new_results_dir(root)
    from . import tcg
    meta = {"started": stamp, "argv": sys.argv[1:], "host_kernel": os.uname().release,
            "policies": {p.name: {"file": p.file, "sha256": p.sha256, "kernel": p.kernel,
                                  "models": p.model_label} for p in usable},
            "kernels": {p.name: matrix.kernel_id(p) for p in usable},
            "workloads": [w.name for w in workloads], "seeds": seeds,
            "time_scale": args.time_scale, "max_wall_s": args.max_wall, "skipped": skipped,
            "jobs": args.jobs or os.cpu_count(), "tcg": tcg.factors(),
            "max_wall_cap_s": MAX_WALL_CAP_S}
    _atomic_write(out / "meta.json", json.dumps(meta, indent=2, default=str) + "\n")
    with contextlib.suppress(OSError):
        bench.point_latest(root, out)
    t_all = time.monotonic()

    def log(rec):
        fk = rec.get("first_kill_s")
        print(f"{rec['policy']} {rec['workload']} seed {rec['seed']}: {rec['status']}"
              + (f" ({rec['error']})" if rec.get("error") else "")
              + (f", {rec.get('outcome')}" if rec.get("outcome") else "")
              + (f", first victim {rec['first_victim']} at {float(fk):.3f} s"
                 if fk is not None else ", no kill")
              + f", {rec.get('kills')} kills"
              + (", truncated" if rec.get("truncated") else "")
              + f" ({float(rec.get('wall_s') or 0):.1f} s wall)", file=sys.stderr)

    cache = Path(args.out) / "cache" if args.out else matrix.CACHE
    try:
        records = matrix.run_matrix(cells, jobs=args.jobs, cache_dir=cache, out_dir=out,
                                    progress=not args.no_progress, log=log)
    except KeyboardInterrupt:
        print("interrupted: finished runs are cached; the next call resumes", file=sys.stderr)
        return 130
    records = [r for r in records if r.get("status") != "skipped"]
    _write_records(out, records)
    failed = sum(1 for r in records if r.get("status") != "ok")
    print(_summary(records))
    print(f"\n{len(records)} runs ({failed} failed) in {time.monotonic() - t_all:.1f} s wall "
          f"-> {out}")
    if records and not args.no_report:
        _report(out, records, seeds)
    return 1 if failed else 0


def _qemu_available(pol) -> tuple[bool, str]:
    try:
        mod = _backend("qemu")
    except BackendUnavailable as e:
        return False, str(e)
    try:
        return mod.available(pol.kernel)
    except Exception as e:  # noqa: BLE001
        return False, f"{type(e).__name__}: {e}"


from .policies import parse_model_label as _parse_label  # noqa: E402


def simulate_models(labels, workloads, seeds, say=None, scales=None):
    """The simulated runs of the real policies' models (labels as ``RealPolicy.model_label``)
    on ``workloads`` x ``seeds``, each record named by its label, through the bench's matrix
    and cache (``results/cache``): a second call recomputes nothing.  A model that is not a
    simulated policy is one line and left out.  ``scales``: {workload: (time scale, time limit
    s)} -- the model then runs the plan the real runs ran (``workload.time_scaled``), its
    records under the workload's own name."""
    import pandas as pd

    from .. import bench, metrics, registry
    from .. import workload as W
    say = say or (lambda m: print(m, file=sys.stderr))
    found, _ = registry.discover(registry.POLICY_DIR)
    wfound, _ = W.load_dir(registry.WORKLOAD_DIR)
    pol, params = {}, {}
    for label in dict.fromkeys(labels):
        name, given = _parse_label(label)
        if name not in found:
            say(f"skip: model {name!r} not found among the simulated policies (policies/*.py)")
            continue
        cls = found[name]
        pol[label] = cls
        if given:
            params[label] = {k: type(cls.params[k])(v) if isinstance(cls.params.get(k), (int, float))
                             and not isinstance(cls.params.get(k), bool) else v
                             for k, v in given.items()}
    scales = scales or {}
    wl = {w: (W.time_scaled(wfound[w], *scales[w]) if w in scales else wfound[w])
          for w in workloads if w in wfound}
    if not pol or not wl:
        return pd.DataFrame(columns=metrics.COLUMNS)
    cells = bench.make_cells(pol, wl, list(seeds), [registry.POLICY_DIR], params=params)
    recs = bench.run_matrix(cells, cache_dir=registry.ROOT / "results" / "cache", progress=False)
    return pd.DataFrame(recs, columns=metrics.COLUMNS)


class _Panels:
    """The thrashing plot's runs (``report_real.plot_thrash``): a real run's series from its
    raw log (``record.thrash_series`` of the plan it ran), a model's run simulated again."""

    def __init__(self, out: Path):
        self.out = Path(out)

    def real(self, policy: str, workload: str, seed: int, scale: float):
        from types import SimpleNamespace

        from .. import registry
        from .. import workload as W
        from . import plan as P, record
        meta, _, runner_lines, kernel_lines = parse_raw_log(
            (raw_dir(self.out, policy, workload) / f"{seed}.log").read_text())
        found, _ = W.load_dir(registry.WORKLOAD_DIR)
        ser = record.thrash_series(P.compile_plan(found[workload], seed, scale),
                                   runner_lines, kernel_lines,
                                   scope_all=(meta or {}).get("kills_scope") == "all")
        return SimpleNamespace(thrash=ser, trace=[(t, "kill") for t in ser.pop("kills_us")])

    def sim(self, label: str, workload: str, seed: int):
        from .. import runner
        name, params = _parse_label(label)
        return runner.run_one(name, workload, seed, params, keep_kernel=True)[1]


# the models' seeds: the bench's 20 (seeds are not paired with the real ones, which draw other
# numbers, so the models' distributions are best known from as many runs as the matrix has)
MODEL_SEEDS = 20


def model_scales(real) -> dict:
    """{workload: (time scale, time limit s)} of the real runs (``real``: their records as a
    DataFrame): the most common scale of the workload's runs and their median wall bound,
    so that each model runs the plan its real policy ran, cut where the real runs were
    (``simulate_models``).  Workloads run at scale 1 with no bound are left out."""
    import pandas as pd
    out = {}
    for w, g in real.groupby("workload", sort=False):
        sc = pd.to_numeric(g.get("time_scale"), errors="coerce").dropna()
        if not len(sc):
            continue
        scale = float(sc.mode().iloc[0])
        wall = pd.to_numeric(g.loc[sc.index[sc == scale], "max_wall_s"]
                             if "max_wall_s" in g else pd.Series(dtype=float),
                             errors="coerce").dropna()
        limit = float(wall.median()) if len(wall) else None
        if scale != 1.0 or limit is not None:
            out[w] = (scale, limit)
    return out


def _report(out: Path, records: list, seeds: list):
    """``real_vs_sim.{md,csv}``, ``real_agreement.csv``, ``sim_models.csv`` and
    ``plots/real_vs_sim_<workload>.*`` in ``out``: each real policy beside its model on the
    same workloads, the model over :data:`MODEL_SEEDS` seeds and the real seeds (simulated
    through the bench's cache, which `make bench` fills; `make bench`'s report shows the same
    section from ``results/real/latest``)."""
    import pandas as pd

    from .. import report_real as RR
    real = pd.DataFrame(records, columns=ALL_COLUMNS)
    labels = [m for m in real["model"].dropna().unique()] if "model" in real else []
    if real["model"].isna().any() and real["real_policy_file"].isna().any():
        labels.append(RR.SIM_REFERENCE)                # records from before real policies
    sim = simulate_models(labels, list(dict.fromkeys(real.workload)),
                          sorted(set(range(MODEL_SEEDS)) | set(seeds)), scales=model_scales(real))
    _atomic_write(out / "sim_models.csv", sim.to_csv(index=False))
    tab, png = RR.write(out, real, sim, str(out), panels=_Panels(out))
    if png is not None:
        ag = tab.attrs.get("agreement")
        if ag is not None and len(ag):
            a, n = RR.agreement_share(ag)
            print(f"agreement: modal first victims agree in {a} of {n} (pair, workload) cells")
            if RR.parted_line(ag):
                print(RR.parted_line(ag).replace("`", ""))
            print(RR.display_agreement(ag).to_string(index=False))
        print(f"real vs simulated: {out / 'real_vs_sim.md'}, {png.parent}/real_vs_sim_*.png")


def cmd_real_setup(args) -> int:
    """The runner, every kernel and daemon the real policies name (fetched once per version),
    each kernel's overhead, and the TCG slowdown (once).  A policy whose package cannot be had
    is one line naming its file and key; the others are set up."""
    from . import build
    from . import policies as P
    try:
        path = build.vmreal_path()
        print(f"vmreal: {path}")
    except build.BuildError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    good, errors = P.discover()
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    rc = 1 if errors else 0
    try:
        mod = _backend("qemu")
    except BackendUnavailable as e:
        print(f"qemu: unavailable: {e}")
        mod = None
    if mod is not None:
        done = set()
        for pol in sorted(good.values(), key=lambda p: (p.kernel, p.name)):
            if pol.backend != "qemu":
                continue
            extra = ()
            try:
                if pol.daemon is not None:
                    extra = mod.policy_cpio(pol, 0)[1:]
                    print(f"qemu: {pol.name}: daemon {pol.daemon.package} staged")
                if (pol.kernel, pol.cmdline, extra) not in done:
                    mod.setup(package=pol.kernel, cmdline=pol.cmdline, extra=extra)
                    done.add((pol.kernel, pol.cmdline, extra))
            except Exception as e:  # noqa: BLE001 - one policy's package must not stop the rest
                msg = str(e)
                if not msg.startswith(pol.file):
                    msg = f"{pol.file}: kernel: {msg}"
                print(f"error: {msg}", file=sys.stderr)
                rc = 1
        try:
            from . import tcg
            if tcg.factors() is None and mod.kernel_info() is not None:
                tcg.measure()
            f = tcg.factors()
            if f:
                print(f"tcg: CPU loop x{f['cpu_factor']}, page faults x{f['fault_factor']} "
                      f"(VM / host, {f['host_cpu']})")
        except Exception as e:  # noqa: BLE001
            print(f"tcg: measurement failed: {e}", file=sys.stderr)
            rc = 1
    for b in BACKENDS:
        ok, why = available(b)
        print(f"{b}: {'available' if ok else 'unavailable'}: {why}")
    return rc


def list_lines() -> list[str]:
    """``python -m harness list``'s real policies: name, backend, kernel, model, description."""
    from . import policies as P
    good, errors = P.discover()
    width = max((len(n) for n in good), default=0)
    out = [f"  {n:<{width}}  {p.description}  [kernel={p.kernel} models={p.model_label or '-'}"
           + (f" daemon={p.daemon.package}" if p.daemon else "") + "]"
           for n, p in sorted(good.items())]
    return out, errors


def add_parsers(sub):
    """The ``real`` and ``real-setup`` subcommands (called by harness/__main__.py)."""
    r = sub.add_parser("real", help="run workloads as real processes on a real kernel "
                                    "(qemu VM or a memory cgroup) and record them")
    r.add_argument("--workload", help="a workload name (a sweep's base name runs every point)")
    r.add_argument("--workloads", help="comma-separated workload names")
    r.add_argument("--policies", help="comma-separated real policies (policies/real/*.toml; "
                                      "default: every one)")
    r.add_argument("--backend", choices=(*BACKENDS, "all"), default=None,
                   help="instead of --policies: qemu = real-6.1, memcg = real-memcg, all = both")
    r.add_argument("--jobs", type=int, default=None,
                   help="runs at once (default: the number of cores; each VM has 1 vCPU)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--no-report", action="store_true", help="no real_vs_sim report")
    r.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    r.add_argument("--seed-list", help="explicit seeds, e.g. 0,3,5-9")
    r.add_argument("--out", help="results root (default results/real/)")
    r.add_argument("--time-scale", type=float, default=None,
                   help=f"real seconds per simulated second of CPU, sleep and start time "
                        f"(default {DEFAULT_TIME_SCALE} on memcg)")
    r.add_argument("--from-raw", metavar="DIR",
                   help="run nothing: make the records of the results folder DIR again from "
                        "its raw logs with today's record rules, into a new folder")
    r.add_argument("--max-wall", type=float, default=None,
                   help=f"wall seconds a run may take (default: the workload's time limit x "
                        f"scale, at most {MAX_WALL_CAP_S:g} s)")
    r.set_defaults(func=cmd_real)
    s = sub.add_parser("real-setup", help="build the real runner and prepare the backends")
    s.set_defaults(func=cmd_real_setup)

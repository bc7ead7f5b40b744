"""Command line: ``python -m harness {run,list,quick}`` (also installed as ``vmbench``).

* ``run``   one cell (policy, workload, seed): a summary, or the record as JSON; optionally its
  event trace (JSON lines) and its timeline PNG.
* ``list``  the policies found in ``policies/`` and the workloads in ``workloads/``.
* ``quick`` a small matrix (a few seeds) in a process pool, summarised per workload x policy.
* ``check`` the contract suite (:mod:`harness.contract`) on the policies of one file.

``--policy-dir DIR`` (repeatable) on run, list, quick, bench and check scans DIR for policy
files after ``policies/``.

A name that does not exist, a broken workload file or a policy file that fails to load is one
line on stderr and exit status 2, never a traceback.
"""
from __future__ import annotations

import argparse
import ast
import json
import math
import os
import sys
import time
from collections import Counter
from pathlib import Path

from . import metrics, registry, runner
from . import workload as W

QUICK_POLICIES = ["mainline", "aa", "morton", "rmap", "mainline_akpm_fix"]
QUICK_WORKLOADS = ["morton-make-usemem", "morton-swap", "dstate-victim"]

USAGE_ERRORS = (runner.UnknownWorkload, W.WorkloadError, registry.PolicyLoadError)


class UsageError(Exception):
    """A bad name or value on the command line: one line on stderr, exit status 2."""


# ---------------------------------------------------------------------------- helpers
def parse_param(text: str):
    """``key=value``; the value is a Python literal if it parses as one, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    return key.strip(), value


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _dirs(args) -> list[Path]:
    """``policies/`` and the ``--policy-dir`` folders."""
    return registry.policy_dirs(getattr(args, "policy_dir", None))


def _cut(text: str, n: int = 240) -> str:
    """One line of at most ``n`` characters."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[:n - 3] + "..."


def _same_shape(default, value) -> bool:
    """``value`` has the type of the parameter's default (an int may stand for a float; a
    tuple or list has the default's length and, element by element, its types)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, (tuple, list)):
        return (isinstance(value, (tuple, list)) and len(value) == len(default)
                and all(_same_shape(d, v) for d, v in zip(default, value)))
    if default is None:
        return True
    return isinstance(value, type(default))


def _check_params(policy_name: str, params: dict, dirs=None):
    """Every ``--param`` names a parameter of the policy and has its default's type; the
    policy is constructible with them."""
    cls = registry.get_policy(policy_name, dirs)
    unknown = sorted(set(params) - set(cls.params))
    if unknown:
        known = ", ".join(f"{k}={v!r}" for k, v in cls.params.items()) or "none"
        raise UsageError(_cut(f"policy {policy_name!r} has no parameter(s) {', '.join(unknown)}; "
                              f"known: {known}", 290))
    for key, value in params.items():
        default = cls.params[key]
        if not _same_shape(default, value):
            raise UsageError(_cut(f"--param {key}={value!r}: {policy_name} expects a value like "
                                  f"its default {default!r}", 290))
    try:
        cls(**params)
    except Exception as e:  # noqa: BLE001 - the policy refuses the values: one line
        raise UsageError(_cut(f"policy {policy_name!r} does not take {params}: "
                              f"{type(e).__name__}: {e}", 290)) from None


def _fmt(x, unit=" s", nd=3):
    return "-" if x is None else f"{x:.{nd}f}{unit}"


def _victim_names(k) -> str:
    """Who died of memory, as ``name xN`` in order of the first hit (the set ``metrics`` counts)."""
    seen, names = set(), Counter()
    for ev in k.trace:
        kind = ev[1]
        hit = (kind in ("kill", "fault_kill", "enomem")
               or (kind == "exit" and ev[5] in ("oom-kill", "fault-kill", "enomem")))
        if hit and ev[2] not in seen:
            seen.add(ev[2])
            names[ev[3]] += 1
    return ", ".join(f"{n} x{c}" if c > 1 else n for n, c in names.items())


def print_summary(rec: dict, k, out=sys.stdout):
    sim, wall = rec["sim_s"] or 0.0, rec["wall_s"] or 0.0
    victims = _victim_names(k)
    rows = [
        ("cell", f"{rec['policy']} / {rec['workload']} / seed {rec['seed']}"),
        ("outcome", rec["outcome"] + (f" (workload goal reached at {rec['completion_s']:.3f} s)"
                                      if rec["workload_completed"] else "")),
        ("reclaim onset", _fmt(rec["reclaim_onset_s"])),
        ("pressure onset", _fmt(rec["pressure_onset_s"])),
        ("first OOM kill", _fmt(rec["first_kill_s"])
         + (f"  ({rec['first_victim']})" if rec["first_victim"] else "")),
        ("time to kill", _fmt(rec["time_to_kill_s"])),
        ("longest stall", _fmt(rec["max_stall_s"])),
        ("OOM kills", f"{rec['kills']}  (repeat {rec['repeat_kills']}, ineffective "
                      f"{rec['ineffective_kills']}, extra {rec['extra_kills']})"),
        ("fault kills", str(rec["fault_kills"])),
        ("alloc failures", str(rec["alloc_failures"])),
        ("victims", f"{rec['victims']}" + (f"  ({victims})" if victims else "")),
        ("wrong victims", f"{rec['wrong_victims']}  (protected {rec['protected_victims']})"),
        ("simulated", f"{sim:.3f} s, {rec['events']} events"),
        ("wall", f"{wall:.3f} s, {sim / wall:.0f} sim-s per wall-s" if wall > 0 else f"{wall:.3f} s"),
        ("trace sha256", rec["trace_sha256"]),
    ]
    width = max(len(r[0]) for r in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}", file=out)


# ---------------------------------------------------------------------------- run
def cmd_run(args) -> int:
    from .bench import RunTimeout, wall_limit
    from .errors import where_raised
    params = dict(args.param or [])
    _check_params(args.policy, params, _dirs(args))
    w = runner.resolve_workload(args.workload)
    try:
        with wall_limit(args.timeout * 1.2 + 1):
            rec, k = runner.run_one(args.policy, w, args.seed, params or None, debug=args.debug,
                                    keep_kernel=True, policy_dir=_dirs(args),
                                    wall_timeout_s=args.timeout)
    except RunTimeout as e:
        print(f"timeout: {e} (--timeout {args.timeout:g})", file=sys.stderr)
        return 1
    except MemoryError:
        print("memory: the run ran out of memory", file=sys.stderr)
        return 1
    except Exception as e:  # noqa: BLE001 - a broken policy (or parameter): one line, where
        print(f"error: {_cut(f'{type(e).__name__}: {e}')}{where_raised(e)}", file=sys.stderr)
        return 1
    if rec["status"] != "ok":                  # invalid: it broke a law of the machine
        if args.json:
            print(json.dumps(rec, default=str))
        print(f"{rec['status']}: {rec['error']}", file=sys.stderr)
        return 1
    if args.trace:
        runner.write_trace(k, args.trace)
    if args.plot:
        from . import plot
        plot.timeline(k, args.plot, title=f"{rec['policy']} / {rec['workload']} / "
                                          f"seed {rec['seed']} / {rec['outcome']}")
    if args.json:
        print(json.dumps(rec, default=str))
    else:
        print_summary(rec, k)
        if args.trace:
            print(f"trace -> {args.trace}")
        if args.plot:
            print(f"plot  -> {args.plot}")
    return 0


# ---------------------------------------------------------------------------- list
def cmd_list(args) -> int:
    policies, perr = registry.discover(*_dirs(args))
    workloads, werr = W.load_dir(registry.WORKLOAD_DIR)
    print("policies:")
    width = max((len(n) for n in policies), default=0)
    for name in sorted(policies):
        cls = policies[name]
        params = " ".join(f"{k}={v!r}" for k, v in cls.params.items())
        print(f"  {name:<{width}}  {cls.description}" + (f"  [{params}]" if params else ""))
    print("workloads:")
    width = max((len(n) for n in workloads), default=0)
    for name in sorted(workloads):
        print(f"  {name:<{width}}  {workloads[name].description}")
    from .real import list_lines                  # real policies: policies/real/*.toml
    rlines, rerr = list_lines()
    print("real policies:", *rlines, sep="\n")
    for e in perr + werr + rerr:
        print(f"error: {e}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------- quick
def cmd_quick(args) -> int:
    """A few seeds of a few policies x workloads: :func:`harness.bench.run_matrix` (no cache,
    nothing written), summarised by :func:`harness.report.aggregate`."""
    import pandas as pd

    from . import bench as B
    from . import report as R

    dirs = _dirs(args)
    found, perr = registry.discover(*dirs)
    for e in perr:
        print(f"warning: {e}", file=sys.stderr)
    policies = _names("--policies", args.policies) or QUICK_POLICIES   # --seeds, --jobs: argparse
    for p in policies:
        if p not in found:
            registry.get_policy(p, dirs)    # raises PolicyLoadError with the known names
    wl = {}
    for name in _names("--workloads", args.workloads) or QUICK_WORKLOADS:
        w = runner.resolve_workload(name)
        wl[w.name] = w
    cells = B.make_cells({p: found[p] for p in policies}, wl, range(args.seeds), dirs)
    t0 = time.perf_counter()
    records = B.run_matrix(cells, jobs=args.jobs)
    wall = time.perf_counter() - t0
    df = pd.DataFrame(records, columns=metrics.COLUMNS)
    info = {n: {"roles": dict(w.roles), "question": w.raw.get("question", "")}
            for n, w in wl.items()}
    table = R.brief_table(R.aggregate(df, list(wl), info))
    with pd.option_context("display.width", 250, "display.max_columns", None,
                           "display.max_colwidth", 40):
        print(table.to_string())
    n_jobs = min(args.jobs or os.cpu_count() or 1, len(cells))
    print(f"\n{len(cells)} runs ({len(policies)} policies x {len(wl)} workloads x "
          f"{args.seeds} seeds) in {wall:.1f} s wall on {n_jobs} worker(s)")
    errors = df[df.status != "ok"]
    for _, r in errors.iterrows():
        print(f"error: {r.policy} / {r.workload} / seed {r.seed}: {r.error}", file=sys.stderr)
    return 1 if len(errors) else 0


# ---------------------------------------------------------------------------- bench
MAX_SEEDS = 10_000          # seeds of one matrix (each one a run per cell)
MAX_SEED = 2**31 - 1


def _seed_list(text: str) -> list[int]:
    """``0,3,5-9``: seeds >= 0, ranges ``a-b`` with a <= b, at most ``MAX_SEEDS`` in all, each
    once (in the order given)."""
    out = []
    for part in _csv(text):
        a, sep, b = part.partition("-")
        try:
            lo = int(a)
            hi = int(b) if sep else lo
        except ValueError:
            raise UsageError(_cut(f"--seed-list: {part!r} is not a seed or a range such as 5-9 "
                                  "(seeds are integers >= 0)")) from None
        if not 0 <= lo <= hi <= MAX_SEED:
            raise UsageError(_cut(f"--seed-list: {part!r}: seeds go from 0 to {MAX_SEED}, a "
                                  "range from low to high"))
        if hi - lo + 1 + len(out) > MAX_SEEDS:
            raise UsageError(f"--seed-list: more than {MAX_SEEDS} seeds")
        out.extend(range(lo, hi + 1))
    return list(dict.fromkeys(out))


def _names(flag: str, text: str | None) -> list[str] | None:
    """A comma-separated list option; given but empty (``--policies ""``) is an error."""
    if text is None:
        return None
    names = _csv(text)
    if not names:
        raise UsageError(f"{flag} {text!r} names nothing; give names separated by commas, or "
                         f"leave {flag} out for all")
    return list(dict.fromkeys(names))


def _check_baseline(baseline, policies, dirs):
    """--baseline names a policy of the matrix: one line otherwise."""
    if not baseline:
        return
    if policies is not None:
        if baseline not in policies:
            raise UsageError(f"--baseline {baseline} is not one of --policies "
                             f"{','.join(policies)}; add it or choose one of them")
        return
    registry.get_policy(baseline, dirs)      # raises PolicyLoadError with the known names


def _print_headline(out: Path, secs: float | None = None) -> None:
    """The end of a bench: a line per workload (who got stuck, whose first victim was
    right, the fastest median time to kill) and where the report is."""
    import pandas as pd

    from . import report as R
    agg_csv = out / "aggregates.csv"
    if agg_csv.exists():
        agg = pd.read_csv(agg_csv, index_col=[0, 1], keep_default_na=True)
        lines = R.headline(agg)
        if lines:
            print("\n".join(lines))
    took = f"written in {secs:.0f} s; " if secs is not None else ""
    print(f"\nreport: {out / 'index.html'}  ({took}summary.md and plots/ beside it)")


def cmd_bench(args) -> int:
    from . import bench as B
    seeds = _seed_list(args.seed_list) if args.seed_list is not None else range(args.seeds)
    if not seeds:
        raise UsageError("no seeds: give --seeds N (N >= 1) or --seed-list 0-19")
    if args.scheduler and args.backend != "dask":
        raise UsageError("--scheduler goes with --backend dask")
    policies = _names("--policies", args.policies)
    if args.no_report and args.baseline:
        raise UsageError("--baseline goes with a report (drop --no-report)")
    _check_baseline(args.baseline, policies, _dirs(args))
    res = B.bench(policies=policies,
                  workloads=_names("--workloads", args.workloads),
                  seeds=seeds, jobs=args.jobs, backend=args.backend,
                  scheduler=args.scheduler, out_root=args.out,
                  use_cache=not args.no_cache, timeout_s=args.timeout,
                  report=not args.no_report, log=lambda m: print(m, file=sys.stderr),
                  policy_dirs=args.policy_dir or (), memory_mb=args.memory_mb)
    if not args.no_report:
        from . import results
        t0 = time.perf_counter()
        results.write(res.out, res.df, res.meta, res.out_root, plot_cache=res.plot_cache,
                      timeline_views=res.views, n_jobs=args.jobs, baseline=args.baseline)
        if not args.quiet:
            _print_headline(res.out, time.perf_counter() - t0)
    sys.stdout.flush()
    # the last line: the runs by status (exit status 0 only when every one is ok)
    print(f"{len(res.df)} runs: {B.status_counts(res.df.status)}", file=sys.stderr)
    return 1 if res.failed else 0


def cmd_check(args) -> int:
    """The contract suite on the policies of each ``.py`` file named, strict validation of each
    ``.toml`` workload file; exit 1 if anything fails."""
    from . import isolate
    failed = 0
    for f in args.files:
        if Path(f).suffix == ".toml":           # a workload file: strict validation
            try:
                ws = W.load_all(Path(f))
            except W.WorkloadError as e:
                print(f"error: {e}", file=sys.stderr)
                failed += 1
                continue
            print(f"{f}: ok, " + ", ".join(f"{w.name} ({w.machine.ram_mb} MB, "
                                           f"{len(w.tasks)} task specs)" for w in ws))
            continue
        t0 = time.perf_counter()
        errors, results = isolate.check_file(Path(f), args.policy_dir or (), args.timeout)
        for e in errors:
            print(f"error: {e}", file=sys.stderr)
        failed += len(errors)
        if not errors and not results:
            print(f"error: {f}: defines no policy", file=sys.stderr)
            failed += 1
        for name, checks in results:
            bad = [c for c in checks if not c[1]]
            print(f"{name} ({f}): {len(checks) - len(bad)}/{len(checks)} checks passed")
            width = max(len(c[0]) for c in checks)
            for check, ok, msg in checks:
                print(f"  {'ok  ' if ok else 'FAIL'} {check:<{width}}  {msg}")
            failed += len(bad)
        print(f"({time.perf_counter() - t0:.1f} s)")
    return 1 if failed else 0


def cmd_report(args) -> int:
    import pandas as pd

    from . import results
    d = Path(args.dir)
    if not (d / "runs.csv").exists():
        raise UsageError(f"{d}: no runs.csv here (give a results folder, e.g. results/latest)")
    meta = json.loads((d / "meta.json").read_text()) if (d / "meta.json").exists() else {}
    runs = pd.read_csv(d / "runs.csv")
    present = sorted(set(runs["policy"].astype(str)))
    if args.baseline and args.baseline not in present:
        raise UsageError(f"--baseline {args.baseline} was not run in {d}; its policies: "
                         f"{', '.join(present)}")
    t0 = time.perf_counter()
    paths = results.write(d, runs, meta, d.resolve().parent, baseline=args.baseline)
    # results/real/latest beside the folder is shown when there is one
    print(f"{len(paths)} files written in {d}")
    _print_headline(d, time.perf_counter() - t0)
    return 0


# ---------------------------------------------------------------------------- describe
def cmd_describe(args) -> int:
    """A workload name, or a file (every point of a sweep file)."""
    p = Path(args.workload)
    if p.suffix == ".toml" and p.exists():
        ws = W.load_all(p)
    else:
        good, _ = W.load_dir(registry.WORKLOAD_DIR)
        ws = [good[n] for n in sorted(good) if n == args.workload or
              (good[n].sweep_point and n.startswith(args.workload + "."))]
        if not ws:
            ws = [runner.resolve_workload(args.workload)]      # raises with the known names
    print("\n\n".join(W.describe(w) for w in ws))
    return 0


# ---------------------------------------------------------------------------- perf
def cmd_perf_summary(args) -> int:
    """Simulated seconds per wall second and runs per minute from a pytest-benchmark JSON."""
    import json
    with open(args.file) as f:
        data = json.load(f)
    print(f"{'benchmark':42} {'median wall s':>13} {'sim s':>8} {'sim s / wall s':>15} {'runs/min':>9}")
    per_min = {}
    for b in data["benchmarks"]:
        med = b["stats"]["median"]
        info = b.get("extra_info", {})
        sim = info.get("sim_s")
        runs = info.get("runs", 1)
        rate = f"{sim / med:15.0f}" if sim else f"{'':15}"
        sim_txt = f"{sim:8.1f}" if sim else f"{'':8}"
        print(f"{b['name']:42} {med:13.4f} {sim_txt} {rate} {60 * runs / med:9.0f}")
        if "jobs" in info:
            per_min[info["jobs"]] = 60 * runs / med
            print(f"{'':42} jobs {info['jobs']}: {runs} runs, peak worker RSS "
                  f"{info.get('peak_worker_rss_mb')} MB")
    if 1 in per_min and 2 in per_min:
        print(f"parallel efficiency on 2 workers: {per_min[2] / (2 * per_min[1]):.0%}")
    return 0


# ---------------------------------------------------------------------------- main
class _Parser(argparse.ArgumentParser):
    """A usage error is one line (``prog: error: what; see --help``), exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {_cut(message, 240)} (see {self.prog} --help)\n")


def _number(lo, hi, kind=float, what="a number"):
    """An argparse type: ``kind`` in [lo, hi], finite."""
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if isinstance(v, float) and not math.isfinite(v) or not lo <= v <= hi:
            raise argparse.ArgumentTypeError(f"expected {what} from {lo:g} to {hi:g}, got {text!r}")
        return v
    return parse


def _folder(text):
    p = Path(text)
    if not p.is_dir():
        raise argparse.ArgumentTypeError(f"{text!r} is not a folder")
    return p


SECONDS = _number(0.001, 86_400.0, float, "wall seconds")
COUNT = _number(1, 256, int, "a whole number")


def build_parser() -> argparse.ArgumentParser:
    from .bench import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_S
    ap = _Parser(prog="python -m harness",
                                 description="vmbench: Linux 2.4 VM / OOM-killer policies, simulated")
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{run,list,quick,bench,check,report,describe,perf-summary,real,real-setup}")

    r = sub.add_parser("run", help="run one cell and print its summary or record")
    r.add_argument("--policy", required=True, help="policy name (see `list`)")
    r.add_argument("--workload", required=True, help="workload name or path to a .toml file")
    r.add_argument("--seed", type=_number(0, MAX_SEED, int, "a seed"), default=0)
    r.add_argument("--param", action="append", type=parse_param, metavar="KEY=VALUE",
                   help="policy parameter (Python literal, else string); repeatable")
    r.add_argument("--json", action="store_true", help="print the record as one JSON object")
    r.add_argument("--trace", metavar="FILE", help="write the event trace as JSON lines")
    r.add_argument("--plot", metavar="FILE", help="write the run's timeline as a PNG")
    r.add_argument("--debug", action="store_true", help="check page conservation after every step")
    r.add_argument("--timeout", type=SECONDS, default=DEFAULT_TIMEOUT_S,
                   help=f"wall seconds the run may take (default {DEFAULT_TIMEOUT_S:g})")
    r.set_defaults(func=cmd_run)
    pdir_help = "another folder of policy files, scanned after policies/ (repeatable)"
    r.add_argument("--policy-dir", action="append", type=_folder, metavar="DIR", help=pdir_help)

    li = sub.add_parser("list", help="list policies and workloads")
    li.set_defaults(func=cmd_list)
    li.add_argument("--policy-dir", action="append", type=_folder, metavar="DIR", help=pdir_help)

    q = sub.add_parser("quick", help="a few seeds of a few policies x workloads, in parallel")
    q.add_argument("--seeds", type=_number(1, MAX_SEEDS, int, "a number of seeds"), default=3,
                   help="seeds 0..N-1 (default 3)")
    q.add_argument("--policies", help=f"comma-separated (default {','.join(QUICK_POLICIES)})")
    q.add_argument("--workloads", help=f"comma-separated (default {','.join(QUICK_WORKLOADS)})")
    q.add_argument("--jobs", type=COUNT, default=None, help="worker processes (default: all CPUs)")
    q.set_defaults(func=cmd_quick)
    q.add_argument("--policy-dir", action="append", type=_folder, metavar="DIR", help=pdir_help)

    b = sub.add_parser("bench", help="the policy x workload x seed matrix, cached, with a report")
    b.add_argument("--policies", help="comma-separated (default: every policy in policies/)")
    b.add_argument("--workloads", help="comma-separated (default: every workload in workloads/)")
    b.add_argument("--seeds", type=_number(1, MAX_SEEDS, int, "a number of seeds"), default=20,
                   help="seeds 0..N-1 (default 20)")
    b.add_argument("--seed-list", help="explicit seeds, e.g. 0,3,5-9")
    b.add_argument("--jobs", type=COUNT, default=None, help="worker processes (default: all CPUs)")
    b.add_argument("--backend", choices=("process", "loky", "dask"), default="process",
                   help="process: a pool of worker processes on this machine (loky: the same, "
                        "its former name); dask: dask.distributed")
    b.add_argument("--scheduler", help="dask scheduler address, e.g. tcp://10.0.0.5:8786 "
                                       "(default with --backend dask: a LocalCluster on 127.0.0.1)")
    b.add_argument("--out", type=Path, default=None, help="results root (default results/)")
    b.add_argument("--no-cache", action="store_true", help="recompute every run")
    b.add_argument("--timeout", type=SECONDS, default=DEFAULT_TIMEOUT_S,
                   help=f"wall seconds per run (default {DEFAULT_TIMEOUT_S:g})")
    b.add_argument("--memory-mb", type=_number(0, 2**20, int, "megabytes"),
                   default=DEFAULT_MEMORY_MB,
                   help=f"address space of each worker process, MB (default {DEFAULT_MEMORY_MB}; "
                        "0: no limit); a run over it is status memory")
    b.add_argument("--no-report", action="store_true", help="runs.csv and meta.json only")
    b.add_argument("--quiet", action="store_true", help="do not print the headline at the end")
    b.add_argument("--baseline", metavar="POLICY", help="the policy the report compares every "
                   "other with (default: mainline when it was run, else the first policy)")
    b.set_defaults(func=cmd_bench)
    b.add_argument("--policy-dir", action="append", type=_folder, metavar="DIR", help=pdir_help)

    c = sub.add_parser("check", help="the contract suite on a policy file, or validate a workload file")
    c.add_argument("files", nargs="+", metavar="FILE", help="policy file(s), e.g. policies/aa.py")
    c.add_argument("--policy-dir", action="append", type=_folder, metavar="DIR", help=pdir_help)
    c.add_argument("--timeout", type=SECONDS, default=120.0,
                   help="wall seconds each part of the suite may take, in its own process "
                        "(default 120)")
    c.set_defaults(func=cmd_check)

    rp = sub.add_parser("report", help="(re)write summary.md, index.html and plots of a results folder")
    rp.add_argument("dir", nargs="?", default=str(registry.ROOT / "results" / "latest"))
    rp.add_argument("--baseline", metavar="POLICY", help="the policy the report compares every "
                    "other with (default: mainline when it was run, else the first policy)")
    rp.set_defaults(func=cmd_report)

    d = sub.add_parser("describe", help="what a workload is: machine, zones, tasks, oracle")
    d.add_argument("workload", help="a workload name, a sweep's base name, or a .toml file")
    d.set_defaults(func=cmd_describe)

    pf = sub.add_parser("perf-summary", help="summarise a pytest-benchmark JSON (make perf)")
    pf.add_argument("file")
    pf.set_defaults(func=cmd_perf_summary)

    from . import real                     # `real` and `real-setup`: harness/real/__init__.py
    real.add_parsers(sub)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rc = args.func(args)
        sys.stdout.flush()
        return rc
    except (UsageError, *USAGE_ERRORS) as e:
        print(f"error: {_cut(e, 290)}", file=sys.stderr)
        return 2
    except Exception as e:
        from . import bench as B
        if isinstance(e, (B.OutputError, B.SchedulerError)):
            print(f"error: {_cut(e, 290)}", file=sys.stderr)
            return 2
        if type(e).__name__ == "EmptyDataError":      # pandas: `report` on an empty runs.csv
            print(f"error: {getattr(args, 'dir', 'the results')}: runs.csv is empty (no runs "
                  "to report; run a bench first)", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:                 # `... | head`: stop quietly, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())

"""The matrix: every policy x every workload x many seeds, in parallel, cached, with a report.

Each run's record is written atomically to its own file in the cache (``results/cache/``),
named by a key that hashes everything the result depends on: the engine's sources, the policy's
file (and the policy files it inherits from), its parameters, the workload's tables (its file
and the one it extends, resolved: :func:`harness.workload.sim_hash`) and the seed.  Two cells
with the same key -- a sweep point that equals its base workload -- are one run, recorded
under each name.  A finished run is never computed twice; an interrupted matrix (Ctrl-C,
``kill -9``) loses nothing that finished and resumes where it stopped.  A run that raises, or
exceeds the per-run wall-time limit, becomes a record with ``status`` error / timeout and its
message; the rest of the matrix completes.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
import os
import platform
import resource
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from . import metrics, registry, runner
from . import workload as W
from .engine import RunTimeout

# the sources that decide a run's result; bench/report/plot/CLI changes keep the cache valid
ENGINE_SOURCES = ("engine.py", "mm.py", "blocks.py", "policy.py", "machine.py", "workload.py",
                  "metrics.py", "runner.py", "registry.py")
DEFAULT_TIMEOUT_S = 300.0


def _sha(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p)
        h.update(b"\0")
    return h.hexdigest()


def engine_hash() -> str:
    here = Path(__file__).resolve().parent
    return _sha(*(p.encode() + (here / p).read_bytes() for p in ENGINE_SOURCES))


def policy_hash(cls, policy_dir) -> str:
    """The policy's own file and every file in ``policy_dir`` (a folder or a list of them) its
    classes come from."""
    dirs = [Path(d).resolve() for d in ([policy_dir] if isinstance(policy_dir, (str, Path))
                                        else policy_dir)]
    files = []
    for c in inspect.getmro(cls):
        try:
            f = Path(inspect.getsourcefile(c)).resolve()
        except TypeError:
            continue
        if f.parent in dirs and f not in files:
            files.append(f)
    return _sha(*(f.name.encode() + f.read_bytes() for f in sorted(files)))


def workload_hash(path: Path) -> str:
    """The workload file and the chain of files it ``extends``."""
    parts, seen = [], set()
    p = Path(path).resolve()
    while p not in seen and p.exists():
        seen.add(p)
        text = p.read_bytes()
        parts.append(p.name.encode() + text)
        import tomllib
        base = tomllib.loads(text.decode()).get("extends")
        if not base:
            break
        p = p.parent / f"{base}.toml"
    return _sha(*parts)


@dataclass(frozen=True)
class Cell:
    """One run, as plain picklable data."""

    policy: str
    workload: str
    workload_path: str
    seed: int
    policy_dir: str
    key: str
    timeline: bool = False      # the report draws this run: send its RunView back (not in the key)
    wkey: str = ""              # workload_hash of the workload's files (to load it once)


def _params_blob(cls) -> bytes:
    return json.dumps(cls.params, sort_keys=True, default=repr).encode()


def make_cells(policies: dict, workloads: dict, seeds, policy_dir,
               timeline_seed=None) -> list[Cell]:
    """``policy_dir``: the scanned folder(s); each cell names the folder of its policy's file.
    The cells of ``timeline_seed`` are marked ``timeline`` (see :func:`run_cell`)."""
    eng = engine_hash()
    cells = []
    for wname, w in workloads.items():
        wh = workload_hash(Path(w.path))
        sh = W.sim_hash(w)
        for pname, cls in policies.items():
            ph = policy_hash(cls, policy_dir)
            for s in seeds:
                key = _sha(eng.encode(), ph.encode(), _params_blob(cls), sh.encode(),
                           pname.encode(), str(s).encode())
                cells.append(Cell(pname, wname, w.path, s,
                                  str(Path(registry.policy_file(cls)).parent), key,
                                  timeline=s == timeline_seed, wkey=wh))
    return cells


# ---------------------------------------------------------------------------- one run
def _cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.json"


def _write_atomic(path: Path, text: str):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _sweep_stale_tmp(cache_dir: Path) -> int:
    """Remove the temporary files of cache writes whose process is gone (a bench killed with
    ``kill -9`` in the middle of :func:`_write_atomic`): never a result, only litter.  A live
    writer's files (another bench on the same cache) are left alone.  Returns how many."""
    n = 0
    for f in Path(cache_dir).glob("??/.*.tmp"):
        try:
            pid = int(f.name.split(".")[-3])
        except (ValueError, IndexError):
            continue
        try:
            os.kill(pid, 0)
            continue                       # its writer is alive
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        try:
            f.unlink()
            n += 1
        except OSError:
            pass
    return n


class _Alarm(Exception):
    pass


def _on_alarm(signum, frame):
    raise _Alarm()


_WORKLOADS: dict = {}


def _load_workload(cell: Cell):
    """``W.load``, remembered per process by the hash of the workload's files (a run reads its
    workload and never changes it)."""
    if not cell.wkey:
        return W.load(cell.workload_path, cell.workload)
    key = (cell.workload_path, cell.workload, cell.wkey)
    w = _WORKLOADS.get(key)
    if w is None:
        if len(_WORKLOADS) > 256:
            _WORKLOADS.clear()
        w = _WORKLOADS[key] = W.load(cell.workload_path, cell.workload)
    return w


def run_cell(cell: Cell, cache_dir: str | None, timeout_s: float) -> dict:
    """Run one cell in a worker (or read it back); never raises.  The record gets private
    fields (``_cached``, ``_key``, ``_rss_mb``, and for a computed ``timeline`` cell
    ``_timeline``: its :class:`harness.runner.RunView`) that the caller strips."""
    if cache_dir:
        path = _cache_path(Path(cache_dir), cell.key)
        if path.exists():
            rec = json.loads(path.read_text())
            rec["workload"] = cell.workload       # (the run may have been made under another name)
            rec["_cached"] = True
            rec["_key"] = cell.key
            return rec
    use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    old = None
    try:
        if use_alarm:       # a policy stuck in plain Python code, which the engine cannot see
            old = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, timeout_s * 1.2 + 1)
        w = _load_workload(cell)
        rec, k = runner.run_one(cell.policy, w, cell.seed, policy_dir=Path(cell.policy_dir),
                                wall_timeout_s=timeout_s, keep_kernel=True)
        view = runner.RunView(k, rec["outcome"]) if cell.timeline else None
        del k
    except (RunTimeout, _Alarm) as e:
        rec = _failed(cell, "timeout", str(e) or f"run exceeded {timeout_s:g} s of wall time")
    except Exception as e:  # noqa: BLE001 - a broken policy must not sink the matrix
        tb = traceback.extract_tb(e.__traceback__)
        where = next((f"{fr.filename}:{fr.lineno}" for fr in reversed(tb)
                      if "/policies/" in fr.filename), f"{tb[-1].filename}:{tb[-1].lineno}" if tb else "")
        rec = _failed(cell, "error", f"{type(e).__name__}: {e} ({where})")
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    if cache_dir and rec["status"] == "ok":
        _write_atomic(_cache_path(Path(cache_dir), cell.key), json.dumps(rec))
    rec["_cached"] = False
    rec["_key"] = cell.key
    rec["_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if cell.timeline and rec["status"] == "ok":
        rec["_timeline"] = view
    return rec


def _failed(cell: Cell, status: str, msg: str) -> dict:
    rec = {c: None for c in metrics.COLUMNS}
    rec.update(policy=cell.policy, workload=cell.workload, seed=cell.seed, status=status, error=msg)
    return rec


# ---------------------------------------------------------------------------- the matrix
def _git(*args) -> str:
    try:
        return subprocess.run(["git", *args], cwd=registry.ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def provenance(policies, workloads, seeds, policy_dir) -> dict:
    from importlib import metadata
    pkgs = {}
    for name in ("pandas", "matplotlib", "joblib", "tqdm", "numpy", "distributed", "dask"):
        try:
            pkgs[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "created_utc": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain")),
        "python": platform.python_version(),
        "packages": pkgs,
        "cpu": cpu, "cpus": os.cpu_count(), "host": platform.node(),
        "engine_hash": engine_hash(),
        "matrix": {"policies": sorted(policies), "workloads": sorted(workloads),
                   "seeds": list(seeds)},
        "policy_files": {n: {"file": os.path.relpath(inspect.getsourcefile(c), registry.ROOT),
                             "sha256": policy_hash(c, policy_dir), "params": c.params}
                         for n, c in sorted(policies.items())},
        "workload_files": {n: {"file": os.path.relpath(w.path, registry.ROOT)
                               if os.path.isabs(w.path) else w.path,
                               "sha256": workload_hash(Path(w.path))}
                           for n, w in sorted(workloads.items())},
    }


def _executor(backend: str, n_jobs: int, scheduler: str | None):
    """A joblib Parallel (and the dask client to close) for the backend."""
    from joblib import Parallel, parallel_config
    if backend == "loky":
        return Parallel(n_jobs=n_jobs, backend="loky", return_as="generator_unordered"), None, None
    if backend != "dask":
        raise ValueError(f"unknown backend {backend!r}; use loky or dask")
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ValueError("the dask backend needs dask.distributed: "
                         "pip install 'vmbench[cluster]' (or pip install distributed)") from None
    if scheduler:
        client = Client(scheduler, timeout="30s")
        cluster = None
    else:
        cluster = LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True,
                               host="127.0.0.1", dashboard_address=None)
        client = Client(cluster)
    cfg = parallel_config(backend="dask")
    cfg.__enter__()
    par = Parallel(n_jobs=-1, return_as="generator_unordered")
    return par, client, (cluster, cfg)


def run_matrix(cells, *, jobs=None, backend="loky", scheduler=None, cache_dir=None,
               timeout_s=DEFAULT_TIMEOUT_S, progress=True, stats=None, views=None):
    """Run the cells (cached ones are read in the main process); returns records in cell order.
    ``views``: a dict that gets ``(policy, workload, seed) -> RunView`` of the computed
    ``timeline`` cells."""
    from joblib import delayed
    from tqdm import tqdm

    if cache_dir and Path(cache_dir).is_dir():
        _sweep_stale_tmp(Path(cache_dir))
    records = {}
    todo = {}                # key -> the cell that makes the run (the first with that key)
    for c in cells:
        if c.key in records or c.key in todo:
            continue
        if cache_dir and _cache_path(Path(cache_dir), c.key).exists():
            records[c.key] = run_cell(c, cache_dir, timeout_s)
        else:
            todo[c.key] = c
    n_cached = sum(1 for c in cells if c.key in records)
    todo = list(todo.values())
    n_todo = len(cells) - n_cached            # cells whose run is made now (some share one)
    size = {}
    for c in cells:
        size[c.key] = size.get(c.key, 0) + 1
    failures = 0
    peak_rss = 0.0
    bar = tqdm(total=len(cells), initial=n_cached, desc="bench", unit="run",
               disable=not progress, file=sys.stderr, dynamic_ncols=True,
               mininterval=0.1 if sys.stderr.isatty() else 15)   # a log file: a line per 15 s
    bar.set_postfix(cached=n_cached, failed=0)
    if todo:
        n_jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
        par, client, extra = _executor(backend, n_jobs, scheduler)
        try:
            for rec in par(delayed(run_cell)(c, str(cache_dir) if cache_dir else None, timeout_s)
                           for c in todo):
                records[rec["_key"]] = rec
                n = size[rec["_key"]]
                failures += n * (rec["status"] != "ok")
                peak_rss = max(peak_rss, rec.get("_rss_mb") or 0)
                bar.set_postfix(cached=n_cached, failed=failures, refresh=False)
                bar.update(n)                   # (drawn at most every mininterval)
        finally:
            if client is not None:
                cluster, cfg = extra
                cfg.__exit__(None, None, None)
                client.close()
                if cluster is not None:
                    cluster.close()
    bar.close()
    if stats is not None:
        stats.update(computed=len(todo), cached=n_cached, shared=n_todo - len(todo),
                     failed=failures, peak_worker_rss_mb=round(peak_rss, 1))
    out = []
    for c in cells:
        rec = dict(records[c.key])
        rec["workload"] = c.workload
        for private in ("_cached", "_rss_mb", "_key"):
            rec.pop(private, None)
        view = rec.pop("_timeline", None)
        if view is not None and views is not None:
            views[(c.policy, c.workload, c.seed)] = view
        out.append(rec)
    return out


def new_results_dir(root: Path) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    d = root / stamp
    n = 1
    while d.exists():
        n += 1
        d = root / f"{stamp}-{n}"
    d.mkdir(parents=True)
    return d


def point_latest(root: Path, target: Path):
    link = root / "latest"
    tmp = root / f".latest.{os.getpid()}"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(target.name, tmp)
    os.replace(tmp, link)


def bench(*, policies=None, workloads=None, seeds=range(20), jobs=None, backend="loky",
          scheduler=None, out_root=None, use_cache=True, timeout_s=DEFAULT_TIMEOUT_S,
          policy_dir=registry.POLICY_DIR, workload_dir=registry.WORKLOAD_DIR, report=True,
          progress=True, log=print, policy_dirs=()) -> tuple[int, Path]:
    """The whole matrix: ``runs.csv`` and ``meta.json`` in a new results folder.  Returns a
    :class:`BenchResult` (unpacks as (number of failed runs, results folder)); ``report``:
    keep the runs of the smallest seed for a report's timelines.  ``policy_dirs``: more
    folders of policy files, scanned after ``policy_dir``."""
    import pandas as pd

    policy_dir = [Path(policy_dir), *(Path(d) for d in policy_dirs)]
    found, perr = registry.discover(*policy_dir)
    wfound, werr = W.load_dir(workload_dir)
    for e in perr + werr:
        log(f"skipped: {e}")
    if policies:
        for p in policies:
            if p not in found:
                raise registry.PolicyLoadError(
                    f"unknown policy {p!r}; known policies: {', '.join(sorted(found))}")
        found = {p: found[p] for p in policies}
    if workloads:
        for w in workloads:
            if w not in wfound:
                raise runner.UnknownWorkload(
                    f"unknown workload {w!r}; known workloads: {', '.join(sorted(wfound))}")
        wfound = {w: wfound[w] for w in workloads}
    seeds = list(seeds)
    out_root = Path(out_root or registry.ROOT / "results")
    cache_dir = out_root / "cache" if use_cache else None
    cells = make_cells(found, wfound, seeds, policy_dir,
                       timeline_seed=min(seeds) if report and seeds else None)
    log(f"{len(cells)} runs: {len(found)} policies x {len(wfound)} workloads x {len(seeds)} seeds "
        f"({backend}{', ' + scheduler if scheduler else ''})")
    t0 = time.perf_counter()
    stats = {}
    views = {}
    recs = run_matrix(cells, jobs=jobs, backend=backend, scheduler=scheduler,
                      cache_dir=cache_dir, timeout_s=timeout_s, progress=progress, stats=stats,
                      views=views)
    wall = time.perf_counter() - t0
    out = new_results_dir(out_root)
    df = pd.DataFrame(recs, columns=metrics.COLUMNS)
    df.to_csv(out / "runs.csv", index=False)
    meta = provenance(found, wfound, seeds, policy_dir)
    meta.update(skipped_policies=perr, skipped_workloads=werr,
                run_stats=dict(stats, wall_s=round(wall, 3), jobs=jobs or os.cpu_count(),
                               backend=backend))
    _write_atomic(out / "meta.json", json.dumps(meta, indent=2, default=str))
    point_latest(out_root, out)
    failed = int((df.status != "ok").sum())
    shared = (f", {stats['shared']} the same run as another cell's"
              if stats.get("shared") else "")
    log(f"{len(cells)} runs in {wall:.1f} s ({stats.get('computed', 0)} computed, "
        f"{stats.get('cached', 0)} from the cache{shared}), {failed} failed -> {out}")
    for _, r in df[df.status != "ok"].iterrows():
        log(f"failed: {r.policy} / {r.workload} / seed {r.seed}: {r.status}: {r.error}")
    # the report is not written here (bench imports no report): the caller writes it from
    # these, e.g. harness.results.write(out, df, meta, out_root, timeline_views=views, ...)
    return BenchResult(failed, out, df, meta, views,
                       cache_dir / "plots" if cache_dir else None, out_root)


class BenchResult(tuple):
    """What :func:`bench` made: unpacks as ``(failed, out)``; the rest as attributes, for the
    report (``df``: the records, ``meta``, ``views``: the RunViews of the timeline seed,
    ``plot_cache``: the folder of cached plots or None, ``out_root``)."""

    def __new__(cls, failed, out, df, meta, views, plot_cache, out_root):
        self = super().__new__(cls, (failed, out))
        self.failed, self.out, self.df, self.meta = failed, out, df, meta
        self.views, self.plot_cache, self.out_root = views, plot_cache, out_root
        return self

"""The matrix: every policy x every workload x many seeds, in parallel, cached, with a report.

Each run's record is written atomically to its own file in the cache (``results/cache/``),
named by a key that hashes everything the result depends on: the engine's sources, the policy's
file (and the policy files it inherits from), its parameters, the workload's tables (its file
and the one it extends, resolved: :func:`harness.workload.sim_hash`) and the seed.  Two cells
with the same key -- a sweep point that equals its base workload -- are one run, recorded
under each name.  A finished run is never computed twice; an interrupted matrix (Ctrl-C,
``kill -9``) loses nothing that finished and resumes where it stopped.  A cache record is read
through a schema (:func:`read_cached`); one that fails is moved aside and made again.

No cell can sink the matrix: a run that raises is ``error``, one over the per-run wall-time
limit ``timeout``, one that breaks a law of the machine (:mod:`harness.laws`) ``invalid``, one
over the per-run memory limit ``memory``, one whose worker process dies ``crashed`` (with the
exit code or signal; :mod:`harness.pool` replaces the worker); the rest of the matrix
completes, and only ``ok`` runs enter the statistics.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import inspect
import json
import math
import os
import pickle
import platform
import queue
import resource
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from . import metrics, registry, runner
from .atomic import write_atomic as _write_atomic
from . import workload as W
from .engine import RunTimeout
from .errors import where_raised
from .pool import Pool

# the sources that decide a run's result; bench/report/plot/CLI changes keep the cache valid
ENGINE_SOURCES = ("engine.py", "model.py", "sched.py", "mm.py", "blocks.py", "modern.py",
                  "replay.py", "workingset.py", "psi.py", "progress.py", "policy.py",
                  "machine.py", "workload.py", "metrics.py", "runner.py", "registry.py",
                  "laws.py")
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
    params: tuple = ()          # (name, value) pairs given to the policy (its defaults: none)
    label: str = ""             # the record's policy name when params are given
    scaled: tuple = ()          # (time scale, time limit s) of W.time_scaled: a real run's model

    @property
    def name(self) -> str:
        """The policy as the record names it: ``label``, else the policy."""
        return self.label or self.policy


def _params_blob(cls) -> bytes:
    return json.dumps(cls.params, sort_keys=True, default=repr).encode()


def make_cells(policies: dict, workloads: dict, seeds, policy_dir,
               timeline_seed=None, params=None) -> list[Cell]:
    """``policies``: name (or label) -> class; ``params``: label -> parameters for the classes
    run with other than their defaults (``psi_userspace[daemon=oomd]``: the record names the
    label).  ``policy_dir``: the scanned folder(s); each cell names the folder of its policy's
    file.  The cells of ``timeline_seed`` are marked ``timeline`` (see :func:`run_cell`)."""
    params = params or {}
    eng = engine_hash()
    cells = []
    for wname, w in workloads.items():
        wh = workload_hash(Path(w.path))
        sh = W.sim_hash(w)
        for pname, cls in policies.items():
            ph = policy_hash(cls, policy_dir)
            given = tuple(sorted(params.get(pname, {}).items()))
            extra = (json.dumps(given, default=repr).encode(),) if given else ()
            for s in seeds:
                key = _sha(eng.encode(), ph.encode(), _params_blob(cls), *extra, sh.encode(),
                           pname.encode(), str(s).encode())
                cells.append(Cell(cls.name if given else pname, wname, w.path, s,
                                  str(Path(registry.policy_file(cls)).parent), key,
                                  timeline=s == timeline_seed, wkey=wh, params=given,
                                  label=pname if given else "",
                                  scaled=((w.time_scale, w.time_limit_s)
                                          if w.time_scale != 1.0 else ())))
    return cells


# ---------------------------------------------------------------------------- one run
def _cache_path(cache_dir: Path, key: str) -> Path:
    return cache_dir / key[:2] / f"{key}.json"


def _view_path(cache_dir: Path, key: str) -> Path:
    """The :class:`harness.runner.RunView` of a ``timeline`` cell's run, beside its record."""
    return cache_dir / key[:2] / f"{key}.view.pickle"


class Syncer:
    """The fsync of the cache files the pool's workers wrote without it, made by a thread of
    the parent as their records arrive: a worker hands its run over and takes the next at
    once instead of waiting for the disk (an fsync is ~1-20 ms, a run ~0.1 s on average);
    the parent only waits for results meanwhile.  :meth:`close` returns once every file
    handed over is synced (a file moved aside or gone meanwhile is skipped)."""

    def __init__(self):
        self.queue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, name="cache-fsync", daemon=True)
        self.thread.start()

    def add(self, paths):
        for p in paths:
            self.queue.put(p)

    def _loop(self):
        while True:
            p = self.queue.get()
            if p is None:
                return
            try:
                fd = os.open(p, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.fsync(fd)
            except OSError:
                pass
            finally:
                os.close(fd)

    def close(self):
        self.queue.put(None)
        self.thread.join()


def _zombie(pid: int) -> bool:
    """A process that has exited and not been reaped yet (Linux ``/proc``; elsewhere False)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


def _sweep_stale_tmp(cache_dir: Path) -> int:
    """Remove the temporary files of cache writes whose process is gone (a bench killed with
    ``kill -9`` in the middle of :func:`_write_atomic`): never a result, only litter.  A live
    writer's files (another bench on the same cache) are left alone; a writer that exited but
    is not reaped yet counts as gone.  Run when a matrix starts and when it ends (a writer
    killed just before, still dying in an fsync, is gone by then).  Returns how many."""
    n = 0
    for f in Path(cache_dir).glob("??/.*.tmp"):
        try:
            pid = int(f.name.split(".")[-3])
        except (ValueError, IndexError):
            continue
        try:
            os.kill(pid, 0)
            if not _zombie(pid):
                continue                   # its writer is alive
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


class wall_limit:
    """``with wall_limit(s):`` raises :class:`RunTimeout` after ``s`` wall seconds (SIGALRM:
    a policy stuck in plain Python code, which the engine's own clock check cannot see).  Only
    in the main thread where SIGALRM exists; elsewhere it does nothing."""

    def __init__(self, seconds):
        self.seconds = seconds
        self.old = None
        self.on = (bool(seconds) and threading.current_thread() is threading.main_thread()
                   and hasattr(signal, "setitimer"))

    def __enter__(self):
        if self.on:
            self.old = signal.signal(signal.SIGALRM, _on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        return self

    def __exit__(self, typ, exc, tb):
        if self.on:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.old)
        if typ is _Alarm:
            raise RunTimeout(f"run exceeded {self.seconds:g} s of wall time") from None
        return False


_WORKLOADS: dict = {}


def _load_workload(cell: Cell):
    """``W.load``, remembered per process by the hash of the workload's files (a run reads its
    workload and never changes it)."""
    def load():
        w = W.load(cell.workload_path, cell.workload)
        return W.time_scaled(w, *cell.scaled) if cell.scaled else w
    if not cell.wkey:
        return load()
    key = (cell.workload_path, cell.workload, cell.wkey, cell.scaled)
    w = _WORKLOADS.get(key)
    if w is None:
        if len(_WORKLOADS) > 256:
            _WORKLOADS.clear()
        w = _WORKLOADS[key] = load()
    return w


def run_cell(cell: Cell, cache_dir: str | None, timeout_s: float, sync: bool = True) -> dict:
    """Make one cell's run in a worker; never raises.  A run that raises is ``error``, one over
    its wall-time limit ``timeout``, one that breaks a law of the machine ``invalid``, one over
    the worker's memory limit ``memory`` (:mod:`harness.pool`).  An ``ok`` record is written
    to the cache (with the cell's key, :func:`read_cached`); ``sync=False``: without its fsync,
    the files written are listed in ``_unsynced`` for the caller's :class:`Syncer`.  The
    record gets private fields (``_cached``, ``_key``, ``_rss_mb``, ``_unsynced``, and for a
    ``timeline`` cell ``_timeline``: its :class:`harness.runner.RunView`) that the caller
    strips."""
    view = None
    try:
        with wall_limit(timeout_s * 1.2 + 1):
            w = _load_workload(cell)
            rec, k = runner.run_one(cell.policy, w, cell.seed, dict(cell.params) or None,
                                    policy_dir=Path(cell.policy_dir),
                                    wall_timeout_s=timeout_s, keep_kernel=True)
            rec["policy"] = cell.name
            if cell.timeline and k is not None:
                view = runner.RunView(k, rec["outcome"])
            del k
    except RunTimeout as e:
        rec = _failed(cell, "timeout", str(e) or f"run exceeded {timeout_s:g} s of wall time")
    except MemoryError:
        rec = _failed(cell, "memory", "MemoryError: the run went over the worker's memory limit "
                                      "(bench --memory-mb)")
    except Exception as e:  # noqa: BLE001 - a broken policy must not sink the matrix
        rec = _failed(cell, "error", f"{type(e).__name__}: {e}{where_raised(e)}")
    written = []
    if cache_dir and rec["status"] == "ok":
        written.append(_cache_path(Path(cache_dir), cell.key))
        _write_atomic(written[-1], json.dumps(dict(rec, _key=cell.key)), sync)
        if view is not None:
            # kept, so that a report of the cached run draws it without making it again
            written.append(_view_path(Path(cache_dir), cell.key))
            _write_atomic(written[-1], pickle.dumps(view, protocol=pickle.HIGHEST_PROTOCOL),
                          sync)
    if not sync:
        rec["_unsynced"] = [str(p) for p in written]
    rec["_cached"] = False
    rec["_key"] = cell.key
    rec["_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if view is not None and rec["status"] == "ok":
        rec["_timeline"] = view
    return rec


def _failed(cell: Cell, status: str, msg: str) -> dict:
    rec = {c: None for c in metrics.COLUMNS}
    rec.update(policy=cell.name, workload=cell.workload, seed=cell.seed, status=status,
               error=msg[:2000])
    return rec


# ---------------------------------------------------------------------------- the cache
class BadRecord(ValueError):
    """A cache record that does not pass :func:`read_cached`."""


_COUNTS = ("kills", "fault_kills", "alloc_failures", "victims", "wrong_victims",
           "protected_victims", "repeat_kills", "ineffective_kills", "extra_kills", "events",
           "refaults")
_TIMES = ("pressure_onset_s", "reclaim_onset_s", "first_kill_s", "time_to_kill_s",
          "max_stall_s", "completion_s", "thrash_start_s", "thrash_to_kill_s")
_AMOUNTS = ("thrash_s", "psi_some_s", "psi_full_s", "psi_full_avg10_max")   # numbers >= 0
_OUTCOMES = ("completed", "recovered", "livelock", "deadlock", "thrashing")


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _column_ok(col: str, v) -> bool:
    """The type of one column of ``metrics.md`` in an ``ok`` record."""
    if col in ("policy", "workload"):
        return isinstance(v, str) and bool(v)
    if col == "seed":
        return isinstance(v, int) and not isinstance(v, bool)
    if col == "status":
        return v == "ok"
    if col == "error":
        return v is None
    if col == "outcome":
        return v in _OUTCOMES
    if col in ("livelock", "deadlock", "workload_completed"):
        return isinstance(v, bool)
    if col in _COUNTS:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0
    if col in _TIMES:
        return v is None or _is_num(v)
    if col in ("sim_s", "wall_s") or col in _AMOUNTS:
        return _is_num(v) and v >= 0
    if col == "progress_min10":
        return v is None or (_is_num(v) and 0 <= v <= 1)
    if col == "first_victim":
        return v is None or isinstance(v, str)
    if col == "trace_sha256":
        return isinstance(v, str) and len(v) == 64 and all(c in "0123456789abcdef" for c in v)
    # a column this schema does not know yet (added by another issue): a plain JSON scalar
    return v is None or isinstance(v, (bool, str)) or _is_num(v)


def read_cached(path: Path, cell: Cell) -> dict:
    """A cache record, read through its schema: a JSON object with every column of
    ``metrics.COLUMNS`` (``shared/spec/metrics.md``) of its type, ``status`` ok, and the key
    of the cell it was written for (``_key``), for this cell's policy and seed.  Raises
    :class:`BadRecord` saying what is wrong."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise BadRecord(f"cannot read: {e.strerror}") from None
    try:
        rec = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise BadRecord(f"not UTF-8 (byte {e.start})") from None
    except ValueError as e:
        raise BadRecord(f"not JSON ({str(e)[:80]})") from None
    if not isinstance(rec, dict):
        raise BadRecord(f"a JSON {type(rec).__name__}, not a record")
    if rec.get("_key") != cell.key:
        raise BadRecord("written for another cell" if "_key" in rec else "no cell key")
    missing = [c for c in metrics.COLUMNS if c not in rec]
    if missing:
        raise BadRecord(f"no column {', '.join(missing[:3])}"
                        + (f" (+{len(missing) - 3} more)" if len(missing) > 3 else ""))
    for c in metrics.COLUMNS:
        if not _column_ok(c, rec[c]):
            raise BadRecord(f"column {c}: {str(rec[c])[:40]!r} is not of its type")
    if rec["policy"] != cell.name or rec["seed"] != cell.seed:
        raise BadRecord(f"the record of {rec['policy']} / seed {rec['seed']}")
    del rec["_key"]
    return rec


def read_view(cache_dir: Path, key: str):
    """The RunView kept beside the cache record ``key`` (:func:`run_cell`), or None when there
    is none or it cannot be read (the report then makes the run again)."""
    try:
        view = pickle.loads(_view_path(cache_dir, key).read_bytes())
    except Exception:  # noqa: BLE001 - missing, cut short, of another version: made again
        return None
    return view if type(view).__name__ == "RunView" else None


def _move_aside(cache_dir: Path, path: Path) -> Path:
    dst = cache_dir / "rejected" / f"{path.name}.{time.strftime('%Y%m%dT%H%M%S')}.{os.getpid()}"
    dst.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, dst)
    return dst


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


class SchedulerError(Exception):
    """The dask scheduler cannot be reached (one line)."""


BACKENDS = ("process", "dask")
#: the address space of each worker process of the ``process`` backend, MB (``--memory-mb``):
#: a few times the largest run of the default matrix (~200 MB), far below what a host has
DEFAULT_MEMORY_MB = 2048
DASK_CONNECT_S = 5


def _dask_client(n_jobs: int, scheduler: str | None):
    """A dask.distributed client (and the LocalCluster it started, or None)."""
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise ValueError("the dask backend needs dask.distributed: "
                         "pip install 'vmbench[cluster]' (or pip install distributed)") from None
    if scheduler:
        try:
            return Client(scheduler, timeout=f"{DASK_CONNECT_S}s"), None
        except Exception as e:  # noqa: BLE001 - any failure to connect is one line
            raise SchedulerError(
                f"cannot reach the dask scheduler at {scheduler} within {DASK_CONNECT_S} s "
                f"({type(e).__name__}); start one (dask scheduler) or leave out --scheduler"
                ) from None
    cluster = LocalCluster(n_workers=n_jobs, threads_per_worker=1, processes=True,
                           host="127.0.0.1", dashboard_address=None)
    return Client(cluster), cluster


def _results(todo, n_jobs, dask, cache_dir, timeout_s, memory_mb):
    """Yield each cell's record as it finishes, on the process pool or on ``dask`` (a client
    and its cluster, from :func:`_dask_client`).  A cell whose worker died is ``crashed``
    (with the exit code or signal) and the rest goes on."""
    args = (str(cache_dir) if cache_dir else None, timeout_s)
    if dask is not None:
        from dask.distributed import as_completed
        client, cluster = dask
        try:
            futs = {client.submit(run_cell, c, *args, pure=False): c for c in todo}
            for fut in as_completed(futs):
                c = futs[fut]
                try:
                    yield fut.result()
                except Exception as e:  # noqa: BLE001 - KilledWorker: the worker died each time
                    status = "crashed" if type(e).__name__ == "KilledWorker" else "error"
                    yield dict(_failed(c, status, f"{type(e).__name__}: {e}"), _key=c.key)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return
    # the workers write the cache without fsync; the parent's Syncer makes it durable
    syncer = Syncer() if cache_dir else None
    try:
        with Pool(n_jobs, memory_mb) as pool:
            for (_fn, (c, *_)), rec, failure in pool.run(
                    ((run_cell, (c, *args, syncer is None)) for c in todo),
                    hard_limit_s=timeout_s * 1.5 + 30):
                if failure is not None:
                    rec = dict(_failed(c, *failure), _key=c.key)
                if syncer is not None:
                    syncer.add(rec.pop("_unsynced", ()))
                yield rec
    finally:
        if syncer is not None:
            syncer.close()


def run_matrix(cells, *, jobs=None, backend="process", scheduler=None, cache_dir=None,
               timeout_s=DEFAULT_TIMEOUT_S, progress=True, stats=None, views=None,
               read_cache=True, memory_mb=DEFAULT_MEMORY_MB, log=None):
    """Run the cells; returns records in cell order.  With ``cache_dir``, cached records are
    read (``read_cache``) in the main process through :func:`read_cached` -- one that fails is
    moved aside to ``cache/rejected/`` with a line to ``log`` and made again -- and every ``ok``
    run made is written (over a record already there).  ``views``: a dict that gets
    ``(policy, workload, seed) -> RunView`` of the ``timeline`` cells: those computed, and
    the cached ones whose view was kept beside the record (:func:`read_view`)."""
    from tqdm import tqdm

    backend = "process" if backend == "loky" else backend     # (the former name of the pool)
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; use {' or '.join(BACKENDS)}")
    log = log or (lambda m: print(m, file=sys.stderr))
    if cache_dir and Path(cache_dir).is_dir():
        _sweep_stale_tmp(Path(cache_dir))
    records = {}
    todo = {}                # key -> the cell that makes the run (the first with that key)
    rejected = 0
    for c in cells:
        if c.key in records or c.key in todo:
            continue
        path = _cache_path(Path(cache_dir), c.key) if cache_dir else None
        if read_cache and path is not None and path.exists():
            try:
                rec = read_cached(path, c)
            except BadRecord as e:
                rejected += 1
                try:
                    dst = f"moved to {_move_aside(Path(cache_dir), path)}"
                except OSError as oe:
                    dst = f"not moved ({oe.strerror})"
                log(f"cache: {path}: {e}; {dst}; the run is made again")
            else:
                records[c.key] = dict(rec, _cached=True, _key=c.key)
                if c.timeline and views is not None:
                    view = read_view(Path(cache_dir), c.key)
                    if view is not None:
                        records[c.key]["_timeline"] = view
                continue
        todo[c.key] = c
    n_cached = sum(1 for c in cells if c.key in records)
    todo = list(todo.values())
    n_todo = len(cells) - n_cached            # cells whose run is made now (some share one)
    size = {}
    for c in cells:
        size[c.key] = size.get(c.key, 0) + 1
    failures = 0
    peak_rss = 0.0
    n_jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo)))
    dask = _dask_client(n_jobs, scheduler) if backend == "dask" and todo else None
    bar = tqdm(total=len(cells), initial=n_cached, desc="bench", unit="run",
               disable=not progress, file=sys.stderr, dynamic_ncols=True,
               mininterval=0.1 if sys.stderr.isatty() else 15)   # a log file: a line per 15 s
    bar.set_postfix(cached=n_cached, failed=0)
    if todo:
        for rec in _results(todo, n_jobs, dask, cache_dir, timeout_s, memory_mb):
            records[rec["_key"]] = rec
            n = size[rec["_key"]]
            failures += n * (rec["status"] != "ok")
            peak_rss = max(peak_rss, rec.get("_rss_mb") or 0)
            bar.set_postfix(cached=n_cached, failed=failures, refresh=False)
            bar.update(n)                   # (drawn at most every mininterval)
    bar.close()
    if cache_dir and Path(cache_dir).is_dir():
        _sweep_stale_tmp(Path(cache_dir))  # again: a writer killed just before we started
    if stats is not None:
        stats.update(computed=len(todo), cached=n_cached, shared=n_todo - len(todo),
                     failed=failures, peak_worker_rss_mb=round(peak_rss, 1),
                     rejected_cache_records=rejected)
    out = []
    for c in cells:
        rec = dict(records[c.key])
        rec["workload"] = c.workload
        for private in ("_cached", "_rss_mb", "_key", "_unsynced"):
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


class OutputError(Exception):
    """The results folder cannot be written (one line)."""


#: free space the results folder needs before a bench starts (runs.csv, meta, report, cache)
MIN_FREE_MB = 50


def check_output(out_root: Path):
    """Fail at once, before any run, with one line, when ``out_root`` (or its cache) cannot be
    created or written, or its file system has less than ``MIN_FREE_MB`` free."""
    import shutil
    import tempfile
    try:
        (out_root / "cache").mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_root / "cache", prefix=".probe.") as f:
            f.write(b"\0" * 65536)
            f.flush()
            os.fsync(f.fileno())
        free = shutil.disk_usage(out_root).free
    except OSError as e:
        raise OutputError(f"cannot write the results folder {out_root}: "
                          f"{e.strerror or e}; give a writable --out") from None
    if free < MIN_FREE_MB << 20:
        raise OutputError(f"the results folder {out_root} has {free >> 20} MB free, less than "
                          f"the {MIN_FREE_MB} MB a bench needs; free some space or give --out")


def status_counts(statuses) -> str:
    """``ok 5190, error 4, timeout 2``: the count of each status, ok first."""
    from collections import Counter
    c = Counter(statuses)
    order = ["ok", "error", "timeout", "invalid", "crashed", "memory"]
    order += sorted(k for k in c if k not in order)
    return ", ".join(f"{k} {c[k]}" for k in order if c[k])


def bench(*, policies=None, workloads=None, seeds=range(20), jobs=None, backend="process",
          scheduler=None, out_root=None, use_cache=True, timeout_s=DEFAULT_TIMEOUT_S,
          policy_dir=registry.POLICY_DIR, workload_dir=registry.WORKLOAD_DIR, report=True,
          progress=True, log=print, policy_dirs=(), memory_mb=DEFAULT_MEMORY_MB):
    """The whole matrix: ``runs.csv`` and ``meta.json`` in a new results folder.  Returns a
    :class:`BenchResult` (unpacks as (number of failed runs, results folder)); ``report``:
    keep the runs of the smallest seed for a report's timelines.  ``policy_dirs``: more
    folders of policy files, scanned after ``policy_dir``.  ``use_cache=False``
    (``--no-cache``) makes every run again and writes it over its cache record."""
    import pandas as pd

    backend = "process" if backend == "loky" else backend
    policy_dir = [Path(policy_dir), *(Path(d) for d in policy_dirs)]
    found, perr = registry.discover(*policy_dir)
    wfound, werr = W.load_dir(workload_dir)
    for e in perr + werr:
        log(f"skipped: {e}")
    if policies is not None:
        if not policies:
            raise registry.PolicyLoadError("no policy named; give --policies a,b or leave it out")
        for p in policies:
            if p not in found:
                raise registry.PolicyLoadError(
                    f"unknown policy {p!r}; known policies: {', '.join(sorted(found))}")
        found = {p: found[p] for p in policies}
    if workloads is not None:
        if not workloads:
            raise runner.UnknownWorkload("no workload named; give --workloads x,y or leave it out")
        for w in workloads:
            if w not in wfound:
                raise runner.UnknownWorkload(
                    f"unknown workload {w!r}; known workloads: {', '.join(sorted(wfound))}")
        wfound = {w: wfound[w] for w in workloads}
    seeds = list(seeds)
    out_root = Path(out_root or registry.ROOT / "results")
    check_output(out_root)
    cache_dir = out_root / "cache"
    cells = make_cells(found, wfound, seeds, policy_dir,
                       timeline_seed=min(seeds) if report and seeds else None)
    log(f"{len(cells)} runs: {len(found)} policies x {len(wfound)} workloads x {len(seeds)} seeds "
        f"({backend}{', ' + scheduler if scheduler else ''})")
    t0 = time.perf_counter()
    stats = {}
    views = {}
    recs = run_matrix(cells, jobs=jobs, backend=backend, scheduler=scheduler,
                      cache_dir=cache_dir, timeout_s=timeout_s, progress=progress, stats=stats,
                      views=views, read_cache=use_cache, memory_mb=memory_mb, log=log)
    wall = time.perf_counter() - t0
    df = pd.DataFrame(recs, columns=metrics.COLUMNS)
    try:
        out = new_results_dir(out_root)
        df.to_csv(out / "runs.csv", index=False)
        meta = provenance(found, wfound, seeds, policy_dir)
        meta.update(skipped_policies=perr, skipped_workloads=werr,
                    run_stats=dict(stats, wall_s=round(wall, 3), jobs=jobs or os.cpu_count(),
                                   backend=backend, memory_mb=memory_mb,
                                   statuses=status_counts(df.status)))
        _write_atomic(out / "meta.json", json.dumps(meta, indent=2, default=str))
    except OSError as e:
        raise OutputError(f"cannot write the results to {out_root}: {e.strerror or e} (the runs "
                          f"made are in {cache_dir}; a rerun reads them back)") from None
    point_latest(out_root, out)
    failed = int((df.status != "ok").sum())
    shared = (f", {stats['shared']} the same run as another cell's"
              if stats.get("shared") else "")
    log(f"{len(cells)} runs in {wall:.1f} s ({stats.get('computed', 0)} computed, "
        f"{stats.get('cached', 0)} from the cache{shared}), {failed} failed -> {out}")
    bad = df[df.status != "ok"]
    for _, r in bad.head(50).iterrows():
        log(f"failed: {r.policy} / {r.workload} / seed {r.seed}: {r.status}: {r.error}")
    if len(bad) > 50:
        log(f"failed: ... and {len(bad) - 50} more (runs.csv has every one)")
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

"""The real matrix: real policy x realisable workload x seed, each run one fresh VM (or cgroup),
in parallel, cached, resumable.

* **Cells.**  A cell is (policy, workload, seed); its key is the SHA-256 of everything its
  record depends on: the kernel package and version the policy boots (the host's release for
  ``real-memcg``), the policy file's bytes, the plan text (the workload's tasks and their drawn
  numbers at this seed and time scale), the runner's sources (``csrc/vmreal.c`` and this
  package's modules), the seed, the time scale and the wall bound.
* **Cache.**  ``results/real/cache/<key[:2]>/<key>.json``, written atomically
  (``harness.atomic.write_atomic``: a temporary file, fsync, rename) as each run finishes, so a
  ``kill -9`` loses no finished run and the next call resumes; a second call finds every cell
  and computes nothing.  A run that errored is recorded (status, reason) but not cached -- the
  next call tries it again -- except a policy that could not be set up (deterministic: a
  setting the kernel refuses, a daemon that exits at start).
* **Parallel.**  ``jobs`` threads (default: the number of cores), each running one VM at a
  time with one vCPU (the workload's ``cpus``); qemu does the work, the threads wait.
* **Leftovers.**  Ctrl-C and SIGTERM stop the matrix: every running qemu is killed
  (``qemu.kill_all``), every memcg cgroup removed, no partial record is cached.  After
  ``kill -9`` of the harness qemu dies with its thread (``PR_SET_PDEATHSIG``), the run's files
  were unlinked once qemu had them open, and the next call removes the empty folders
  (``qemu.sweep_stale``).
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from ..atomic import write_atomic
from .plan import NotRealisable, compile_plan
from .policies import RealPolicy

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "results" / "real" / "cache"
# what a run's record depends on besides the policy file and the plan: the runner, the plan
# compiler, the backends, the daemon's staging, the record's rules and run_real (not the CLI
# and the report, __init__.py, so that changing a table keeps the real runs; not this matrix;
# not the policy parser -- the file's bytes are in the key)
RUNNER_SOURCES = [ROOT / "csrc" / "vmreal.c"] + [
    Path(__file__).parent / f for f in ("build.py", "daemon.py", "memcg.py", "plan.py",
                                        "qemu.py", "record.py", "run.py")]
CACHE_VERSION = 1


@dataclass(frozen=True)
class Cell:
    policy: RealPolicy
    workload: object
    seed: int
    time_scale: float
    max_wall_s: float
    key: str


def runner_hash() -> str:
    h = hashlib.sha256()
    for p in RUNNER_SOURCES:
        h.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()


def kernel_id(policy: RealPolicy) -> str | None:
    """``<package> <version>`` of the kernel the policy boots, None when it is not fetched."""
    if policy.backend == "memcg":
        return f"host {os.uname().release}"
    from . import qemu
    info = qemu.kernel_info(policy.kernel)
    return None if info is None else f"{info['package']} {info['version']}"


def make_cells(policies, workloads, seeds, time_scale=None, max_wall=None):
    """(cells, skipped lines): a workload that cannot be realised is one line, as is a policy
    whose kernel is not fetched."""
    from .run import default_max_wall, default_time_scale
    rh = runner_hash()
    cells, skipped = [], []
    for pol in policies:
        kid = kernel_id(pol)
        if kid is None:
            skipped.append(f"{pol.file}: kernel: {pol.kernel} is not fetched; run `make "
                           f"real-setup`")
            continue
        for w in workloads:
            scale = time_scale if time_scale is not None else default_time_scale(pol.backend)
            wall = max_wall if max_wall is not None else default_max_wall(w, scale, pol.backend)
            for s in seeds:
                try:
                    plan = compile_plan(w, s, scale)
                except NotRealisable as e:
                    if s == seeds[0]:
                        skipped.append(str(e))
                    break
                h = hashlib.sha256()
                for part in (str(CACHE_VERSION), kid, pol.run_sha256, pol.name, plan.to_text(), rh,
                             str(s), repr(scale), repr(wall)):
                    h.update(part.encode() + b"\0")
                cells.append(Cell(pol, w, s, scale, wall, h.hexdigest()))
    return cells, skipped


def _cache_path(cache: Path, key: str) -> Path:
    return cache / key[:2] / f"{key}.json"


class _Stop(Exception):
    pass


def run_matrix(cells, *, jobs=None, cache_dir=CACHE, out_dir=None, progress=True, log=None):
    """Records of the cells, in cell order (cached ones read back).  ``out_dir``: where each
    run's raw log goes.  Ctrl-C / SIGTERM: everything started is killed and the exception
    propagates; finished runs are already in the cache."""
    from tqdm import tqdm

    from .. import bench
    from .run import run_real
    cache = Path(cache_dir)
    if cache.is_dir():
        bench._sweep_stale_tmp(cache)
    with contextlib.suppress(Exception):
        from . import qemu
        qemu.sweep_stale()
    records: dict[str, dict] = {}
    todo = []
    for c in cells:
        p = _cache_path(cache, c.key)
        if c.key in records:
            continue
        if p.exists():
            try:
                rec = dict(json.loads(p.read_text()), _cached=True)
                # the model is the report's, not the run's (not in the key): today's file's
                rec["model"] = c.policy.model_label
                records[c.key] = rec
                continue
            except ValueError:
                pass
        todo.append(c)
    n_cached = len(cells) - len(todo)
    bar = tqdm(total=len(cells), initial=n_cached, desc="real", unit="run", disable=not progress,
               file=sys.stderr, dynamic_ncols=True,
               mininterval=0.1 if sys.stderr.isatty() else 15)
    failed = 0
    bar.set_postfix(cached=n_cached, failed=0)
    stop = threading.Event()

    def one(c: Cell) -> dict:
        if stop.is_set():
            raise _Stop()
        try:
            rec = run_real(c.workload, c.policy.backend, c.seed, out_dir, c.time_scale,
                           c.max_wall_s, policy=c.policy)
        except NotRealisable as e:          # backend-specific (swap on memcg)
            rec = {"policy": c.policy.name, "workload": c.workload.name, "seed": c.seed,
                   "status": "skipped", "error": str(e)}
        except Exception as e:  # noqa: BLE001 - BackendUnavailable and the unexpected
            rec = {"policy": c.policy.name, "workload": c.workload.name, "seed": c.seed,
                   "status": "error", "error": f"{type(e).__name__}: {e}"}
        if stop.is_set():
            raise _Stop()                    # killed under us: not a result
        return rec

    old = {}
    if threading.current_thread() is threading.main_thread():
        def on_term(signum, frame):
            raise SystemExit(128 + signum)
        for s in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(ValueError, OSError):
                old[s] = signal.signal(s, on_term)
    n_jobs = max(1, min(jobs or os.cpu_count() or 1, len(todo) or 1))
    ex = cf.ThreadPoolExecutor(max_workers=n_jobs, thread_name_prefix="real")
    try:
        futs = {ex.submit(one, c): c for c in todo}
        pending = set(futs)
        while pending:
            done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for f in done:
                c = futs[f]
                try:
                    rec = f.result()
                except _Stop:
                    continue
                rec = {k: v for k, v in rec.items() if not k.startswith("_")}
                records[c.key] = rec
                if rec.get("status") == "ok" or _policy_error(rec):
                    write_atomic(_cache_path(cache, c.key),
                                        json.dumps(rec, default=str, sort_keys=True))
                if rec.get("status") != "ok":
                    failed += 1
                if log is not None:
                    log(rec)
                bar.set_postfix(cached=n_cached, failed=failed, refresh=False)
                bar.update(1)
    except BaseException:
        stop.set()
        _kill_everything()
        ex.shutdown(wait=True, cancel_futures=True)
        _kill_everything()
        raise
    finally:
        ex.shutdown(wait=True)
        bar.close()
        for s, h in old.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(s, h)
    out = []
    for c in cells:
        rec = dict(records[c.key])
        rec.pop("_cached", None)
        rec["workload"] = c.workload.name
        out.append(rec)
    return out


def _policy_error(rec) -> bool:
    f = rec.get("real_policy_file") or ""
    return rec.get("status") == "error" and bool(f) and str(rec.get("error", "")).startswith(f)


def _kill_everything():
    with contextlib.suppress(Exception):
        from . import qemu
        qemu.kill_all()
    with contextlib.suppress(Exception):
        from . import memcg
        memcg._cleanup_all()

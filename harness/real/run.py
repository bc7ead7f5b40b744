"""One real run: a workload's plan on a backend (qemu VM or memory cgroup) -> one record with
the columns of ``record.ALL_COLUMNS``.  Below the CLI (:mod:`harness.real`) and the real matrix
(:mod:`harness.real.matrix`), which both call :func:`run_real`."""
from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

from ..atomic import write_atomic as _atomic_write   # one atomic writer (fsync, per-thread tmp)
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


def raw_dir(out_dir, tag: str, workload_name: str) -> Path:
    """Where the raw logs of (policy or backend ``tag``, workload) go: ``<seed>.log`` in it."""
    return Path(out_dir) / "raw" / tag / workload_name


def parse_raw_log(text: str) -> tuple[dict | None, dict | None, list, list]:
    """(meta, extra, runner lines, kernel lines) of a raw log (:func:`_raw_log`); meta and
    extra are None when the log lacks them.  ``ValueError`` when it has no runner and kernel
    sections (the log of a policy that failed at setup)."""
    lines = text.splitlines()
    head = {k: json.loads(ln[len(f"# {k} "):]) for ln in lines[:2] for k in ("meta", "extra")
            if ln.startswith(f"# {k} ")}
    i, j = lines.index("## runner"), lines.index("## kernel")
    return head.get("meta"), head.get("extra"), lines[i + 1:j], lines[j + 1:]


def record_from_raw(text: str, workload, seed: int, time_scale: float, policy=None) -> dict:
    """The record of a finished run made again from its raw log (:func:`_raw_log`: meta,
    extra, runner lines, kernel lines) with today's plan compiler and record rules.  The
    runner's behaviour does not depend on what the record computes from it (a step's nominal
    time, the progress windows), so a change to those rules needs no VM: the same lines give
    the new columns (``python -m harness real --from-raw DIR``)."""
    meta, extra, runner_lines, kernel_lines = parse_raw_log(text)
    if meta is None or extra is None:
        raise ValueError("not a raw log of a finished run (no '# meta' and '# extra' lines)")
    plan = compile_plan(workload, seed, time_scale)
    rec = make_record(plan, runner_lines, kernel_lines, meta, extra)
    if policy is not None:
        rec["policy"] = policy.name
    _policy_columns(rec, policy, meta)
    return rec


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
    raw = raw_dir(out_dir, tag, workload.name) if out_dir else None
    work_dir = raw or (Path(__file__).resolve().parents[2] / ".real" / "scratch")
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
            if raw is not None:
                _atomic_write(raw / f"{seed}.log", "\n".join(
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
    if raw is not None:
        _atomic_write(raw / f"{seed}.log", _raw_log(plan, runner_lines, kernel_lines, extra, meta))
    return rec


# ---------------------------------------------------------------------------- CLI

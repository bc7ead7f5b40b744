"""Workloads: one TOML file each in ``workloads/`` (``shared/spec/workloads.md``).

Loading never runs code.  Validation is strict: every error names the file, the key path and
what was expected, and suggests the nearest valid key for a misspelling.  A loaded
:class:`Workload` is plain data; :func:`build` turns it into tasks inside a :class:`Kernel`.
"""
from __future__ import annotations

import copy
import difflib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from . import machine as M
from . import mm as MMops
from .engine import CPU, DWAIT, MM, SLEEP, WAITQ, AllocReq
from .mm import ENOMEM, FORK_US, Killed

ROLES = ("culprit", "bystander", "protected")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


#: the longest error line (a huge key or value is cut, never echoed whole)
MAX_ERROR_CHARS = 290


def _short(v, n=60) -> str:
    """``repr(v)`` cut to ``n`` characters."""
    r = repr(v)
    return r if len(r) <= n else r[:n - 3] + "..."


class WorkloadError(ValueError):
    """A workload file is invalid.  ``str(e)`` is one line of at most ``MAX_ERROR_CHARS``:
    ``file: key: problem``."""

    def __init__(self, path, key, msg):
        self.path, self.key, self.msg = str(path), key, msg
        if len(key) > 80:
            key = key[:77] + "..."
        where = f"{self.path}: {key}: " if key else f"{self.path}: "
        line = " ".join((where + msg).split())
        if len(line) > MAX_ERROR_CHARS:
            line = line[:MAX_ERROR_CHARS - 3] + "..."
        super().__init__(line)


# ---------------------------------------------------------------------------- ranges
# Every numeric key has a range that follows from the modelled machine, a 2.4 i386 box
# (docs/workload-ranges.md lists them with their reasons).  A value outside is one line naming
# the file, the key, the value and the range.
MAX_FILE_BYTES = 1 << 20      # a workload file is written by hand: 1 MiB is far beyond any
MAX_DEPTH = 32                # tables and arrays nested at most this deep
MAX_SWEEP_POINTS = 256        # points of one [sweep] grid
DAY_S = 86_400                # the longest simulated time any key can ask for
RAM_MAX_MB = 64 * 1024        # i386 2.4 with HIGHMEM/PAE addresses 64 GB (36-bit physical)
SWAP_MAX_MB = 64 * 1024       # one 2.4 i386 swap area: 24-bit page offset in a swap entry
NR_CPUS = 32                  # 2.4 include/linux/threads.h: NR_CPUS for CONFIG_SMP
PID_MAX = 0x8000              # 2.4 include/linux/threads.h: PID_MAX, tasks the machine holds
USER_VM_KB = 3 * 1024 * 1024  # i386 TASK_SIZE: 3 GB of user address space per process
FILE_MAX_MB = 2 * 1024 * 1024  # ext2 on 2.4 with 4 KiB blocks: 2 TB files
SIZE_MAX_MB = RAM_MAX_MB + SWAP_MAX_MB   # anonymous memory a script can ask for at once
RANGES = {
    # key: (lowest, highest) -- inclusive
    "machine.ram_mb": (17, RAM_MAX_MB),       # DMA's 16 MB and at least one MB of ZONE_NORMAL
    "machine.swap_mb": (0, SWAP_MAX_MB),
    "machine.cpus": (1, NR_CPUS),
    "machine.reserved_kb": (0, RAM_MAX_MB * 1024),
    "machine.boot_slab_kb": (0, RAM_MAX_MB * 1024),
    "machine.dcache_kb": (0, RAM_MAX_MB * 1024),
    "costs.timeslice_us": (M.JIFFY_US, 1_000_000),       # 2.4 timeslices are whole ticks
    "costs.disk_request_us": (1, 1_000_000),
    "costs.disk_page_us": (1, 1_000_000),
    "costs.per_item_us": (0.01, 1_000_000),              # every other cost: above zero
    "run.time_limit_s": (1, DAY_S),
    "run.watchdog_s": (1, DAY_S),             # at least ten zone samples of 100 ms
    "run.thrash_limit_s": (1, DAY_S),         # the thrashing rule's hold time (10 s windows)
    "run.seeds": (1, 10_000),
    "file.size_mb": (0, FILE_MAX_MB),
    "file.size_kb": (0, FILE_MAX_MB * 1024),
    "program.kb": (0, USER_VM_KB),
    "task.count": (1, PID_MAX),
    "task.uid": (0, 65_535),
    "task.nice": (-20, 19),
    "task.oom_score_adj": (-1000, 1000),
    "task.start_s": (0, DAY_S),
    "task.age_s": (0, 100 * 365 * DAY_S),
    "task.cpu_s": (0, 100 * 365 * DAY_S),
    "make.jobs": (0, PID_MAX),
    "make.directories": (1, 100_000),
    "make.files_per_dir": (0, 100_000),
    "irq.order": (0, 9),                      # MAX_ORDER 10 on 2.4
    "irq.pages": (1, 1024),
    "irq.interval_ms": (0.1, DAY_S * 1000),   # at most 10 000 interrupts a second
    "irq.hold_ms": (0, DAY_S * 1000),
    "irq.start_s": (0, DAY_S),
    "step.ms": (0, DAY_S * 1000),             # compute_ms, grow.cpu_ms
    "step.s": (0, DAY_S),                     # sleep_s, dwait_s, kernel_spin_s, hold_s
    "step.mb": (0, SIZE_MAX_MB),              # mmap_mb, munmap_mb, touch_mb, grow.mb
    "step.io_mb": (0, FILE_MAX_MB),           # read / write / dwait_io mb
    "step.io_kb": (0, FILE_MAX_MB * 1024),
    "step.us_per_page": (0.01, 1_000_000),
    "step.phases": (1, 10_000),
    "step.spawn_count": (0, PID_MAX),
    "step.kalloc_order": (0, 9),
    "step.kalloc_count": (0, 1_000_000),
    "step.loop": (0, 10**9),                  # 0 = forever
    "step.exit": (0, 255),
    "dist.sigma": (0, 10),
}
STEP_RANGE = {"compute_ms": "step.ms", "sleep_s": "step.s", "dwait_s": "step.s",
              "kernel_spin_s": "step.s", "mmap_mb": "step.mb", "munmap_mb": "step.mb",
              "touch_mb": "step.mb", "access_mb": "step.mb"}


def _num(v) -> str:
    """A bound as written: an integer whole, a float by ``%g``."""
    return str(v) if isinstance(v, int) else f"{v:g}"


def _fmt_range(name) -> str:
    lo, hi = RANGES[name]
    return f"{_num(lo)}..{_num(hi)}"


def _check_range(path, key, v, name):
    lo, hi = RANGES[name]
    if not lo <= v <= hi:
        raise WorkloadError(path, key, f"{_short(v, 30)} is out of range {_fmt_range(name)}")


# ---------------------------------------------------------------------------- schema
TOP_KEYS = {"name": str, "description": str, "question": str, "thread": str,
            "provenance": str, "machine": dict, "run": dict, "file": list, "program": list,
            "task": list, "template": dict, "make": dict, "extends": str, "init": dict,
            "irq": list, "sweep": dict}
INIT_KEYS = {"script": list}
IRQ_KEYS = {"name": str, "gfp": str, "order": int, "pages": int, "interval_ms": (int, float, dict),
            "hold_ms": (int, float, dict), "start_s": (int, float)}
MACHINE_KEYS = {"ram_mb": int, "swap_mb": int, "cpus": int, "reserved_kb": int,
                "boot_slab_kb": int, "dcache_kb": int, "costs": dict}
RUN_KEYS = {"time_limit_s": (int, float), "watchdog_s": (int, float),
            "thrash_limit_s": (int, float), "seeds": int}
FILE_KEYS = {"name": str, "size_mb": (int, float), "size_kb": (int, float)}
PROGRAM_KEYS = {"name": str, "text_kb": int, "ws_kb": int, "vm_kb": int}
TASK_KEYS = {"name": str, "count": int, "program": str, "role": str, "uid": int, "euid": int,
             "nice": int, "caps": list, "start_s": (int, float, dict), "daemon": bool,
             "goal": bool, "ignores_sigterm": bool, "oom_score_adj": int, "script": list,
             "age_s": (int, float), "cpu_s": (int, float)}
TEMPLATE_KEYS = {k: v for k, v in TASK_KEYS.items()
                 if k not in ("count", "start_s", "goal", "age_s", "cpu_s")}
MAKE_KEYS = {"name": str, "role": str, "program": str, "jobs": int, "directories": int,
             "files_per_dir": (int, dict), "job": str, "uid": int, "start_s": (int, float)}
DIST_KEYS = {"dist", "lo", "hi", "mean", "sd", "median", "sigma", "min", "max"}
DISTS = {"uniform": ("lo", "hi"), "normal": ("mean", "sd"), "lognormal": ("median", "sigma"),
         "exponential": ("mean",)}
CAPS = {"CAP_SYS_ADMIN", "CAP_SYS_RAWIO"}

# step name -> (its value type, allowed option keys)
NUM = (int, float, dict)
STEPS = {
    "compute_ms": (NUM, set()),
    "mmap_mb": (NUM, set()),
    "munmap_mb": (NUM, set()),
    "touch_mb": (NUM, {"us_per_page"}),
    "access_mb": (NUM, {"us_per_page"}),         # touch own anonymous memory again (swap-in)
    "grow": (dict, set()),                       # {mb, cpu_ms, phases}
    "read": (str, {"mb", "kb", "on_fail"}),       # on_fail: "exit" (default) or "continue"
    "write": (str, {"mb", "kb", "on_fail"}),
    "spawn": (str, {"wait", "count"}),
    "wait_children": (bool, set()),
    "sleep_s": (NUM, set()),
    "dwait_s": (NUM, set()),
    "dwait_io": (str, {"mb", "kb"}),             # a D wait whose I/O first needs memory (GFP_NOIO)
    "kernel_spin_s": (NUM, set()),               # looping in the kernel (R state), deaf to signals
    "kalloc": (str, {"order", "count", "hold_s", "on_fail"}),
    "loop": (int, {"steps"}),
    "exit": (int, set()),
}
GROW_KEYS = {"mb": NUM, "cpu_ms": NUM, "phases": int}


def _type_name(t):
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false",
            dict: "a table", list: "a list"}.get(t, str(t))


def _check_type(path, key, val, typ):
    ok = isinstance(val, typ) and not (isinstance(val, bool) and bool not in
                                       (typ if isinstance(typ, tuple) else (typ,)))
    if not ok:
        raise WorkloadError(path, key, f"expected {_type_name(typ)}, got {type(val).__name__} "
                                       f"{_short(val)}")
    if isinstance(val, float) and not math.isfinite(val):
        raise WorkloadError(path, key, f"expected a finite number, got {val}")


def _unknown(path, key, name, allowed):
    near = difflib.get_close_matches(name, list(allowed), n=1)
    hint = f" (did you mean '{near[0]}'?)" if near else f" (expected one of: {', '.join(sorted(allowed))})"
    raise WorkloadError(path, key, f"unknown key {_short(name, 40)}{hint}")


def _check_table(path, prefix, table, schema, required=()):
    for k, v in table.items():
        key = f"{prefix}.{k}" if prefix else k
        if k not in schema:
            _unknown(path, key, k, schema)
        _check_type(path, key, v, schema[k])
    for r in required:
        if r not in table:
            raise WorkloadError(path, f"{prefix}.{r}" if prefix else r, "missing required key")


def _check_num(path, key, v, positive=False, rng=None):
    """A number or a distribution table; never negative; within ``RANGES[rng]`` (a
    distribution: each of its values; ``sigma`` within ``dist.sigma``)."""
    _check_type(path, key, v, (int, float, dict))
    if isinstance(v, dict):
        for k in v:
            if k not in DIST_KEYS:
                _unknown(path, f"{key}.{k}", k, DIST_KEYS)
        d = v.get("dist")
        if not isinstance(d, str) or d not in DISTS:
            raise WorkloadError(path, f"{key}.dist", f"expected one of {sorted(DISTS)}, got "
                                f"{_short(d, 30)}")
        for need in DISTS[d]:
            if need not in v:
                raise WorkloadError(path, f"{key}.{need}", f"missing for dist = \"{d}\"")
        for k, x in v.items():
            if k != "dist":
                _check_type(path, f"{key}.{k}", x, (int, float))
                if x < 0:
                    raise WorkloadError(path, f"{key}.{k}", f"must not be negative, got {x}")
                if k == "sigma" or rng:
                    _check_range(path, f"{key}.{k}", x, "dist.sigma" if k == "sigma" else rng)
        if d == "uniform" and v["lo"] > v["hi"]:
            raise WorkloadError(path, f"{key}.lo", f"lo {v['lo']} > hi {v['hi']}")
        if positive and not any(x > 0 for k, x in v.items() if k != "dist"):
            raise WorkloadError(path, key, "must be positive: every value of the distribution is 0")
        return
    if v < 0 or (positive and v == 0):
        raise WorkloadError(path, key, f"must be {'positive' if positive else 'non-negative'}, got {v}")
    if rng:
        _check_range(path, key, v, rng)


def _surely_zero(v) -> bool:
    """A value (or distribution) that can only be 0."""
    if isinstance(v, dict):
        return v.get("max", 1) == 0 or not any(x > 0 for k, x in v.items()
                                               if k not in ("dist", "sd", "sigma", "min"))
    return v == 0


def _takes_time(step) -> bool:
    """A step that surely moves simulated time on (or ends the script): what a loop needs, or
    it would spin at one instant without end."""
    for kind in ("compute_ms", "sleep_s", "dwait_s", "kernel_spin_s", "touch_mb"):
        if kind in step:
            return not _surely_zero(step[kind])
    if "mmap_mb" in step or "spawn" in step or "exit" in step:
        return True                                # mmap costs CPU, fork costs CPU
    if "grow" in step:
        return not (_surely_zero(step["grow"]["mb"]) and _surely_zero(step["grow"]["cpu_ms"]))
    if "read" in step or "write" in step or "dwait_io" in step:
        return not (_surely_zero(step.get("mb", 0)) and _surely_zero(step.get("kb", 0)))
    if "kalloc" in step:
        return "hold_s" in step and not _surely_zero(step["hold_s"])
    if "loop" in step:
        return any(_takes_time(s) for s in step["steps"])
    return False


def _check_script(path, prefix, script, templates):
    for i, step in enumerate(script):
        key = f"{prefix}[{i}]"
        if not isinstance(step, dict) or not step:
            raise WorkloadError(path, key, "expected a step table such as { compute_ms = 10 }")
        kinds = [k for k in step if k in STEPS]
        if len(kinds) != 1:
            if not kinds:
                _unknown(path, key + "." + next(iter(step)), next(iter(step)), STEPS)
            raise WorkloadError(path, key, f"one step per table, got {kinds}")
        kind = kinds[0]
        typ, opts = STEPS[kind]
        for k in step:
            if k != kind and k not in opts:
                _unknown(path, f"{key}.{k}", k, {kind} | opts)
        val = step[kind]
        _check_type(path, f"{key}.{kind}", val, typ)
        if typ is NUM:
            _check_num(path, f"{key}.{kind}", val, rng=STEP_RANGE[kind])
        if kind == "exit":
            _check_range(path, f"{key}.exit", val, "step.exit")
        if kind == "grow":
            _check_table(path, f"{key}.grow", val, GROW_KEYS, required=("mb", "cpu_ms"))
            _check_num(path, f"{key}.grow.mb", val["mb"], rng="step.mb")
            _check_num(path, f"{key}.grow.cpu_ms", val["cpu_ms"], rng="step.ms")
            _check_range(path, f"{key}.grow.phases", val.get("phases", 1), "step.phases")
        if kind in ("read", "write", "dwait_io"):
            if not ("mb" in step or "kb" in step):
                raise WorkloadError(path, f"{key}.kb", f"{kind} needs mb or kb")
            for u in ("mb", "kb"):
                if u in step:
                    _check_num(path, f"{key}.{u}", step[u], rng=f"step.io_{u}")
        if kind in ("read", "write") and step.get("on_fail", "exit") not in ("exit", "continue"):
            raise WorkloadError(path, f"{key}.on_fail", "expected \"exit\" (the program gives up "
                                "on -ENOMEM) or \"continue\" (it ignores the error)")
        if kind in ("touch_mb", "access_mb") and "us_per_page" in step:
            _check_num(path, f"{key}.us_per_page", step["us_per_page"], positive=True,
                       rng="step.us_per_page")
        if kind == "spawn":
            if val not in templates:
                raise WorkloadError(path, f"{key}.spawn", f"no template '{val}' "
                                    f"(known: {', '.join(sorted(templates)) or 'none'})")
            for o, t in (("wait", bool), ("count", int)):
                if o in step:
                    _check_type(path, f"{key}.{o}", step[o], t)
            if "count" in step:
                _check_range(path, f"{key}.count", step["count"], "step.spawn_count")
        if kind == "kalloc":
            if val not in M.GFP_NAMES:
                near = difflib.get_close_matches(val, list(M.GFP_NAMES), n=1)
                raise WorkloadError(path, f"{key}.kalloc", f"unknown GFP mask {val!r}"
                                    + (f" (did you mean '{near[0]}'?)" if near else ""))
            for o in ("order", "count"):
                if o in step:
                    _check_type(path, f"{key}.{o}", step[o], int)
                    _check_range(path, f"{key}.{o}", step[o], f"step.kalloc_{o}")
            if "hold_s" in step:
                _check_num(path, f"{key}.hold_s", step["hold_s"], rng="step.s")
            if "on_fail" in step and step["on_fail"] not in ("retry", "exit", "continue"):
                raise WorkloadError(path, f"{key}.on_fail", "expected retry, exit or continue")
        if kind == "loop":
            if val < 0:
                raise WorkloadError(path, f"{key}.loop", "must be >= 0 (0 = forever)")
            _check_range(path, f"{key}.loop", val, "step.loop")
            if "steps" not in step or not isinstance(step["steps"], list) or not step["steps"]:
                raise WorkloadError(path, f"{key}.steps", "a loop needs a non-empty steps list")
            _check_script(path, f"{key}.steps", step["steps"], templates)
            if not any(_takes_time(x) for x in step["steps"]):
                raise WorkloadError(path, f"{key}.steps", "no step of the loop surely takes "
                                    "time, so it would spin at one instant: give it one such as "
                                    "{ compute_ms = 1 } or { sleep_s = 1 }")


@dataclass
class Workload:
    name: str
    path: str
    description: str
    machine: M.MachineSpec
    time_limit_s: float
    watchdog_s: float
    seeds: int
    files: dict
    programs: dict
    tasks: list
    templates: dict
    make: dict | None
    raw: dict = field(repr=False)
    roles: dict = field(default_factory=dict)
    init_script: list = field(default_factory=list)
    irqs: list = field(default_factory=list)
    sweep_point: dict = field(default_factory=dict)
    thrash_limit_s: float = 60.0
    time_scale: float = 1.0       # set by time_scaled: the scale its times were multiplied by

    def role_of(self, name: str) -> str:
        return self.roles.get(name, "bystander")


#: what no run reads: the workload's name and prose, and the references ``extends`` and
#: ``sweep`` that are already resolved into its tables (any other key, a new one included, is
#: part of :func:`sim_hash`)
PROSE_KEYS = ("name", "description", "question", "thread", "provenance", "extends", "sweep")


def sim_hash(w: Workload) -> str:
    """What a run of ``w`` depends on, hashed: its resolved tables (``extends`` and the sweep
    point applied), not its name, prose or the file it is written in.  Two workloads with
    the same ``sim_hash`` make the same runs (a sweep point equal to the base workload)."""
    import hashlib
    import json
    tables = {k: v for k, v in w.raw.items() if k not in PROSE_KEYS}
    return hashlib.sha256(json.dumps(tables, sort_keys=True, default=repr).encode()).hexdigest()


# what a real run's plan scales (harness/real/plan.py): the user's CPU, sleeps, waits and start
# times, the run's limits, the modelled disk -- not sizes, and not the kernel's own costs
_TIME_STEP_KEYS = ("compute_ms", "sleep_s", "dwait_s", "kernel_spin_s", "hold_s")
_DIST_TIME_KEYS = ("lo", "hi", "mean", "sd", "median", "min", "max")


def _scaled(v, scale):
    if isinstance(v, dict):
        return {k: (x * scale if k in _DIST_TIME_KEYS else x) for k, x in v.items()}
    return v * scale


def _scale_script(script, scale, user_touch_us):
    out = []
    for st in script:
        st = dict(st)
        for k in _TIME_STEP_KEYS:
            if k in st:
                st[k] = _scaled(st[k], scale)
        if "grow" in st:
            st["grow"] = dict(st["grow"], cpu_ms=_scaled(st["grow"]["cpu_ms"], scale))
        if "touch_mb" in st and "us_per_page" in st:     # the user's work beyond the store
            st["us_per_page"] = _scaled(st["us_per_page"], scale)
        if "access_mb" in st:                            # the user's work per page, as CPU
            st["us_per_page"] = _scaled(st.get("us_per_page", user_touch_us), scale)
        if "steps" in st:
            st["steps"] = _scale_script(st["steps"], scale, user_touch_us)
        out.append(st)
    return out


def time_scaled(w: Workload, scale: float, limit_s: float | None = None) -> Workload:
    """The simulated counterpart of a real run of ``w`` at time scale ``scale``
    (:func:`harness.real.plan.compile_plan`): what the plan multiplies by the scale is
    multiplied here too -- CPU (``compute_ms``, ``grow.cpu_ms``, a touch's or an access's
    ``us_per_page``), sleeps and waits, start times, ``[run]``'s limits, the disk's
    ``disk_request_us`` and ``disk_page_us`` -- and nothing else: sizes, and the kernel's own
    costs (a fault, a page clear, a reclaim scan), which the VM does not compress either.
    ``limit_s``: the run's time limit instead (a real run's wall bound).  A distribution is
    scaled by its location and spread (``lo``/``hi``, ``mean``/``sd``, ``median``, ``min``/
    ``max``; a lognormal's ``sigma`` is a shape), so one random number gives the scaled value
    of the unscaled draw.  The result's ``time_scale`` compresses the engine's progress
    windows as the real record's are (``Progress.at_scale``).  Departure: the simulator's
    compute quantum (10 ms, ``mm.compute``) is not scaled; the runner's is."""
    if scale == 1.0 and limit_s is None:
        return w
    raw = copy.deepcopy(w.raw)
    mach = raw.setdefault("machine", {})
    base = M.Costs().with_overrides(mach.get("costs", {}))
    costs = dict(mach.get("costs", {}))
    for k in ("disk_request_us", "disk_page_us"):
        costs[k] = max(1, int(round(getattr(base, k) * scale)))
    mach["costs"] = costs
    run = raw.setdefault("run", {})
    for k, default in (("time_limit_s", w.time_limit_s), ("watchdog_s", w.watchdog_s),
                       ("thrash_limit_s", w.thrash_limit_s)):
        run[k] = default * scale
    if limit_s is not None:
        run["time_limit_s"] = float(limit_s)
    touch = base.user_touch_us
    for t in raw.get("task", []):
        if "start_s" in t:
            t["start_s"] = _scaled(t["start_s"], scale)
        t["script"] = _scale_script(t.get("script", []), scale, touch)
    for tpl in raw.get("template", {}).values():
        tpl["script"] = _scale_script(tpl.get("script", []), scale, touch)
    if "make" in raw and "start_s" in raw["make"]:
        raw["make"]["start_s"] = raw["make"]["start_s"] * scale
    for q in raw.get("irq", []):
        for k in ("interval_ms", "hold_ms", "start_s"):
            if k in q:
                q[k] = _scaled(q[k], scale)
    if "init" in raw and "script" in raw["init"]:
        raw["init"]["script"] = _scale_script(raw["init"]["script"], scale, touch)
    out = from_dict(raw, w.path, w.sweep_point)
    out.time_scale = w.time_scale * scale
    return out


def load_all(path) -> list[Workload]:
    """Every workload a file defines: one, or one per point of its ``[sweep]`` grid."""
    path = Path(path)
    raw = _read_toml(path)
    raw = _resolve_extends(raw, path, set())
    if "sweep" not in raw:
        return [from_dict(raw, path)]
    return [from_dict(point, path, sweep_point=values) for point, values in _sweep(raw, path)]


def _read_toml(path: Path, where=None) -> dict:
    """A workload file's tables: at most ``MAX_FILE_BYTES``, UTF-8 (an error names the byte
    offset), TOML, nested at most ``MAX_DEPTH`` deep.  ``where``: the file an error is reported
    against (the one that ``extends`` this one)."""
    shown = where or path
    pre = "" if where is None else f"{path}: "
    try:
        if not path.is_file():
            raise WorkloadError(shown, "", f"{pre}no such workload file" if path.exists() is False
                                else f"{pre}not a regular file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise WorkloadError(shown, "", f"{pre}{size} bytes, more than a workload file may "
                                f"have ({MAX_FILE_BYTES})")
        data = path.read_bytes()[:MAX_FILE_BYTES + 1]
    except OSError as e:
        raise WorkloadError(shown, "", f"{pre}cannot read: {e.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise WorkloadError(shown, "", f"{pre}not UTF-8: byte 0x{data[e.start]:02x} at offset "
                            f"{e.start}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise WorkloadError(shown, "", f"{pre}TOML syntax error: {e}") from None
    except RecursionError:
        raise WorkloadError(shown, "", f"{pre}nested deeper than {MAX_DEPTH} levels") from None
    _check_depth(shown, raw)
    return raw


def _check_depth(path, raw):
    """Tables and arrays nested at most ``MAX_DEPTH`` deep (walked without recursion)."""
    stack = [(raw, 1, "")]
    while stack:
        node, depth, key = stack.pop()
        if depth > MAX_DEPTH:
            raise WorkloadError(path, key[:80], f"nested deeper than {MAX_DEPTH} levels")
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            if isinstance(v, (dict, list)):
                stack.append((v, depth + 1, f"{key}.{k}" if isinstance(k, str) else f"{key}[{k}]"))


def load(path, name: str | None = None) -> Workload:
    """The workload of a file; for a sweep file, the point called ``name``."""
    ws = load_all(path)
    if name is None and len(ws) == 1:
        return ws[0]
    for w in ws:
        if w.name == name:
            return w
    raise WorkloadError(path, "sweep", f"the file holds {len(ws)} workloads; name one of: "
                        + ", ".join(w.name for w in ws))


def _sweep(raw: dict, path):
    """``[sweep]`` maps dotted keys (``"make.jobs"``, ``"machine.ram_mb"``) to lists of values;
    each point of the grid is a workload named ``<name>.<leaf><value>[.<leaf><value>...]``."""
    import itertools
    grid = raw["sweep"]
    _check_type(path, "sweep", grid, dict)
    if not grid:
        raise WorkloadError(path, "sweep", "an empty grid: give at least one key with values")
    keys = []
    points = 1
    for key, vals in grid.items():
        if not isinstance(vals, list) or not vals:
            raise WorkloadError(path, f"sweep.{key}", "expected a non-empty list of values")
        points *= len(vals)
        if points > MAX_SWEEP_POINTS:
            raise WorkloadError(path, f"sweep.{key}", f"the grid has more than "
                                f"{MAX_SWEEP_POINTS} points ({len(vals)} values here)")
        for v in vals:
            if isinstance(v, (dict, list)):
                raise WorkloadError(path, f"sweep.{key}", f"a sweep value is a number, a string "
                                    f"or true/false, got {_short(v, 30)}")
        parts = key.split(".")
        if parts[0] not in ("machine", "make", "run") or len(parts) < 2:
            raise WorkloadError(path, f"sweep.{key}", "a sweep sets machine.*, make.* or run.* "
                                "keys, e.g. \"make.jobs\" = [4, 16, 64, 0]")
        keys.append((key, parts, vals))
    base = {k: v for k, v in raw.items() if k != "sweep"}
    for combo in itertools.product(*(vals for _, _, vals in keys)):
        point = copy.deepcopy(base)
        suffix = []
        values = {}
        for (key, parts, _), v in zip(keys, combo):
            node = point
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise WorkloadError(path, f"sweep.{key}", f"{part} is not a table")
            node[parts[-1]] = v
            suffix.append(f"{parts[-1]}{v}")
            values[key] = v
        point["name"] = f"{raw.get('name', '')}." + ".".join(suffix)
        yield point, values


def _merge(base: dict, over: dict) -> dict:
    """Tables merge key by key; anything else (numbers, strings, arrays) is replaced."""
    out = dict(base)
    for key, v in over.items():
        out[key] = _merge(out[key], v) if isinstance(v, dict) and isinstance(out.get(key), dict) else v
    return out


def _resolve_extends(raw: dict, path: Path, seen: set) -> dict:
    """``extends = "other"``: start from ``other.toml`` in the same folder and override it."""
    base_name = raw.get("extends")
    if base_name is None:
        return raw
    _check_type(path, "extends", base_name, str)
    if not NAME_RE.match(base_name) or ".." in base_name:
        raise WorkloadError(path, "extends", f"not a plain workload name: {base_name!r}")
    base_path = path.parent / f"{base_name}.toml"
    if base_path.resolve() in seen or base_path.resolve() == path.resolve():
        raise WorkloadError(path, "extends", f"circular extends through {base_name!r}")
    if not base_path.exists():
        raise WorkloadError(path, "extends", f"no workload file {base_path}")
    base = _read_toml(base_path, where=path)
    if len(seen) >= MAX_DEPTH:
        raise WorkloadError(path, "extends", f"a chain of more than {MAX_DEPTH} extends")
    base = _resolve_extends(base, base_path, seen | {path.resolve()})
    merged = _merge({k: v for k, v in base.items() if k not in ("provenance", "question", "thread")},
                    {k: v for k, v in raw.items() if k != "extends"})
    return merged


def from_dict(raw: dict, path="<dict>", sweep_point=None) -> Workload:
    _check_table(path, "", raw, TOP_KEYS, required=("name", "machine", "task"))
    name = raw["name"]
    if not NAME_RE.match(name) or ".." in name:
        raise WorkloadError(path, "name", f"not a plain name: {name!r} (letters, digits, . _ + -)")
    mach = raw["machine"]
    _check_table(path, "machine", mach, MACHINE_KEYS, required=("ram_mb",))
    for k in ("ram_mb", "swap_mb", "reserved_kb", "boot_slab_kb", "dcache_kb"):
        if k in mach and mach[k] < 0:
            raise WorkloadError(path, f"machine.{k}", f"must not be negative, got {mach[k]}")
    if mach.get("cpus", 1) < 1:
        raise WorkloadError(path, "machine.cpus", f"need at least one CPU, got {mach.get('cpus')}")
    if mach["ram_mb"] <= 16:
        raise WorkloadError(path, "machine.ram_mb", f"{mach['ram_mb']} MB leaves no ZONE_NORMAL "
                            "(i386 needs more than 16 MB)")
    for k, v in mach.items():
        if k != "costs":
            _check_range(path, f"machine.{k}", v, f"machine.{k}")
    costs = mach.get("costs", {})
    for k, v in costs.items():
        if k not in M.Costs.names():
            _unknown(path, f"machine.costs.{k}", k, M.Costs.names())
        _check_type(path, f"machine.costs.{k}", v, (int, float))
        _check_range(path, f"machine.costs.{k}", v,
                     f"costs.{k}" if f"costs.{k}" in RANGES else "costs.per_item_us")
    if isinstance(costs.get("timeslice_us"), float) or isinstance(costs.get("disk_request_us"), float) \
            or isinstance(costs.get("disk_page_us"), float):
        bad = next(k for k in ("timeslice_us", "disk_request_us", "disk_page_us")
                   if isinstance(costs.get(k), float))
        raise WorkloadError(path, f"machine.costs.{bad}", "expected an integer (microseconds)")
    spec = M.MachineSpec(**{k: v for k, v in mach.items() if k != "costs"},
                         costs=M.Costs().with_overrides(costs))
    short = _boot_shortfall(spec)
    if short:
        kind, pages = short
        raise WorkloadError(path, f"machine.{kind}", f"the boot allocations do not fit in "
                            f"{spec.ram_mb} MB: {pages} pages ({pages * 4} KB) short")
    run = raw.get("run", {})
    _check_table(path, "run", run, RUN_KEYS)
    for k in ("time_limit_s", "watchdog_s", "thrash_limit_s"):
        if k in run and run[k] <= 0:
            raise WorkloadError(path, f"run.{k}", f"must be positive, got {run[k]}")
    for k, v in run.items():
        _check_range(path, f"run.{k}", v, f"run.{k}")
    files = {}
    for i, f in enumerate(raw.get("file", [])):
        _check_type(path, f"file[{i}]", f, dict)
        _check_table(path, f"file[{i}]", f, FILE_KEYS, required=("name",))
        for k in ("size_mb", "size_kb"):
            if k in f:
                _check_range(path, f"file[{i}].{k}", f[k], f"file.{k}")
        size = f.get("size_mb", 0) * 1024 + f.get("size_kb", 0)
        files[f["name"]] = int(size * 1024 // M.PAGE_SIZE)
    programs = {}
    for i, p in enumerate(raw.get("program", [])):
        _check_type(path, f"program[{i}]", p, dict)
        _check_table(path, f"program[{i}]", p, PROGRAM_KEYS, required=("name",))
        for k in ("text_kb", "ws_kb", "vm_kb"):
            if p.get(k, 0) < 0:
                raise WorkloadError(path, f"program[{i}].{k}", "must not be negative")
            _check_range(path, f"program[{i}].{k}", p.get(k, 0), "program.kb")
        if p["name"] in programs:
            raise WorkloadError(path, f"program[{i}].name", f"duplicate program {p['name']!r}")
        programs[p["name"]] = p
    templates = raw.get("template", {})
    roles = {}

    def check_task(prefix, t, schema, required):
        _check_table(path, prefix, t, schema, required=required)
        if not NAME_RE.match(t["name"]):
            raise WorkloadError(path, f"{prefix}.name", f"not a plain name: {t['name']!r}")
        if t.get("role", "bystander") not in ROLES:
            raise WorkloadError(path, f"{prefix}.role", f"expected one of {ROLES}, got {t['role']!r}")
        if "program" in t and t["program"] not in programs:
            raise WorkloadError(path, f"{prefix}.program", f"no program {t['program']!r} "
                                f"(known: {', '.join(sorted(programs)) or 'none'})")
        for c in t.get("caps", []):
            if c not in CAPS:
                raise WorkloadError(path, f"{prefix}.caps", f"unknown capability {c!r}; known {sorted(CAPS)}")
        if not -20 <= t.get("nice", 0) <= 19:
            raise WorkloadError(path, f"{prefix}.nice", "expected -20..19")
        if not -1000 <= t.get("oom_score_adj", 0) <= 1000:
            raise WorkloadError(path, f"{prefix}.oom_score_adj", "expected -1000..1000")
        if "start_s" in t:
            _check_num(path, f"{prefix}.start_s", t["start_s"], rng="task.start_s")
        if t.get("count", 1) < 1:
            raise WorkloadError(path, f"{prefix}.count", "must be at least 1")
        for k in ("count", "uid", "euid", "age_s", "cpu_s"):
            if k in t:
                _check_range(path, f"{prefix}.{k}", t[k], "task.uid" if k == "euid" else f"task.{k}")
        _check_script(path, f"{prefix}.script", t.get("script", []), templates)
        roles[t["name"]] = t.get("role", "bystander")

    for tname, t in templates.items():
        _check_type(path, f"template.{tname}", t, dict)
        t = dict(t, name=t.get("name", tname))
        templates[tname] = t
    for tname, t in templates.items():
        check_task(f"template.{tname}", t, TEMPLATE_KEYS, ("script",))
    tasks = raw["task"]
    if not tasks:
        raise WorkloadError(path, "task", "the task list is empty")
    seen = set()
    for i, t in enumerate(tasks):
        _check_type(path, f"task[{i}]", t, dict)
        check_task(f"task[{i}]", t, TASK_KEYS, ("name", "script"))
        if t["name"] in seen:
            raise WorkloadError(path, f"task[{i}].name", f"duplicate task name {t['name']!r}")
        seen.add(t["name"])
    make = raw.get("make")
    if make is not None:
        _check_table(path, "make", make, MAKE_KEYS, required=("job", "directories"))
        if make["job"] not in templates:
            raise WorkloadError(path, "make.job", f"no template {make['job']!r}")
        if make.get("jobs", 0) < 0:
            raise WorkloadError(path, "make.jobs", "must be >= 0 (0 = unlimited, as make -j)")
        if make["directories"] < 1:
            raise WorkloadError(path, "make.directories", "must be at least 1")
        _check_num(path, "make.files_per_dir", make.get("files_per_dir", 10),
                   rng="make.files_per_dir")
        for k, rname in (("jobs", "make.jobs"), ("directories", "make.directories"),
                         ("uid", "task.uid"), ("start_s", "task.start_s")):
            if k in make:
                _check_range(path, f"make.{k}", make[k], rname)
        roles[make.get("name", "make")] = make.get("role", "bystander")
    init = raw.get("init", {})
    _check_table(path, "init", init, INIT_KEYS)
    _check_script(path, "init.script", init.get("script", []), templates)
    irqs = raw.get("irq", [])
    for i, q in enumerate(irqs):
        _check_type(path, f"irq[{i}]", q, dict)
        _check_table(path, f"irq[{i}]", q, IRQ_KEYS, required=("name", "interval_ms"))
        gfp = q.get("gfp", "GFP_ATOMIC")
        if gfp not in M.GFP_NAMES:
            near = difflib.get_close_matches(gfp, list(M.GFP_NAMES), n=1)
            raise WorkloadError(path, f"irq[{i}].gfp", f"unknown GFP mask {gfp!r}"
                                + (f" (did you mean '{near[0]}'?)" if near else ""))
        if M.GFP_NAMES[gfp] & M.GFPF_WAIT:
            raise WorkloadError(path, f"irq[{i}].gfp", f"{gfp} may sleep; interrupts cannot "
                                "(use GFP_ATOMIC)")
        _check_num(path, f"irq[{i}].interval_ms", q["interval_ms"], positive=True,
                   rng="irq.interval_ms")
        if "hold_ms" in q:
            _check_num(path, f"irq[{i}].hold_ms", q["hold_ms"], rng="irq.hold_ms")
        if not 0 <= q.get("order", 0) <= 9 or q.get("pages", 1) < 1:
            raise WorkloadError(path, f"irq[{i}].order", "order 0..9 and pages >= 1")
        for k in ("order", "pages", "start_s"):
            if k in q:
                _check_range(path, f"irq[{i}].{k}", q[k], f"irq.{k}")
    for n in ("init",):
        roles.setdefault(n, "protected")
    # feasibility: one task larger than RAM + swap can never run
    limit = spec.ram_pages + spec.swap_pages
    for where, t in [(f"task[{i}]", t) for i, t in enumerate(tasks)] + \
                    [(f"template.{n}", t) for n, t in templates.items()]:
        need = _max_anon_pages(t.get("script", []))
        if need > limit:
            raise WorkloadError(path, f"{where}.script", f"needs at least {need // 256} MB of "
                                f"anonymous memory, more than RAM + swap ({limit // 256} MB)")
    return Workload(name=name, path=str(path), description=raw.get("description", ""),
                    machine=spec, time_limit_s=float(run.get("time_limit_s", 3600)),
                    watchdog_s=float(run.get("watchdog_s", 120)), seeds=run.get("seeds", 20),
                    files=files, programs=programs, tasks=tasks, templates=templates,
                    make=make, raw=raw, roles=roles, init_script=init.get("script", []),
                    irqs=irqs, sweep_point=dict(sweep_point or {}),
                    thrash_limit_s=float(run.get("thrash_limit_s", 60)))


def _boot_shortfall(spec):
    """What ``Kernel._reserve_boot`` would lack: (machine key, pages short) or None.  The
    kernel image and mem_map take any free page, zone by zone from DMA up; the boot slab and
    dcache only pages above each zone's ``pages_high``."""
    sizes = M.zone_sizes(spec.ram_pages)
    free = list(sizes)
    high = [M.zone_watermarks(i, n)[2] if n else 0 for i, n in enumerate(sizes)]
    for key, kind, kb in (("reserved_kb", "reserved", spec.reserved_kb),
                          ("boot_slab_kb", "slab", spec.boot_slab_kb),
                          ("dcache_kb", "dcache", spec.dcache_kb)):
        n = kb * 1024 // M.PAGE_SIZE
        for i in range(3):
            if n <= 0:
                break
            take = max(0, min(n, free[i] - (high[i] if kind != "reserved" else 0)))
            free[i] -= take
            n -= take
        if n > 0:
            return key, n
    return None


def _min_value(v):
    if isinstance(v, dict):
        return v.get("lo", v.get("min", 0)) if v["dist"] == "uniform" else 0
    return v


def _max_anon_pages(script) -> int:
    """The least anonymous memory a script is sure to hold at once (fixed sizes only)."""
    held = peak = 0
    for step in script:
        if "touch_mb" in step:
            held += int(_min_value(step["touch_mb"]) * 256)
        elif "munmap_mb" in step:
            held -= int(_min_value(step["munmap_mb"]) * 256)
        elif "grow" in step:
            held += int(_min_value(step["grow"]["mb"]) * 256)
        peak = max(peak, held)
    return peak


def load_dir(folder):
    """Load every ``*.toml`` in a folder.  Returns (workloads by name, errors as strings)."""
    good, errors = {}, []
    for p in sorted(Path(folder).glob("*.toml")):
        try:
            ws = load_all(p)
        except WorkloadError as e:
            errors.append(str(e))
            continue
        for w in ws:
            if w.name in good:
                errors.append(f"{p}: name: duplicate workload name {w.name!r} "
                              f"(also in {good[w.name].path})")
                continue
            good[w.name] = w
    return good, errors


# ---------------------------------------------------------------------------- running
def draw(k, v) -> float:
    """A value or a distribution drawn from the run's generator."""
    return draw_with(k.rng, v)


def draw_with(r, v) -> float:
    """A value, or a distribution (``dist`` uniform / normal / lognormal / exponential, clipped
    to [max(min, 0), max]) drawn from the random generator ``r``."""
    if not isinstance(v, dict):
        return v
    d = v["dist"]
    if d == "uniform":
        x = r.uniform(v["lo"], v["hi"])
    elif d == "normal":
        x = r.gauss(v["mean"], v["sd"])
    elif d == "lognormal":
        x = v["median"] * math.exp(r.gauss(0.0, v["sigma"]))
    else:
        x = r.expovariate(1.0 / v["mean"]) if v["mean"] > 0 else 0.0
    lo, hi = v.get("min", 0.0), v.get("max", math.inf)
    return min(max(x, lo, 0.0), hi)


def _pages(mb) -> int:
    return max(0, int(round(mb * M.PAGES_PER_MB)))



def fault_nominal_us(costs, pages: int, rate_us: float) -> int:
    """A step's nominal CPU for touching ``pages`` new anonymous pages on an idle machine with
    free memory (:func:`harness.mm.fault_anon` without reclaim): fault, zeroing, one allocator
    pass and the user's work per page (also the real plan's, :mod:`harness.real.plan`)."""
    c = costs
    return int(pages * (c.fault_us + c.page_zero_us + c.alloc_pass_us)) + int(pages * rate_us)


def disk_nominal_us(costs, pages: int) -> int:
    """A step's nominal time for ``pages`` at the modelled disk: one request, no queueing
    (:meth:`Model.disk_io`)."""
    return costs.disk_request_us + pages * costs.disk_page_us if pages else 0

class Builder:
    """Creates the workload's tasks inside a kernel and interprets their scripts."""

    def __init__(self, k, w: Workload):
        self.k, self.w = k, w
        for name, pages in w.files.items():
            k.file(name, pages)
        self.program_files = {}
        for name, p in w.programs.items():
            text = _pages(p.get("text_kb", 0) / 1024)
            ws = min(text, _pages(p.get("ws_kb", p.get("text_kb", 0)) / 1024))
            self.program_files[name] = k.file("bin/" + name, text, ws)

    # --- task creation
    def new_mm(self, spec):
        prog = spec.get("program")
        p = self.w.programs.get(prog, {})
        f = self.program_files.get(prog)
        mm = MM(_pages(p.get("vm_kb", 1024) / 1024) + (f.size if f else 0), f)
        if f is not None:
            f.mappers += 1
        return mm

    def task_kwargs(self, spec, role=None):
        return dict(role=role or spec.get("role", "bystander"), uid=spec.get("uid", 0),
                    euid=spec.get("euid"), nice=spec.get("nice", 0), caps=spec.get("caps", ()),
                    daemon=spec.get("daemon", False), ignores_sigterm=spec.get("ignores_sigterm", False),
                    oom_score_adj=spec.get("oom_score_adj", 0), tpl=spec.get("name"))

    def start(self):
        k = self.k
        k.new_task("init", lambda t: self.init_script(t), role="protected", uid=0,
                   mm=MM(_pages(0.5), None), daemon=True)
        for name, gen in (("keventd", MMops.idle_kthread), ("kswapd", self.kswapd),
                          ("bdflush", MMops.idle_kthread), ("kupdated", MMops.kupdated)):
            t = k.new_task(name, (lambda g: (lambda t: g(k, t)))(gen), role="protected",
                           kthread=True, daemon=True)
            if name == "kswapd":
                k.kswapd = t
        k.policy.boot(k)
        for q in self.w.irqs:
            self.start_irq(q)
        for spec in self.w.tasks:
            for i in range(spec.get("count", 1)):
                start = int(draw(k, spec.get("start_s", 0)) * 1e6)
                k.at(start, self._launch, (spec, i))
        if self.w.make:
            m = self.w.make
            k.at(int(m.get("start_s", 0) * 1e6), self._launch_make, m)

    def kswapd(self, k, t):
        return k.policy.kswapd(k, t)

    def init_script(self, t):
        """pid 1: a small resident set, then the workload's ``[init] script`` (if any), then
        asleep.  Its page faults take the i386 rule for init: yield and retry, never die."""
        k = self.k
        yield from MMops.fault_anon(k, t, _pages(0.25), 0)
        try:
            yield from self.steps(t, self.w.init_script)
        except Killed:
            return
        while True:
            yield (SLEEP, k.now + 3600 * 1_000_000)

    # --- interrupts
    def start_irq(self, q):
        """An interrupt source: every ``interval_ms`` it allocates ``pages`` blocks with its GFP
        mask in interrupt context (it cannot sleep; a failure drops the packet) and frees them
        ``hold_ms`` later.  The buffers are owned by an ``irq/<name>`` kernel thread."""
        k = self.k
        owner = k.new_task(f"irq/{q['name']}", lambda t: MMops.idle_kthread(k, t),
                           role="protected", kthread=True, daemon=True)
        gfp = M.GFP_NAMES[q.get("gfp", "GFP_ATOMIC")]
        k.at(int(q.get("start_s", 0) * 1e6), self._irq_fire,
             (q, owner, gfp, q.get("order", 0), q.get("pages", 1), q.get("hold_ms", 1),
              q["interval_ms"]))

    def _irq_fire(self, arg):
        q, owner, gfp, order, pages, hold, interval = arg
        k = self.k
        req = AllocReq(owner, gfp, order, pages,
                       k.zonelists.get(gfp & M.GFP_ZONEMASK) or k.zonelist(gfp), False)
        gen = k.policy.alloc_pages(k, req)
        try:
            next(gen)
            gen.close()                       # it tried to sleep: not allowed in an interrupt
            blocks = 0
        except StopIteration as e:
            blocks = e.value or 0
        if blocks:
            got = req.got
            k.assign(req, "kmem", owner.kmem)
            k.at(k.now + int(draw_with(k.rng, hold) * 1000), self._irq_free,
                 (owner, got[0] + got[1] + got[2]))
        else:
            k.emit("alloc_fail", owner.pid, gfp, order)
        k.at(k.now + max(1, int(draw_with(k.rng, interval) * 1000)), self._irq_fire, arg)

    def _irq_free(self, arg):
        owner, pages = arg
        MMops.kfree(self.k, owner, pages)

    def _launch(self, arg):
        spec, i = arg
        k = self.k
        name = spec["name"]
        init = k.by_pid[1]
        kw = self.task_kwargs(spec)
        t = k.new_task(name, lambda t: self.run_script(t, spec.get("script", [])),
                       parent=init, mm=self.new_mm(spec), goal=spec.get("goal", False), **kw)
        if t.goal:
            k.prog.task_start(t.pid, k.now)
        # a task that has been running for a while already (the long-running database): the
        # box has been up that long; only badness() reads these
        t.start_us -= int(spec.get("age_s", 0) * 1e6)
        t.utime += int(spec.get("cpu_s", 0) * 1e6)

    def _launch_make(self, m):
        k = self.k
        init = k.by_pid[1]
        spec = {"name": m.get("name", "make"), "program": m.get("program"), "uid": m.get("uid", 0)}
        t = k.new_task(spec["name"], lambda t: self.make_driver(t, m), parent=init,
                       mm=self.new_mm(spec), goal=True, **self.task_kwargs(spec, m.get("role")))
        k.prog.task_start(t.pid, k.now)

    # --- scripts
    def run_script(self, t, script):
        k = self.k
        try:
            code = yield from self.steps(t, script)
        except Killed:
            return
        if t.alive:
            if k.fatal_pending(t):
                self.die_of_signal(t)
            else:
                k.do_exit(t, code or 0, "exit" if not code else "error")

    def die_of_signal(self, t):
        reason = "oom-kill" if t.killed_at is not None else "signal"
        self.k.do_exit(t, -t.sigpending, reason)
        raise Killed

    def check_signal(self, t):
        if self.k.fatal_pending(t):
            self.die_of_signal(t)

    def steps(self, t, script):
        """Interpret a script; returns an exit code (None = fell off the end).

        A goal task's completed step is reported to the engine's progress meter (``k.prog``)
        with its nominal time (:meth:`step`); a step cut short by a fatal signal is not."""
        k = self.k
        prog = k.prog
        for step in script:
            self.check_signal(t)
            t0 = k.now
            nominal, code = yield from self.step(t, step)
            if code is not None:
                return code
            if nominal is not None and t.pid in prog.start and not k.fatal_pending(t):
                prog.step_done(t.pid, t0, k.now, nominal)
            self.check_signal(t)
        return None

    def step(self, t, s):
        """One step of a script: returns ``(nominal us, exit code)``.  The nominal time is
        what the step asked for on an idle machine with free memory -- the CPU (a fault:
        ``fault_us + page_zero_us + alloc_pass_us`` and the user's touch per page), the sleep
        or wait, the I/O at the modelled disk (``disk_request_us + pages * disk_page_us``, no
        queueing) -- or None for what is no step of its own: a loop (its steps count), a fork
        with a wait (each fork is a step; the task is suspended from progress while it waits:
        its children's steps count), a failed I/O."""
        k = self.k
        c = k.costs
        nominal = None
        if "compute_ms" in s:
            nominal = int(draw(k, s["compute_ms"]) * 1000)
            yield from MMops.compute(k, t, nominal)
        elif "mmap_mb" in s:
            t.mm.total_vm += _pages(draw(k, s["mmap_mb"]))
            k.changed()
            nominal = 20
            yield (CPU, 20, False)
        elif "munmap_mb" in s:
            MMops.munmap_anon(k, t, _pages(draw(k, s["munmap_mb"])))
        elif "touch_mb" in s:
            n = _pages(draw(k, s["touch_mb"]))
            mm = t.mm
            room = mm.total_vm - mm.rss - (mm.text.size if mm.text else 0)
            if n > room:
                mm.total_vm += n - max(0, room)      # brk/mmap growth the script did not declare
            rate = draw(k, s.get("us_per_page", c.user_touch_us))
            nominal = self._fault_us(n, rate)
            yield from MMops.fault_anon(k, t, n, rate)
        elif "access_mb" in s:
            # the task's anonymous working set again: what swap_out took comes back from swap;
            # nominal: every page resident, the user's work only
            n = _pages(draw(k, s["access_mb"]))
            rate = draw(k, s.get("us_per_page", c.user_touch_us))
            nominal = int(n * rate)
            yield from MMops.access_anon(k, t, n, rate)
        elif "grow" in s:
            g = s["grow"]
            n = _pages(draw(k, g["mb"]))
            cpu = int(draw(k, g["cpu_ms"]) * 1000)
            ph = g.get("phases", 8)
            t.mm.total_vm += n
            nominal = self._fault_us(n, c.user_touch_us) + cpu
            for i in range(ph):
                part = n * (i + 1) // ph - n * i // ph
                yield from MMops.fault_anon(k, t, part, k.costs.user_touch_us)
                self.check_signal(t)
                yield from MMops.compute(k, t, cpu * (i + 1) // ph - cpu * i // ph)
                self.check_signal(t)
        elif "read" in s or "write" in s:
            fname = s.get("read") or s.get("write")
            f = k.file(fname, 0)
            n = _pages(draw(k, s.get("mb", 0))) + _pages(draw(k, s.get("kb", 0)) / 1024)
            if "read" in s:
                n = min(n, f.size) if f.size else n
                if not f.size:
                    f.size = n
                rc = yield from MMops.file_read(k, t, f, n)
            else:
                rc = yield from MMops.file_write(k, t, f, n)
            nominal = self._disk_us(n) if rc != ENOMEM else None   # a failed I/O did nothing
            if rc == ENOMEM and s.get("on_fail", "exit") == "exit":
                k.emit("enomem", t.pid, t.name, "read" if "read" in s else "write")
                k.do_exit(t, 1, "enomem")
                raise Killed
        elif "spawn" in s:
            for _ in range(s.get("count", 1)):
                t0 = k.now
                child = yield from self.spawn(t, s["spawn"])
                if child is None:
                    k.emit("enomem", t.pid, t.name, "fork")
                    k.do_exit(t, 1, "enomem")
                    raise Killed
                if t.pid in k.prog.start:             # each fork is a step
                    k.prog.step_done(t.pid, t0, k.now, FORK_US)
                if s.get("wait", False):
                    yield from self.wait_for(t, child)
        elif "wait_children" in s:
            for c in list(t.children):
                yield from self.wait_for(t, c)
        elif "sleep_s" in s:
            nominal = int(draw(k, s["sleep_s"]) * 1e6)
            yield (SLEEP, k.now + nominal)
        elif "dwait_s" in s:
            nominal = int(draw(k, s["dwait_s"]) * 1e6)
            yield (DWAIT, k.now + nominal)
        elif "dwait_io" in s:
            # writing out through a path that must allocate first (buffer heads, bounce pages):
            # GFP_NOIO-like kernel allocations, then the disk; signals wait until it is done
            f = k.file(s["dwait_io"], 0)
            n = _pages(draw(k, s.get("mb", 0))) + _pages(draw(k, s.get("kb", 0)) / 1024)
            got = yield from MMops.kalloc(k, t, M.GFP_NOIO, 0, n)
            nominal = int(n * c.alloc_pass_us) + self._disk_us(n)
            if got:
                yield (DWAIT, k.disk_io(got))
                MMops.kfree(k, t, got)
            k.touch_file(f)
        elif "kernel_spin_s" in s:
            # stuck in R state inside the kernel: CPU burns, pending signals are not looked at
            left = nominal = int(draw(k, s["kernel_spin_s"]) * 1e6)
            while left > 0:
                q = min(left, k.costs.timeslice_us)
                yield (CPU, q, False)
                left -= q
        elif "kalloc" in s:
            gfp = M.GFP_NAMES[s["kalloc"]]
            order, count = s.get("order", 0), s.get("count", 1)
            nominal = int(c.alloc_pass_us)
            while True:
                got = yield from MMops.kalloc(k, t, gfp, order, count)
                if got >= count:
                    break
                MMops.kfree(k, t, got << order)
                on_fail = s.get("on_fail", "exit")
                if on_fail == "exit":
                    k.emit("enomem", t.pid, t.name, "kalloc")
                    k.do_exit(t, 1, "enomem")
                    raise Killed
                if on_fail == "continue":
                    break
                yield (SLEEP, k.now + M.JIFFY_US)
            if "hold_s" in s:
                hold = int(draw(k, s["hold_s"]) * 1e6)
                nominal += hold
                yield (SLEEP, k.now + hold)
                MMops.kfree(k, t, count << order)
        elif "loop" in s:
            n = s["loop"]
            i = 0
            while n == 0 or i < n:
                code = yield from self.steps(t, s["steps"])
                if code is not None:
                    return None, code
                i += 1
        elif "exit" in s:
            return None, s["exit"]
        return nominal, None

    def _fault_us(self, pages: int, rate_us: float) -> int:
        return fault_nominal_us(self.k.costs, pages, rate_us)

    def _disk_us(self, pages: int) -> int:
        return disk_nominal_us(self.k.costs, pages)

    def spawn(self, parent, tname):
        k = self.k
        spec = self.w.templates[tname]

        def make_child(ts_zone):
            c = k.new_task(spec["name"], lambda t: self.run_script(t, spec["script"]),
                           parent=parent, mm=self.new_mm(spec), **self.task_kwargs(spec))
            c.ts_zone = ts_zone
            parent.children.append(c)
            if parent.pid in k.prog.start:    # a goal task's work, done by its descendants
                k.prog.task_start(c.pid, k.now)
            return c

        child = yield from MMops.spawn(k, parent, make_child)
        return child

    def wait_for(self, t, child):
        """``wait4`` on one child: sleep (interruptibly) until it has exited."""
        k = self.k
        k.prog.suspend(t.pid, k.now)
        while child.alive:
            child.waiters.append(t)
            t.wait_child = True
            yield (WAITQ, None, True)
            self.check_signal(t)
        k.prog.resume(t.pid, k.now)
        if child in t.children:
            t.children.remove(child)
        return child.exit_code

    def make_driver(self, t, m):
        """GNU make -j N over recursive directories: fork a job per file, at most N at once
        (0 = unlimited); the first failed fork or failed job stops new jobs, the running ones
        are waited for, and make exits 2 (no -k)."""
        k = self.k
        jobs = m.get("jobs", 0)
        failed = False
        try:
            for d in range(m["directories"]):
                nfiles = max(1, int(round(draw(k, m.get("files_per_dir", 10)))))
                running = []
                for _ in range(nfiles):
                    while jobs and len(running) >= jobs:
                        failed |= (yield from self._reap_one(t, running)) != 0
                        if failed:
                            break
                    if failed:
                        break
                    t0 = k.now
                    child = yield from self.spawn(t, m["job"])
                    if child is None:
                        k.emit("enomem", t.pid, t.name, "fork")
                        failed = True
                        break
                    k.prog.step_done(t.pid, t0, k.now, FORK_US)
                    running.append(child)
                    self.check_signal(t)
                while running:
                    failed |= (yield from self._reap_one(t, running)) != 0
                if failed:
                    break
        except Killed:
            return
        if t.alive:
            if k.fatal_pending(t):
                try:
                    self.die_of_signal(t)
                except Killed:
                    return
            k.do_exit(t, 2 if failed else 0, "error" if failed else "exit")

    def _reap_one(self, t, running):
        k = self.k
        while True:
            for c in running:
                if not c.alive:
                    running.remove(c)
                    if c in t.children:
                        t.children.remove(c)
                    return c.exit_code or 0
            for c in running:
                c.waiters.append(t)
            t.wait_child = True
            k.prog.suspend(t.pid, k.now)
            yield (WAITQ, None, True)
            k.prog.resume(t.pid, k.now)
            self.check_signal(t)



# ---------------------------------------------------------------------------- describe
def _fmt_val(v) -> str:
    if isinstance(v, dict) and "dist" in v:
        args = ", ".join(f"{k}={x}" for k, x in v.items() if k != "dist")
        return f"{v['dist']}({args})"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}={_fmt_val(x)}" for k, x in v.items()) + "}"
    return str(v)


def _fmt_steps(script, indent="      ") -> list[str]:
    out = []
    for st in script:
        kind = next(k for k in st if k in STEPS)
        if kind == "loop":
            n = st["loop"]
            out.append(f"{indent}loop {'forever' if n == 0 else f'{n} times'}:")
            out.extend(_fmt_steps(st["steps"], indent + "  "))
            continue
        opts = ", ".join(f"{k}={_fmt_val(v)}" for k, v in st.items() if k != kind)
        out.append(f"{indent}{kind} {_fmt_val(st[kind])}" + (f" ({opts})" if opts else ""))
    return out


def describe(w: Workload) -> str:
    """What a workload is: machine, the zones and watermarks it implies, tasks, oracle."""
    sp = w.machine
    sizes = M.zone_sizes(sp.ram_pages)
    lines = [f"{w.name}: {w.description}", f"  file: {w.path}"]
    if w.sweep_point:
        lines.append("  sweep point: " + ", ".join(f"{k} = {v}" for k, v in w.sweep_point.items()))
    for key in ("question", "thread"):
        if w.raw.get(key):
            lines.append(f"  {key}: {w.raw[key]}")
    over = {f: getattr(sp.costs, f) for f in M.Costs.names()
            if getattr(sp.costs, f) != getattr(M.Costs(), f)}
    lines += ["", f"machine: {sp.ram_mb} MB RAM, {sp.swap_mb} MB swap, {sp.cpus} CPU(s), "
              f"{sp.reserved_kb} KB reserved at boot" + (f", cost overrides {over}" if over else ""),
              "zones (2.4 free_area_init_core: mask = clamp(size/128, 20, 255); min/low/high = "
              "mask, 2 mask, 3 mask):"]
    for i, n in enumerate(sizes):
        if n:
            mn, lo, hi = M.zone_watermarks(i, n)
            lines.append(f"  {M.ZONE_NAMES[i]:8} {n:7d} pages ({n // 256:5d} MB)  "
                         f"min {mn:3d}  low {lo:3d}  high {hi:3d}")
    zl = M.build_zonelist(M.GFP_KERNEL, sizes)
    acc_min, acc_low, parts = 1, 1, []
    for zi in zl:
        mn, lo, _ = M.zone_watermarks(zi, sizes[zi])
        acc_min += mn
        acc_low += lo
        parts.append(f"{M.ZONE_NAMES[zi]} > {acc_low}/{acc_min}")
    lines.append("  mainline summed thresholds, GFP_KERNEL order 0 (pass A / B): " + ", ".join(parts))
    lines += ["", f"run: time limit {w.time_limit_s:g} s, watchdog {w.watchdog_s:g} s, "
              f"thrash limit {w.thrash_limit_s:g} s, {w.seeds} seeds by default"]
    if w.files:
        lines.append("files: " + ", ".join(f"{n} ({p // 256} MB)" for n, p in w.files.items()))
    if w.init_script:
        lines.append("init (pid 1) script:")
        lines += _fmt_steps(w.init_script)
    lines.append("tasks:")
    for t in w.tasks:
        attrs = [f"role {t.get('role', 'bystander')}", f"uid {t.get('uid', 0)}"]
        for k in ("count", "program", "nice", "caps", "start_s", "age_s", "cpu_s", "daemon",
                  "goal", "ignores_sigterm", "oom_score_adj"):
            if k in t:
                attrs.append(f"{k} {_fmt_val(t[k])}")
        lines.append(f"  {t['name']}: " + ", ".join(attrs))
        lines += _fmt_steps(t.get("script", []))
    for name, t in w.templates.items():
        lines.append(f"  template {name}: role {t.get('role', 'bystander')}, uid {t.get('uid', 0)}"
                     + (f", program {t['program']}" if "program" in t else ""))
        lines += _fmt_steps(t.get("script", []))
    if w.make:
        m = w.make
        lines.append(f"  {m.get('name', 'make')}: make -j{m.get('jobs', 0)} over "
                     f"{m['directories']} directories of {_fmt_val(m.get('files_per_dir', 10))} "
                     f"files, one '{m['job']}' per file, role {m.get('role', 'bystander')}")
    for q in w.irqs:
        lines.append(f"  interrupt {q['name']}: {q.get('pages', 1)} x order {q.get('order', 0)} "
                     f"{q.get('gfp', 'GFP_ATOMIC')} every {_fmt_val(q['interval_ms'])} ms, held "
                     f"{_fmt_val(q.get('hold_ms', 1))} ms")
    roles = {}
    for n, r in sorted(w.roles.items()):
        roles.setdefault(r, []).append(n)
    lines += ["", "oracle (read by the metrics only): "
              + "; ".join(f"{r}: {', '.join(ns)}" for r, ns in sorted(roles.items()))
              + "; kernel threads and init are protected"]
    return "\n".join(lines)

"""Compile a :class:`~harness.workload.Workload` into a flat plan for ``vmreal run``.

Every random value is drawn here, with ``random.Random(seed)``, in plan order (tasks in file
order, each script depth first, spawned templates at their spawn site, then ``[make]``): the
runner only executes.  The simulator draws the same distributions lazily in event order, so a
real run and a simulated run of one seed share the workload's distributions, not its exact
values.

Realised (each step means what ``harness.workload.Builder`` makes it mean):

* a task is a process (fork + exec of vmreal, named with the task's name); ``start_s``,
  ``count``, ``uid`` (setuid), ``nice``, ``oom_score_adj``, ``ignores_sigterm``, ``daemon``
  and ``goal`` (the run ends when every goal task has exited and no non-daemon task lives);
* its ``program``: the text is a file of ``text_kb`` mapped read-only whose ``ws_kb`` working
  set is read before the task's first step and again every compute quantum (10 ms simulated)
  as running code refaults its text; ``vm_kb`` is mapped but not touched (the simulator's
  ``touch`` uses that room first, so does the runner);
* ``touch_mb`` (one store per page into the mapped room, then into new anonymous mappings),
  ``mmap_mb``, ``munmap_mb``, ``grow`` (touch and compute in ``phases``), ``compute_ms`` (CPU
  time, spun on the process CPU clock), ``sleep_s``, ``read`` (sequential through the file from
  where this task stopped, wrapping at its end) and ``write`` (appended) of ``DATA_DIR/<file>``
  with ``on_fail``, ``spawn`` (with ``wait`` and ``count``; each spawned template is its own
  task in the plan), ``wait_children``, ``loop`` (unrolled; ``loop = 0`` is unrolled until
  the iterations' sleeps and CPU cover the workload's time limit), ``exit``;
* ``[make]``: a make-like ``-j N`` driver over per-directory file counts drawn here.

* ``dwait_s``: a read from a FUSE file served by the runner, answered only when the wait is
  over; after a fatal signal the kernel waits for the answer uninterruptibly (csrc/vmreal.c).

* ``access_mb``: one store a page into the pages the task touched before, from where its last
  access stopped (wrapping), then the user's work per page (``us_per_page``) as CPU.

Not realised, :class:`NotRealisable` says which and why: ``kernel_spin_s``,
``dwait_io``, ``kalloc``, ``[[irq]]``, an ``[init] script``, ``age_s``/``cpu_s``, capabilities
of a non-root task, ``euid`` different from ``uid``.

Times: ``time_scale`` multiplies CPU, sleep and start times, the time limit and the disk's
costs (a 2002 PIII's second of CPU is much less on a current core); sizes are not scaled, nor
is the kernel's own work in a step's nominal time (a fault, a fork, an mmap: the guest kernel
does it at its own speed, and the model of the plan, ``workload.time_scaled``, at the model's).
"""
from __future__ import annotations

import os
import random
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .. import workload as W
from ..mm import FORK_US

PAGE_KB = 4
MAX_OPS = 400_000
MAX_TASKS = 20_000
SAMPLE_US = 100_000                # real: /proc/pressure/memory and /proc/vmstat every 100 ms
SAFE_NAME = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9_.+-]*$")


class NotRealisable(Exception):
    """A workload (or one of its features) has no real counterpart; ``str(e)`` says why."""


def _pages(mb) -> int:
    return max(0, int(round(mb * 256)))


@dataclass
class PlanTask:
    id: int
    name: str
    role: str
    start_us: int
    goal: bool
    autostart: bool
    daemon: bool
    uid: int = 0
    nice: int = 0
    oom_score_adj: int = 0
    ignores_sigterm: bool = False
    parent: int | None = None
    ops: list = field(default_factory=list)       # tuples: (name, *args)
    # progress (harness.progress): a goal task and its descendants are measured -- the runner
    # times each of their ops -- and each op's nominal time in real us (None: not a step)
    measure: bool = False
    nominal: list = field(default_factory=list)


@dataclass
class Plan:
    workload: str
    seed: int
    time_scale: float
    limit_s: float                 # the run's time limit, scaled (real seconds)
    watchdog_s: float              # the workload's watchdog, scaled
    thrash_limit_s: float          # the thrashing rule's hold time, scaled
    quantum_us: int
    cpus: int
    ram_mb: int
    swap_mb: int
    tasks: list = field(default_factory=list)
    files: dict = field(default_factory=dict)     # name -> size in KB, must exist in DATA_DIR
    sample_us: int = SAMPLE_US     # the runner reads the memory pressure and vmstat this often
    # the modelled disk (machine.Costs) at the run's time scale, real us: what a backend that
    # can throttle its disk throttles it to (qemu: throttling.iops-total / bps-total)
    disk_request_us: float = 0.0
    disk_page_us: float = 0.0
    written: set = field(default_factory=set)     # files the run writes (created by the runner)

    # ---- what the records need
    def task(self, tid: int) -> PlanTask:
        return self.tasks[tid]

    @property
    def goal_ids(self) -> list[int]:
        return [t.id for t in self.tasks if t.goal and t.autostart]

    def to_text(self) -> str:
        """The plan file read by ``vmreal run`` (format: csrc/vmreal.c)."""
        out = ["vmreal-plan 1",
               f"workload {self.workload}", f"seed {self.seed}", f"time_scale {self.time_scale:g}",
               f"tasks {len(self.tasks)}",
               f"limit_us {int(round(self.limit_s * 1e6))}",
               f"watchdog_us {int(round(self.watchdog_s * 1e6))}",
               f"quantum_us {self.quantum_us}", f"sample_us {self.sample_us}"]
        for t in self.tasks:
            out.append(f"task {t.id} {t.name} {t.role} {t.start_us} {int(t.goal)} "
                       f"{int(t.autostart)} {int(t.daemon)} {t.uid} {t.nice} {t.oom_score_adj} "
                       f"{int(t.ignores_sigterm)} {t.parent if t.parent is not None else -1}")
            for op in t.ops:
                out.append(f"op {t.id} " + " ".join(str(x) for x in op))
        out += [f"measure {t.id}" for t in self.tasks if t.measure]
        return "\n".join(out) + "\n"

    def write_files(self, folder) -> list[Path]:
        """Create ``files`` in ``folder`` (kept when the size already matches): real bytes, not
        holes, so that reading them is disk I/O into the page cache."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        block = (b"vmbench-real " * 80)[:1024] * 1024            # 1 MiB of non-zero bytes
        for name, kb in sorted(self.files.items()):
            p = folder / name
            size = kb * 1024
            if not (p.exists() and p.stat().st_size == size):
                tmp = p.with_name(f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
                with open(tmp, "wb") as f:
                    left = size
                    while left > 0:
                        n = min(left, len(block))
                        f.write(block[:n])
                        left -= n
                    f.flush()
                    os.fsync(f.fileno())
                os.replace(tmp, p)
            paths.append(p)
        return paths


class _Compiler:
    def __init__(self, w: W.Workload, seed: int, scale: float):
        self.w, self.scale = w, scale
        self.rng = random.Random(seed)
        self.plan = Plan(workload=w.name, seed=seed, time_scale=scale,
                         limit_s=w.time_limit_s * scale, watchdog_s=w.watchdog_s * scale,
                         thrash_limit_s=w.thrash_limit_s * scale,
                         disk_request_us=w.machine.costs.disk_request_us * scale,
                         disk_page_us=w.machine.costs.disk_page_us * scale,
                         quantum_us=max(100, int(round(10_000 * scale))),
                         cpus=w.machine.cpus, ram_mb=w.machine.ram_mb, swap_mb=w.machine.swap_mb)
        self.nops = 0
        self.limit_us = int(w.time_limit_s * 1e6)       # unscaled: for unrolling loop = 0
        self.costs = w.machine.costs

    def fail(self, what: str):
        raise NotRealisable(f"workload {self.w.name}: {what}")

    def draw(self, v) -> float:
        return float(W.draw_with(self.rng, v))

    def us(self, sim_us: float) -> int:
        """Simulated microseconds -> real microseconds."""
        return int(round(sim_us * self.scale))

    def file(self, name: str) -> str:
        if not SAFE_NAME.match(name):
            self.fail(f"file name {name!r} is not a plain file name")
        return name

    # ---- tasks
    def new_task(self, spec: dict, *, start_us=0, goal=False, autostart=False, parent=None,
                 role=None) -> PlanTask:
        if len(self.plan.tasks) >= MAX_TASKS:
            self.fail(f"more than {MAX_TASKS} tasks (a loop = 0 that spawns?)")
        name = spec["name"]
        where = f"task {name}"
        for key, why in (("age_s", "a process cannot be made older than the run"),
                         ("cpu_s", "a process cannot be given CPU time it did not use")):
            if spec.get(key):
                self.fail(f"{where}: {key} has no real counterpart ({why})")
        if spec.get("caps") and spec.get("uid", 0) != 0:
            self.fail(f"{where}: caps {spec['caps']} for uid {spec['uid']} have no real "
                      "counterpart here (a non-root task with capabilities)")
        if "euid" in spec and spec["euid"] != spec.get("uid", 0):
            self.fail(f"{where}: euid different from uid has no real counterpart here")
        t = PlanTask(id=len(self.plan.tasks), name=name, role=role or spec.get("role", "bystander"),
                     start_us=start_us, goal=goal, autostart=autostart,
                     daemon=bool(spec.get("daemon", False)), uid=int(spec.get("uid", 0)),
                     nice=int(spec.get("nice", 0)), oom_score_adj=int(spec.get("oom_score_adj", 0)),
                     ignores_sigterm=bool(spec.get("ignores_sigterm", False)), parent=parent,
                     measure=goal or (parent is not None and self.plan.tasks[parent].measure))
        self.plan.tasks.append(t)
        prog = spec.get("program")
        p = self.w.programs.get(prog)
        if p is not None:
            text_pages = _pages(p.get("text_kb", 0) / 1024)
            ws_pages = min(text_pages, _pages(p.get("ws_kb", p.get("text_kb", 0)) / 1024))
            if text_pages:
                fname = self.file(f"prog.{prog}")
                self.plan.files[fname] = text_pages * PAGE_KB
                self.op(t, "text", fname, text_pages * PAGE_KB, ws_pages * PAGE_KB)
        vm = _pages((p or {}).get("vm_kb", 1024) / 1024)     # the simulator's MM() default
        if vm:
            self.op(t, "reserve", vm * PAGE_KB)
        return t

    def op(self, t: PlanTask, *args, nominal: float | None = None, kernel: int | None = None):
        """Append an op with its step's nominal time in real us (None: not a step), as
        ``harness.workload.Builder.step`` computes it for the model of the same plan
        (``workload.time_scaled``): ``nominal`` is what the scale compresses (the task's CPU,
        sleeps, the throttled disk), given in simulated us; ``kernel`` is the kernel's own
        work (a fault with its page clear and allocator pass and the store a page, a fork, an
        mmap), which neither the VM nor the model compresses, so it is kept as it is."""
        self.nops += 1
        if self.nops > MAX_OPS:
            self.fail(f"the plan would exceed {MAX_OPS} operations")
        t.ops.append(tuple(args))
        if nominal is None and kernel is None:
            t.nominal.append(None)
        else:
            t.nominal.append((0 if nominal is None else self.us(nominal)) + int(kernel or 0))

    # the nominal times of harness.workload.Builder.step
    def fault_us(self, pages: int, rate_us: float) -> int:
        return W.fault_nominal_us(self.costs, pages, rate_us)

    def disk_us(self, pages: int) -> int:
        return W.disk_nominal_us(self.costs, pages)

    def instantiate(self, tname: str, parent: PlanTask, elapsed_us: float) -> tuple[PlanTask, float]:
        spec = self.w.templates[tname]
        child = self.new_task(spec, parent=parent.id)
        est = self.script(child, spec.get("script", []), elapsed_us)
        return child, est

    # ---- scripts: each returns a lower bound of the simulated time its steps take
    def script(self, t: PlanTask, steps, elapsed_us: float) -> float:
        spent = 0.0
        for s in steps:
            spent += self.step(t, s, elapsed_us + spent)
            if t.ops and t.ops[-1][0] == "exit":
                break
        return spent

    def step(self, t: PlanTask, s: dict, elapsed_us: float) -> float:
        kind = next(k for k in s if k in W.STEPS)
        if kind == "dwait_s":
            us = self.draw(s["dwait_s"]) * 1e6
            self.op(t, "dwait", self.us(us), nominal=us)
            return us
        if kind in ("kernel_spin_s", "dwait_io", "kalloc"):
            why = {"kernel_spin_s": "a task looping inside the kernel deaf to signals needs a "
                                    "kernel module",
                   "dwait_io": "an I/O path that must allocate kernel memory first needs a "
                               "kernel module",
                   "kalloc": "kernel allocations with a chosen GFP mask need a kernel module"}[kind]
            self.fail(f"task {t.name}: {kind} has no real counterpart ({why})")
        if kind == "compute_ms":
            us = self.draw(s["compute_ms"]) * 1000
            self.op(t, "compute", self.us(us), nominal=us)
            return us
        if kind == "mmap_mb":
            self.op(t, "mmap", _pages(self.draw(s["mmap_mb"])) * PAGE_KB, kernel=20)
            return 0.0
        if kind == "munmap_mb":
            self.op(t, "munmap", _pages(self.draw(s["munmap_mb"])) * PAGE_KB)
            return 0.0
        if kind == "touch_mb":
            pages = _pages(self.draw(s["touch_mb"]))
            if "us_per_page" in s:          # user work per page beyond the store itself
                self.op(t, "touch", pages * PAGE_KB, kernel=self.fault_us(pages, 0))
                us = pages * self.draw(s["us_per_page"])
                self.op(t, "compute", self.us(us), nominal=int(us))
                return us
            self.op(t, "touch", pages * PAGE_KB,
                    kernel=self.fault_us(pages, self.costs.user_touch_us))
            return 0.0
        if kind == "access_mb":
            # the task's anonymous working set again (one store a page, then the user's work
            # a page as CPU); nominal, as the simulator's: the user's work only
            pages = _pages(self.draw(s["access_mb"]))
            rate = self.draw(s.get("us_per_page", self.costs.user_touch_us))
            self.op(t, "access", pages * PAGE_KB, nominal=0)
            us = pages * rate
            self.op(t, "compute", self.us(us), nominal=int(us))
            return us
        if kind == "grow":
            g = s["grow"]
            pages = _pages(self.draw(g["mb"]))
            us = self.draw(g["cpu_ms"]) * 1000
            self.op(t, "grow", pages * PAGE_KB, self.us(us), g.get("phases", 8),
                    nominal=int(us), kernel=self.fault_us(pages, self.costs.user_touch_us))
            return us
        if kind in ("read", "write"):
            fname = self.file(s[kind])
            pages = _pages(self.draw(s.get("mb", 0))) + _pages(self.draw(s.get("kb", 0)) / 1024)
            on_fail = 1 if s.get("on_fail", "exit") == "continue" else 0
            if kind == "read":
                known = self.w.files.get(fname)
                if known:
                    self.plan.files[fname] = known * PAGE_KB
                    pages = min(pages, known)
                elif fname not in self.plan.written:
                    # the simulator's file of unknown size takes the size of its first read
                    self.plan.files[fname] = max(self.plan.files.get(fname, 0), pages * PAGE_KB)
            else:
                self.plan.written.add(fname)
            self.op(t, kind, fname, pages * PAGE_KB, on_fail, nominal=self.disk_us(pages))
            return 0.0
        if kind == "spawn":
            spent = 0.0
            for _ in range(s.get("count", 1)):
                child, est = self.instantiate(s["spawn"], t, elapsed_us + spent)
                wait = bool(s.get("wait", False))
                self.op(t, "spawn", child.id, int(wait), kernel=FORK_US)
                if wait:
                    spent += est
            return spent
        if kind == "wait_children":
            self.op(t, "waitall")
            return 0.0
        if kind == "sleep_s":
            us = self.draw(s["sleep_s"]) * 1e6
            self.op(t, "sleep", self.us(us), nominal=us)
            return us
        if kind == "loop":
            n = s["loop"]
            spent = 0.0
            i = 0
            while True:
                if n and i >= n:
                    break
                if not n and elapsed_us + spent >= self.limit_us:
                    break
                spent_i = self.script(t, s["steps"], elapsed_us + spent)
                spent += spent_i
                i += 1
                if t.ops and t.ops[-1][0] == "exit":
                    break
                if not n and spent_i <= 0:
                    self.fail(f"task {t.name}: a loop = 0 whose steps take no time cannot be "
                              "unrolled to the time limit")
            return spent
        if kind == "exit":
            self.op(t, "exit", int(s["exit"]))
            return 0.0
        raise AssertionError(kind)

    def make(self, m: dict):
        spec = {"name": m.get("name", "make"), "program": m.get("program"), "uid": m.get("uid", 0)}
        start = m.get("start_s", 0) * 1e6
        t = self.new_task(spec, start_us=self.us(start), goal=True, autostart=True,
                          role=m.get("role", "bystander"))
        args = [m.get("jobs", 0)]
        for d in range(m["directories"]):
            n = max(1, int(round(self.draw(m.get("files_per_dir", 10)))))
            if d:
                args.append("|")
            for _ in range(n):
                child, _est = self.instantiate(m["job"], t, start)
                args.append(child.id)
        self.op(t, "make", *args)

    def compile(self) -> Plan:
        w = self.w
        if w.irqs:
            self.fail(f"[[irq]] {w.irqs[0]['name']} has no real counterpart (interrupt-context "
                      "allocations need a kernel module)")
        if w.init_script:
            self.fail("an [init] script has no real counterpart (pid 1 is the host's init or "
                      "the guest's /init, not a workload task)")
        for spec in w.tasks:
            for _ in range(spec.get("count", 1)):
                start = self.draw(spec.get("start_s", 0)) * 1e6
                t = self.new_task(spec, start_us=self.us(start), goal=bool(spec.get("goal", False)),
                                  autostart=True)
                self.script(t, spec.get("script", []), start)
        if w.make:
            self.make(w.make)
        return self.plan


def compile_plan(workload: W.Workload, seed: int, time_scale: float = 1.0) -> Plan:
    """The plan of one (workload, seed): deterministic for a seed and scale."""
    if not time_scale > 0:
        raise ValueError(f"time_scale must be positive, got {time_scale}")
    return _Compiler(workload, int(seed), float(time_scale)).compile()


def realisable(workload: W.Workload) -> tuple[bool, str]:
    """Whether a workload compiles (seed 0); the reason when it does not."""
    try:
        compile_plan(workload, 0)
    except NotRealisable as e:
        return False, str(e)
    return True, ""


def usable_kb(workload) -> tuple[int, dict]:
    """What a task of the simulated machine can get: the workload's RAM minus the memory the
    simulated 2.4 kernel keeps for itself and never gives to a task (``reserved_kb``: image,
    mem_map, boot allocations; ``boot_slab_kb``; the zones' ``pages_min``, below which only
    the kernel allocates).  Both backends give the workload this much: the memcg backend as the
    cgroup's limit, the qemu backend as the guest's free memory above its own min watermark at
    the start (the real kernel's own use is added to the VM's size, not taken from this).
    Returns (KB, the terms)."""
    from .. import machine as M
    sp = workload.machine
    sizes = M.zone_sizes(sp.ram_pages)
    pages_min = sum(M.zone_watermarks(i, n)[0] for i, n in enumerate(sizes) if n)
    terms = {"ram_kb": sp.ram_mb * 1024, "reserved_kb": sp.reserved_kb,
             "boot_slab_kb": sp.boot_slab_kb, "pages_min_kb": pages_min * 4}
    return terms["ram_kb"] - sp.reserved_kb - sp.boot_slab_kb - terms["pages_min_kb"], terms

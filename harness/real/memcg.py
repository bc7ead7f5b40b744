"""The memcg backend: one (workload, seed) in a memory cgroup of the host kernel.

What the real kernel does here, and what this module relies on:

* The harness makes a cgroup of its own, ``vmbench-real-<pid>-<n>``, as a child of the memory
  cgroup it runs in (so every limit above it still applies), sets its limit and starts
  ``vmreal run --cgroup``: each task the runner starts writes its pid to ``cgroup.procs``
  between fork and exec, and the kernel keeps children in their parent's cgroup.  The runner
  stays outside: its own memory is not the workload's, and it cannot be the memcg OOM
  killer's victim (it may not be able to set its ``oom_score_adj`` to -1000: a container
  without CAP_SYS_RESOURCE).
* Limit: the workload's RAM minus what the simulated kernel keeps for itself and never gives
  to a task (``reserved_kb`` + ``boot_slab_kb`` + the zones' ``pages_min``; see
  :func:`limit_kb`).  The simulated shrinkable dcache is not subtracted.  In the cgroup the
  kernel charges the tasks' anonymous memory, their page cache (reads, writes, program text),
  page tables and kernel stacks (v1 charges kernel memory to ``memory.usage`` too).
* No swap: on a host without swap nothing can be swapped (v1 ``memory.swappiness`` = 0 as
  well); where the host has swap, cgroup v1 ``memory.memsw.limit_in_bytes`` = the memory limit
  (swap accounting; the memsw counter then fails before the memory counter, so ``failcnt``
  stays 0 and the reclaim onset comes from vmpressure alone), v2 ``memory.swap.max`` = 0.  A
  workload with swap is realised only where the host has that much swap
  (``memsw`` = limit + swap).
* Out of memory: when a charge cannot be reclaimed below the limit the memcg OOM killer runs
  (``mem_cgroup_out_of_memory``: ``oom_badness`` = RSS + swap entries + page tables, adjusted by
  ``oom_score_adj``; the runner is not in the cgroup) and logs "Memory cgroup out of memory:
  Killed process N (name)" -- read from ``/dev/kmsg`` (opened non-blocking, at its end, before
  the run; drained while it runs).  ``memory.oom_control``'s ``oom_kill`` counter cross-checks.
* Reclaim onset: the first time ``memory.failcnt`` (charges that hit the limit, each followed by
  direct reclaim in the cgroup) is seen above 0, polled every 10 ms, or the first vmpressure
  event of any level, whichever comes first.  Pressure onset: the first
  ``memory.pressure_level`` "critical" event (vmpressure: reclaim priority fell to 3 or less, or
  it reclaimed under 5 % of what it scanned: reclaim is not freeing what it is asked to) or the
  first "invoked oom-killer", whichever comes first (record.py).
* CPUs: the runner's affinity is the first ``cpus`` CPUs this process may use.
* Clean-up, always (normal end, error, Ctrl-C, SIGTERM/SIGHUP, interpreter exit): every process
  listed in the cgroup's ``cgroup.procs`` is opened as a pidfd, checked to be in this cgroup
  and sent SIGKILL through the pidfd (no pid reuse race, nothing outside is signalled); the
  cgroup's page cache is uncharged (v1 ``memory.force_empty``) and the cgroup removed.
  Stale cgroups of a harness that died (``kill -9``) are removed by the next run.
"""
from __future__ import annotations

import atexit
import errno
import os
import select
import signal
import subprocess
import threading
import time
from pathlib import Path

from . import build
from .plan import NotRealisable, Plan

V1_ROOT = Path("/sys/fs/cgroup/memory")
V2_ROOT = Path("/sys/fs/cgroup")
PREFIX = "vmbench-real-"
POLL_S = 0.010
GRACE_S = 15.0                 # beyond the runner's own limit before the harness kills it all

_LIVE: set[Path] = set()
_COUNTER = [0]
_LOCK = threading.Lock()


class Unavailable(RuntimeError):
    pass


# ---------------------------------------------------------------------------- discovery
def _own_cgroup() -> tuple[str, Path] | None:
    """('v1', dir) or ('v2', dir): where this process's memory cgroup is."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for ln in lines:
        _h, ctrls, path = ln.split(":", 2)
        if "memory" in ctrls.split(",") and (V1_ROOT / "memory.limit_in_bytes").exists():
            return "v1", V1_ROOT / path.lstrip("/")
    for ln in lines:
        h, ctrls, path = ln.split(":", 2)
        if h == "0" and ctrls == "":
            ctl = V2_ROOT / "cgroup.controllers"
            if ctl.exists() and "memory" in ctl.read_text().split():
                # v2 forbids processes in an inner cgroup: make ours under one that delegates
                # memory to its children (the root always may)
                own = V2_ROOT / path.lstrip("/")
                for cand in (own, V2_ROOT):
                    sub = cand / "cgroup.subtree_control"
                    if sub.exists() and "memory" in sub.read_text().split():
                        return "v2", cand
                return "v2", V2_ROOT
    return None


def available() -> tuple[bool, str]:
    if os.geteuid() != 0:
        return False, "not root: the memcg backend makes a memory cgroup (run as root)"
    where = _own_cgroup()
    if where is None:
        return False, ("no memory cgroup controller (neither cgroup v1 /sys/fs/cgroup/memory nor "
                       "v2 with memory in cgroup.controllers)")
    kind, parent = where
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        return False, f"cannot make a cgroup under {parent} (not writable)"
    ok, why = build.available()
    if not ok:
        return False, why
    return True, f"cgroup {kind} under {parent}"


def kernel_release() -> str:
    return os.uname().release


def host_swap_kb() -> int:
    for ln in Path("/proc/meminfo").read_text().splitlines():
        if ln.startswith("SwapTotal:"):
            return int(ln.split()[1])
    return 0


def limit_kb(plan: Plan, workload) -> tuple[int, dict]:
    """The cgroup's limit: :func:`harness.real.plan.usable_kb`, the workload's RAM minus the
    memory the simulated 2.4 kernel keeps for itself.  Returns (KB, the terms)."""
    from .plan import usable_kb
    return usable_kb(workload)


# ---------------------------------------------------------------------------- cgroup
def _write(path: Path, text: str):
    with open(path, "w") as f:
        f.write(text)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _cg_rel(kind: str, cg: Path) -> str:
    root = V1_ROOT if kind == "v1" else V2_ROOT
    return "/" + str(cg.relative_to(root))


def _in_cgroup(pid: int, kind: str, cg: Path) -> bool:
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    except OSError:
        return False
    rel = _cg_rel(kind, cg)
    for ln in lines:
        h, ctrls, path = ln.split(":", 2)
        if kind == "v1" and "memory" in ctrls.split(",") and path == rel:
            return True
        if kind == "v2" and h == "0" and path == rel:
            return True
    return False


def _procs(cg: Path) -> list[int]:
    try:
        return [int(x) for x in (cg / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _kill_all(kind: str, cg: Path, timeout_s: float = 10.0) -> bool:
    """SIGKILL every process in the cgroup, through pidfds after checking membership."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = _procs(cg)
        if not pids:
            return True
        for pid in pids:
            try:
                fd = os.pidfd_open(pid)
            except OSError:
                continue                     # gone already
            try:
                if _in_cgroup(pid, kind, cg):   # the pidfd pins the process: no reuse race
                    signal.pidfd_send_signal(fd, signal.SIGKILL)
            except OSError:
                pass
            finally:
                os.close(fd)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def destroy(kind: str, cg: Path) -> str | None:
    """Kill everything in the cgroup and remove it; returns a problem or None."""
    problem = None
    if cg.exists():
        if not _kill_all(kind, cg):
            problem = f"processes still in {cg} 10 s after SIGKILL: {_procs(cg)}"
        if kind == "v1":
            try:
                _write(cg / "memory.force_empty", "0")     # uncharge its page cache
            except OSError:
                pass
        deadline = time.monotonic() + 10.0
        while True:
            try:
                os.rmdir(cg)
                break
            except FileNotFoundError:
                break
            except OSError as e:
                if time.monotonic() > deadline:
                    problem = problem or f"cannot remove {cg}: {e.strerror}"
                    break
                _kill_all(kind, cg, 1.0)
                time.sleep(0.05)
    with _LOCK:
        _LIVE.discard(cg)
    return problem


def _cleanup_all():
    where = _own_cgroup()
    kind = where[0] if where else "v1"
    for cg in list(_LIVE):
        destroy(kind, cg)


atexit.register(_cleanup_all)


def cleanup_stale(kind: str, parent: Path) -> list[str]:
    """Remove cgroups this harness made in an earlier process that died (kill -9)."""
    removed = []
    for d in parent.glob(PREFIX + "*"):
        try:
            pid = int(d.name[len(PREFIX):].split("-")[0])
        except ValueError:
            continue
        if pid == os.getpid() or Path(f"/proc/{pid}").exists():
            continue
        destroy(kind, d)
        removed.append(str(d))
    return removed


def make_cgroup(kind: str, parent: Path, mem_kb: int, swap_kb: int) -> Path:
    with _LOCK:
        _COUNTER[0] += 1
        name = f"{PREFIX}{os.getpid()}-{_COUNTER[0]}"
    cg = parent / name
    cg.mkdir()
    with _LOCK:
        _LIVE.add(cg)
    try:
        if kind == "v1":
            _write(cg / "memory.limit_in_bytes", str(mem_kb * 1024))
            if not swap_kb:
                _write(cg / "memory.swappiness", "0")
            # memsw only where there is swap to keep out: with memsw = memory the memsw
            # counter fails first and memory.failcnt (our reclaim-onset probe) never moves
            if host_swap_kb() and (cg / "memory.memsw.limit_in_bytes").exists():
                _write(cg / "memory.memsw.limit_in_bytes", str((mem_kb + swap_kb) * 1024))
        else:
            _write(cg / "memory.max", str(mem_kb * 1024))
            if (cg / "memory.swap.max").exists():
                _write(cg / "memory.swap.max", str(swap_kb * 1024))
            _write(cg / "memory.oom.group", "0")
    except BaseException:
        destroy(kind, cg)
        raise
    return cg


# ---------------------------------------------------------------------------- data files
DATA_CACHE = build.REAL_DIR / "data"


def prepare_data(plan: Plan, run_dir: Path) -> Path:
    """The run's DATA_DIR: the plan's input files (cached in .real/data, hard-linked), evicted
    from the page cache (POSIX_FADV_DONTNEED on clean pages) so that the run's reads are charged
    to the run's cgroup; files the run writes are created there by the tasks."""
    plan.write_files(DATA_CACHE)
    data = run_dir / "data"
    data.mkdir(parents=True, exist_ok=True)
    os.chmod(data, 0o1777)                 # tasks may run as another uid
    for name in plan.files:
        src, dst = DATA_CACHE / name, data / name
        try:
            os.link(src, dst)
        except OSError:
            import shutil
            shutil.copyfile(src, dst)
        fd = os.open(dst, os.O_RDONLY)
        try:
            os.fdatasync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)
    return data


# ---------------------------------------------------------------------------- kernel log
class Kmsg:
    """/dev/kmsg from its current end: one record per read(); converted to console lines
    ``[seconds.micros] message`` (the timestamp is the kernel's local_clock)."""

    def __init__(self):
        self.lines: list[str] = []
        self.lost = 0
        try:
            self.fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
            os.lseek(self.fd, 0, os.SEEK_END)
        except OSError as e:
            self.fd = None
            self.error = f"/dev/kmsg: {e.strerror}"

    def drain(self):
        if self.fd is None:
            return
        while True:
            try:
                rec = os.read(self.fd, 8192)
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EPIPE:     # overwritten before we read it
                    self.lost += 1
                    continue
                return
            if not rec:
                return
            text = rec.decode("utf-8", "replace")
            head, _, rest = text.partition(";")
            parts = head.split(",")
            try:
                ts = int(parts[2])
            except (IndexError, ValueError):
                continue
            msg = rest.split("\n", 1)[0]
            self.lines.append(f"[{ts // 1_000_000:5d}.{ts % 1_000_000:06d}] {msg}")

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


# ---------------------------------------------------------------------------- monitor
class Monitor:
    """Polled from the main thread while the runner runs: memory.failcnt, vmpressure events
    (v1 ``memory.pressure_level`` through ``cgroup.event_control``), the kernel log."""

    LEVELS = ("low", "medium", "critical")

    def __init__(self, kind: str, cg: Path, kmsg: Kmsg):
        self.kind, self.cg, self.kmsg = kind, cg, kmsg
        self.first_failcnt_us = None
        self.pressure = {}
        self.efds = {}
        self._fds = []
        if kind == "v1" and (cg / "memory.pressure_level").exists():
            for level in self.LEVELS:
                try:
                    efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
                    pfd = os.open(cg / "memory.pressure_level", os.O_RDONLY | os.O_CLOEXEC)
                    _write(cg / "cgroup.event_control", f"{efd} {pfd} {level}")
                    self.efds[efd] = level
                    self._fds.append(pfd)
                except OSError:
                    pass

    def step(self, timeout_s: float = POLL_S):
        if self.efds:
            ready, _, _ = select.select(list(self.efds), [], [], timeout_s)
            now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
            for efd in ready:
                try:
                    os.eventfd_read(efd)
                except OSError:
                    continue
                self.pressure.setdefault(self.efds[efd], now)
        else:
            time.sleep(timeout_s)
        if self.first_failcnt_us is None:
            name = "memory.failcnt" if self.kind == "v1" else "memory.events"
            v = None
            if self.kind == "v1":
                v = _read_int(self.cg / name)
            else:
                try:
                    ev = dict(ln.split() for ln in (self.cg / name).read_text().splitlines())
                    v = int(ev.get("max", 0))
                except (OSError, ValueError):
                    v = None
            if v:
                self.first_failcnt_us = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.kmsg.drain()

    def close(self):
        for fd in list(self.efds) + self._fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.efds, self._fds = {}, []


def _final_stats(kind: str, cg: Path) -> dict:
    out = {}
    if kind == "v1":
        for f in ("memory.failcnt", "memory.memsw.failcnt", "memory.max_usage_in_bytes",
                  "memory.memsw.max_usage_in_bytes"):
            v = _read_int(cg / f)
            if v is not None:
                out[f.replace("memory.", "").replace(".", "_")] = v
        try:
            oc = dict(ln.split() for ln in (cg / "memory.oom_control").read_text().splitlines())
            out["oom_kill"] = int(oc.get("oom_kill", 0))
        except (OSError, ValueError):
            pass
    else:
        try:
            ev = dict(ln.split() for ln in (cg / "memory.events").read_text().splitlines())
            out["oom_kill"] = int(ev.get("oom_kill", 0))
            out["failcnt"] = int(ev.get("max", 0))
        except (OSError, ValueError):
            pass
        v = _read_int(cg / "memory.peak")
        if v is not None:
            out["max_usage_in_bytes"] = v
    return out


def _cpu_list(n: int) -> tuple[str, int]:
    allowed = sorted(os.sched_getaffinity(0))
    use = allowed[:max(1, n)]
    return ",".join(str(c) for c in use), len(use)


# ---------------------------------------------------------------------------- one run
class _Interrupted(KeyboardInterrupt):
    pass


def _raise_interrupt(signum, _frame):
    raise _Interrupted(f"signal {signum}")


def run(plan: Plan, workload, seed: int, out_dir, max_wall_s: float):
    """Run one plan in a fresh cgroup; returns (runner_lines, kernel_lines, extra, meta)."""
    ok, why = available()
    if not ok:
        raise Unavailable(why)
    kind, parent = _own_cgroup()
    swap_kb = workload.machine.swap_mb * 1024
    if swap_kb and host_swap_kb() < swap_kb:
        raise NotRealisable(f"workload {workload.name}: {workload.machine.swap_mb} MB of swap, "
                            f"the host has {host_swap_kb() // 1024} MB (memcg backend)")
    binary = build.vmreal_path()
    cleanup_stale(kind, parent)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    mem_kb, terms = limit_kb(plan, workload)
    runner_limit_s = min(plan.limit_s, max_wall_s)
    cpus, ncpus = _cpu_list(plan.cpus)
    meta = {"backend": "memcg", "disk_throttle": "none", "kernel": kernel_release(), "cgroup": kind,
            "limit_kb": mem_kb, "limit_terms": terms, "swap_kb": swap_kb, "cpus": cpus,
            "cpus_asked": plan.cpus, "max_wall_s": max_wall_s, "runner_limit_s": runner_limit_s,
            "status": "ok", "error": None, "kills_scope": "pids"}
    extra: dict = {}
    runner_lines: list[str] = []
    stderr_lines: list[str] = []
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGHUP):
            handlers[s] = signal.signal(s, _raise_interrupt)
    scratch = build.REAL_DIR / "run" / f"{os.getpid()}-{time.monotonic_ns()}"
    cg = proc = kmsg = mon = None
    t_wall = time.monotonic()
    try:
        data = prepare_data(plan, scratch)
        plan_file = scratch / "plan"
        plan_file.write_text(plan.to_text())
        kmsg = Kmsg()
        if kmsg.fd is None:
            meta["kmsg_error"] = kmsg.error
        cg = make_cgroup(kind, parent, mem_kb, swap_kb)
        meta["cgroup_path"] = str(cg)
        mon = Monitor(kind, cg, kmsg)
        cmd = [str(binary), "run", str(plan_file), str(data), "--cgroup", str(cg / "cgroup.procs"),
               "--cpus", cpus, "--limit-ms", str(int(runner_limit_s * 1000))]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True, close_fds=True)

        def pump(stream, sink):
            for raw in stream:
                sink.append(raw.decode("utf-8", "replace").rstrip("\n"))

        readers = [threading.Thread(target=pump, args=(proc.stdout, runner_lines), daemon=True),
                   threading.Thread(target=pump, args=(proc.stderr, stderr_lines), daemon=True)]
        for r in readers:
            r.start()
        deadline = time.monotonic() + runner_limit_s + GRACE_S
        while proc.poll() is None:
            mon.step()
            if time.monotonic() > deadline:
                meta["status"] = "timeout"
                meta["error"] = (f"the runner did not end {GRACE_S:g} s after its limit of "
                                 f"{runner_limit_s:g} s: killed with the cgroup")
                _kill_all(kind, cg)
                break
        proc.wait(timeout=30)
        for r in readers:
            r.join(timeout=10)
        for _ in range(3):                   # the last kernel lines of the run
            mon.step(0.01)
        extra.update(_final_stats(kind, cg))
        firsts = [t for t in (mon.first_failcnt_us, mon.pressure.get("low")) if t is not None]
        extra["reclaim_onset_us"] = min(firsts) if firsts else None
        extra["failcnt_onset_us"] = mon.first_failcnt_us
        extra["vmpressure_us"] = dict(mon.pressure)
        extra["pressure_onset_us"] = mon.pressure.get("critical")
        extra["kmsg_lost"] = kmsg.lost
        if proc.returncode not in (0, None) and meta["status"] == "ok":
            meta["status"] = "error"
            meta["error"] = (f"vmreal exited {proc.returncode}: "
                             + (stderr_lines[-1] if stderr_lines else "no message"))
    finally:
        problems = []
        if cg is not None:
            p = destroy(kind, cg)
            if p:
                problems.append(p)
        if proc is not None and proc.poll() is None:    # not in the cgroup yet: ours anyway
            proc.kill()
            proc.wait()
        if mon is not None:
            mon.close()
        if kmsg is not None:
            kmsg.drain()
            kmsg.close()
        for s, h in handlers.items():
            signal.signal(s, h)
        import shutil
        shutil.rmtree(scratch, ignore_errors=True)
        if problems:
            meta["cleanup_problem"] = "; ".join(problems)
    meta["wall_s"] = round(time.monotonic() - t_wall, 3)
    extra["runner_stderr"] = stderr_lines[-20:]
    return runner_lines, (kmsg.lines if kmsg else []), extra, meta

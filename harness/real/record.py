"""The record of a real run: every column of ``metrics.md`` from the runner's and the kernel's lines.

Inputs (both backends):

* ``runner_lines``: ``VMREAL <t_us> ...`` lines of ``vmreal run`` (csrc/vmreal.c), times in
  CLOCK_MONOTONIC microseconds; other lines are ignored.
* ``kernel_lines``: console-format kernel log lines ``[seconds.micros] message``; the kernel
  stamps them with its local_clock, which the runner's ``vmreal: clock <t_us>`` marker puts on
  the runner's clock (offset = marker timestamp - its t_us; 0 if there is no marker).
* ``extra``: what the backend saw beside them, optional keys ``reclaim_onset_us``,
  ``pressure_onset_us`` (CLOCK_MONOTONIC microseconds), ``oom_kill`` (the kernel's own counter).
* ``meta``: ``backend``, ``kernel``, ``status`` (ok / error / timeout), ``error``, ``wall_s``,
  ``runner_limit_s`` (the limit the runner was given), ``max_wall_s``, ``kills_scope``
  (``pids``: only kills of the run's own processes count -- the host; ``all``: every kill in the
  log is the run's -- a VM that runs nothing else).

The rules (docs/real-kernel.md has the reasons):

* times are real seconds since the runner's ``t0``;
* ``kills``: the kernel's "Killed process N (name)" lines (global "Out of memory" and "Memory
  cgroup out of memory"), one per kill decision; the victim is the plan task whose pid is N;
* ``pressure_onset_s``: the first of the backend's pressure probe (memcg: vmpressure
  "critical") and the first "invoked oom-killer" line; ``reclaim_onset_s``: the backend's
  reclaim probe (memcg: failcnt or any vmpressure event), never later than the pressure onset;
* ``max_stall_s`` is not observable from user space: empty; ``max_fault_s`` (extra) is the
  slowest single page touch or I/O chunk any task timed (wall time: includes being preempted);
* ``fault_kills`` is 0: a current kernel has no page-fault-path kill besides the OOM killer;
* ``alloc_failures``: ``enomem`` lines (mmap, fork, read, write failing with ENOMEM);
  ``victims``: killed tasks and tasks that gave up on ENOMEM;
* ``livelock`` / ``deadlock``: only when the run hit its limit with a task inside one
  allocation for at least the workload's watchdog (scaled) -- ``stuck`` lines: a task in state R
  means livelock, otherwise (D, S) deadlock;
* ``ineffective_kills``: the victim had not exited ``10 s x time_scale`` after the kill line;
  ``repeat_kills``, ``extra_kills`` as in ``harness.metrics``;
* ``workload_completed``: every goal task exited 0 before the runner stopped;
* progress and ``thrashing`` (metrics.md "Thrashing"; :func:`progress_columns`): the goal
  tasks' and their descendants' ``step`` and ``wait`` lines (each op's start and end, and the
  time it waited for a CPU: /proc/self/schedstat run_delay) with the plan's nominal times, fed
  to the simulator's own :class:`harness.progress.Progress` with its windows scaled by the time
  scale (10 s x scale, on a 0.1 s x scale grid; ``thrash_limit_s`` x scale); a killed task
  stops counting at its kill;
* ``refaults``, ``psi_*`` (:func:`pressure_columns`): the differences between the runner's
  first and last ``psi`` samples (``/proc/pressure/memory`` totals, ``workingset_refault_file``
  of ``/proc/vmstat``; in a cgroup its ``memory.pressure`` and ``memory.stat``), and the
  highest ``full avg10`` sampled: the kernel's 10-s average, real seconds, not rescaled;
* ``outcome`` ``thrashing`` when the rule held and no task was stuck inside one allocation
  (as in the simulator, a hang -- ``stuck`` -- comes first): a wall bound reached while the
  rule holds is thrashing, not a hang and not a completed run.
"""
from __future__ import annotations

import hashlib
import re

from ..metrics import COLUMNS, INEFFECTIVE_US
from ..progress import Progress

EXTRA_COLUMNS = ["backend", "kernel", "time_scale", "truncated", "max_wall_s", "end_reason",
                 "sim_equiv_s", "max_fault_s", "kills_sig9", "oom_kill_counter", "victim_names",
                 "kill_times_s", "limit_kb", "kernel_clock_offset_us", "kmsg_lost",
                 # real policies (harness/real/policies.py)
                 "real_policy_file", "model", "kernel_package", "settings", "daemon",
                 "kernel_kills", "daemon_kills", "first_signal", "first_signal_by",
                 "oom_invoker", "reaped", "first_victim_exit_s", "tcg_fault_factor",
                 "tcg_cpu_factor",
                 # thrashing (issue 9): the guest's counters and the disk it had
                 "pgmajfault", "psi_samples", "disk_throttle"]
ALL_COLUMNS = COLUMNS + EXTRA_COLUMNS

KERNEL_RE = re.compile(r"^\s*\[\s*(\d+)\.(\d+)\]\s?(.*)$")
KILLED_RE = re.compile(r"Killed process (\d+) \((.*?)\)")
INVOKED_RE = re.compile(r"^(.*?) invoked oom-killer:")
MARK_RE = re.compile(r"vmreal: clock (\d+)")
PID_RE = re.compile(r"\bPID: (\d+) ")
REAPED_RE = re.compile(r"oom_reaper: reaped process (\d+) ")
DAEMON_PREFIX = "vmreal-daemon: "          # a daemon's lines, put into the kernel log by /init
# earlyoom 1.7 kill.c kill_process(): 'sending SIGTERM to process 123 uid 0 "name": ...'
DAEMON_KILL_RE = re.compile(r"sending (SIG[A-Z]+) to process (\d+)")


def _s(us):
    return None if us is None else round(us / 1e6, 6)


def parse_runner(lines):
    """[(t_us, kind, [fields])] of the VMREAL lines."""
    out = []
    for ln in lines:
        parts = ln.split()
        if len(parts) < 3 or parts[0] != "VMREAL":
            continue
        try:
            out.append((int(parts[1]), parts[2], parts[3:]))
        except ValueError:
            continue
    return out


def parse_kernel(lines):
    """[(t_us on the kernel's clock, message)]."""
    out = []
    for ln in lines:
        m = KERNEL_RE.match(ln)
        if m:
            frac = m.group(2)
            us = int(m.group(1)) * 1_000_000 + int(frac.ljust(6, "0")[:6])
            out.append((us, m.group(3)))
    return out


def kernel_offset(kernel, t0: int | None) -> int:
    """kernel clock - runner clock, from the runner's marker (the one closest before t0)."""
    best = None
    for t, msg in kernel:
        m = MARK_RE.search(msg)
        if m:
            mono = int(m.group(1))
            if t0 is None or mono <= t0:
                if best is None or mono > best[1]:
                    best = (t - mono, mono)
    return best[0] if best else 0


def _progress(plan):
    """The simulator's :class:`harness.progress.Progress` with its windows at the run's time
    scale (``Progress.at_scale``: 10 s x scale on a 0.1 s x scale grid), the plan's
    ``thrash_limit_s`` (already scaled)."""
    scale = plan.time_scale
    limit = getattr(plan, "thrash_limit_s", None)         # (a plan made before issue 9: 60 s)
    return Progress.at_scale(60 * scale if limit is None else limit, scale)


def _feed(prog, plan, ev, t0: int, kills: list, failures: list):
    """Feed ``prog`` the measured tasks' start, step, wait and exit lines of ``ev`` (times from
    ``t0``), the kills and allocation failures ((t_us, plan task id or None)); a killed task
    stops counting at its kill."""
    tasks = plan.tasks
    killed_at = {}
    for t, tid in kills:
        prog.kill(t - t0)
        if tid is not None:
            killed_at.setdefault(tid, t)
    for t, _tid in failures:
        prog.alloc_failure(t - t0)
    for t, kind, f in ev:
        if kind not in ("start", "step", "wait", "exit") or len(f) < 2:
            continue
        tid = int(f[0])
        if not (0 <= tid < len(tasks) and getattr(tasks[tid], "measure", False)):
            continue
        if kind == "start":
            prog.task_start(tid, t - t0)
        elif kind == "step" and len(f) >= 5:
            k, a, rd = int(f[2]), int(f[3]) - t0, int(f[4])
            nominal = tasks[tid].nominal[k] if k < len(tasks[tid].nominal) else None
            if nominal is not None and t - t0 >= a:
                if rd > 0:
                    prog.queued(tid, a, min(a + rd, t - t0))
                prog.step_done(tid, a, t - t0, nominal)
        elif kind == "wait" and len(f) >= 3:
            prog.suspend(tid, int(f[2]) - t0)
            prog.resume(tid, t - t0)
        elif kind == "exit":
            end = min(t, killed_at.get(tid, t))
            prog.task_exit(tid, end - t0)
    return prog


def progress_columns(plan, ev, t0: int, stop_t: int, kills: list, failures: list) -> dict:
    """``Progress.finish``'s columns of a real run: ``ev`` the parsed runner lines, ``kills`` and
    ``failures`` (t_us, plan task id or None) on the runner's clock."""
    prog = _feed(_progress(plan), plan, ev, t0, kills, failures)
    return prog.finish(max(0, stop_t - t0))


def pressure_columns(ev) -> dict:
    """``refaults`` and the ``psi_*`` columns from the runner's ``psi`` samples (-1: unread)."""
    rows = [r[1:] for r in _psi_samples(ev)]
    out = {"refaults": None, "psi_some_s": None, "psi_full_s": None, "psi_full_avg10_max": None,
           "pgmajfault": None, "psi_samples": len(rows)}
    if not rows:
        return out
    first, last = rows[0], rows[-1]

    def diff(i):
        return last[i] - first[i] if first[i] >= 0 and last[i] >= 0 else None

    some, full = diff(0), diff(1)
    out.update(psi_some_s=_s(some), psi_full_s=_s(full), refaults=diff(4), pgmajfault=diff(5))
    avgs = [r[3] for r in rows if r[3] >= 0]
    out["psi_full_avg10_max"] = max(avgs) if avgs else None
    return out


def kernel_kills(kern, off: int, id_of: dict, tasks, scope_all: bool, t0: int,
                 daemon_name: str = "daemon"):
    """The kernel log's kills and OOM invocation on the runner's clock: ``(kills, signals,
    daemon kills, reaped, invoked, invoker)``; ``kills`` (t, pid, name, plan task id or None)
    and ``signals`` (t, signal, by) in time order.  Only the run's own pids count unless
    ``scope_all`` (a VM that runs nothing else)."""
    kills = []                        # (t, pid, name, tid or None)
    signals = []                      # (t, signal, by): the first signal sent to a victim
    n_daemon = 0
    invoked = invoker = None
    reaped = 0
    for i, (t, msg) in enumerate(kern):
        tm = t - off
        mr = REAPED_RE.search(msg)
        if mr and (scope_all or int(mr.group(1)) in id_of):
            reaped += 1
            continue
        if msg.startswith(DAEMON_PREFIX):
            m = DAEMON_KILL_RE.search(msg)
            if m:
                pid = int(m.group(2))
                tid = id_of.get(pid)
                if tid is not None or scope_all:
                    kills.append((tm, pid, tasks[tid].name if tid is not None else "?", tid))
                    signals.append((tm, m.group(1), daemon_name))
                    n_daemon += 1
            continue
        m = KILLED_RE.search(msg)
        if m:
            pid, name = int(m.group(1)), m.group(2)
            tid = id_of.get(pid)
            if tid is not None or scope_all:
                kills.append((tm, pid, name, tid))
                signals.append((tm, "SIGKILL", "kernel"))
            continue
        if invoked is None and tm >= t0 and INVOKED_RE.search(msg):
            # ours if the allocating task (dump_stack's "PID: N Comm:" line that follows) is
            pid = next((int(p.group(1)) for _, m2 in kern[i + 1:i + 4]
                        for p in [PID_RE.search(m2)] if p), None)
            if scope_all or (pid is not None and pid in id_of):
                invoked = tm
                tid = id_of.get(pid) if pid is not None else None
                invoker = tasks[tid].name if tid is not None else INVOKED_RE.search(msg).group(1)
    kills.sort(key=lambda k: k[0])
    signals.sort(key=lambda k: k[0])
    return kills, signals, n_daemon, reaped, invoked, invoker


def _psi_samples(ev) -> list:
    """The runner's ``psi`` samples: (t_us, some total, full total, some avg10, full avg10,
    workingset_refault_file, pgmajfault); -1 where it could not read them."""
    rows = []
    for t, kind, f in ev:
        if kind == "psi" and len(f) >= 6:
            try:
                rows.append((t, int(f[0]), int(f[1]), float(f[2]), float(f[3]), int(f[4]),
                             int(f[5])))
            except ValueError:
                continue
    return rows


def make_record(plan, runner_lines, kernel_lines, meta, extra=None) -> dict:
    """One row: every column of ``metrics.COLUMNS`` plus ``EXTRA_COLUMNS``."""
    extra = extra or {}
    meta = meta or {}
    ev = parse_runner(runner_lines)
    kern = parse_kernel(kernel_lines)
    backend = meta.get("backend", "?")
    kernel = meta.get("kernel", "?")
    scale = plan.time_scale
    rec = {c: None for c in ALL_COLUMNS}
    rec.update(policy=f"real-{backend}-{kernel}", workload=plan.workload, seed=plan.seed,
               backend=backend, kernel=kernel, time_scale=scale,
               max_wall_s=meta.get("max_wall_s"), wall_s=meta.get("wall_s"),
               limit_kb=meta.get("limit_kb"), kmsg_lost=extra.get("kmsg_lost"),
               oom_kill_counter=extra.get("oom_kill"),
               events=len(runner_lines) + len(kernel_lines),
               status=meta.get("status", "ok"), error=meta.get("error"))
    h = hashlib.sha256()
    h.update("\n".join(runner_lines).encode())
    h.update(b"\n--kernel--\n")
    h.update("\n".join(kernel_lines).encode())
    rec["trace_sha256"] = h.hexdigest()

    t0 = next((t for t, k, _ in ev if k == "t0"), None)
    if t0 is None:
        if rec["status"] == "ok":
            rec["status"] = "error"
            rec["error"] = "the runner printed no t0 line (it did not start)"
        rec["truncated"] = True
        return rec
    off = kernel_offset(kern, t0)
    rec["kernel_clock_offset_us"] = off

    def rel(t):
        return None if t is None else t - t0

    tasks = plan.tasks
    pid_of, id_of = {}, {}
    exits = {}                        # id -> (t, code, sig)
    enomem_victims, alloc_failures = set(), 0
    failures = []                     # (t, tid): the enomem lines, for progress
    stuck = []
    stop_t = end_t = None
    end_reason = None
    max_fault = 0
    sig9 = 0
    for t, kind, f in ev:
        if kind == "start" and len(f) >= 2:
            tid, pid = int(f[0]), int(f[1])
            pid_of[tid], id_of[pid] = pid, tid
        elif kind == "exit" and len(f) >= 4:
            tid, pid, code, sig = int(f[0]), int(f[1]), int(f[2]), int(f[3])
            if tid >= 0:
                id_of.setdefault(pid, tid)
                pid_of.setdefault(tid, pid)
                exits.setdefault(tid, (t, code, sig))
            if len(f) >= 5:
                max_fault = max(max_fault, int(f[4]))
            if sig == 9 and stop_t is None:
                sig9 += 1
        elif kind == "enomem" and len(f) >= 3:
            alloc_failures += 1
            tid = int(f[0])
            failures.append((t, tid))
            then = f[3] if len(f) >= 4 else "exit"
            if tid >= 0 and then not in ("continue", "runner"):
                enomem_victims.add(tid)
        elif kind == "stuck" and len(f) >= 3:
            stuck.append((int(f[0]), f[2]))
        elif kind == "stop" and stop_t is None:
            stop_t = t
        elif kind == "error" and rec["status"] == "ok":
            rec["status"] = "error"
            rec["error"] = "vmreal: " + " ".join(f)
        elif kind == "end":
            end_t = t
            end_reason = f[0] if f else None
    last_t = end_t or (ev[-1][0] if ev else t0)
    stop_t = stop_t or last_t
    rec["end_reason"] = end_reason

    # kernel: kills and OOM invocations on the runner's clock
    scope_all = meta.get("kills_scope") == "all"
    kills, signals, n_daemon, reaped, invoked, invoker = kernel_kills(
        kern, off, id_of, tasks, scope_all, t0, meta.get("daemon_name") or "daemon")

    def exit_time_of(tid, pid):
        if tid is not None and tid in exits:
            return exits[tid][0]
        return None

    victims = {}                      # key -> role
    names = []
    for tm, pid, name, tid in kills:
        key = tid if tid is not None else f"pid{pid}"
        role = tasks[tid].role if tid is not None else "protected"
        if key not in victims:
            names.append(tasks[tid].name if tid is not None else name)
        victims[key] = role
    for tid in sorted(enomem_victims, key=lambda i: exits.get(i, (0,))[0]):
        if tid not in victims:
            names.append(tasks[tid].name)
        victims[tid] = tasks[tid].role

    ineffective_us = INEFFECTIVE_US * scale
    repeat = ineffective = extra_k = 0
    seen = {}
    for i, (tm, pid, name, tid) in enumerate(kills):
        ex = exit_time_of(tid, pid)
        if pid in seen and (ex is None or ex > tm):
            repeat += 1
        seen[pid] = tm
        if (ex is None and last_t - tm >= ineffective_us) or (ex is not None and ex - tm > ineffective_us):
            ineffective += 1
        for (t1, p1, _n, tid1) in kills[:i]:
            ex1 = exit_time_of(tid1, p1)
            if p1 != pid and (ex1 is None or ex1 > tm):
                extra_k += 1
                break

    probes = [x for x in (extra.get("pressure_onset_us"), invoked) if x is not None]
    pressure = min(probes) if probes else None
    reclaim = extra.get("reclaim_onset_us")
    if reclaim is not None and pressure is not None:
        reclaim = min(reclaim, pressure)
    first_kill = kills[0][0] if kills else None

    thrash = progress_columns(plan, ev, t0, stop_t, [(k[0], k[3]) for k in kills], failures)
    livelock = any(state == "R" for _, state in stuck)
    deadlock = bool(stuck) and not livelock
    goals = plan.goal_ids
    completed = bool(goals) and all(
        g in exits and exits[g][1] == 0 and exits[g][2] == 0 and exits[g][0] <= stop_t
        for g in goals)
    if livelock or deadlock:
        outcome = "livelock" if livelock else "deadlock"
    elif thrash["thrashing"]:
        outcome = "thrashing"
    elif victims or alloc_failures:
        outcome = "recovered"
    else:
        outcome = "completed"
    runner_limit = meta.get("runner_limit_s")
    truncated = (rec["status"] == "timeout" or end_reason == "signal"
                 or (end_reason == "limit" and runner_limit is not None
                     and runner_limit < plan.limit_s - 1e-9)
                 or end_reason is None)
    sim_s = _s(rel(stop_t))
    rec.update(
        outcome=outcome, livelock=livelock, deadlock=deadlock,
        pressure_onset_s=_s(rel(pressure)), reclaim_onset_s=_s(rel(reclaim)),
        first_kill_s=_s(rel(first_kill)),
        first_victim=(tasks[kills[0][3]].name if kills and kills[0][3] is not None
                      else (kills[0][2] if kills else None)),
        time_to_kill_s=(_s(first_kill - pressure) if first_kill is not None and pressure is not None
                        else None),
        max_stall_s=None, kills=len(kills), fault_kills=0, alloc_failures=alloc_failures,
        victims=len(victims),
        wrong_victims=sum(1 for r in victims.values() if r != "culprit"),
        protected_victims=sum(1 for r in victims.values() if r == "protected"),
        repeat_kills=repeat, ineffective_kills=ineffective, extra_kills=extra_k,
        workload_completed=completed,
        completion_s=(_s(max(exits[g][0] for g in goals) - t0) if completed else None),
        sim_s=sim_s, sim_equiv_s=(round(sim_s / scale, 3) if sim_s is not None else None),
        truncated=truncated, max_fault_s=_s(max_fault), kills_sig9=sig9,
        victim_names=";".join(names) or None,
        kill_times_s=";".join(f"{(k[0] - t0) / 1e6:.6f}" for k in kills) or None,
        kernel_kills=len(kills) - n_daemon, daemon_kills=n_daemon,
        first_signal=signals[0][1] if signals else None,
        first_signal_by=signals[0][2] if signals else None,
        oom_invoker=invoker, reaped=reaped,
        first_victim_exit_s=(_s(rel(exit_time_of(kills[0][3], kills[0][1])))
                             if kills and exit_time_of(kills[0][3], kills[0][1]) is not None
                             else None),
        progress_min10=thrash["progress_min10"], thrash_s=thrash["thrash_s"],
        thrash_start_s=thrash["thrash_start_s"], thrash_to_kill_s=thrash["thrash_to_kill_s"],
        disk_throttle=meta.get("disk_throttle"),
    )
    rec.update({k: v for k, v in pressure_columns(ev).items() if k in rec})
    return rec


def thrash_series(plan, runner_lines, kernel_lines=(), scope_all: bool = False) -> dict:
    """A real run's thrashing over time, in the shape of :func:`harness.runner.thrash_series`
    and on the simulator's time axis (real seconds / time scale), so that real and simulated
    panels share their axes: ``progress`` (the goal tasks' pooled progress over each window of
    10 s x scale, every 1 s x scale), ``psi_full`` (percent of each such window that PSI's
    ``full`` total grew by: the guest's 10-s ``avg10`` is ten real seconds, a hundred simulated
    ones at scale 0.1, so the window is made from the sampled totals instead), ``refault_rate``
    (``workingset_refault_file`` per simulated second); ``kills_us`` the kills (simulated us),
    as :func:`make_record` counts them (``scope_all``: its ``kills_scope`` is ``all``)."""
    ev = parse_runner(runner_lines)
    t0 = next((t for t, k, _ in ev if k == "t0"), None)
    out = {"progress": [], "psi_full": [], "refault_rate": [], "kills_us": []}
    if t0 is None:
        return out
    scale = plan.time_scale
    kern = parse_kernel(list(kernel_lines))
    id_of = {int(f[1]): int(f[0]) for _t, k, f in ev if k == "start" and len(f) >= 2}
    kills = [(k[0], k[3]) for k in
             kernel_kills(kern, kernel_offset(kern, t0), id_of, plan.tasks, scope_all, t0)[0]]
    stop = next((t for t, k, _ in ev if k == "stop"), ev[-1][0])
    prog = _feed(_progress(plan), plan, ev, t0, kills, [])
    every = prog.step * 10                                # 1 s x scale
    win = prog.window
    for t, c, a, q in prog.windows(max(0, stop - t0)):
        if a > q and t % every == 0:
            out["progress"].append((t / scale / 1e6, Progress.rate(c, a, q)))
    samples = [(t - t0, full, ref) for t, _s, full, _sa, _fa, ref, _m in _psi_samples(ev)]
    j = 0
    for t, full, _r in samples:
        while samples[j][0] < t - win:
            j += 1
        if t - samples[j][0] >= win * 0.9 and full >= 0 and samples[j][1] >= 0:
            out["psi_full"].append((t / scale / 1e6, 100.0 * (full - samples[j][1])
                                    / (t - samples[j][0])))
    last = None
    for t, _full, ref in samples:
        if ref < 0:
            continue
        if last is None:
            last = (t, ref)
        elif t - last[0] >= every:
            out["refault_rate"].append((t / scale / 1e6,
                                        (ref - last[1]) * 1e6 * scale / (t - last[0])))
            last = (t, ref)
    out["kills_us"] = [(t - t0) / scale for t, _ in kills if t >= t0]
    return out

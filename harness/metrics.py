"""The per-run record of ``shared/spec/metrics.md``, computed from a finished run's trace.

The oracle (``role`` of each task: culprit, bystander, protected) is read here and nowhere
else in the engine or the policies.
"""
from __future__ import annotations

from .psi import load_str

COLUMNS = ["policy", "workload", "seed", "status", "error", "outcome", "livelock", "deadlock",
           "pressure_onset_s", "reclaim_onset_s", "first_kill_s", "first_victim",
           "time_to_kill_s", "max_stall_s", "kills", "fault_kills", "alloc_failures", "victims",
           "wrong_victims", "protected_victims", "repeat_kills", "ineffective_kills",
           "extra_kills", "workload_completed", "completion_s", "progress_min10", "thrash_s",
           "thrash_start_s", "thrash_to_kill_s", "refaults", "psi_some_s", "psi_full_s",
           "psi_full_avg10_max", "sim_s", "wall_s", "events", "trace_sha256"]

#: outcomes, strongest verdict first: the watchdog's (no page moved for ``watchdog_s``, with
#: tasks waiting for memory: spinning or asleep), then ``thrashing`` (pages move, the goal
#: tasks' progress stayed below 20 % for ``thrash_limit_s`` before any kill or allocation
#: failure ended it), then ``recovered`` (something died of memory or an allocation failed)
#: and ``completed``
OUTCOMES = ("livelock", "deadlock", "thrashing", "recovered", "completed")

INEFFECTIVE_US = 10_000_000


def _s(us):
    return None if us is None else round(us / 1e6, 6)


def compute(k) -> dict:
    """Metrics of a finished :class:`~harness.engine.Kernel` run, from its trace."""
    tasks = {t.pid: t for t in k.tasks}
    end = k.now
    pressure = reclaim_onset = None
    stalls = {}
    max_stall = 0
    prog = k.prog
    kills = []                   # (t, pid, repeat)
    fault_kills = alloc_fail = 0
    exit_at = {}
    died_of_memory = set()
    signalled = set()
    for ev in k.trace:
        kind = ev[1]
        if kind == "reclaim":                   # (most events: first)
            if pressure is None and ev[5] and not ev[4]:
                pressure = ev[0]
            continue
        t = ev[0]
        if kind == "stall":
            stalls.setdefault(ev[2], t)
            if reclaim_onset is None:
                reclaim_onset = t
        elif kind == "stall_end":
            s = stalls.pop(ev[2], None)
            if s is not None:
                max_stall = max(max_stall, t - s)
        elif kind == "kill":
            kills.append((t, ev[2], ev[5]))
            signalled.add(ev[2])
            prog.kill(t)
        elif kind == "fault_kill":
            fault_kills += 1
            died_of_memory.add(ev[2])
            prog.kill(t)
        elif kind == "alloc_fail":
            alloc_fail += 1
            prog.alloc_failure(t)
        elif kind == "enomem":
            died_of_memory.add(ev[2])
        elif kind == "exit":
            exit_at[ev[2]] = t
            if ev[5] in ("oom-kill", "fault-kill", "enomem"):
                died_of_memory.add(ev[2])
    for s in stalls.values():
        max_stall = max(max_stall, end - s)
    victims = died_of_memory | signalled
    roles = {pid: tasks[pid].role for pid in victims}
    first_kill = kills[0][0] if kills else None
    ineffective = extra = 0
    # extra: an earlier kill's victim other than this one had not exited yet.  The exit time
    # of the latest-exiting earlier victim, and of the latest other than that one, answer it
    # for every kill in one pass (n kills, not n**2 pairs).
    seen = set()
    late1 = late2 = -1           # latest exit among earlier victims, and among the others
    late1_pid = None
    for t, pid, _rep in kills:
        ex = exit_at.get(pid)
        if (ex is None and end - t >= INEFFECTIVE_US) or (ex is not None and ex - t > INEFFECTIVE_US):
            ineffective += 1
        if (late1 if late1_pid != pid else late2) > t:
            extra += 1
        if pid not in seen:
            seen.add(pid)
            ex = end + 1 if ex is None else ex
            if ex > late1:
                late1, late2, late1_pid = ex, late1, pid
            elif ex > late2:
                late2 = ex
    goal_tasks = [t for t in k.tasks if t.goal]
    completed = bool(goal_tasks) and all(t.state == "X" and t.exit_code == 0 for t in goal_tasks)
    completion = max((exit_at.get(t.pid, 0) for t in goal_tasks), default=None) if completed else None
    livelock = k.watchdog_kind == "livelock"
    deadlock = k.watchdog_kind == "deadlock"
    thrash = prog.finish(end)
    psi = k.psi.totals(end)
    if livelock or deadlock:
        outcome = k.watchdog_kind
    elif thrash["thrashing"]:
        outcome = "thrashing"
    elif victims or alloc_fail:
        outcome = "recovered"
    else:
        outcome = "completed"
    fv = tasks[kills[0][1]].name if kills else None
    return {
        "status": "ok", "error": None, "outcome": outcome,
        "livelock": livelock, "deadlock": deadlock,
        "pressure_onset_s": _s(pressure), "reclaim_onset_s": _s(reclaim_onset),
        "first_kill_s": _s(first_kill), "first_victim": fv,
        "time_to_kill_s": _s(first_kill - pressure) if first_kill is not None and pressure is not None else None,
        "max_stall_s": _s(max_stall),
        "kills": len(kills), "fault_kills": fault_kills, "alloc_failures": alloc_fail,
        "victims": len(victims),
        "wrong_victims": sum(1 for r in roles.values() if r != "culprit"),
        "protected_victims": sum(1 for r in roles.values() if r == "protected"),
        "repeat_kills": sum(1 for _, _, rep in kills if rep),
        "ineffective_kills": ineffective, "extra_kills": extra,
        "workload_completed": completed, "completion_s": _s(completion),
        "progress_min10": thrash["progress_min10"], "thrash_s": thrash["thrash_s"],
        "thrash_start_s": thrash["thrash_start_s"],
        "thrash_to_kill_s": thrash["thrash_to_kill_s"], "refaults": k.refaults,
        "psi_some_s": _s(psi["some"]), "psi_full_s": _s(psi["full"]),
        "psi_full_avg10_max": float(load_str(k.psi.full_avg10_max)),
        "sim_s": _s(end), "events": k.events, "trace_sha256": k.trace_sha256(),
    }

"""The runner's tasks map the plan the runner parsed once; none parses the text again.

Every workload task is its own process, fork + exec of ``vmreal task`` (csrc/vmreal.c).  Until
this round each of them parsed the whole plan again (morton-make-usemem: 4,400 lines, 110 KB):
~35 ms of CPU per process under TCG and ~250 KB of private memory for the tables, neither of
which the model's fork (``harness.mm.FORK_US``, 0.2 ms) has.  Twenty-two compilers started
together took 0.8 s to reach their first op.  These tests run the runner natively on a plan of
500 tasks and 4,000 ops; they need a C compiler, and are skipped without one."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from harness.real import build

OK, WHY = build.available()
need = pytest.mark.skipif(not OK, reason=f"the runner cannot be built: {WHY}")


@pytest.fixture
def runner() -> Path:
    return Path(os.environ.get("VMREAL_UNDER_TEST") or build.vmreal_path())

FILLER_TASKS, FILLER_OPS = 500, 8


def _plan(lines_of_tasks: list[str]) -> str:
    """A plan whose first tasks are ``lines_of_tasks`` and then 500 tasks of 8 ops that never
    start (AUTOSTART 0): their tables are what a re-parse would hold in every process."""
    uid = os.getuid()
    n = len([ln for ln in lines_of_tasks if ln.startswith("task ")])
    out = ["vmreal-plan 1", f"tasks {n + FILLER_TASKS}", "limit_us 10000000",
           "watchdog_us 5000000", "quantum_us 1000", "sample_us 0"]
    out += [ln.replace("UID", str(uid)) for ln in lines_of_tasks]
    for i in range(n, n + FILLER_TASKS):
        out.append(f"task {i} filler{i} bystander 0 0 0 0 {uid} 0 0 0 -1")
        out += [f"op {i} compute 1000"] * FILLER_OPS
    return "\n".join(out) + "\n"


def _start(runner: Path, plan: Path, data: Path) -> subprocess.Popen:
    data.mkdir(exist_ok=True)
    return subprocess.Popen([str(runner), "run", str(plan), str(data)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _lines_until(proc: subprocess.Popen, word: str, n: int = 1) -> list[list[str]]:
    """The runner's VMREAL lines up to the ``n``-th ``word`` line."""
    seen, got = [], 0
    for ln in proc.stdout:
        parts = ln.split()
        seen.append(parts)
        if len(parts) > 2 and parts[2] == word:
            got += 1
            if got == n:
                return seen
    raise AssertionError(f"the runner ended before {n} '{word}' line(s): {seen[-5:]}")


@need
def test_a_task_holds_no_private_copy_of_the_plan(runner, tmp_path):
    """A sleeping task's private memory (RssAnon) is its stack and a few small buffers: the
    500 x 8 ops (4,000 x 48 B) and 500 tasks (x 136 B) a re-parse held, ~260 KB, are not in
    it.  Natively, the old runner's task here: 384 KB; this one: 64 KB."""
    plan = tmp_path / "plan"
    plan.write_text(_plan(["task 0 sleeper bystander 0 1 1 0 UID 0 0 0 -1",
                           "op 0 sleep 3000000"]))
    proc = _start(runner, plan, tmp_path / "data")
    try:
        start = _lines_until(proc, "start")[-1]
        pid = int(start[4])
        time.sleep(0.2)
        status = Path(f"/proc/{pid}/status").read_text()
        anon_kb = int(next(ln.split()[1] for ln in status.splitlines()
                           if ln.startswith("RssAnon:")))
        assert anon_kb < 200, f"the task holds {anon_kb} KB of private memory"
    finally:
        proc.kill()
        proc.wait()


@need
def test_a_task_started_after_the_plan_file_changed_runs_the_runners_plan(runner, tmp_path):
    """The runner reads the plan once: a task it starts 0.4 s later runs the ops the runner
    read, though the file now holds something else (the old runner's task parsed the file
    again and died on it)."""
    plan = tmp_path / "plan"
    plan.write_text(_plan(["task 0 first bystander 0 1 1 0 UID 0 0 0 -1",
                           "op 0 sleep 600000",
                           "task 1 later bystander 400000 1 1 0 UID 0 0 0 -1",
                           "op 1 touch 64",
                           "op 1 exit 7"]))
    proc = _start(runner, plan, tmp_path / "data")
    try:
        _lines_until(proc, "start")
        plan.write_text("not a plan\n")
        out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.wait()
    lines = [ln.split() for ln in out.splitlines()]
    assert not [ln for ln in lines if ln[2] == "error"], err
    exits = {ln[3]: ln for ln in lines if ln[2] == "exit"}
    assert exits["1"][5:7] == ["7", "0"]          # task 1 ran its ops: exit code 7, no signal
    assert exits["0"][5:7] == ["0", "0"]
    assert lines[-1][2:] == ["end", "done"]

"""The real-kernel runs (issue 6), memcg backend: plan compilation, records, a tiny real run,
and safety (no cgroup and no process outlives a run, a Ctrl-C or an error inside it).

The real runs are skipped, with the reason, when the machine cannot make a memory cgroup (not
root, no memory controller, no C compiler)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from harness import registry
from harness import workload as W
from harness.real import memcg, record as R, run_real
from harness.real.plan import NotRealisable, compile_plan
from harness.real.run import record_from_raw

ROOT = Path(__file__).resolve().parent.parent
OK, WHY = memcg.available()
real = pytest.mark.skipif(not OK, reason=f"memcg backend unavailable: {WHY}")


def tiny(**over) -> W.Workload:
    """A small usemem over a small limit: 32 MB (a 28.9 MB cgroup), usemem touches up to 48 MB."""
    d = {"name": "r1-tiny", "machine": {"ram_mb": 32, "cpus": 1},
         "run": {"time_limit_s": 20, "watchdog_s": 5},
         "program": [{"name": "small", "text_kb": 16, "ws_kb": 8, "vm_kb": 64}],
         "task": [
             {"name": "sleeper", "program": "small", "role": "bystander", "uid": 500, "goal": True,
              "script": [{"touch_mb": 2}, {"sleep_s": 1.0}]},
             {"name": "usemem", "program": "small", "role": "culprit", "uid": 500, "goal": True,
              "start_s": 0.2, "script": [{"loop": 12, "steps": [{"touch_mb": 4}]}]},
         ]}
    d.update(over)
    return W.from_dict(d)


def canonical():
    good, _ = W.load_dir(registry.WORKLOAD_DIR)
    return good


# ---------------------------------------------------------------------------- plans

def _sigint_default():
    """In the child before exec: SIGINT back to its default, so the harness gets Ctrl-C as a
    user's terminal sends it even when this test process was started with SIGINT ignored (as a
    background job of a non-interactive shell is); Python then installs KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def test_plan_is_deterministic_per_seed():
    w = canonical()["morton-make-usemem"]
    a, b = compile_plan(w, 3, 0.1).to_text(), compile_plan(w, 3, 0.1).to_text()
    assert a == b
    assert compile_plan(w, 4, 0.1).to_text() != a
    p = compile_plan(w, 3, 0.1)
    # 5 daemons + the usemem loop + 60 usemem + make + its cc1 jobs, one per file
    make = next(t for t in p.tasks if t.name == "make")
    (op,) = [o for o in make.ops if o[0] == "make"]
    jobs = [x for x in op[2:] if x != "|"]
    assert op[1] == 0 and op.count("|") == 29
    assert len(p.tasks) == 5 + 1 + 60 + 1 + len(jobs)
    assert all(p.tasks[j].name == "cc1" and p.tasks[j].parent == make.id for j in jobs)
    assert p.limit_s == pytest.approx(180.0) and p.files["include"] == 6144


def test_plan_unrolls_and_realises_exactly():
    w = W.from_dict({
        "name": "r1-unroll", "machine": {"ram_mb": 64}, "run": {"time_limit_s": 5, "watchdog_s": 2},
        "program": [{"name": "p", "text_kb": 40, "ws_kb": 8, "vm_kb": 100}],
        "file": [{"name": "data", "size_mb": 1}],
        "task": [
            {"name": "d", "role": "protected", "daemon": True, "uid": 0,
             "script": [{"loop": 0, "steps": [{"sleep_s": 1}, {"write": "log", "kb": 2,
                                                               "on_fail": "continue"}]}]},
            {"name": "w", "program": "p", "role": "bystander", "goal": True, "start_s": 2,
             "nice": 5, "oom_score_adj": 100,
             "script": [{"loop": 2, "steps": [{"touch_mb": 1}, {"compute_ms": 10}]},
                        {"read": "data", "mb": 3}, {"spawn": "kid", "count": 2, "wait": True},
                        {"exit": 3}, {"sleep_s": 9}]},
        ],
        "template": {"kid": {"role": "culprit", "script": [{"grow": {"mb": 2, "cpu_ms": 40,
                                                                    "phases": 4}}]}},
        "make": {"jobs": 3, "directories": 2, "files_per_dir": 2, "job": "kid", "start_s": 1},
    })
    p = compile_plan(w, 0, 0.5)
    # loop = 0 unrolled until its sleeps cover the 5 s limit (5 x 1 s); 2 KB is 0 pages, as in
    # the simulator's _pages(); a 3 MB read of a 1 MB file reads the file; nothing after exit;
    # each spawned template and each make job is a task; times x 0.5, sizes in KB of pages
    assert p.to_text() == textwrap.dedent("""\
        vmreal-plan 1
        workload r1-unroll
        seed 0
        time_scale 0.5
        tasks 9
        limit_us 2500000
        watchdog_us 1000000
        quantum_us 5000
        sample_us 100000
        task 0 d protected 0 0 1 1 0 0 0 0 -1
        op 0 reserve 1024
        op 0 sleep 500000
        op 0 write log 0 1
        op 0 sleep 500000
        op 0 write log 0 1
        op 0 sleep 500000
        op 0 write log 0 1
        op 0 sleep 500000
        op 0 write log 0 1
        op 0 sleep 500000
        op 0 write log 0 1
        task 1 w bystander 1000000 1 1 0 0 5 100 0 -1
        op 1 text prog.p 40 8
        op 1 reserve 100
        op 1 touch 1024
        op 1 compute 5000
        op 1 touch 1024
        op 1 compute 5000
        op 1 read data 1024 0
        op 1 spawn 2 1
        op 1 spawn 3 1
        op 1 exit 3
        task 2 kid culprit 0 0 0 0 0 0 0 0 1
        op 2 reserve 1024
        op 2 grow 2048 20000 4
        task 3 kid culprit 0 0 0 0 0 0 0 0 1
        op 3 reserve 1024
        op 3 grow 2048 20000 4
        task 4 make bystander 500000 1 1 0 0 0 0 0 -1
        op 4 reserve 1024
        op 4 make 3 5 6 | 7 8
        task 5 kid culprit 0 0 0 0 0 0 0 0 4
        op 5 reserve 1024
        op 5 grow 2048 20000 4
        task 6 kid culprit 0 0 0 0 0 0 0 0 4
        op 6 reserve 1024
        op 6 grow 2048 20000 4
        task 7 kid culprit 0 0 0 0 0 0 0 0 4
        op 7 reserve 1024
        op 7 grow 2048 20000 4
        task 8 kid culprit 0 0 0 0 0 0 0 0 4
        op 8 reserve 1024
        op 8 grow 2048 20000 4
        measure 1
        measure 2
        measure 3
        measure 4
        measure 5
        measure 6
        measure 7
        measure 8
        """)
    assert p.files == {"prog.p": 40, "data": 1024} and p.written == {"log"}
    # progress: the goal tasks and their descendants are measured (not the daemon), each op
    # with the nominal time the model of the plan credits (harness.workload.Builder.step;
    # machine.Costs fault 2 + zero 4 + allocator pass 1 us a page, user touch 4 us, disk 8 ms
    # + 400 us a page, a fork 200 us): CPU, sleeps and disk x 0.5, the kernel's work of a
    # fault (with its store a page) or a fork as it is: touch 256 pages = 256 x 7 + 256 x 4
    # = 2816 us; compute 10 ms -> 5000; read 256 pages = 8000 + 256 x 400 = 110400 us ->
    # 55200; a fork 200; grow 512 pages + 40 ms = 3584 + 2048 + 40000 x 0.5 = 25632 us;
    # text, reserve, make, exit: no step
    assert [t.measure for t in p.tasks] == [False] + [True] * 8
    assert p.tasks[1].nominal == [None, None, 2816, 5000, 2816, 5000, 55200, 200, 200, None]
    assert p.tasks[2].nominal == [None, 25632] and p.tasks[4].nominal == [None, None]
    assert p.tasks[0].nominal[:3] == [None, 500000, 0]
    assert (p.thrash_limit_s, p.disk_request_us, p.disk_page_us) == (30.0, 4000.0, 200.0)


def test_plan_text_is_what_the_runner_reads():
    """Every op follows its own task's line (the runner's parser requires it)."""
    p = compile_plan(canonical()["several-hogs"], 0, 0.1)
    txt = p.to_text().splitlines()
    assert txt[0] == "vmreal-plan 1"
    current = None
    for ln in txt:
        parts = ln.split()
        if parts[0] == "task":
            current = int(parts[1])
        elif parts[0] == "op":
            assert int(parts[1]) == current


@pytest.mark.parametrize("step,feature", [
    ({"kernel_spin_s": 5}, "kernel_spin_s"),
    ({"kalloc": "GFP_KERNEL"}, "kalloc"), ({"dwait_io": "f", "kb": 4}, "dwait_io")])
def test_not_realisable_steps(step, feature):
    w = tiny(task=[{"name": "x", "goal": True, "script": [step]}])
    with pytest.raises(NotRealisable, match=f"r1-tiny: task x: {feature} has no real counterpart"):
        compile_plan(w, 0)


def test_not_realisable_machine_features():
    good = canonical()
    for name, feature in (("atomic-irq", r"\[\[irq\]\]"), ("init-alloc", r"\[init\] script"),
                          ("db-vs-young-hog", "age_s"),
                          ("rstate-hang", "kernel_spin_s")):
        with pytest.raises(NotRealisable, match=feature):
            compile_plan(good[name], 0)
    for name in ("morton-make-usemem", "make-j.jobs4", "several-hogs", "streaming-reader",
                 "dstate-victim"):
        compile_plan(good[name], 0, 0.1)


# ---------------------------------------------------------------------------- records
RUNNER = """\
VMREAL 1000000 t0
VMREAL 1001000 start 0 500 sleeper
VMREAL 1201000 start 1 501 usemem
VMREAL 1450000 exit 1 501 0 9 12000
VMREAL 2002000 exit 0 500 0 0 30
VMREAL 2002100 stop done
VMREAL 2002200 end done""".splitlines()
KERNEL = """\
[    0.990000] vmreal: clock 999000
[    1.390000] usemem invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0
[    1.390010] CPU: 0 UID: 500 PID: 501 Comm: usemem Not tainted 6.18.0 #1
[    1.391000] Memory cgroup out of memory: Killed process 501 (usemem) total-vm:43468kB, anon-rss:28000kB
[    1.395000] Memory cgroup out of memory: Killed process 777 (other) total-vm:1kB""".splitlines()
META = {"backend": "memcg", "kernel": "6.18.0", "status": "ok", "wall_s": 1.5,
        "runner_limit_s": 20.0, "max_wall_s": 20.0, "kills_scope": "pids", "limit_kb": 28928}


def test_record_from_canned_lines():
    p = compile_plan(tiny(), 0, 1.0)
    rec = R.make_record(p, RUNNER, KERNEL, META, {"pressure_onset_us": 1_390_000,
                                                  "reclaim_onset_us": 1_300_000, "oom_kill": 1})
    assert set(rec) == set(R.ALL_COLUMNS)
    expect = {
        "policy": "real-memcg-6.18.0", "workload": "r1-tiny", "seed": 0, "status": "ok",
        "error": None, "outcome": "recovered", "livelock": False, "deadlock": False,
        "pressure_onset_s": 0.39, "reclaim_onset_s": 0.3, "first_kill_s": 0.4,
        "first_victim": "usemem", "time_to_kill_s": 0.01, "max_stall_s": None, "kills": 1,
        "fault_kills": 0, "alloc_failures": 0, "victims": 1, "wrong_victims": 0,
        "protected_victims": 0, "repeat_kills": 0, "ineffective_kills": 0, "extra_kills": 0,
        "workload_completed": False, "completion_s": None, "sim_s": 1.0021, "wall_s": 1.5,
        "events": 12, "backend": "memcg", "kernel": "6.18.0", "time_scale": 1.0,
        "truncated": False, "end_reason": "done", "max_fault_s": 0.012, "kills_sig9": 1,
        "oom_kill_counter": 1, "victim_names": "usemem", "kill_times_s": "0.400000",
        "kernel_clock_offset_us": -9000, "limit_kb": 28928, "sim_equiv_s": 1.002,
        "max_wall_s": 20.0,
    }
    for k, v in expect.items():
        assert rec[k] == v, k
    assert len(rec["trace_sha256"]) == 64
    # without the backend's probes the pressure onset is the OOM invocation
    rec2 = R.make_record(p, RUNNER, KERNEL, META, {})
    assert rec2["pressure_onset_s"] == 0.399 and rec2["time_to_kill_s"] == 0.001
    assert rec2["reclaim_onset_s"] is None
    # in a VM every kill in the log is the run's: the foreign pid counts, as protected
    rec3 = R.make_record(p, RUNNER, KERNEL, dict(META, kills_scope="all"), {})
    assert (rec3["kills"], rec3["victims"], rec3["protected_victims"]) == (2, 2, 1)
    assert rec3["victim_names"] == "usemem;other"


def test_record_livelock_enomem_and_truncation():
    p = compile_plan(tiny(), 0, 1.0)
    runner = """\
VMREAL 1000000 t0
VMREAL 1001000 start 0 500 sleeper
VMREAL 1201000 start 1 501 usemem
VMREAL 1300000 enomem 0 500 mmap exit
VMREAL 1300100 exit 0 500 1 0 5
VMREAL 11000000 stop limit
VMREAL 11000001 limit
VMREAL 11000002 stuck 1 501 R 4000000
VMREAL 11000100 exit 1 501 0 9 7000000
VMREAL 11000200 end limit""".splitlines()
    rec = R.make_record(p, runner, [], dict(META, runner_limit_s=10.0), {})
    assert (rec["outcome"], rec["livelock"], rec["deadlock"]) == ("livelock", True, False)
    assert (rec["alloc_failures"], rec["victims"], rec["wrong_victims"]) == (1, 1, 1)
    assert rec["victim_names"] == "sleeper" and rec["kills"] == 0 and rec["kills_sig9"] == 0
    assert rec["truncated"] is True and rec["sim_s"] == 10.0 and rec["max_fault_s"] == 7.0
    rec = R.make_record(p, [ln.replace(" R ", " D ") for ln in runner], [],
                        dict(META, runner_limit_s=20.0), {})
    assert (rec["outcome"], rec["deadlock"], rec["truncated"]) == ("deadlock", True, False)
    rec = R.make_record(p, ["garbage"], [], META, {})
    assert rec["status"] == "error" and "no t0" in rec["error"]


# ---------------------------------------------------------------------------- real runs
def _ours() -> list[Path]:
    kind, parent = memcg._own_cgroup()
    return sorted(parent.glob(f"{memcg.PREFIX}{os.getpid()}-*"))


def _alive(pids) -> list[int]:
    out = []
    for pid in pids:
        try:
            st = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if st.rsplit(")", 1)[1].split()[0] != "Z":
            out.append(pid)
    return out


def _pids(lines) -> list[int]:
    return [int(ln.split()[4]) for ln in lines if ln.split()[2:3] == ["start"]]


@real
def test_tiny_real_run_sees_the_kill_and_its_victim(tmp_path):
    w = tiny()
    rec = run_real(w, "memcg", 0, tmp_path, time_scale=1.0, max_wall_s=15)
    assert rec["status"] == "ok", rec["error"]
    assert rec["kills"] >= 1 and rec["first_victim"] == "usemem"
    assert rec["victim_names"].split(";")[0] == "usemem" and rec["wrong_victims"] == 0
    assert rec["oom_kill_counter"] == rec["kills"] == rec["kills_sig9"]
    assert 0.2 < rec["first_kill_s"] < 1.0
    assert rec["pressure_onset_s"] is not None and rec["pressure_onset_s"] <= rec["first_kill_s"]
    assert rec["policy"] == f"real-memcg-{os.uname().release}"
    log = (tmp_path / "raw" / "memcg" / "r1-tiny" / "0.log").read_text()
    assert "Killed process" in log and "VMREAL" in log
    runner = [ln for ln in log.splitlines() if ln.startswith("VMREAL")]
    assert _ours() == [] and _alive(_pids(runner)) == []
    # the raw log holds the whole record: made again from it, it is the same record
    assert record_from_raw(log, w, 0, 1.0) == rec


@real
def test_error_inside_the_run_leaves_nothing(tmp_path, monkeypatch):
    seen: list[int] = []
    names: set[str] = set()
    calls = [0]
    orig = memcg.Monitor.step

    def boom(self, *a, **k):
        orig(self, *a, **k)
        pids = memcg._procs(self.cg)
        seen.extend(pids)
        for pid in pids:
            try:
                names.add(Path(f"/proc/{pid}/comm").read_text().strip())
            except OSError:
                pass
        calls[0] += 1
        if calls[0] == 30:
            raise RuntimeError("injected failure inside the run")

    monkeypatch.setattr(memcg.Monitor, "step", boom)
    w = tiny(task=[{"name": "sleeper", "goal": True, "script": [{"touch_mb": 1}, {"sleep_s": 20}]}])
    rec = run_real(w, "memcg", 0, tmp_path, time_scale=1.0, max_wall_s=15)
    assert rec["status"] == "error" and "injected failure" in rec["error"]
    assert "sleeper" in names and "vmreal-run" not in names    # the task, not the runner
    assert _ours() == [] and _alive(set(seen)) == []


@real
def test_sigint_to_the_harness_leaves_nothing(tmp_path):
    toml = tmp_path / "r1-long.toml"
    toml.write_text(textwrap.dedent("""\
        name = "r1-long"
        [machine]
        ram_mb = 32
        [run]
        time_limit_s = 60
        [[task]]
        name = "sleeper"
        goal = true
        script = [ { touch_mb = 1 }, { sleep_s = 30 } ]
        [[task]]
        name = "spinner"
        goal = true
        script = [ { compute_ms = 30000 } ]
        """))
    proc = subprocess.Popen([sys.executable, "-m", "harness", "real", "--workload", str(toml),
                             "--backend", "memcg", "--seeds", "1", "--time-scale", "1",
                             "--out", str(tmp_path / "out")], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=_sigint_default)
    kind, parent = memcg._own_cgroup()
    pids: set[int] = set()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and len(pids) < 2:     # the two tasks (not the runner)
        for cg in parent.glob(f"{memcg.PREFIX}{proc.pid}-*"):
            pids.update(memcg._procs(cg))
        time.sleep(0.05)
    try:
        assert len(pids) >= 2, "the run did not start: " + proc.stderr.read1().decode()
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 130
    assert list(parent.glob(f"{memcg.PREFIX}{proc.pid}-*")) == []
    assert _alive(pids) == []


@real
@pytest.mark.skipif(not Path("/dev/fuse").exists(), reason="no /dev/fuse: dwait_s needs FUSE")
def test_dwait_is_a_real_d_state_the_oom_killer_cannot_end(tmp_path):
    """dstate-victim in miniature: the biggest task waits in a FUSE read; SIGKILL does not end
    the wait (TASK_UNINTERRUPTIBLE in request_wait_answer), the oom_reaper frees its memory."""
    w = tiny(task=[
        {"name": "db", "role": "bystander", "goal": True,
         "script": [{"touch_mb": 20}, {"dwait_s": 2.5}, {"compute_ms": 10}]},
        {"name": "hog", "role": "culprit", "goal": True, "start_s": 0.3,
         "script": [{"loop": 6, "steps": [{"touch_mb": 4}, {"compute_ms": 20}]}]},
    ])
    rec = run_real(w, "memcg", 0, tmp_path, time_scale=1.0, max_wall_s=15)
    assert rec["status"] == "ok", rec["error"]
    assert rec["first_victim"] == "db" and rec["kills"] == 1 and rec["wrong_victims"] == 1
    log = (tmp_path / "raw" / "memcg" / "r1-tiny" / "0.log").read_text()
    exits = {ln.split()[3]: ln.split() for ln in log.splitlines() if ln.startswith("VMREAL")
             and ln.split()[2] == "exit"}
    t0 = next(int(ln.split()[1]) for ln in log.splitlines() if ln.endswith(" t0"))
    db_exit = (int(exits["0"][1]) - t0) / 1e6
    assert exits["0"][6] == "9" and db_exit - rec["first_kill_s"] > 1.0   # the kill waited
    assert db_exit > 2.5
    assert "oom_reaper: reaped process" in log                             # memory came back
    assert exits["1"][5:7] == ["0", "0"]                                  # the hog finished
    assert _ours() == []

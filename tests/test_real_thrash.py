"""Thrashing measured on real runs (issue 9): the runner's step timing and pressure samples
turned into the same progress and PSI columns as the simulator's, on canned runner lines with
hand-computed numbers; the modelled disk the VM's disk is throttled to."""
from __future__ import annotations

from harness import workload as W
from harness.real import qemu, record as R
from harness.real.plan import compile_plan

META = {"backend": "qemu", "kernel": "6.1.0", "status": "ok", "wall_s": 12.0,
        "runner_limit_s": 12.0, "max_wall_s": 12.0, "kills_scope": "all",
        "disk_throttle": "iops-total=1250,bps-total=102400000,group=disk"}


def worker(thrash_limit_s=60):
    """A goal task computing 1 s (simulated) at a time, at time scale 0.1: 100 ms a step, and
    a hog (not a goal task) that only sleeps."""
    return W.from_dict({
        "name": "t-thrash", "machine": {"ram_mb": 64},
        "run": {"time_limit_s": 120, "watchdog_s": 20, "thrash_limit_s": thrash_limit_s},
        "task": [{"name": "worker", "role": "bystander", "goal": True,
                  "script": [{"loop": 110, "steps": [{"compute_ms": 1000}]}]},
                 {"name": "hog", "role": "culprit", "script": [{"sleep_s": 100}]}]})


def lines(kill_at_us=None):
    """10 healthy steps (0.1 s each, 0 to 1 s), then steps of 1 s wall for 0.1 s nominal (10 %
    progress) until the run stops at 11 s -- or, once the hog is killed at ``kill_at_us``,
    healthy steps again from the end of the slow step it interrupted."""
    out = ["VMREAL 0 t0", "VMREAL 0 psi 1000 500 0.00 0.00 10 5", "VMREAL 0 start 0 600 worker",
           "VMREAL 0 start 1 601 hog"]
    t, k = 0, 1                                # op 0 is the reserve
    while True:
        slow = t >= 1_000_000 and (kill_at_us is None or t < kill_at_us)
        dur = 1_000_000 if slow else 100_000
        if t + dur > 11_000_000:
            break
        if kill_at_us is not None and t < kill_at_us + 100_000 <= t + dur:
            out.append(f"VMREAL {kill_at_us + 100_000} exit 1 601 0 9 0")
        out.append(f"VMREAL {t + dur} step 0 600 {k} {t} 0")
        t, k = t + dur, k + 1
        if t == 5_000_000:
            out.append(f"VMREAL {t} psi 2001000 900500 30.00 20.00 3010 1005")
    out += ["VMREAL 11000000 psi 3001000 1000500 12.50 6.25 5010 2005",
            "VMREAL 11000000 stop done", "VMREAL 11000000 end done"]
    return out


def test_plan_measures_the_goal_task_with_its_nominal_times():
    p = compile_plan(worker(), 0, 0.1)
    assert p.tasks[0].measure and p.tasks[0].nominal == [None] + [100_000] * 110
    assert not p.tasks[1].measure
    assert p.thrash_limit_s == 6.0
    assert qemu.disk_throttle(p) == {"iops-total": 1250, "bps-total": 102_400_000,
                                     "group": "disk"}
    assert qemu.disk_throttle(compile_plan(worker(), 0, 1.0))["iops-total"] == 125


def test_a_run_that_thrashes_to_its_end():
    # windows of 1 s (10 s x 0.1) on a 10 ms grid.  The window ending at t in [1, 2] s holds
    # 2 - t s of healthy credit and 0.1 x (t - 1) s of the slow step: 1.89 s is the first
    # below 20 % (110 000 + 89 000 = 199 000 us < 200 000; 1.88 s: 208 000).  The stretch holds
    # to the run's end at 11 s: 9.11 s >= the 6 s limit (60 s x 0.1).
    rec = R.make_record(compile_plan(worker(), 0, 0.1), lines(), [], META, {})
    assert rec["outcome"] == "thrashing"
    assert (rec["thrash_s"], rec["thrash_start_s"], rec["thrash_to_kill_s"]) == (9.11, 1.89, None)
    assert rec["progress_min10"] == 0.1
    # the pressure: last sample minus first, the highest full avg10 sampled
    assert (rec["psi_some_s"], rec["psi_full_s"], rec["psi_full_avg10_max"]) == (3.0, 1.0, 20.0)
    assert (rec["refaults"], rec["pgmajfault"], rec["psi_samples"]) == (5000, 2000, 3)
    assert rec["disk_throttle"] == META["disk_throttle"]


def test_a_kill_that_ends_the_thrash_early_is_recovered():
    # the hog killed at 5.5 s (the kernel's line; no marker: the kernel clock is the runner's);
    # the slow step 5-6 s ends, healthy ones follow.  The window ending at t in [6, 7] s holds
    # t - 6 s of healthy credit and 0.1 x (7 - t) s of the slow step: 6.11 s is the last below
    # 20 % (110 000 + 89 000 us), so the stretch is 1.89-6.12 s (4.23 s), ended by the kill in
    # its last window: 5.5 - 1.89 = 3.61 s before it ended < the 6 s limit: not thrashing
    kernel = ["[    5.500000] Out of memory: Killed process 601 (hog) total-vm:1kB"]
    p = compile_plan(worker(), 0, 0.1)
    rec = R.make_record(p, lines(kill_at_us=5_500_000), kernel, META, {})
    assert rec["outcome"] == "recovered" and rec["kills"] == 1 and rec["first_victim"] == "hog"
    assert (rec["thrash_s"], rec["thrash_start_s"], rec["thrash_to_kill_s"]) == (4.23, 1.89, 3.61)
    # with a 3 s limit (30 s x 0.1) the 3.61 s it lasted before the kill make it thrashing
    p3 = compile_plan(worker(thrash_limit_s=30), 0, 0.1)
    assert R.make_record(p3, lines(kill_at_us=5_500_000), kernel, META, {})["outcome"] == "thrashing"


def test_a_bound_reached_while_thrashing_is_thrashing_a_stuck_task_a_hang():
    end = ["VMREAL 11000000 stop limit", "VMREAL 11000001 limit", "VMREAL 11000100 end limit"]
    ln = lines()[:-2] + end
    p = compile_plan(worker(), 0, 0.1)
    rec = R.make_record(p, ln, [], dict(META, runner_limit_s=12.0), {})
    assert (rec["outcome"], rec["end_reason"], rec["truncated"]) == ("thrashing", "limit", False)
    # a task inside one allocation for the watchdog at the bound: a hang comes first, as in
    # the simulator (its watchdog's livelock / deadlock before thrashing)
    stuck = ln[:-1] + ["VMREAL 11000002 stuck 0 600 D 8000000", ln[-1]]
    rec = R.make_record(p, stuck, [], dict(META, runner_limit_s=12.0), {})
    assert (rec["outcome"], rec["deadlock"]) == ("deadlock", True)


from harness.real import memcg, run_real  # noqa: E402
import pytest  # noqa: E402

OK, WHY = memcg.available()


@pytest.mark.skipif(not OK, reason=f"memcg backend unavailable: {WHY}")
def test_a_real_run_times_its_steps_and_samples_the_pressure(tmp_path):
    """On the host's memory cgroup, at time scale 0.1: the goal task's ops come back as step
    lines (touch 2 MB, then 20 times: access 4 MB -- two passes over its 512 pages --, compute,
    sleep), the runner samples the cgroup's memory.pressure and memory.stat, and the record
    has the progress columns."""
    w = W.from_dict({
        "name": "t-steps", "machine": {"ram_mb": 64, "cpus": 1},
        "run": {"time_limit_s": 200, "watchdog_s": 50},
        "task": [{"name": "worker", "role": "bystander", "goal": True,
                  "script": [{"touch_mb": 2}, {"loop": 20, "steps": [
                      {"access_mb": 4}, {"compute_ms": 300}, {"sleep_s": 0.5}]}]}]})
    rec = run_real(w, "memcg", 0, tmp_path, time_scale=0.1, max_wall_s=15)
    assert rec["status"] == "ok", rec["error"]
    assert rec["outcome"] == "completed" and rec["workload_completed"]
    log = (tmp_path / "raw" / "memcg" / "t-steps" / "0.log").read_text().splitlines()
    steps = [ln.split() for ln in log if ln.startswith("VMREAL") and ln.split()[2] == "step"]
    # ops: reserve, touch, then 20 x (access, compute (the access's user work), compute, sleep)
    assert [int(s[5]) for s in steps] == list(range(2 + 20 * 4))
    psi = [ln for ln in log if ln.startswith("VMREAL") and ln.split()[2] == "psi"]
    assert len(psi) >= 10 and rec["psi_samples"] == len(psi)     # every 100 ms for >= 1 s
    assert rec["refaults"] is not None            # memory.stat's workingset_refault_file
    if memcg._own_cgroup()[0] == "v2":            # memory.pressure (cgroup v1 has none: -1)
        assert all(int(x) >= 0 for x in psi[-1].split()[3:5]) and rec["psi_full_s"] is not None
    else:
        assert psi[-1].split()[3:5] == ["-1", "-1"] and rec["psi_full_s"] is None
    # 20 x 80 ms of nominal CPU and sleep on an idle host: no window (1 s) below 50 %
    assert 0.5 < rec["progress_min10"] <= 1.0 and rec["thrash_s"] == 0.0


def test_the_report_draws_the_thrashing_plot_and_the_bench_report_reuses_it(tmp_path):
    """A workload that thrashed gets ``plots/real_thrash_<workload>.png``: the real run's panel
    from the panels given (by harness.real), its model's beside it (here a model that fails:
    the panel says so); the bench's report, given no panels, copies the real run's figure."""
    from types import SimpleNamespace

    import pandas as pd

    from harness import report_real as RR
    from harness.real.record import ALL_COLUMNS
    rec = R.make_record(compile_plan(worker(), 0, 0.1), lines(), [], META, {})
    rec.update(policy="real-6.1", model="oom_reaper", real_policy_file="policies/real/x.toml")
    real = pd.DataFrame([rec], columns=ALL_COLUMNS)
    asked = []

    class Panels:
        def real(self, policy, w, seed, scale):
            asked.append((policy, w, seed, scale))
            return SimpleNamespace(trace=[(5_000_000, "kill")], thrash={
                "progress": [(10.0, 0.5), (20.0, 0.1)], "psi_full": [(10.0, 5.0)],
                "refault_rate": [(10.0, 100.0)]})

        def sim(self, label, w, seed):
            raise RuntimeError("no such model here")

    out = tmp_path / "real"
    tab, _png = RR.write(out, real, None, str(out), panels=Panels())
    fig = out / "plots" / "real_thrash_t-thrash.png"
    assert fig.exists() and asked == [("real-6.1", "t-thrash", 0, 0.1)]
    assert "plots/real_thrash_t-thrash.png" in (out / "real_vs_sim.md").read_text()
    bench = tmp_path / "bench"
    tab2, _ = RR.write(bench, real, None, str(out))
    assert (bench / "plots" / "real_thrash_t-thrash.png").read_bytes() == fig.read_bytes()
    assert tab2.attrs["thrash_plots"] == {"t-thrash": str(bench / "plots" /
                                                         "real_thrash_t-thrash.png")}

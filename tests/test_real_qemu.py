"""The qemu backend of the real-kernel runs (issue 6): one tiny real run whose OOM kill and
victim are seen, and safety -- no qemu outlives a run after a normal end, after SIGINT to the
harness mid-boot, and after an error raised while the VM runs.  Skipped, with the reason, where
the backend is unavailable (no qemu, busybox-static, fetched kernel or built runner: `make
real-setup`).  About a minute on 2 cores (two boots more the first time, to measure the guest
kernel's overhead)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from harness import workload as W
from harness.real import qemu
from harness.real.plan import usable_kb

ROOT = Path(__file__).resolve().parents[1]

ok, why = qemu.available()
pytestmark = pytest.mark.skipif(not ok, reason=f"qemu backend unavailable: {why}")

# usemem touches 30 MB beside a 6 MB idle task on a 32 MB machine: more than the guest has free
# (-m is chosen so that the guest's tasks can get what the simulated 32 MB machine's can,
# 28 928 KB: harness.real.plan.usable_kb), so the guest's global OOM killer must act,
# and the task with the largest RSS is usemem.
TINY = """
name = "qemu-tiny"
description = "usemem 30 MB beside an idle 6 MB task on a 32 MB box, no swap"
question = "Does the guest's OOM killer kill usemem, and does the harness see it?"

[machine]
ram_mb = 32
swap_mb = 0
cpus = 1

[run]
time_limit_s = 20
watchdog_s = 10
seeds = 1

[[program]]
name = "usemem"
text_kb = 8
ws_kb = 8
vm_kb = 1100

[[task]]
name = "idle"
role = "bystander"
daemon = true
script = [ { touch_mb = 6 }, { sleep_s = 30 } ]

[[task]]
name = "usemem"
program = "usemem"
role = "culprit"
goal = true
start_s = 0.5
script = [ { mmap_mb = 30 }, { touch_mb = 30 }, { exit = 0 } ]
"""


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    p = tmp_path_factory.mktemp("wl") / "qemu-tiny.toml"
    p.write_text(TINY)
    return p


def _our_qemus() -> dict[int, int]:
    """Live (not zombie) qemu processes using this checkout's .real/: {pid: ppid}."""
    out = {}
    marker = str(qemu.REAL).encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes().split(b"\0")
            st = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if cmd and cmd[0].endswith(b"qemu-system-x86_64") and any(marker in c for c in cmd) \
                and st[0] != "Z":
            out[int(d.name)] = int(st[1])
    return out


def _children() -> set[int]:
    """Our own live qemu children (other sessions may run qemu from this checkout too)."""
    return {q for q, ppid in _our_qemus().items() if ppid == os.getpid()}


def _gone(pids, within=10.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not set(pids) & set(_our_qemus()):
            return True
        time.sleep(0.1)
    return False



def _sigint_default():
    """In the child before exec: SIGINT back to its default, so the harness gets Ctrl-C as a
    user's terminal sends it even when this test process was started with SIGINT ignored (as a
    background job of a non-interactive shell is); Python then installs KeyboardInterrupt."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

def test_tiny_run_sees_the_oom_kill_and_its_victim(tiny, tmp_path):
    from harness.real import plan as P
    from harness.real import record as R
    wl = W.load(tiny)
    plan = P.compile_plan(wl, 0)
    runner, kernel, extra, meta = qemu.run(plan, wl, 0, tmp_path, 30)
    assert not _children(), "a qemu outlived a normal run"
    assert not qemu._LIVE
    assert meta["status"] == "ok", meta.get("error")
    assert 96 <= meta["guest_mb"] <= 160
    # the guest's tasks can get what the simulated 32 MB machine's can (within one MB of -m)
    assert 0 <= meta["guest_usable_kb"] - meta["usable_target_kb"] < 1024
    assert meta["guest_free_kb"] > meta["guest_usable_kb"]
    assert meta["kernel"] and (tmp_path / "0.qemu-serial.log").exists()
    # the runner saw usemem start and die of SIGKILL; the kernel log names it, with its pid
    started = {ln.split()[5]: int(ln.split()[4]) for ln in runner if ln.split()[2] == "start"}
    assert "usemem" in started, runner
    pid = started["usemem"]
    assert any(re.match(rf"VMREAL \d+ exit \d+ {pid} \d+ 9\b", ln) for ln in runner), runner
    assert any(re.search(rf"Killed process {pid} \(usemem\)", ln) for ln in kernel), \
        [ln for ln in kernel if "Killed" in ln]
    assert any("invoked oom-killer" in ln for ln in kernel)
    assert extra.get("zoneinfo") and extra.get("meminfo-end")
    # the kernel's tracepoints: direct reclaim began, then a round freed too little, before the kill
    assert extra["reclaim_onset_us"] <= extra["pressure_onset_us"]
    rec = R.make_record(plan, runner, kernel, meta)
    assert rec["kills"] >= 1 and rec["first_victim"] == "usemem", rec
    assert rec["policy"] == f"real-qemu-{meta['kernel']}"
    # the disk is the modelled one at the run's time scale (8 ms a request, 400 us a page,
    # x 1), and the guest's /proc/pressure/memory and /proc/vmstat were sampled
    assert meta["disk_throttle"] == "iops-total=125,bps-total=10240000,group=disk"
    psi = [ln.split() for ln in runner if ln.split()[2] == "psi"]
    assert psi and all(int(x) >= 0 for x in psi[-1][3:5] + psi[-1][7:9]), psi[-1:]
    assert rec["psi_samples"] == len(psi) and rec["refaults"] is not None


def test_overhead_is_measured_once_and_cached(monkeypatch):
    want = usable_kb(W.from_dict(tomllib.loads(TINY)))[0]
    assert want == 32 * 1024 - 2560 - 1024 - 4 * (32 + 32)     # RAM - reserve - slab - pages_min
    m = qemu.guest_mb(want, 1)           # measured by the tiny run (or an earlier session) or now

    def no_boot(*a, **k):
        raise AssertionError("the overhead was measured again instead of read from the cache")
    monkeypatch.setattr(qemu, "boot", no_boot)
    ov = qemu.overhead(1)
    assert 0.9 < ov["a"] <= 1.0 and ov["b_kb"] > 0
    assert qemu.guest_mb(want, 1) == m >= qemu.MIN_GUEST_MB
    assert qemu.OVERHEAD.exists() and qemu._overhead_key(1) in qemu.OVERHEAD.read_text()


def test_error_inside_the_run_leaves_no_qemu(tiny, tmp_path, monkeypatch):
    from harness.real import plan as P
    seen = []

    def boom(line, seen_, t0):
        seen.append(_children())                      # the VM is running now
        raise RuntimeError("parser exploded")
    monkeypatch.setattr(qemu, "_watch_line", boom)
    wl = W.load(tiny)
    with pytest.raises(RuntimeError, match="parser exploded"):
        qemu.run(P.compile_plan(wl, 0), wl, 0, tmp_path, 30)
    assert seen and seen[0], "the error was not raised while qemu ran"
    assert _gone(seen[0], within=2) and not _children(), "a qemu outlived an error in the run"
    assert not qemu._LIVE


def test_sigint_to_the_harness_mid_boot_leaves_no_qemu(tiny, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    p = subprocess.Popen([sys.executable, "-m", "harness", "real", "--backend", "qemu",
                          "--workload", str(tiny), "--seeds", "1", "--out", str(tmp_path / "o")],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         preexec_fn=_sigint_default)
    try:
        mine, end = set(), time.monotonic() + 60
        while not mine and time.monotonic() < end and p.poll() is None:
            mine = {q for q, ppid in _our_qemus().items() if ppid == p.pid}
            time.sleep(0.05)
        assert mine, f"no qemu started: {p.communicate(timeout=30)[0].decode()[-2000:]}"
        time.sleep(1.0)                                  # mid-boot (a boot takes ~6 s)
        p.send_signal(signal.SIGINT)
        p.wait(timeout=30)
        assert p.returncode != 0
        assert _gone(mine, within=5), "a qemu outlived SIGINT to the harness"
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()

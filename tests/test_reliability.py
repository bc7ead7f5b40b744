"""Nothing a workload, a policy or a crash can do corrupts a result or sinks the matrix.

Each test reproduces one defect of a hostile but realistic use: a policy that breaks the
machine's laws, a worker that dies, a damaged cache, bad workload files, a hanging or exiting
policy under ``check``, misused command-line arguments."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from harness import bench as BN
from harness import laws, registry, runner
from harness import workload as W
from harness.__main__ import main
from tests.test_matrix import cli, scratch

ROOT = registry.ROOT
ENV = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")

HOSTILE = '''
import os
import time

from harness import blocks as B
from policies.aa import AA


class Cheat(AA):
    name = "cheat"
    description = "claims a billion free DMA pages in reclaim"

    def try_to_free_pages(self, k, task, cz, gfp, order):
        k.zones[0].free = 10**9
        return (yield from super().try_to_free_pages(k, task, cz, gfp, order))


class Leaks(AA):
    name = "leaks"
    description = "an honest accounting bug: reclaim frees pages nobody owned"

    def try_to_free_pages(self, k, task, cz, gfp, order):
        k.free_to_zone(1, 3)
        return (yield from super().try_to_free_pages(k, task, cz, gfp, order))


class Exits(AA):
    name = "exits"
    description = "os._exit in reclaim"

    def try_to_free_pages(self, k, task, cz, gfp, order):
        os._exit(3)
        yield


class Naps(AA):
    name = "naps"
    description = "sleeps 2 s of wall time in the first reclaim of a run"

    def try_to_free_pages(self, k, task, cz, gfp, order):
        if not getattr(self, "napped", False):
            self.napped = True
            time.sleep(2)
        return (yield from super().try_to_free_pages(k, task, cz, gfp, order))


class Spins(AA):
    name = "spins"
    description = "never returns from reclaim (a plain Python loop)"

    def try_to_free_pages(self, k, task, cz, gfp, order):
        while True:
            pass
        yield


class Hog(AA):
    name = "hog"
    description = "allocates a gigabyte of host memory in reclaim"

    def try_to_free_pages(self, k, task, cz, gfp, order):
        self.ballast = bytearray(1 << 30)
        return (yield from super().try_to_free_pages(k, task, cz, gfp, order))
'''


def hostile_project(tmp_path) -> Path:
    proj = scratch(tmp_path)
    (proj / "policies" / "hostile.py").write_text(HOSTILE)
    return proj


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert len(lines[0]) <= 300, lines[0]
    return lines[0]


# ---------------------------------------------------------------------------- 1. laws
def test_a_policy_that_breaks_page_conservation_is_invalid(tmp_path):
    """Defect 1: the cheating policy was ``ok`` / completed in the bench; a policy with an
    accounting bug went unnoticed the same way."""
    proj = hostile_project(tmp_path)
    r = cli(proj, "--policies", "cheat,leaks,aa", "--workloads", "dstate-victim", "--seeds", "2",
            "--no-report", "--out", str(proj / "results"))
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "6 runs: ok 2, invalid 4", r.stderr
    df = pd.read_csv(proj / "results" / "latest" / "runs.csv")
    by = {p: g for p, g in df.groupby("policy")}
    assert set(by["cheat"].status) == set(by["leaks"].status) == {"invalid"}
    assert all(e.startswith("law broken: free never above the zone size, at t=")
               and "zone DMA: free" in e for e in by["cheat"].error)
    assert all(e.startswith("law broken: page conservation, at t=") and "zone Normal" in e
               for e in by["leaks"].error)
    assert by["cheat"].outcome.isna().all() and by["cheat"].kills.isna().all()   # no statistic
    assert set(by["aa"].status) == {"ok"}


def test_every_law_is_checked_and_names_law_time_and_zone():
    w = runner.resolve_workload("tiny")
    pol = registry.get_policy("aa")()
    k = runner.simulate(pol, w, 0)
    laws.check_all(k)                                     # an honest run obeys every law
    breaks = [
        ("no negative count", lambda: setattr(k.zones[1], "anon", -1), "Normal"),
        ("free never above the zone size", lambda: setattr(k.zones[0], "free", 10**6), "DMA"),
        ("page conservation", lambda: setattr(k.zones[1], "free", k.zones[1].free - 1), "Normal"),
        ("swap within its size", lambda: setattr(k, "nr_swap_pages", k.swap_total + 1), "swap"),
    ]
    for law, brk, zone in breaks:
        k = runner.simulate(registry.get_policy("aa")(), w, 0)
        brk()
        with pytest.raises(laws.LawBroken) as e:
            laws.check_all(k)
        assert (e.value.law, e.value.zone, e.value.t_us) == (law, zone, k.now), str(e.value)
    k = runner.simulate(registry.get_policy("aa")(), w, 0)
    dead = next(t for t in k.tasks if t.state == "X")
    dead.kmem[1] += 1
    k.zones[1].kmem += 1
    k.zones[1].free -= 1
    with pytest.raises(laws.LawBroken, match="every dead task's memory returned.*still holds "
                                             "1 kernel pages"):
        laws.check_all(k)
    k = runner.simulate(registry.get_policy("aa")(), w, 0)
    next(iter(k.live.values())).kmem[2 if k.zones[2].size else 1] += 1
    with pytest.raises(laws.LawBroken, match="page conservation.*kmem: the zone counts"):
        laws.check_all(k)


def test_the_laws_are_checked_during_the_run_at_their_interval():
    """The periodic check stops a broken run at the first check after the break."""
    w = runner.resolve_workload("tiny")

    class Breaks(registry.get_policy("aa")):
        name = "breaks"

        def boot(self, k):
            super().boot(k)
            k.at(2_000_000, lambda _: setattr(k.zones[1], "anon", k.zones[1].anon + 5))

    with pytest.raises(laws.LawBroken) as e:
        runner.simulate(Breaks(), w, 0)
    period = laws.ZONE_US
    assert e.value.law == "page conservation" and e.value.zone == "Normal"
    assert 2_000_000 <= e.value.t_us <= 2_000_000 + period + 100_000, e.value.t_us


# ---------------------------------------------------------------------------- 2. dead workers
def test_a_worker_that_exits_is_a_crashed_cell_and_the_matrix_completes(tmp_path):
    """Defect 2: os._exit() in a hook ended the bench with TerminatedWorkerError, no runs.csv."""
    proj = hostile_project(tmp_path)
    r = cli(proj, "--policies", "exits,aa", "--workloads", "dstate-victim,tiny", "--seeds", "2",
            "--no-report", "--out", str(proj / "results"))
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == "8 runs: ok 4, crashed 4", r.stderr
    df = pd.read_csv(proj / "results" / "latest" / "runs.csv")
    crashed = df[df.policy == "exits"]
    assert set(crashed.status) == {"crashed"}
    assert set(crashed.error) == {"the worker died: exit code 3"}
    assert set(df[df.policy == "aa"].status) == {"ok"}


def _workers_of(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"harness.pool" in cmd:
            out.append(int(d.name))
    return out


def test_kill_9_of_one_worker_is_one_crashed_cell(tmp_path):
    """Defect 2: a worker killed by the host (kill -9, the OOM killer) sank the matrix."""
    proj = hostile_project(tmp_path)
    out = proj / "results"
    env = dict(os.environ, PYTHONPATH=str(proj), MPLBACKEND="Agg")
    p = subprocess.Popen([sys.executable, "-m", "harness", "bench", "--quiet", "--no-report",
                          "--policies", "naps", "--workloads", "dstate-victim", "--seeds", "4",
                          "--jobs", "2", "--out", str(out)], cwd=proj, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    workers = []
    while time.time() < deadline and len(workers) < 2:
        workers = _workers_of(p.pid)
        time.sleep(0.05)
    assert len(workers) == 2, workers
    time.sleep(1.0)                                  # both are inside their first run's nap
    os.kill(workers[0], signal.SIGKILL)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 1, err
    assert err.strip().splitlines()[-1] == "4 runs: ok 3, crashed 1", err
    df = pd.read_csv(out / "latest" / "runs.csv")
    assert list(df.error.dropna()) == ["the worker died: killed by SIGKILL (9)"]


def test_a_run_over_the_memory_limit_is_status_memory(tmp_path):
    """Defect 2: a run could grow its worker without bound (5.7 GB in 45 s)."""
    proj = hostile_project(tmp_path)
    r = cli(proj, "--policies", "hog,aa", "--workloads", "dstate-victim", "--seeds", "2",
            "--memory-mb", "600", "--no-report", "--out", str(proj / "results"))
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "4 runs: ok 2, memory 2", r.stderr
    df = pd.read_csv(proj / "results" / "latest" / "runs.csv")
    assert set(df[df.policy == "hog"].status) == {"memory"}
    assert all("memory limit" in e for e in df[df.policy == "hog"].error)


def test_exit_status_is_0_when_every_cell_is_ok(tmp_path):
    r = subprocess.run([sys.executable, "-m", "harness", "bench", "--quiet", "--no-report",
                        "--policies", "aa", "--workloads", "tiny", "--seeds", "2", "--out",
                        str(tmp_path)], cwd=ROOT, env=ENV, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "2 runs: ok 2"


# ---------------------------------------------------------------------------- 3. the cache
SMALL = dict(policies=["aa"], workloads=["tiny"], seeds=range(2), report=False, progress=False)
DAMAGE = {
    "truncated": lambda text: text[: len(text) // 2],
    "garbage": lambda text: "\x00\xff garbage",
    "empty": lambda text: "",
    "list": lambda text: "[]",
    "null": lambda text: "null",
    "object": lambda text: "{}",
    "status only": lambda text: '{"status": "ok"}',
    "wrong type": lambda text: text.replace('"kills": 0', '"kills": "none"'),
    "another cell": lambda text: json.dumps(dict(json.loads(text), seed=7)),
}


@pytest.mark.parametrize("how", sorted(DAMAGE))
def test_a_damaged_cache_record_is_moved_aside_and_made_again(tmp_path, how):
    """Defect 3: a damaged record crashed every later bench, or (``{"status": "ok"}``) was taken
    as a run without policy or seed."""
    logs = []
    _, first = BN.bench(**SMALL, out_root=tmp_path, log=logs.append)
    rec = sorted((tmp_path / "cache").glob("??/*.json"))[0]
    rec.write_bytes(DAMAGE[how](rec.read_text()).encode("utf-8", "surrogateescape"))
    logs = []
    failed, again = BN.bench(**SMALL, out_root=tmp_path, log=logs.append)
    assert failed == 0
    moved = [m for m in logs if m.startswith(f"cache: {rec}: ")]
    assert len(moved) == 1 and "moved to" in moved[0] and "made again" in moved[0], logs
    assert "(1 computed, 1 from the cache)" in logs[-1], logs
    assert len(list((tmp_path / "cache" / "rejected").iterdir())) == 1
    a, b = (pd.read_csv(d / "runs.csv").drop(columns="wall_s") for d in (first, again))
    pd.testing.assert_frame_equal(a, b)
    BN.read_cached(rec, next(c for c in BN.make_cells(
        {"aa": registry.get_policy("aa")}, {"tiny": runner.resolve_workload("tiny")}, range(2),
        registry.POLICY_DIR) if rec.stem == c.key))                # the new record is good


def test_no_cache_makes_every_run_and_writes_over_the_cache(tmp_path):
    logs = []
    BN.bench(**SMALL, out_root=tmp_path, log=logs.append)
    recs = sorted((tmp_path / "cache").glob("??/*.json"))
    for f in recs:
        f.write_text("{}")
    BN.bench(**SMALL, out_root=tmp_path, log=logs.append, use_cache=False)
    assert "(2 computed, 0 from the cache)" in logs[-1]
    for f in recs:
        assert json.loads(f.read_text())["status"] == "ok"
    logs = []
    BN.bench(**SMALL, out_root=tmp_path, log=logs.append)
    assert "(0 computed, 2 from the cache)" in logs[-1] and not any("cache:" in m for m in logs)


# ---------------------------------------------------------------------------- 4/5. workload files
GOOD = '''name = "ok"
[machine]
ram_mb = 64
[[task]]
name = "t"
script = [ { touch_mb = 1 }, { compute_ms = 10 } ]
'''
SWEEP_6 = GOOD + "[sweep]\n" + "\n".join(      # 10**6 points, each a valid workload
    f'"{k}" = [{", ".join(str(v) for v in range(lo, lo + 10))}]'
    for k, lo in (("machine.ram_mb", 32), ("machine.swap_mb", 0), ("machine.cpus", 1),
                  ("run.seeds", 1), ("run.watchdog_s", 10), ("run.time_limit_s", 100)))
BAD_FILES = {
    # defect 4: each gave a traceback in check, list and bench
    "non_utf8": (b'name = "ok\xff"\n', "not UTF-8: byte 0xff at offset 10"),
    "deep_nesting": (GOOD.replace("touch_mb = 1", "touch_mb = " + "[" * 400 + "]" * 400).encode(),
                     "nested deeper than 32 levels"),
    "inf": (GOOD.replace("touch_mb = 1", "touch_mb = inf").encode(), "expected a finite number"),
    "nan": (GOOD.replace("compute_ms = 10", "compute_ms = nan").encode(), "expected a finite"),
    "list_for_number": (GOOD.replace("ram_mb = 64", "ram_mb = [64]").encode(), "machine.ram_mb"),
    "list_for_dist": (GOOD.replace("touch_mb = 1", 'touch_mb = { dist = ["uniform"], lo = 0, '
                                   'hi = 1 }').encode(), "dist: expected one of"),
    "sweep_10e6_points": (SWEEP_6.encode(), "more than 256 points"),
    "sweep_10e6_values": ((GOOD + '[sweep]\n"make.jobs" = [' + ",".join(["1"] * 10**6) + "]")
                          .encode(), "more than a workload file may have"),
    "huge_key": ((GOOD + "x" * 200_000 + " = 1\n").encode(), "unknown key"),
    # defect 5: check accepted each, then run crashed or hung
    "ram_2_40": (GOOD.replace("ram_mb = 64", "ram_mb = 1099511627776").encode(),
                 "machine.ram_mb: 1099511627776 is out of range 17..65536"),
    "seeds_negative": (GOOD.replace("[[task]]", "[run]\nseeds = -5\n[[task]]").encode(),
                       "run.seeds: -5 is out of range 1..10000"),
    "inf_time": (GOOD.replace("[[task]]", "[run]\ntime_limit_s = inf\n[[task]]").encode(),
                 "run.time_limit_s: expected a finite number"),
    "nan_size": (GOOD.replace("touch_mb = 1", 'touch_mb = { dist = "uniform", lo = 0, hi = nan }')
                 .encode(), "hi: expected a finite number"),
    "reserved_above_ram": (GOOD.replace("ram_mb = 64", "ram_mb = 64\nreserved_kb = 70000").encode(),
                           "machine.reserved_kb: the boot allocations do not fit"),
    "boot_slab_above_ram": (GOOD.replace("ram_mb = 64", "ram_mb = 64\nboot_slab_kb = 65536")
                            .encode(), "machine.boot_slab_kb"),
    "costs_zero": (GOOD.replace("ram_mb = 64", "ram_mb = 64\n[machine.costs]\nfault_us = 0\n"
                                "page_zero_us = 0").encode(), "out of range 0.01..1000000"),
    "cost_negative": (GOOD.replace("ram_mb = 64", "ram_mb = 64\n[machine.costs]\n"
                                   "lru_scan_us = -1").encode(), "lru_scan_us: -1 is out of range"),
    "timeslice_zero": (GOOD.replace("ram_mb = 64", "ram_mb = 64\n[machine.costs]\n"
                                    "timeslice_us = 0").encode(), "timeslice_us: 0 is out of range"),
    "watchdog_1e-9": (GOOD.replace("[[task]]", "[run]\nwatchdog_s = 1e-9\n[[task]]").encode(),
                      "run.watchdog_s: 1e-09 is out of range 1..86400"),
    "zero_time_loop": (GOOD.replace("compute_ms = 10", "loop = 0, steps = [ { compute_ms = 0 }, "
                                    "{ wait_children = true } ]").encode(),
                       "no step of the loop surely takes time"),
    "irq_every_1e-9_ms": ((GOOD + '[[irq]]\nname = "nic"\ninterval_ms = 1e-9\n').encode(),
                          "irq[0].interval_ms: 1e-09 is out of range 0.1.."),
    "cpus_10e12": (GOOD.replace("ram_mb = 64", "ram_mb = 64\ncpus = 1000000000000").encode(),
                   "machine.cpus: 1000000000000 is out of range 1..32"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_workload_file_is_one_short_line_in_check_and_list(tmp_path, case, capsys,
                                                                  monkeypatch):
    text, what = BAD_FILES[case]
    folder = tmp_path / "workloads"
    folder.mkdir()
    shutil.copy(ROOT / "workloads" / "tiny.toml", folder)
    bad = folder / f"{case}.toml"
    bad.write_bytes(text)
    t0 = time.perf_counter()
    assert main(["check", str(bad)]) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"error: {bad}: ") and what in line, line
    monkeypatch.setattr(registry, "WORKLOAD_DIR", folder)
    assert main(["list"]) == 0
    out = capsys.readouterr()
    assert "  tiny" in out.out
    assert one_line(out.err) == line
    assert time.perf_counter() - t0 < 30                    # never a hang


def test_bench_skips_a_bad_workload_file_with_its_line(tmp_path):
    folder = tmp_path / "workloads"
    folder.mkdir()
    shutil.copy(ROOT / "workloads" / "tiny.toml", folder)
    for case in ("non_utf8", "deep_nesting", "sweep_10e6_points", "ram_2_40"):
        (folder / f"{case}.toml").write_bytes(BAD_FILES[case][0])
    logs = []
    failed, out = BN.bench(policies=["aa"], seeds=range(1), workload_dir=folder,
                           out_root=tmp_path / "results", report=False, progress=False,
                           log=logs.append)
    assert failed == 0
    skipped = [m for m in logs if m.startswith("skipped: ")]
    assert len(skipped) == 4 and all(len(m) <= 300 for m in skipped), skipped
    assert pd.read_csv(out / "runs.csv").workload.tolist() == ["tiny"]


def test_the_ranges_are_documented():
    """docs/workload-ranges.md lists every range of ``RANGES`` with its bounds."""
    doc = (ROOT / "docs" / "workload-ranges.md").read_text()
    for name, (lo, hi) in W.RANGES.items():
        assert f"| `{name}` | {W._num(lo)} .. {W._num(hi)} |" in doc, name


def test_run_has_a_wall_time_limit(tmp_path):
    """Defect 5: ``run`` had no wall-time limit."""
    proj = hostile_project(tmp_path)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "harness", "run", "--policy", "spins", "--workload",
                        "dstate-victim", "--timeout", "1"], cwd=proj, capture_output=True,
                       text=True, env=dict(ENV, PYTHONPATH=str(proj)), timeout=120)
    assert time.perf_counter() - t0 < 30
    assert r.returncode == 1
    assert one_line(r.stderr).startswith("timeout: run exceeded"), r.stderr


# ---------------------------------------------------------------------------- 6. check
CHECKED = '''
import os
import time

from policies.aa import AA


class Hangs(AA):
    name = "hangs"
    description = "its badness never returns"

    def badness(self, k, t):
        while True:
            time.sleep(1)


class ExitsInCheck(AA):
    name = "exits3"
    description = "os._exit(3) in reclaim"

    def try_to_free_pages(self, k, task, cz, gfp, order):
        os._exit(3)
        yield


class RaisesHere(AA):
    name = "raises_here"
    description = "raises in its own file"

    def badness(self, k, t):
        return 1 // 0
'''


def test_check_bounds_a_hanging_or_exiting_policy_and_names_the_line(tmp_path):
    """Defect 6: check hung on a sleeping hook, exited 3 with no output on os._exit(3), and
    placed an error at the base class's line (policies/aa.py) instead of the file's."""
    f = tmp_path / "hostile_check.py"
    f.write_text(CHECKED)
    r = subprocess.run([sys.executable, "-m", "harness", "check", str(f), "--timeout", "15"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=400)
    assert r.returncode == 1, r.stderr
    out = r.stdout
    assert "FAIL select                          did not finish within 15 s" in out, out
    assert "FAIL run:tiny                the check's process ended without an answer: exit " \
           "code 3" in out, out
    line = f"FAIL select                          ZeroDivisionError: integer division or " \
           f"modulo by zero ({f}:{CHECKED.splitlines().index('        return 1 // 0') + 1})"
    assert line in out, out
    assert "policies/aa.py" not in out


# ---------------------------------------------------------------------------- 7. the CLI
def bench_cli(*args, cwd=ROOT, timeout=120):
    return subprocess.run([sys.executable, "-m", "harness", "bench", "--quiet", "--no-report",
                           *args], cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=timeout)


@pytest.mark.parametrize("args, what", [
    (["--timeout", "-5"], "argument --timeout: expected wall seconds from 0.001 to 86400"),
    (["--timeout", "nan"], "argument --timeout"),
    (["--timeout", "inf"], "argument --timeout"),
    (["--seed-list", "2-x"], "--seed-list: '2-x' is not a seed or a range"),
    (["--seed-list", "-3"], "--seed-list: '-3' is not a seed or a range"),
    (["--seed-list", "5-2"], "a range from low to high"),
    (["--seeds", "0"], "argument --seeds"),
    (["--jobs", "0"], "argument --jobs"),
    (["--policies", ""], "--policies '' names nothing"),
    (["--workloads", " , "], "--workloads ' , ' names nothing"),
    (["--policy-dir", "/nonexistent"], "'/nonexistent' is not a folder"),
    (["--memory-mb", "-1"], "argument --memory-mb"),
    (["--out", "/etc/passwd/x"], "cannot write the results folder /etc/passwd/x"),
    (["--out", "/proc/vmbench"], "cannot write the results folder /proc/vmbench"),
])
def test_a_bad_bench_argument_is_one_line_before_any_run(args, what):
    """Defect 7: these gave tracebacks (a read-only --out only after computing every run), or
    (``--policies ""``) ran the whole matrix."""
    t0 = time.perf_counter()
    r = bench_cli("--workloads", "tiny", "--policies", "aa", *args)
    assert r.returncode == 2, r.stderr
    assert what in one_line(r.stderr), r.stderr
    assert time.perf_counter() - t0 < 30


def test_a_full_output_folder_fails_at_once(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9, 10))
    with pytest.raises(BN.OutputError, match="has 0 MB free, less than the 50 MB"):
        BN.bench(**SMALL, out_root=tmp_path)
    assert not list(tmp_path.glob("cache/??/*.json"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_a_read_only_output_folder_fails_at_once(tmp_path):
    tmp_path.chmod(0o500)
    try:
        r = bench_cli("--workloads", "tiny", "--policies", "aa", "--out", str(tmp_path / "r"))
    finally:
        tmp_path.chmod(0o700)
    assert r.returncode == 2 and "cannot write the results folder" in one_line(r.stderr)


@pytest.mark.parametrize("param, what, rc", [
    ("retries=abc", "--param retries='abc': morton expects a value like its default 2", 2),
    ("retries=1e999", "--param retries=", 2),
])
def test_a_bad_param_is_one_line(param, what, rc):
    r = subprocess.run([sys.executable, "-m", "harness", "run", "--policy", "morton",
                        "--workload", "tiny", "--param", param], cwd=ROOT, env=ENV,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == rc, r.stderr
    assert what in one_line(r.stderr)


def test_a_param_that_breaks_the_policy_is_one_line_at_its_line():
    r = subprocess.run([sys.executable, "-m", "harness", "run", "--policy", "aa",
                        "--workload", "tiny", "--param", "lower_zone_reserve_ratio=(0, 0)"],
                       cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr
    line = one_line(r.stderr)
    assert line.startswith("error: ZeroDivisionError") and "policies/aa.py:" in line, line


def test_check_of_a_file_that_is_no_policy_is_one_line():
    r = subprocess.run([sys.executable, "-m", "harness", "check", "/etc/passwd"], cwd=ROOT,
                       env=ENV, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1
    assert "not a policy file" in one_line(r.stderr)


def test_an_unreachable_dask_scheduler_is_one_line_quickly(tmp_path):
    pytest.importorskip("dask.distributed")
    t0 = time.perf_counter()
    r = bench_cli("--workloads", "tiny", "--policies", "aa", "--backend", "dask",
                  "--scheduler", "tcp://127.0.0.1:9", "--seeds", "1", "--out", str(tmp_path))
    assert time.perf_counter() - t0 < 20
    assert r.returncode == 2, r.stderr
    assert "cannot reach the dask scheduler at tcp://127.0.0.1:9" in r.stderr.strip().splitlines()[-1]
    assert "Traceback" not in r.stderr


def test_report_on_an_empty_runs_csv_is_one_line(tmp_path, capsys):
    (tmp_path / "runs.csv").write_text("")
    assert main(["report", str(tmp_path)]) == 2
    assert "runs.csv is empty" in one_line(capsys.readouterr().err)


@pytest.mark.parametrize("args", [["--seeds", "-1"], ["--jobs", "0"], ["--seeds", "x"]])
def test_a_bad_quick_argument_is_one_line(args, capsys):
    with pytest.raises(SystemExit) as e:
        main(["quick", *args])
    assert e.value.code == 2
    assert "error: argument" in one_line(capsys.readouterr().err)

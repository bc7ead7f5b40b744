"""The workload matrix: every file loads and runs, the cells the mechanisms predict, and bad input.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from joblib import Parallel, delayed

from harness import bench as BN
from harness import registry, runner
from harness import workload as W

SEED_POLICIES = ["mainline", "aa", "morton", "rmap"]
KILLERS_24 = ["mainline", "mainline_akpm_fix", "morton", "rmap"]      # the 2.4 oom_kill.c
ALL = W.load_dir(registry.WORKLOAD_DIR)[0]


def _run_checked(policy, name, seed):
    rec, k = runner.run_one(policy, ALL[name], seed, keep_kernel=True)
    k.check_pages()                                   # conservation at the end of every run
    kills = [(ev[2], ev[4]) for ev in k.trace if ev[1] == "kill"]
    return {"rec": rec, "kills": kills, "fault": [ev[2] for ev in k.trace if ev[1] == "fault_kill"],
            "rawio": {t.pid for t in k.tasks if "CAP_SYS_RAWIO" in t.caps},
            "init_alive": k.by_pid[1].alive}


@pytest.fixture(scope="module")
def matrix():
    cells = [(p, w, s) for w in sorted(ALL) for p in SEED_POLICIES for s in range(5)]
    out = Parallel(n_jobs=-1)(delayed(_run_checked)(*c) for c in cells)
    return dict(zip(cells, out))


def test_the_repository_has_the_workloads_of_the_spec():
    # workloads.md's table, at least; sweeps expand to one workload per point
    for name in ["morton-make-usemem", "morton-swap", "swap-fills", "dstate-victim", "rstate-hang",
                 "several-hogs", "hog-root", "hog-rawio", "hog-niced", "init-alloc",
                 "db-vs-young-hog", "dma-driver", "fork-bomb", "slow-leak", "streaming-reader",
                 "atomic-irq", "make-j.jobs4", "make-j.jobs16", "make-j.jobs64", "make-j.jobs0",
                 "ram.ram_mb32", "ram.ram_mb64", "ram.ram_mb128", "ram.ram_mb256",
                 "ram.ram_mb1024"]:
        assert name in ALL, name
    assert ALL["ram.ram_mb1024"].machine.ram_mb == 1024
    from harness import machine as M
    assert M.zone_sizes(ALL["ram.ram_mb1024"].machine.ram_pages)[M.ZONE_HIGHMEM] == 32768
    assert ALL["make-j.jobs4"].make["jobs"] == 4 and ALL["make-j.jobs64"].make["jobs"] == 64
    for w in ALL.values():
        assert w.raw.get("question") and w.raw.get("thread") and w.raw.get("provenance"), w.name


def test_every_workload_runs_ok_under_the_seed_policies(matrix):
    bad = [(c, r["rec"]["error"]) for c, r in matrix.items() if r["rec"]["status"] != "ok"]
    assert not bad


def test_no_24_oom_kill_while_swap_is_free():
    for policy in KILLERS_24:
        for s in range(3):
            rec, k = runner.run_one(policy, ALL["swap-fills"], s, keep_kernel=True)
            for ev in k.trace:
                if ev[1] == "kill":
                    assert ev[8] == 0, (policy, s, ev[0] / 1e6, ev[8])


def test_init_is_never_killed(matrix):
    for (p, w, s), r in matrix.items():
        assert r["init_alive"], (p, w, s)
        assert 1 not in r["fault"], (p, w, s)           # the fault path retries for init
        if p == "morton":                               # akpm's select_bad_process skips pid <= 1
            assert all(pid != 1 for pid, _sig in r["kills"]), (p, w, s)


def test_the_rawio_hog_gets_sigterm_from_the_24_killer():
    seen = 0
    for policy in KILLERS_24:
        for s in range(3):
            r = _run_checked(policy, "hog-rawio", s)
            for pid, sig in r["kills"]:
                if pid in r["rawio"]:
                    assert sig == 15, (policy, s)
                    seen += 1
                else:
                    assert sig == 9
    assert seen > 0


def test_the_streaming_reader_completes_everywhere(matrix):
    for p in SEED_POLICIES:
        for s in range(5):
            rec = matrix[(p, "streaming-reader", s)]["rec"]
            assert rec["outcome"] == "completed" and rec["workload_completed"], (p, s, rec)


# ---------------------------------------------------------------------------- bad input
GOOD = '''
name = "ok"
[machine]
ram_mb = 64
[[task]]
name = "t"
script = [ { touch_mb = 1 } ]
'''

BAD = {
    "unknown_key": ('name = "x"\ncolour = 3\n[machine]\nram_mb = 64\n[[task]]\nname = "t"\nscript = []\n', "colour"),
    "misspelt_key": (GOOD.replace("ram_mb", "ram_mbb"), "ram_mb"),
    "misspelt_step": (GOOD.replace("touch_mb", "tuch_mb"), "touch_mb"),
    "wrong_type": (GOOD.replace("ram_mb = 64", 'ram_mb = "64"'), "machine.ram_mb"),
    "negative_size": (GOOD.replace("touch_mb = 1", "touch_mb = -1"), "touch_mb"),
    "negative_swap": (GOOD.replace("ram_mb = 64", "ram_mb = 64\nswap_mb = -8"), "machine.swap_mb"),
    "empty_task_list": ('name = "x"\n[machine]\nram_mb = 64\ntask = []\n', "task"),
    "task_too_big": (GOOD.replace("touch_mb = 1", "touch_mb = 200"), "task[0].script"),
    "empty_sweep": (GOOD + '\n[sweep]\n"machine.ram_mb" = []\n', "sweep"),
    "empty_sweep_grid": (GOOD + '\n[sweep]\n', "sweep"),
    "duplicate_task": (GOOD + '[[task]]\nname = "t"\nscript = []\n', "task[1].name"),
    "toml_syntax": (GOOD.replace("ram_mb = 64", "ram_mb = = 64"), "line"),
    "path_like_name": (GOOD.replace('name = "ok"', 'name = "../x"'), "name"),
    "no_normal_zone": (GOOD.replace("ram_mb = 64", "ram_mb = 16"), "machine.ram_mb"),
    "zero_cpus": (GOOD.replace("ram_mb = 64", "ram_mb = 64\ncpus = 0"), "machine.cpus"),
    "bad_role": (GOOD.replace('name = "t"', 'name = "t"\nrole = "victim"'), "role"),
    "bad_gfp": (GOOD.replace("touch_mb = 1", 'kalloc = "GFP_KERNAL"'), "GFP_KERNEL"),
    "sleeping_irq": (GOOD + '[[irq]]\nname = "nic"\ngfp = "GFP_KERNEL"\ninterval_ms = 2\n', "irq[0].gfp"),
    "unknown_template": (GOOD.replace("touch_mb = 1", 'spawn = "nobody"'), "spawn"),
    "missing_machine": ('name = "x"\n[[task]]\nname = "t"\nscript = []\n', "machine"),
    "bad_dist": (GOOD.replace("touch_mb = 1", 'touch_mb = { dist = "gaussian", mean = 1 }'), "dist"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_workload_is_one_line_naming_file_and_key(tmp_path, case):
    text, key = BAD[case]
    path = tmp_path / f"{case}.toml"
    path.write_text(text)
    with pytest.raises(W.WorkloadError) as e:
        W.load_all(path)
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert msg.startswith(str(path)), msg
    assert key in msg, msg


def test_misspelling_suggests_the_nearest_key(tmp_path):
    p = tmp_path / "w.toml"
    p.write_text(GOOD.replace("ram_mb", "ramm_mb"))
    with pytest.raises(W.WorkloadError, match="did you mean 'ram_mb'"):
        W.load(p)


def test_cli_gives_one_line_and_no_traceback(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text(BAD["misspelt_key"][0])
    r = subprocess.run([sys.executable, "-m", "harness", "run", "--policy", "aa",
                        "--workload", str(p)], capture_output=True, text=True, cwd=registry.ROOT,
                       env=dict(os.environ, PYTHONPATH=str(registry.ROOT)))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and str(p) in r.stderr, r.stderr


def test_a_folder_with_one_bad_file_still_runs_the_others(tmp_path):
    (tmp_path / "good.toml").write_text(GOOD)
    (tmp_path / "bad.toml").write_text(BAD["wrong_type"][0])
    good, errors = W.load_dir(tmp_path)
    assert list(good) == ["ok"] and len(errors) == 1 and "bad.toml" in errors[0]
    logs = []
    failed, out = BN.bench(policies=["aa"], seeds=range(1), workload_dir=tmp_path,
                           out_root=tmp_path / "results", report=False, progress=False,
                           log=logs.append)
    assert failed == 0
    assert any("skipped" in m and "bad.toml" in m for m in logs)
    assert (out / "runs.csv").read_text().count("\n") == 2      # header + the one good run

"""The matrix runner: cache, resume after kill -9, broken policies, the dask backend.

Runs that need their own ``policies/`` folder happen in a scratch copy of the project, through
the command line, as a user would run them."""
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
from harness import registry

ROOT = registry.ROOT
SMALL = dict(policies=["mainline", "aa"], workloads=["dstate-victim"], seeds=range(3))


def values(csv: Path) -> pd.DataFrame:
    """runs.csv without the wall-clock column, which is metadata and differs between runs."""
    return pd.read_csv(csv).drop(columns=["wall_s"]).sort_values(["policy", "workload", "seed"]) \
        .reset_index(drop=True)


def scratch(tmp_path: Path) -> Path:
    """A copy of the project (harness, policies, workloads) to drop files into."""
    dst = tmp_path / "proj"
    for d in ("harness", "policies", "workloads"):
        shutil.copytree(ROOT / d, dst / d, ignore=shutil.ignore_patterns("__pycache__"))
    return dst


def cli(proj: Path, *args, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(proj), MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "harness", "bench", "--quiet", *args],
                          cwd=proj, env=env, capture_output=True, text=True, timeout=600, **kw)


def test_cache_reads_back_and_recomputes_nothing(tmp_path):
    stats = []
    for _ in range(2):
        failed, out = BN.bench(**SMALL, out_root=tmp_path, report=False, progress=False,
                               log=stats.append)
        assert failed == 0
    assert "6 computed, 0 from the cache" in stats[1] or "(6 computed" in stats[1]
    assert "0 computed, 6 from the cache" in stats[-1]
    runs = sorted((tmp_path).glob("2*/runs.csv"))
    assert len(runs) == 2
    assert pd.read_csv(runs[0]).equals(pd.read_csv(runs[1]))      # wall_s too: read back
    assert os.readlink(tmp_path / "latest") == runs[1].parent.name
    cached = list((tmp_path / "cache").rglob("*.json"))
    assert len(cached) == 6


def test_every_cache_file_the_workers_write_is_fsynced_by_the_parent(tmp_path, monkeypatch):
    """The pool's workers write the cache without fsync (a worker does not wait for the disk);
    the parent's Syncer fsyncs every record and view they wrote before the matrix returns."""
    synced = []
    fsync = os.fsync

    def counted(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return fsync(fd)
    monkeypatch.setattr(BN.os, "fsync", counted)
    made = BN.bench(**SMALL, out_root=tmp_path, progress=False, log=lambda m: None)
    assert made.failed == 0 and len(made.views) == 2
    files = sorted(str(p) for p in (tmp_path / "cache").rglob("*") if p.is_file())
    assert len(files) == 6 + 2                       # six records, the two timeline views
    assert sorted(set(synced) & set(files)) == files
    assert not list((tmp_path / "cache").rglob(".*.tmp"))


def _view_data(v) -> tuple:
    return (v.now, v.seed, v.outcome, [z.__getstate__() for z in v.zones], v.samples, v.trace,
            v.thrash)


def test_a_cached_timeline_run_gives_back_the_view_it_was_made_with(tmp_path):
    """The report draws the runs of the smallest seed: a cached one is read back with its
    RunView (kept beside the record), the same as when it was made; one whose view file is
    gone or broken has none (the report makes it again)."""
    made = BN.bench(**SMALL, out_root=tmp_path, progress=False, log=lambda m: None)
    assert sorted(made.views) == [("aa", "dstate-victim", 0), ("mainline", "dstate-victim", 0)]
    views = sorted((tmp_path / "cache").rglob("*.view.pickle"))
    assert len(views) == 2
    again = BN.bench(**SMALL, out_root=tmp_path, progress=False, log=lambda m: None)
    assert sorted(again.views) == sorted(made.views)
    for key, v in made.views.items():
        assert _view_data(again.views[key]) == _view_data(v)
    views[0].write_bytes(b"not a pickle")
    views[1].unlink()
    third = BN.bench(**SMALL, out_root=tmp_path, progress=False, log=lambda m: None)
    assert third.views == {} and third.failed == 0


def test_a_sweep_point_equal_to_its_base_is_one_run_under_both_names(tmp_path):
    """make-j.jobs0 is morton-make-usemem with make.jobs = 0, its own value: the same tables,
    so one run per seed, recorded under each name; a second bench reads both back."""
    stats = []
    args = dict(policies=["aa"], workloads=["morton-make-usemem", "make-j.jobs0",
                                            "make-j.jobs4"], seeds=range(2))
    for _ in range(2):
        failed, out = BN.bench(**args, out_root=tmp_path, report=False, progress=False,
                               log=stats.append)
        assert failed == 0
    assert "(4 computed, 0 from the cache, 2 the same run as another cell's)" in stats[1]
    assert "(0 computed, 6 from the cache)" in stats[-1]
    assert len(list((tmp_path / "cache").rglob("*.json"))) == 4
    for runs in sorted(tmp_path.glob("2*/runs.csv")):
        d = pd.read_csv(runs)
        assert sorted(d.workload) == sorted(args["workloads"] * 2)
        same = [d[d.workload == w].drop(columns="workload").reset_index(drop=True)
                for w in ("morton-make-usemem", "make-j.jobs0", "make-j.jobs4")]
        assert same[0].equals(same[1])              # every column, wall_s and the trace hash
        assert not same[0].trace_sha256.equals(same[2].trace_sha256)   # -j 4 is another run


def test_editing_a_policy_file_recomputes_only_its_runs(tmp_path):
    proj = scratch(tmp_path)
    args = ["--policies", "mainline,mainline_akpm_fix,aa", "--workloads", "dstate-victim",
            "--seeds", "2", "--no-report", "--out", str(proj / "results")]
    first = cli(proj, *args)
    assert first.returncode == 0, first.stderr
    with open(proj / "policies" / "aa.py", "a") as f:
        f.write("\n# an edit\n")
    second = cli(proj, *args)
    assert second.returncode == 0, second.stderr
    assert "(2 computed, 4 from the cache)" in second.stderr, second.stderr
    # mainline_akpm_fix inherits from mainline: editing mainline.py recomputes both
    with open(proj / "policies" / "mainline.py", "a") as f:
        f.write("\n# an edit\n")
    third = cli(proj, *args)
    assert "(4 computed, 2 from the cache)" in third.stderr, third.stderr


def test_kill_9_halfway_resumes_to_the_same_runs_csv(tmp_path):
    proj = scratch(tmp_path)
    matrix = ["--policies", "mainline,aa,morton", "--workloads", "dstate-victim,morton-make-usemem",
              "--seeds", "8", "--no-report", "--jobs", "1"]    # 48 runs: the kill lands mid-way
    full = cli(proj, *matrix, "--no-cache", "--out", str(tmp_path / "full"))
    assert full.returncode == 0, full.stderr
    out = proj / "results"
    env = dict(os.environ, PYTHONPATH=str(proj), MPLBACKEND="Agg")
    p = subprocess.Popen([sys.executable, "-m", "harness", "bench", "--quiet", *matrix,
                          "--out", str(out)], cwd=proj, env=env, start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "cache").rglob("*.json"))) < 8:
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGKILL)                  # the bench and its workers, mid-matrix
    p.wait()
    done = len(list((out / "cache").rglob("*.json")))
    assert 8 <= done < 48, done
    for f in (out / "cache").rglob("*.json"):         # nothing half-written is a result
        json.loads(f.read_text())
    resumed = cli(proj, *matrix, "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr
    assert not list((out / "cache").rglob("*.tmp"))  # a write the kill cut short: swept away
    assert f"({48 - done} computed, {done} from the cache)" in resumed.stderr, resumed.stderr
    pd.testing.assert_frame_equal(values(out / "latest" / "runs.csv"),
                                  values(tmp_path / "full" / "latest" / "runs.csv"))


BROKEN = '''
from harness.policy import Policy
from policies.aa import AA


class Raises(AA):
    name = "raises"
    description = "raises inside reclaim"

    def try_to_free_pages(self, k, task, cz, gfp, order):
        raise ValueError("this policy is broken on purpose")
        yield  # a generator, as the interface asks


class Loops(AA):
    name = "loops"
    description = "never returns from reclaim (plain Python loop)"

    def try_to_free_pages(self, k, task, cz, gfp, order):
        while True:
            pass
        yield  # a generator, as the interface asks
'''


def test_a_raising_and_a_looping_policy_do_not_sink_the_matrix(tmp_path):
    proj = scratch(tmp_path)
    (proj / "policies" / "broken.py").write_text(BROKEN)
    r = cli(proj, "--policies", "raises,loops,aa", "--workloads", "dstate-victim", "--seeds", "2",
            "--timeout", "3", "--no-report", "--out", str(proj / "results"))
    assert r.returncode == 1, r.stderr                  # failures are reported in the exit code
    assert "4 failed" in r.stderr
    df = pd.read_csv(proj / "results" / "latest" / "runs.csv")
    by = {p: g for p, g in df.groupby("policy")}
    assert set(by["raises"].status) == {"error"}
    assert all("broken on purpose" in e and "broken.py" in e for e in by["raises"].error)
    assert set(by["loops"].status) == {"timeout"}
    assert set(by["aa"].status) == {"ok"}               # the rest of the matrix completed
    assert by["aa"].outcome.notna().all()


def test_dask_localcluster_gives_the_process_pools_values(tmp_path):
    pytest.importorskip("dask.distributed")
    kw = dict(policies=["mainline", "morton"], workloads=["dstate-victim"], seeds=range(2),
              report=False, progress=False, log=lambda m: None, use_cache=False)
    _, pool = BN.bench(**kw, out_root=tmp_path / "pool", backend="process", jobs=2)
    _, dask = BN.bench(**kw, out_root=tmp_path / "dask", backend="dask", jobs=2)
    pd.testing.assert_frame_equal(values(dask / "runs.csv"), values(pool / "runs.csv"))


def test_a_cache_write_cut_short_is_swept_but_not_a_live_one(tmp_path):
    """kill -9 inside a cache write leaves ``.<key>.json.<pid>.<thread>.tmp``: the next bench
    removes it when its process is gone, and leaves a live writer's alone."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    d = tmp_path / "ab"
    d.mkdir()
    stale = d / f".ab12.json.{dead.pid}.1.tmp"
    live = d / f".ab34.json.{os.getpid()}.1.tmp"
    result = d / "ab56.json"
    for f in (stale, live, result):
        f.write_text("{}")
    assert BN._sweep_stale_tmp(tmp_path) == 1
    assert not stale.exists() and live.exists() and result.exists()

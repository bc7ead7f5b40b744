"""Real policies (policies/real/*.toml): the format, discovery, malformed files, the record's
policy columns and the agreement table -- all without a VM -- and then one short VM run per
policy family (run in parallel through the real matrix), a setting the kernel refuses and a
daemon that exits at start, each one line naming the file and the key.  The VM tests skip with
the reason where the qemu backend is unavailable (`make real-setup`)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness import registry
from harness import report_real as RR
from harness import workload as W
from harness.real import matrix, qemu, record
from harness.real import policies as P

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = {"real-6.1": "oom_reaper", "real-6.1-mglru": "oom_reaper", "real-6.1-mglru-ttl": "mglru_ttl",
           "real-6.12": "oom_reaper", "real-6.1-kill-allocating": "kill_allocating",
           "real-6.1-overcommit-never": "aa",
           "real-6.1-earlyoom": "psi_userspace[daemon=earlyoom]",
           "real-6.1-oomd": "psi_userspace[daemon=oomd]", "real-memcg": "oom_reaper"}


# ---------------------------------------------------------------------------- no VM
def test_shipped_policies_and_their_models():
    good, errors = P.discover()
    assert errors == []
    assert {n: p.model_label for n, p in good.items()} == SHIPPED
    assert good["real-6.12"].kernel == "linux-image-6.12-amd64"
    assert good["real-memcg"].backend == "memcg" and good["real-memcg"].kernel == "host"
    assert good["real-6.1-earlyoom"].daemon.command[0] == "/usr/bin/earlyoom"
    assert good["real-6.1-overcommit-never"].settings(61440) == [
        ("sysctl", "vm.overcommit_memory", "/proc/sys/vm/overcommit_memory", "2"),
        ("sysctl", "vm.overcommit_kbytes", "/proc/sys/vm/overcommit_kbytes", "61440")]
    assert good["real-6.1-mglru-ttl"].settings() == [
        ("sysfs", "kernel/mm/lru_gen/enabled", "/sys/kernel/mm/lru_gen/enabled", "y"),
        ("sysfs", "kernel/mm/lru_gen/min_ttl_ms", "/sys/kernel/mm/lru_gen/min_ttl_ms", "1000")]


@pytest.mark.parametrize("name", sorted(P.discover()[0]))
def test_every_real_policy_names_its_model_or_says_in_one_line_why_not(name):
    """Over every file in policies/real/, a dropped-in one included."""
    pol = P.discover()[0][name]
    found, _ = registry.discover(registry.POLICY_DIR)
    msg = P.check_model(pol, found)
    if pol.models is None or pol.models in found:
        assert msg is None
    else:                                       # e.g. a model another change has not added yet
        assert msg == f"{pol.file}: models: simulated policy {pol.models!r} not found"
    assert pol.description and "\n" not in pol.description
    assert pol.backend in P.BACKENDS


def test_simulated_discovery_ignores_the_real_folder():
    found, errors = registry.discover(registry.POLICY_DIR)
    assert not any(n.startswith("real-") for n in found)
    assert not any("policies/real" in e for e in errors)


BAD = {
    "misspelt.toml": ('description = "x"\nkernl = "linux-image-amd64"\n', "kernl",
                      "did you mean 'kernel'"),
    "badsysctl.toml": ('description = "x"\n[sysctl]\n"vm overcommit" = 2\n',
                       "sysctl.vm overcommit", "not a valid sysctl"),
    "daemonkey.toml": ('description = "x"\n[daemon]\npackage = "earlyoom"\n'
                       'comand = ["/usr/bin/earlyoom"]\n', "daemon.comand", "did you mean"),
    "memcgsysctl.toml": ('description = "x"\nbackend = "memcg"\n[sysctl]\n"vm.x" = 1\n',
                         "sysctl", "host"),
    "nodesc.toml": ('kernel = "linux-image-amd64"\n', "description", "missing"),
    "badtoml.toml": ('description = "x\n', "toml", ""),
}


def test_malformed_files_are_one_line_each_and_the_others_load(tmp_path):
    (tmp_path / "good.toml").write_text('description = "fine"\nmodels = "oom_reaper"\n')
    for name, (text, _, _) in BAD.items():
        (tmp_path / name).write_text(text)
    good, errors = P.discover(tmp_path)
    assert list(good) == ["good"]
    assert len(errors) == len(BAD)
    for e in errors:
        assert "\n" not in e
        fname = e.split(":", 1)[0].rsplit("/", 1)[-1]
        _, key, hint = BAD[fname]
        assert e.split(": ")[1] == key, e
        assert hint in e, e


def test_a_model_that_does_not_exist_is_one_line(tmp_path):
    (tmp_path / "m.toml").write_text('description = "x"\nmodels = "no_such_policy"\n')
    (tmp_path / "p.toml").write_text('description = "x"\nmodels = "psi_userspace"\n'
                                     'model_params = { demon = "oomd" }\n')
    good, _ = P.discover(tmp_path)
    found, _ = registry.discover(registry.POLICY_DIR)
    assert P.check_model(good["m"], found).endswith("models: simulated policy "
                                                   "'no_such_policy' not found")
    assert "model_params: psi_userspace has no parameter demon" in P.check_model(good["p"], found)


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="no apt-cache")
def test_a_package_debian_does_not_have_is_one_line():
    with pytest.raises(qemu.QemuError) as e:
        qemu.resolve_kernel_package("linux-image-no-such-kernel")
    assert "Debian has no package 'linux-image-no-such-kernel'" in str(e.value)
    assert "\n" not in str(e.value)


def test_a_look_up_debian_does_not_answer_refreshes_the_lists_once(monkeypatch):
    """Stale package lists (a machine whose lists predate bookworm-security's 6.12 kernel):
    the first failed look-up runs ``apt-get update`` and tries again; the next failure of the
    process does not refresh again, and without root nothing is refreshed."""
    from harness.real import debs
    calls, updates = [], []

    def run(cmd, **kw):
        calls.append(cmd[-1])
        if cmd[-1] == "known-after-update" and updates:
            return subprocess.CompletedProcess(cmd, 0, "Version: 1\n", "")
        raise debs.DebError(f"`{' '.join(cmd)}` failed: E: No packages found")

    monkeypatch.setattr(debs, "run", run)
    monkeypatch.setattr(debs, "_LISTS_REFRESHED", False)
    monkeypatch.setattr(debs.shutil, "which", lambda name: "/usr/bin/" + name)
    monkeypatch.setattr(debs.subprocess, "run", lambda cmd, **kw: updates.append(cmd))
    monkeypatch.setattr(debs.os, "geteuid", lambda: 1000)
    with pytest.raises(debs.DebError):
        debs.apt(["apt-cache", "show", "known-after-update"])
    assert updates == [] and calls == ["known-after-update"]
    monkeypatch.setattr(debs.os, "geteuid", lambda: 0)
    assert debs.apt(["apt-cache", "show", "known-after-update"]).stdout == "Version: 1\n"
    assert updates == [["apt-get", "update", "-qq"]]
    with pytest.raises(debs.DebError, match="No packages found"):
        debs.apt(["apt-cache", "show", "no-such-package"])
    assert len(updates) == 1


def test_policy_failures_name_file_and_key():
    good, _ = P.discover()
    pol = good["real-6.1-overcommit-never"]
    st = ["boot uptime=1", "error setting sysctl vm.overcommit_memory value=7: sh: write error:"
          " Invalid argument", "policy-failed"]
    assert qemu.policy_failure(pol, st) == (
        "policies/real/real-6.1-overcommit-never.toml: sysctl.vm.overcommit_memory: the kernel "
        "refused '7' (sh: write error: Invalid argument)")
    eo = good["real-6.1-earlyoom"]
    assert qemu.policy_failure(eo, ["error daemon-exited pid=", "policy-failed"]) == (
        "policies/real/real-6.1-earlyoom.toml: daemon.command: /usr/bin/earlyoom exited at start")


class _Plan:
    workload, seed, time_scale, limit_s = "w", 0, 1.0, 20.0
    goal_ids = [1]

    class T:
        def __init__(self, name, role):
            self.name, self.role = name, role
    tasks = [T("idle", "bystander"), T("leak", "culprit")]


def test_record_of_a_daemon_kill_before_the_kernel():
    runner = ["VMREAL 1000000 t0", "VMREAL 1000100 start 0 100 idle",
              "VMREAL 1000200 start 1 101 leak", "VMREAL 3000000 exit 1 101 0 15 10",
              "VMREAL 3500000 exit 0 100 0 9 10", "VMREAL 3500001 end done"]
    kernel = ["[    0.990000] vmreal: clock 1000000",
              '[    2.990000] vmreal-daemon: sending SIGTERM to process 101 uid 0 "leak": badness'
              ' 900, VmRSS 100 MiB']
    rec = record.make_record(_Plan, runner, kernel, {"backend": "qemu", "kernel": "6.1",
                                                     "kills_scope": "all",
                                                     "daemon_name": "earlyoom"})
    assert (rec["first_signal"], rec["first_signal_by"]) == ("SIGTERM", "earlyoom")
    assert (rec["kills"], rec["kernel_kills"], rec["daemon_kills"]) == (1, 0, 1)
    assert rec["first_victim"] == "leak" and rec["first_kill_s"] == 2.0


def test_record_of_a_kernel_kill_names_the_allocating_task():
    runner = ["VMREAL 1000000 t0", "VMREAL 1000100 start 0 100 idle",
              "VMREAL 1000200 start 1 101 leak", "VMREAL 3000000 exit 1 101 0 9 10",
              "VMREAL 3500001 end done"]
    kernel = ["[    1.000000] vmreal: clock 1000000",
              "[    2.500000] leak invoked oom-killer: gfp_mask=0x0, order=0, oom_score_adj=0",
              "[    2.500100] CPU: 0 PID: 101 Comm: leak Not tainted",
              "[    2.600000] Out of memory (oom_kill_allocating_task): Killed process 101 (leak)"]
    rec = record.make_record(_Plan, runner, kernel, {"backend": "qemu", "kernel": "6.1",
                                                     "kills_scope": "all"})
    assert rec["oom_invoker"] == "leak" and rec["first_victim"] == "leak"
    assert (rec["first_signal"], rec["first_signal_by"]) == ("SIGKILL", "kernel")
    assert rec["pressure_onset_s"] == 1.5 and rec["time_to_kill_s"] == 0.1


def _rows(policy, workload, victims, ttk, kills, model=None):
    return [{"policy": policy, "workload": workload, "seed": i, "status": "ok",
             "first_victim": v, "time_to_kill_s": t, "first_kill_s": t, "kills": kills,
             "wrong_victims": 0, "alloc_failures": 0, "workload_completed": True,
             "livelock": False, "deadlock": False, "model": model,
             "real_policy_file": f"policies/real/{policy}.toml" if model else None,
             "time_scale": 0.1} for i, (v, t) in enumerate(zip(victims, ttk))]


def test_agreement_table():
    real = pd.DataFrame(_rows("real-a", "w", ["hog", "hog", "cc1"], [0.1, 0.2, 0.3], 2,
                              "oom_reaper")
                        + _rows("real-b", "w", ["cc1", "cc1"], [0.05, 0.06], 1,
                                "kill_allocating"))
    sim = pd.DataFrame(_rows("oom_reaper", "w", ["hog"] * 4, [1.0, 1.1, 1.2, 1.3], 4)
                       + _rows("kill_allocating", "w", ["hog"] * 2, [0.5, 0.5], 1))
    tab = RR.table(real, sim)
    assert list(tab.loc["w"].index) == ["real-a", "oom_reaper (for real-a)", "real-b",
                                        "kill_allocating (for real-b)"]
    ag = RR.agreement(tab)
    a = ag.set_index("real")
    assert a.loc["real-a", "victims_agree"] and not a.loc["real-b", "victims_agree"]
    assert a.loc["real-a", "kills_ratio"] == 0.5 and a.loc["real-b", "kills_ratio"] == 1.0
    # real-b kills faster than real-a; kill_allocating faster than oom_reaper: same ranking
    assert (a.loc["real-b", "rank_real"], a.loc["real-b", "rank_sim"]) == (1, 1)
    assert bool(a.loc["real-a", "same_rank"]) and RR.agreement_share(ag) == (1, 2)


def test_cache_key_depends_on_what_of_the_policy_file_a_run_uses(tmp_path, monkeypatch):
    """A setting, the command line or the kernel change the key; the description and the model
    (read by the report only) do not."""
    monkeypatch.setattr(matrix, "kernel_id", lambda pol: "linux-image-x 1")
    w = W.load(ROOT / "workloads" / "tiny.toml")

    def keys(text):
        (tmp_path / "a.toml").write_text(text)
        return {c.key for c in matrix.make_cells([P.load(tmp_path / "a.toml")], [w], [0, 1],
                                                 0.1, 10)[0]}
    base = keys('description = "a"\n')
    assert len(base) == 2
    assert keys('description = "a, changed"\nmodels = "aa"\n') == base
    assert not keys('description = "a"\ncmdline = "quiet"\n') & base
    assert not keys('description = "a"\n[sysctl]\n"vm.oom_kill_allocating_task" = 1\n') & base


def test_cache_key_follows_the_runner_not_the_report(tmp_path, monkeypatch):
    """The runner's sources are in the key (a changed one runs again); the CLI and the report
    (``harness/real/__init__.py``) are not, so a new table keeps an hour of VM runs."""
    names = {p.name for p in matrix.RUNNER_SOURCES}
    assert {"vmreal.c", "run.py", "qemu.py", "memcg.py", "plan.py", "record.py"} <= names
    assert "__init__.py" not in names
    monkeypatch.setattr(matrix, "kernel_id", lambda pol: "linux-image-x 1")
    w = W.load(ROOT / "workloads" / "tiny.toml")
    (tmp_path / "a.toml").write_text('description = "a"\n')
    src = tmp_path / "vmreal.c"
    monkeypatch.setattr(matrix, "RUNNER_SOURCES", [src])

    def key():
        return matrix.make_cells([P.load(tmp_path / "a.toml")], [w], [0], 0.1, 10)[0][0].key
    src.write_text("int main() { return 0; }")
    before = key()
    assert key() == before
    src.write_text("int main() { return 1; }")
    assert key() != before


def test_a_cached_run_is_held_against_todays_model(tmp_path, monkeypatch):
    """The model is not in the key, so a run cached before the file named a new model is
    read back with the new one (and nothing is run)."""
    monkeypatch.setattr(matrix, "kernel_id", lambda pol: "linux-image-x 1")
    w = W.load(ROOT / "workloads" / "tiny.toml")
    (tmp_path / "a.toml").write_text('description = "a"\nmodels = ""\n')
    old = matrix.make_cells([P.load(tmp_path / "a.toml")], [w], [0], 0.1, 10)[0][0]
    cache = tmp_path / "cache"
    path = cache / old.key[:2] / f"{old.key}.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"policy": "a", "workload": "tiny", "seed": 0, "status": "ok",
                                "model": None}))
    (tmp_path / "a.toml").write_text('description = "a"\nmodels = "aa"\n')
    new = matrix.make_cells([P.load(tmp_path / "a.toml")], [w], [0], 0.1, 10)[0]
    assert new[0].key == old.key
    recs = matrix.run_matrix(new, jobs=1, cache_dir=cache, progress=False)
    assert [r["model"] for r in recs] == ["aa"]


def test_a_kernel_not_fetched_is_a_skip_line(monkeypatch, tmp_path):
    monkeypatch.setattr(matrix, "kernel_id", lambda pol: None)
    (tmp_path / "k.toml").write_text('description = "k"\nkernel = "linux-image-7-amd64"\n')
    cells, skipped = matrix.make_cells([P.load(tmp_path / "k.toml")],
                                       [W.load(ROOT / "workloads" / "tiny.toml")], [0])
    assert cells == [] and len(skipped) == 1 and "kernel: linux-image-7-amd64 is not fetched" \
        in skipped[0]


# ---------------------------------------------------------------------------- VM
ok, why = qemu.available()
vm = pytest.mark.skipif(not ok, reason=f"qemu backend unavailable: {why}")

# a leak of 2 MB every 0.1 s on a 128 MB box: slow enough for a daemon that polls every 100 ms
# (on 32-64 MB boxes the guest's MemAvailable stays above earlyoom's 10 %, see the guide)
LEAK = """
name = "leak-steps"
description = "a leak of 2 MB every 0.1 s beside an idle 3 MB task, 128 MB, no swap"
question = "Does a user-space killer that polls see memory run out before the kernel does?"
[machine]
ram_mb = 128
swap_mb = 0
cpus = 1
[run]
time_limit_s = 20
watchdog_s = 10
seeds = 1
[[program]]
name = "leak"
text_kb = 8
ws_kb = 8
vm_kb = 1100
[[task]]
name = "idle"
role = "bystander"
daemon = true
script = [ { touch_mb = 3 }, { sleep_s = 30 } ]
[[task]]
name = "leak"
program = "leak"
role = "culprit"
goal = true
start_s = 0.3
script = [ { loop = 80, steps = [ { touch_mb = 2 }, { sleep_s = 0.1 } ] }, { exit = 0 } ]
"""

FAMILIES = ["real-6.1", "real-6.1-mglru", "real-6.12", "real-6.1-kill-allocating",
            "real-6.1-overcommit-never", "real-6.1-oomd", "real-memcg"]


@pytest.fixture(scope="module")
def family_runs(tmp_path_factory):
    """One tiny run per policy family (earlyoom on the leak), two VMs at a time."""
    good, _ = P.discover()
    d = tmp_path_factory.mktemp("real")
    (d / "leak-steps.toml").write_text(LEAK)
    tiny = W.load(ROOT / "workloads" / "tiny.toml")
    leak = W.load(d / "leak-steps.toml")
    pols = [good[n] for n in FAMILIES if _usable(good[n])[0]]
    cells, _ = matrix.make_cells(pols, [tiny], [0], 0.1, 20)
    eo = good["real-6.1-earlyoom"]
    c2, _ = matrix.make_cells([eo] if _usable(eo)[0] else [], [leak], [0], 1.0, 20)
    recs = matrix.run_matrix(cells + c2, jobs=2, cache_dir=d / "cache", out_dir=d / "out",
                             progress=False)
    by = {r["policy"]: r for r in recs}
    by["_runs"] = [(c, by[c.policy.name]) for c in cells + c2]
    by["_out"] = d / "out"
    return by


def _usable(pol) -> tuple[bool, str]:
    from harness.real import available
    if pol.backend == "memcg":
        return available("memcg")
    return qemu.available(pol.kernel)


@pytest.mark.parametrize("name", FAMILIES + ["real-6.1-earlyoom"])
def test_family_runs(request, name):
    good, _ = P.discover()
    usable, reason = _usable(good[name])
    if not usable:
        pytest.skip(f"{good[name].backend} backend unavailable for {name}: {reason}")
    family_runs = request.getfixturevalue("family_runs")
    r = family_runs[name]
    assert r["status"] == "ok", r.get("error")
    settings = json.loads(r["settings"] or "{}")
    if name == "real-6.1":
        assert r["first_victim"] == "hog" and r["kills"] >= 1
    elif name == "real-6.1-mglru":
        assert settings == {"sysfs.kernel/mm/lru_gen/enabled": "0x0007"}
        assert r["first_victim"] == "hog"
    elif name == "real-6.12":
        assert r["kernel"].startswith("6.12.") and r["first_victim"] == "hog"
    elif name == "real-6.1-kill-allocating":
        assert settings == {"sysctl.vm.oom_kill_allocating_task": "1"}
        # the task whose allocation invoked the OOM killer dies: on tiny the hog or the reader
        # (whose page cache read can be the allocation that fails), not the largest task
        assert r["oom_invoker"] in ("hog", "reader") and r["first_victim"] == r["oom_invoker"]
    elif name == "real-6.1-overcommit-never":
        assert settings["sysctl.vm.overcommit_memory"] == "2"
        assert r["kills"] == 0 and r["alloc_failures"] >= 1     # mmap ENOMEM, nobody killed
    elif name == "real-6.1-oomd":
        assert json.loads(r["daemon"])["oom_score_adj"] == "-100"     # oomd ran throughout
    elif name == "real-memcg":
        assert r["backend"] == "memcg" and r["first_victim"] == "hog"
    elif name == "real-6.1-earlyoom":
        assert (r["first_signal"], r["first_signal_by"]) == ("SIGTERM", "earlyoom")
        assert r["kernel_kills"] == 0 and r["first_victim"] == "leak"


def test_a_record_made_again_from_its_raw_log_is_the_same(request):
    """``run.record_from_raw``: every family's raw log (meta, extra, runner and kernel lines)
    holds its whole record, so a change to the record's rules can be applied to old runs."""
    from harness.real.run import record_from_raw
    good, _ = P.discover()
    if not any(_usable(good[n])[0] for n in FAMILIES):
        pytest.skip("no real backend available")
    runs = request.getfixturevalue("family_runs")
    checked = 0
    for c, rec in runs["_runs"]:
        if rec["status"] != "ok":
            continue
        raw = runs["_out"] / "raw" / c.policy.name / c.workload.name / f"{c.seed}.log"
        again = record_from_raw(raw.read_text(), c.workload, c.seed, c.time_scale, c.policy)
        assert again == rec, c.policy.name
        checked += 1
    assert checked >= 1


def test_a_results_folder_made_again_from_its_raw_logs(request, tmp_path):
    """``python -m harness real --from-raw DIR`` (``remake``): a new folder whose records are
    made again from DIR's raw logs; a run without one keeps its record and is counted."""
    import shutil

    import pandas as pd

    from harness.real import ALL_COLUMNS, remake
    good, _ = P.discover()
    if not any(_usable(good[n])[0] for n in FAMILIES):
        pytest.skip("no real backend available")
    runs = request.getfixturevalue("family_runs")
    src = tmp_path / "src"
    shutil.copytree(runs["_out"] / "raw", src / "raw")
    recs = [dict(r, workload=c.workload.name) for c, r in runs["_runs"]]
    assert all(r["status"] == "ok" for r in recs)
    recs.append(dict(recs[0], seed=7))                   # a run whose raw log is not there
    pd.DataFrame(recs, columns=ALL_COLUMNS).to_csv(src / "runs.csv", index=False)
    said = []
    out, again = remake(src, tmp_path / "root", say=said.append)
    # tiny is in workloads/; the leak is a file of the test's own
    named = [i for i, (c, _) in enumerate(runs["_runs"]) if c.workload.name == "tiny"]
    assert named and [again[i] for i in named] == [recs[i] for i in named]
    assert again[-1]["seed"] == 7 and again[-1]["policy"] == recs[0]["policy"]
    files = len(recs) - 1 - len(named)
    assert said == [f"{len(named)} of {len(recs)} records made again from their raw logs -> "
                    f"{out}" + (f"; {files} kept as they were (a workload not in workloads/)"
                                if files else "") + "; 1 kept as they were (no raw log)"]
    assert len(pd.read_csv(out / "runs.csv")) == len(recs)
    assert (out / "raw" / recs[0]["policy"] / recs[0]["workload"] / "0.log").exists()
    assert (tmp_path / "root" / "latest").resolve() == out.resolve()


def _broken(tmp_path, text):
    p = tmp_path / "broken.toml"
    p.write_text(text)
    return P.load(p)


@vm
def test_a_setting_the_kernel_refuses_and_a_daemon_that_exits(tmp_path):
    bad_set = _broken(tmp_path, 'description = "x"\n[sysctl]\n"vm.overcommit_memory" = 7\n')
    (tmp_path / "d").mkdir()
    bad_d = P.load(_write(tmp_path / "d" / "broken-daemon.toml",
                          'description = "x"\n[daemon]\npackage = "earlyoom"\n'
                          'command = ["/usr/bin/earlyoom", "--no-such-option"]\n'))
    good, _ = P.discover()
    tiny = W.load(ROOT / "workloads" / "tiny.toml")
    cells, _ = matrix.make_cells([bad_set, bad_d, good["real-6.1"]], [tiny], [0], 0.1, 20)
    recs = matrix.run_matrix(cells, jobs=2, cache_dir=tmp_path / "cache", progress=False)
    by = {r["policy"]: r for r in recs}
    assert by["broken"]["status"] == "error"
    assert by["broken"]["error"].endswith("broken.toml: sysctl.vm.overcommit_memory: the kernel "
                                          "refused '7' (sh: write error: Invalid argument)")
    assert by["broken-daemon"]["status"] == "error"
    assert by["broken-daemon"]["error"].endswith(
        "broken-daemon.toml: daemon.command: /usr/bin/earlyoom exited at start")
    assert by["real-6.1"]["status"] == "ok"                      # the others still run
    again = matrix.run_matrix(cells, jobs=2, cache_dir=tmp_path / "cache", progress=False)
    assert [r["error"] for r in again] == [r["error"] for r in recs]     # cached: deterministic


def _write(p, text):
    p.write_text(text)
    return p


def _no_leftovers():
    out = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    live = [ln for ln in out.splitlines() if "qemu-system" in ln and str(qemu.REAL) in ln
            and " Z" not in ln]
    files = [f for d in qemu.CACHE.glob("qemu-run.*") for f in d.iterdir()] \
        if qemu.CACHE.is_dir() else []
    return live, files


def _start_real(out, workload, seeds):
    """``python -m harness real`` of real-6.1 in a session of its own (the terminal's Ctrl-C
    is the test's signal)."""
    import signal
    import sys
    cmd = [sys.executable, "-m", "harness", "real", "--policies", "real-6.1", "--workloads",
           workload, "--seeds", str(seeds), "--jobs", "1", "--no-progress", "--no-report",
           "--out", str(out)]
    # a terminal's foreground job has SIGINT at its default whatever started this test (a job
    # started with & by a non-interactive shell inherits SIGINT ignored, and Python keeps it so)
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


@vm
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_no_leftovers_after_interrupt_or_kill_of_the_parent(tmp_path, how):
    import os
    import signal
    import time
    p = _start_real(tmp_path, "dstate-victim", 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:         # until the VM has printed (its files unlinked)
        time.sleep(0.5)
        runs = list(qemu.CACHE.glob(f"qemu-run.{p.pid}.*"))
        if runs and not any(list(d.iterdir()) for d in runs):
            break
        if p.poll() is not None:
            pytest.fail(f"the harness ended first: {p.stdout.read().decode()[-2000:]}")
    else:
        p.kill()
        pytest.fail("the VM did not start within 60 s")
    time.sleep(2)
    os.kill(p.pid, signal.SIGINT if how == "SIGINT" else signal.SIGKILL)
    rc = p.wait(timeout=60)
    time.sleep(1.5)
    live, files = _no_leftovers()
    assert live == [] and files == []
    if how == "SIGINT":
        assert rc == 130
    assert not list(tmp_path.glob("cache/*/*.json"))        # nothing unfinished was cached
    qemu.sweep_stale()
    assert not list(qemu.CACHE.glob(f"qemu-run.{p.pid}.*"))     # the next call removes them


@vm
def test_kill_9_loses_no_finished_run_and_the_next_call_resumes(tmp_path):
    import os
    import signal
    import time
    p = _start_real(tmp_path, "tiny", 2)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob("cache/*/*.json")):
        time.sleep(0.2)
        assert p.poll() is None, p.stdout.read().decode()[-2000:]
    os.kill(p.pid, signal.SIGKILL)                   # in the middle of the second run
    p.wait(timeout=30)
    assert len(list(tmp_path.glob("cache/*/*.json"))) == 1
    good, _ = P.discover()
    cells, _ = matrix.make_cells([good["real-6.1"]], [W.load(ROOT / "workloads" / "tiny.toml")],
                                 [0, 1])
    computed = []
    recs = matrix.run_matrix(cells, jobs=1, cache_dir=tmp_path / "cache", progress=False,
                             log=computed.append)
    assert [r["seed"] for r in computed] == [1]           # seed 0 came from the cache
    assert [r["status"] for r in recs] == ["ok", "ok"]
    again = []
    matrix.run_matrix(cells, jobs=1, cache_dir=tmp_path / "cache", progress=False,
                      log=again.append)
    assert again == []                                    # a second call computes nothing
    live, files = _no_leftovers()
    assert live == [] and files == []


def test_pruning_the_image_cache_while_another_run_prunes_it(tmp_path, monkeypatch):
    """Two runs of a matrix prune ``.real/qemu`` at once: a file the other one removed between
    the listing and its ``stat`` is skipped (it was a ``FileNotFoundError`` that failed a run
    of a 12-run ``--jobs 2`` matrix); the newest ``keep`` stay, older ones over a minute old
    go."""
    import os
    import time
    monkeypatch.setattr(qemu, "CACHE", tmp_path)
    now = time.time()
    for i in range(6):
        f = tmp_path / f"data-{i}.img"
        f.write_bytes(b"x")
        os.utime(f, (now - 600 + i, now - 600 + i))       # data-5 the newest
    gone = tmp_path / "data-gone.img"                     # listed, then removed by the other
    real_glob = Path.glob
    monkeypatch.setattr(Path, "glob", lambda self, pat: [*real_glob(self, pat), gone])
    qemu._prune("data-*.img", 4)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"data-{i}.img" for i in (2, 3, 4, 5)]

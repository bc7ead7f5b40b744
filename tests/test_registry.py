"""Discovery: files loaded by path from policies/ and --policy-dir folders, several policies per
file, ``_`` files skipped, and one line per broken file (file, line, reason) while the rest of
the registry -- and the matrix -- still runs."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import bench as BN
from harness import registry

ROOT = registry.ROOT

FILES = {
    # a syntax error on line 4
    "broken_syntax.py": '"""x"""\nfrom harness.policy import Policy\n\nclass X(Policy:\n    name = "x"\n',
    # a name the project already uses
    "dup_name.py": '"""x"""\nfrom policies.aa import AA\n\n\nclass Again(AA):\n    name = "aa"\n',
    # no reclaim: the required hook is the base class's
    "no_hook.py": ('"""x"""\nfrom harness.policy import Policy\n\n\nclass NoReclaim(Policy):\n'
                   '    name = "no_reclaim"\n    description = "forgot try_to_free_pages"\n'),
    # an exception while importing, on line 3
    "raises.py": '"""x"""\nimport math\nmath.sqrt(-1)\n',
    # a hook the engine drives with `yield from` that is not a generator (line 8)
    "not_gen.py": ('"""x"""\nfrom policies.aa import AA\n\n\nclass NotGen(AA):\n'
                   '    name = "not_gen"\n\n    def out_of_memory(self, k, task):\n        return False\n'),
    # params must be a dict
    "bad_params.py": ('"""x"""\nfrom policies.aa import AA\n\n\nclass BadParams(AA):\n'
                      '    name = "bad_params"\n    params = ["retries"]\n'),
    # a leaf class without a name (line 5)
    "no_name.py": '"""x"""\nfrom policies.aa import AA\n\n\nclass Nameless(AA):\n    pass\n',
    # two good policies in one file, one a base of the other
    "two.py": ('"""Two policies in one file."""\nfrom policies.aa import AA\nfrom policies.morton '
               'import Morton\n\n\nclass TwoA(AA):\n    name = "two_a"\n    description = "aa again"\n'
               '\n\nclass TwoB(Morton):\n    name = "two_b"\n    description = "morton again"\n'
               '    params = {**Morton.params, "retries": 1}\n'),
    # skipped: starts with an underscore (it would not even compile)
    "_scratch.py": "this is not python\n",
}

EXPECTED = {   # file -> (line, start of the reason)
    "bad_params.py": (5, "class BadParams: params must be a dict"),
    "broken_syntax.py": (4, "syntax error"),
    "dup_name.py": (5, "duplicate policy name 'aa' (also policies/aa.py:"),
    "no_hook.py": (5, "class NoReclaim: required hook try_to_free_pages is missing"),
    "no_name.py": (5, "class Nameless sets no name"),
    "not_gen.py": (8, "class NotGen: hook out_of_memory must be a generator function"),
    "raises.py": (3, "import failed: ValueError: math domain error"),
}


@pytest.fixture
def extra(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    for name, text in FILES.items():
        (d / name).write_text(text)
    return d


def _errors_by_file(errors):
    out = {}
    for e in errors:
        path, line, reason = e.split(":", 2)
        out[Path(path).name] = (int(line), reason.strip())
    return out


def test_one_line_per_broken_file_and_the_rest_loads(extra):
    found, errors = registry.discover(registry.POLICY_DIR, extra)
    assert all("\n" not in e for e in errors)
    got = _errors_by_file(errors)
    assert sorted(got) == sorted(EXPECTED)
    for name, (line, reason) in EXPECTED.items():
        assert got[name][0] == line, (name, got[name])
        assert got[name][1].startswith(reason), (name, got[name])
        assert any(e.startswith(f"{extra / name}:{line}: ") for e in errors)
    # the project's policies and both policies of two.py load; nothing of the broken files
    assert {"aa", "mainline", "morton", "rmap", "two_a", "two_b"} <= set(found)
    assert not {"no_reclaim", "not_gen", "bad_params", "x"} & set(found)
    assert found["aa"].__module__ == "policies.aa"          # the first one keeps the name


def test_extra_files_import_the_projects_modules_once(extra):
    found, _ = registry.discover(registry.POLICY_DIR, extra)
    from policies.aa import AA
    assert found["aa"] is AA
    assert found["two_a"].__mro__[1] is AA
    assert found["two_a"].__module__.startswith("vmbench_ext_")
    assert found["two_b"]().retries == 1


def test_default_scan_is_the_project_folder_only():
    found, errors = registry.discover()
    assert errors == []
    assert {"aa", "mainline", "mainline_akpm_fix", "morton", "rmap", "mainline_pure",
            "mainline_2419", "linux26", "oom_reaper", "psi_userspace"} <= set(found)
    for cls in found.values():
        assert Path(registry.policy_file(cls)).parent == registry.POLICY_DIR


def test_an_edited_file_is_loaded_again(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    f = d / "v.py"
    f.write_text('from policies.aa import AA\n\n\nclass V(AA):\n    name = "v1"\n')
    assert "v1" in registry.discover(d)[0]
    f.write_text('from policies.aa import AA\n\n\nclass V(AA):\n    name = "v22"\n')
    found, errors = registry.discover(d)
    assert "v22" in found and "v1" not in found and errors == []


def test_a_missing_folder_is_an_error(tmp_path):
    _, errors = registry.discover(tmp_path / "nope")
    assert errors == [f"{tmp_path / 'nope'}:0: not a folder"]


# ---------------------------------------------------------------------------- command line
def cli(*args, cwd=ROOT):
    env = dict(os.environ, MPLBACKEND="Agg")
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_cli_list_shows_the_good_and_one_line_per_bad(extra):
    r = cli("list", "--policy-dir", str(extra))
    assert r.returncode == 0, r.stderr
    assert "two_a" in r.stdout and "two_b" in r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == len(EXPECTED)
    assert all(line.startswith(f"error: {extra}/") for line in lines)


def test_cli_run_and_check_through_policy_dir(extra):
    r = cli("run", "--policy", "two_b", "--policy-dir", str(extra), "--workload", "tiny")
    assert r.returncode == 0, r.stderr
    assert "two_b / tiny / seed 0" in r.stdout
    r = cli("check", str(extra / "no_hook.py"))
    assert r.returncode == 1
    assert r.stderr.strip() == (f"error: {extra}/no_hook.py:5: class NoReclaim: required hook "
                                "try_to_free_pages is missing (the base one raises "
                                "NotImplementedError); subclass a policy that has one or write it")
    r = cli("check", str(extra / "dup_name.py"))
    assert r.returncode == 1 and "duplicate policy name 'aa'" in r.stderr
    r = cli("check", str(extra / "two.py"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "two_a (" in r.stdout and "two_b (" in r.stdout
    assert r.stdout.count("15/15 checks passed") == 2


def test_the_matrix_runs_and_lists_what_was_skipped(extra, tmp_path):
    logs = []
    failed, out = BN.bench(policies=["aa", "two_a"], workloads=["tiny"], seeds=range(2),
                           out_root=tmp_path / "res", report=False, progress=False,
                           log=logs.append, policy_dirs=[extra])
    assert failed == 0
    meta = json.loads((out / "meta.json").read_text())
    assert sorted(_errors_by_file(meta["skipped_policies"])) == sorted(EXPECTED)
    assert sum(m.startswith("skipped: ") for m in logs) == len(EXPECTED)
    import pandas as pd
    df = pd.read_csv(out / "runs.csv")
    assert sorted(set(df.policy)) == ["aa", "two_a"] and set(df.status) == {"ok"}
    # the same runs from the command line, in worker processes
    r = cli("quick", "--policies", "two_a,aa", "--workloads", "tiny", "--seeds", "1",
            "--jobs", "1", "--policy-dir", str(extra))
    assert r.returncode == 0, r.stderr
    assert "two_a" in r.stdout


def test_the_template_is_skipped_but_checkable():
    assert "template" not in registry.discover()[0]
    r = cli("check", "policies/_template.py")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "template (policies/_template.py): 15/15 checks passed" in r.stdout

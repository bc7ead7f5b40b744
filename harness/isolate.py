"""``check`` with every part of the contract suite in a child process under a wall limit.

A policy file is hostile until checked: importing it, or one of its hooks, may loop forever,
call ``os._exit`` or die of a signal.  ``python -m harness check FILE`` therefore never runs it
in its own process: one child lists the file's policies (the import and the registry's
checks), then each part of :func:`harness.contract.check_parts` (construct/params/pickle, the
run checks of each workload, select) runs in a fresh child of its own, under ``limit_s`` wall
seconds.  A child that hangs is killed; one that dies is reported with its exit code or
signal; either is one failed check, and the other parts still run.

"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

#: wall seconds one part of the suite may take (``check --timeout``): the canonical run checks
#: take a few seconds
PART_LIMIT_S = 120.0
_ROOT = str(Path(__file__).resolve().parent.parent)


def _exit_words(code) -> str:
    from .pool import describe_exit
    return describe_exit(code)


def _child(args: list[str], limit_s: float):
    """Run ``python -m harness.isolate ARGS OUT`` and return (its JSON answer, or None, and
    the failure as words)."""
    fd, out = tempfile.mkstemp(prefix="vmbench-check-", suffix=".json")
    os.close(fd)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
    try:
        try:
            p = subprocess.run([sys.executable, "-m", "harness.isolate", out, *args],
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, timeout=limit_s, text=True,
                               errors="replace")
        except subprocess.TimeoutExpired:
            return None, f"did not finish within {limit_s:g} s of wall time (killed)"
        try:
            with open(out) as f:
                return json.load(f), None
        except (OSError, ValueError):
            last = (p.stderr or "").strip().splitlines()[-1:] or [""]
            return None, (f"the check's process ended without an answer: "
                          f"{_exit_words(p.returncode)}" + (f" ({last[0][:120]})" if last[0] else ""))
    finally:
        try:
            os.unlink(out)
        except OSError:
            pass


def check_file(path, extra_dirs=(), limit_s: float = PART_LIMIT_S) -> tuple[list, list]:
    """:func:`harness.contract.check_file`, each part in a child process under ``limit_s``."""
    dirs = []
    for d in extra_dirs or ():
        dirs += ["--policy-dir", str(d)]
    listing, fail = _child(["list", str(path), *dirs], limit_s)
    if listing is None:
        return [f"{path}:0: loading the file {fail}"], []
    results = []
    for name, nparts in listing["policies"]:
        checks = []
        for i in range(nparts):
            got, fail = _child(["part", str(path), name, str(i), *dirs], limit_s)
            if got is None:
                part = listing["parts"][i]
                checks.append((part, False, fail))
                if part == "construct":
                    break
                continue
            checks.extend(tuple(c) for c in got)
            if got and got[0][0] == "construct" and not got[0][1]:
                break
        results.append((name, checks))
    return listing["errors"], results


def _serve(argv):
    out, mode, path, *rest = argv
    dirs = [rest[i + 1] for i, a in enumerate(rest) if a == "--policy-dir"]
    rest = [a for i, a in enumerate(rest) if a != "--policy-dir" and
            (i == 0 or rest[i - 1] != "--policy-dir")]
    from . import contract
    errors, classes = contract.file_classes(path, dirs)
    if mode == "list":
        parts = [n for n, _ in contract.check_parts(classes[0])] if classes else []
        answer = {"errors": errors, "parts": parts,
                  "policies": [(c.name, len(parts)) for c in classes]}
    else:
        name, index = rest[0], int(rest[1])
        cls = next(c for c in classes if c.name == name)
        _label, part = contract.check_parts(cls)[index]
        answer = part()
    with open(out, "w") as f:
        json.dump(answer, f, default=str)


if __name__ == "__main__":
    _serve(sys.argv[1:])

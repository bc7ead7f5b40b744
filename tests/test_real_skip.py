"""A machine without the packages, the guest kernel or root: the real backends say what is
missing and how to fix it, in one line, and the CLI skips them -- never a hang or a traceback.
These run everywhere (nothing real is started)."""
from __future__ import annotations

import os
import shutil

import pytest

from harness import __main__ as cli
from harness.real import memcg, qemu


def test_memcg_without_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    ok, why = memcg.available()
    assert not ok and "not root" in why and "\n" not in why


def test_qemu_without_packages_or_kernel(monkeypatch, tmp_path):
    monkeypatch.setattr(shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(qemu, "_which_busybox", lambda: None)
    monkeypatch.setattr(qemu, "kernel_info", lambda *a, **k: None)
    ok, why = qemu.available()
    assert not ok and "\n" not in why
    for part in ("qemu-system-x86", "busybox-static", "the guest kernel", "make real-setup"):
        assert part in why, why


def _unavailable(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(qemu, "kernel_info", lambda *a, **k: None)


def test_cli_all_backends_unavailable_skips_with_exit_0(monkeypatch, capsys, tmp_path):
    _unavailable(monkeypatch)
    rc = cli.main(["real", "--workload", "several-hogs", "--seeds", "1", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc in (0, 2)                      # nothing ran; never a traceback
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.startswith("skip:")]
    assert any(ln.startswith("skip: qemu backend unavailable:") and "make real-setup" in ln
               for ln in lines), err
    assert any(ln.startswith("skip: memcg backend unavailable: not root") for ln in lines), err
    assert not list(tmp_path.iterdir())      # no results folder for nothing


@pytest.mark.parametrize("backend", ["qemu", "memcg"])
def test_cli_asked_backend_unavailable_exits_2(monkeypatch, capsys, backend, tmp_path):
    _unavailable(monkeypatch)
    rc = cli.main(["real", "--workload", "several-hogs", "--backend", backend,
                   "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and f"skip: {backend} backend unavailable:" in err and "Traceback" not in err


def test_cli_not_realisable_workload_is_one_line(monkeypatch, capsys, tmp_path):
    import harness.real as real
    monkeypatch.setattr(real, "available", lambda backend: (True, "as if"))   # run nothing
    rc = cli.main(["real", "--workload", "atomic-irq", "--backend", "memcg",
                   "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "Traceback" not in err
    assert any(ln.startswith("skip:") and "irq" in ln for ln in err.splitlines()), err

"""Build ``.real/bin/vmreal`` from ``csrc/vmreal.c`` with the machine's ``cc``.

Statically linked (``-O2 -static``) so that the same binary runs on the host (memcg backend)
and as the only program of a busybox initramfs (qemu backend).  It is rebuilt when the source,
the flags or the compiler change (a stamp file beside the binary records their hash).

Stable API (used by ``harness.real.qemu``):

* ``vmreal_path(rebuild=True) -> pathlib.Path``: the binary, built if needed; raises
  :class:`BuildError` (one line: what is missing and how to fix it).
* ``available() -> (bool, reason)``: can it be built or is it built.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "csrc" / "vmreal.c"
REAL_DIR = ROOT / ".real"
BIN = REAL_DIR / "bin" / "vmreal"
FLAGS = ["-O2", "-static", "-Wall", "-Wextra"]


class BuildError(RuntimeError):
    """vmreal cannot be built; ``str(e)`` says what is missing and how to fix it."""


def _cc() -> str | None:
    if os.environ.get("CC"):
        return shutil.which(os.environ["CC"])
    return shutil.which("cc") or shutil.which("gcc")


def _stamp(cc: str) -> str:
    h = hashlib.sha256()
    h.update(SOURCE.read_bytes())
    h.update(" ".join([cc] + FLAGS).encode())
    try:
        h.update(subprocess.run([cc, "--version"], capture_output=True, timeout=20).stdout)
    except (OSError, subprocess.TimeoutExpired):
        pass
    return h.hexdigest()


def available() -> tuple[bool, str]:
    if BIN.exists() and os.access(BIN, os.X_OK) and (not SOURCE.exists() or _cc() is None):
        return True, f"{BIN} (prebuilt)"
    if not SOURCE.exists():
        return False, f"{SOURCE} is missing"
    if _cc() is None:
        return False, "no C compiler: install one (apt-get install gcc libc6-dev)"
    return True, "cc found"


def vmreal_path(rebuild: bool = True) -> Path:
    """The runner binary, (re)built if the source, flags or compiler changed."""
    cc = _cc()
    stamp_file = BIN.with_suffix(".stamp")
    if cc is None or not SOURCE.exists():
        if BIN.exists():
            return BIN
        raise BuildError("cannot build .real/bin/vmreal: no C compiler found (install gcc and "
                         "libc6-dev, or set CC)" if cc is None else f"{SOURCE} is missing")
    stamp = _stamp(cc)
    if BIN.exists() and stamp_file.exists() and stamp_file.read_text().strip() == stamp:
        return BIN
    if not rebuild and BIN.exists():
        return BIN
    BIN.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".vmreal.", dir=BIN.parent)
    os.close(fd)
    try:
        try:
            r = subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE)], capture_output=True,
                               text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BuildError(f"cannot run the C compiler {cc}: {e}") from None
        if r.returncode != 0:
            err = r.stderr
            if "cannot find -lc" in err or ("static" in err and "not found" in err):
                raise BuildError("cannot link vmreal statically: the static C library is missing "
                                 "(apt-get install libc6-dev)")
            first = next((ln for ln in err.splitlines() if "error" in ln), err.strip()[:300])
            raise BuildError(f"cc failed to build {SOURCE.relative_to(ROOT)}: {first}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, BIN)                 # atomic: a concurrent user sees old or new
        stamp_file.write_text(stamp + "\n")
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return BIN

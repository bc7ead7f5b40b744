"""Debian packages and initramfs archives for the real-kernel backends: ``apt-get download``
into ``.real/debs/`` (never installed) and a newc cpio writer.  Shared by the qemu backend and
the daemon staging of real policies, below both, so neither imports the other for them."""
from __future__ import annotations

import io
import os
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REAL = ROOT / ".real"
DEBS = REAL / "debs"
SETUP_HINT = "run `make real-setup`"


class DebError(RuntimeError):
    """A one-line description of what is wrong and how to fix it."""


def rel(p: Path) -> str:
    try:
        return str(Path(p).resolve().relative_to(ROOT))
    except ValueError:
        return str(p)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)
    except FileNotFoundError:
        raise DebError(f"{cmd[0]} not found; the qemu backend needs a Debian-like system "
                        f"with apt ({SETUP_HINT})") from None
    except subprocess.CalledProcessError as e:
        last = (e.stderr or e.stdout or "").strip().splitlines()
        raise DebError(f"`{' '.join(map(str, cmd))}` failed: "
                        f"{last[-1] if last else 'exit status %d' % e.returncode}") from None


_LISTS_REFRESHED = False
APT_UPDATE_TIMEOUT_S = 300


def apt(cmd, **kw) -> subprocess.CompletedProcess:
    """:func:`run` for an ``apt-cache`` or ``apt-get download`` look-up.  When it fails and
    Debian's package lists have not been refreshed by this process, refresh them once
    (``apt-get update``, as root, bounded) and try again: a machine's lists can predate a
    package that a real policy names (Debian 6.12's kernel comes from bookworm-security, which
    an image's stale lists may lack).  Without root, or when the refresh fails, the first
    error stands."""
    global _LISTS_REFRESHED
    try:
        return run(cmd, **kw)
    except DebError:
        if _LISTS_REFRESHED or os.geteuid() != 0 or not shutil.which("apt-get"):
            raise
        _LISTS_REFRESHED = True
        try:
            subprocess.run(["apt-get", "update", "-qq"], check=True, capture_output=True,
                           timeout=APT_UPDATE_TIMEOUT_S, env=dict(os.environ,
                                                                  DEBIAN_FRONTEND="noninteractive"))
        except (OSError, subprocess.SubprocessError):
            raise DebError(f"`{' '.join(map(str, cmd))}` failed, and so did `apt-get update`") \
                from None
        return run(cmd, **kw)


def _deb_name(pkg: str, version: str) -> str:
    return f"{pkg}_{version.replace(':', '%3a')}_amd64.deb"


def fetch_deb(pkg: str, version: str | None = None) -> Path:
    """``.real/debs/<pkg>_<version>_<arch>.deb``, downloaded once per version with
    ``apt-get download`` (never installed).  Without ``version``: the newest one fetched, or
    the candidate's."""
    DEBS.mkdir(parents=True, exist_ok=True)
    if version is not None:
        for arch in ("amd64", "all"):
            p = DEBS / _deb_name(pkg, version).replace("_amd64.deb", f"_{arch}.deb")
            if p.exists():
                return p
    else:
        have = sorted(DEBS.glob(f"{pkg}_*.deb"))
        if have:
            return have[-1]
    try:
        apt(["apt-get", "download", pkg + (f"={version}" if version else "")], cwd=DEBS)
    except DebError as e:
        raise DebError(f"Debian package {pkg!r} cannot be fetched: {e}") from None
    have = sorted(DEBS.glob(f"{pkg}_{(version or '').replace(':', '%3a')}*.deb"))
    if not have:
        raise DebError(f"`apt-get download {pkg}` left no .deb in {rel(DEBS)}")
    return have[-1]


class Cpio:
    """A newc cpio archive written in memory (what the kernel unpacks into its rootfs)."""

    def __init__(self):
        self.buf = io.BytesIO()
        self.ino = 300000

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev=(0, 0)):
        self.ino += 1
        nm = name.encode() + b"\0"
        fields = (self.ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nm), 0)
        self.buf.write(b"070701" + b"".join(b"%08X" % f for f in fields) + nm)
        self.buf.write(b"\0" * (-(110 + len(nm)) % 4))
        self.buf.write(data)
        self.buf.write(b"\0" * (-len(data) % 4))

    def dir(self, name):
        self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, name, data: bytes, mode=0o644):
        self._entry(name, stat.S_IFREG | mode, data)

    def link(self, name, target: str):
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, name, major, minor):
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        self.buf.write(b"\0" * (-self.buf.tell() % 512))
        return self.buf.getvalue()

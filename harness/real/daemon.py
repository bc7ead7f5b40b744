"""A real policy's user-space daemon in the guest: its Debian package's files, its binary's
shared libraries and the dynamic loader, as a cpio archive appended to the initramfs.

* The package is fetched with ``apt-get download`` (``.real/debs/``, once per version) and
  unpacked with ``dpkg -x`` into ``.real/daemons/<package>_<version>/`` -- never installed.
* Shared libraries: the binary's ``DT_NEEDED`` entries (``readelf -d``), and theirs, are looked
  up in the unpacked packages (``lib/x86_64-linux-gnu``, ``usr/lib/x86_64-linux-gnu``); while one
  is missing, the library packages (``lib*``, Debian policy 8.1) the ones fetched so far depend
  on (``apt-cache depends``, ``Depends`` only) are fetched and unpacked too, at most
  :data:`MAX_ROUNDS` rounds.  Nothing is taken from
  the host's own libraries: the guest runs Debian's, as an installed system would.
* The archive holds the package's files (documentation and init scripts left out), each library
  under its soname in ``/lib/x86_64-linux-gnu``, the loader as ``/lib64/ld-linux-x86-64.so.2``,
  and ``/policy-daemon``: a script that records its pid, writes the policy's ``oom_score_adj``
  and execs the command (``/init`` starts it; see harness/real/qemu.py).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from . import debs
from ..atomic import write_atomic

DAEMONS = debs.REAL / "daemons"
LIBDIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "usr/lib64", "lib",
           "usr/lib")
LOADER = "ld-linux-x86-64.so.2"
MAX_ROUNDS = 4
SKIP = ("usr/share/", "etc/init.d/", "lib/systemd/", "usr/lib/systemd/")


class DaemonError(RuntimeError):
    pass


def _unpacked(pkg: str) -> tuple[Path, str]:
    """(root of the unpacked package, version), fetching and unpacking once per version."""
    try:
        show = debs.apt(["apt-cache", "show", "--no-all-versions", pkg]).stdout
        m = re.search(r"^Version:\s*(\S+)", show, re.M)
        version = m.group(1) if m else None
    except debs.DebError:
        version = None
    if version is None:                       # offline, or Debian has no such package
        have = sorted(DAEMONS.glob(f"{pkg}_*/.done"))
        if have:
            d = have[-1].parent
            return d, d.name.split("_", 1)[1]
        raise DaemonError(f"Debian has no package {pkg!r} (apt-cache show found none)")
    d = DAEMONS / f"{pkg}_{version}".replace(":", "%3a")
    if (d / ".done").exists():
        return d, version
    deb = debs.fetch_deb(pkg, version)
    DAEMONS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{pkg}.", dir=DAEMONS))
    try:
        debs.run(["dpkg", "-x", str(deb), str(tmp)])
        (tmp / ".done").write_text(deb.name + "\n")
        if d.exists():
            shutil.rmtree(d)
        tmp.rename(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return d, version


def _depends(pkg: str) -> list[str]:
    try:
        out = debs.run(["apt-cache", "depends", "--no-recommends", "--no-suggests", pkg]).stdout
    except debs.DebError:
        return []
    deps = []
    for line in out.splitlines():
        m = re.match(r"\s*\|?(?:Pre)?Depends:\s*(\S+)", line)
        if m and not m.group(1).startswith("<"):
            deps.append(m.group(1).split(":")[0])
    return deps


def needed(path: Path) -> list[str]:
    """The ``DT_NEEDED`` sonames of an ELF file (``readelf -d``, binutils)."""
    try:
        out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True,
                             check=True).stdout
    except FileNotFoundError:
        raise DaemonError("readelf not found (package binutils)") from None
    except subprocess.CalledProcessError as e:
        raise DaemonError(f"readelf -d {path.name}: {e.stderr.strip()}") from None
    return re.findall(r"\(NEEDED\)\s+Shared library: \[(.+?)\]", out)


def _find(soname: str, roots) -> Path | None:
    for r in roots:
        for d in LIBDIRS:
            p = r / d / soname
            if p.exists():
                return p
    return None


_STAGED: dict[tuple, dict] = {}
_STAGE_LOCK = threading.Lock()


def stage(pkg: str, command, oom_score_adj: int, verbose=False) -> dict:
    """{"cpio": Path, "version", "libraries": {soname: package}, "packages": [...]} for the
    daemon; raises :class:`DaemonError` (one line) when the package, its binary or a library
    cannot be had.  Staged once per process: every VM of a matrix boots the same archive, and
    the lookups (``apt-cache`` per package, ``readelf`` per library) cost seconds a run."""
    key = (pkg, tuple(command), int(oom_score_adj))
    with _STAGE_LOCK:
        info = _STAGED.get(key)
        if info is None or not Path(info["cpio"]).exists():
            info = _STAGED[key] = _stage(pkg, command, oom_score_adj, verbose)
        return dict(info)


def _stage(pkg: str, command, oom_score_adj: int, verbose=False) -> dict:
    say = print if verbose else (lambda *a, **k: None)
    root, version = _unpacked(pkg)
    binary = root / command[0].lstrip("/")
    if not binary.is_file():
        raise DaemonError(f"package {pkg} {version} has no {command[0]}")
    roots = {pkg: root}
    libs: dict[str, Path] = {}
    frontier = [pkg]
    rounds = 0
    while True:
        want, missing = [binary], set()
        seen = set()
        while want:
            f = want.pop()
            for so in needed(f):
                if so in seen:
                    continue
                seen.add(so)
                p = _find(so, roots.values())
                if p is None:
                    missing.add(so)
                else:
                    libs[so] = p
                    want.append(p.resolve())
        if not missing:
            break
        rounds += 1
        if rounds > MAX_ROUNDS:
            raise DaemonError(f"{command[0]} needs {', '.join(sorted(missing))}, not found in "
                              f"{', '.join(sorted(roots))} or their dependencies")
        nxt = []
        for p in frontier:
            for dep in _depends(p):
                # shared libraries are packaged as lib* (Debian policy 8.1); the rest of a
                # package's dependencies (init-system-helpers, ...) are not needed to run it
                if dep not in roots and dep.startswith("lib"):
                    try:
                        roots[dep] = _unpacked(dep)[0]
                        say(f"daemon {pkg}: library package {dep}")
                        nxt.append(dep)
                    except (DaemonError, debs.DebError):
                        continue
        if not nxt:
            raise DaemonError(f"{command[0]} needs {', '.join(sorted(missing))}, which no "
                              f"package {pkg} depends on provides")
        frontier = nxt
    loader = _find(LOADER, roots.values())
    if loader is None:
        raise DaemonError(f"no {LOADER} among {', '.join(sorted(roots))}")
    h = hashlib.sha256(json.dumps([pkg, version, list(command), oom_score_adj, sorted(
        (so, str(p)) for so, p in libs.items())]).encode())
    out = DAEMONS / f"{pkg}_{version}-{h.hexdigest()[:12]}.cpio".replace(":", "%3a")
    info = {"cpio": out, "version": version, "packages": sorted(roots),
            "libraries": {so: next(k for k, r in roots.items() if str(p).startswith(str(r)))
                          for so, p in sorted(libs.items())}}
    if out.exists():
        return info
    c = debs.Cpio()
    dirs = set()

    def parents(rel):
        parts = Path(rel).parts[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in dirs:
                dirs.add(d)
                c.dir(d)

    for f in sorted(root.rglob("*")):
        rel = f.relative_to(root).as_posix()
        if rel == ".done" or any(rel.startswith(s) for s in SKIP) or f.is_dir():
            continue
        if f.is_symlink() and not f.exists():
            continue
        parents(rel)
        c.file(rel, f.read_bytes(), 0o755 if os.access(f, os.X_OK) else 0o644)
    for so, p in sorted(libs.items()):
        rel = f"lib/x86_64-linux-gnu/{so}"
        parents(rel)
        c.file(rel, p.resolve().read_bytes(), 0o755)
    parents(f"lib64/{LOADER}")
    c.file(f"lib64/{LOADER}", loader.resolve().read_bytes(), 0o755)
    parents("tmp/x")
    script = ("#!/bin/sh\n# started by /init (harness/real/qemu.py): pid, oom_score_adj, exec\n"
              "echo $$ > /tmp/daemon.pid\n"
              f"echo {int(oom_score_adj)} > /proc/self/oom_score_adj\n"
              "exec " + " ".join(shlex.quote(x) for x in command) + "\n")
    c.file("policy-daemon", script.encode(), 0o755)
    data = c.finish()
    write_atomic(out, data, sync=False)
    return info

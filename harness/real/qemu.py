"""The qemu backend: one workload run inside a fresh VM booting Debian's own kernel.

What it relies on (all documented kernel or qemu behaviour, nothing guessed from names):

* **Kernel.**  ``setup()`` resolves the kernel package that Debian's ``linux-image-amd64``
  meta-package depends on (``apt-cache depends``), fetches it with ``apt-get download`` into
  ``.real/debs/`` and unpacks it with ``dpkg -x`` -- it is never installed on the host.  Only
  the kernel image, its config and the few modules the guest needs are kept in
  ``.real/kernel/`` (the .deb stays, so a changed module set re-extracts offline).  Once fetched,
  everything works without the network.
* **Initramfs.**  busybox-static with a link per applet, the static runner ``.real/bin/vmreal``
  (built by :mod:`harness.real.build`), the modules for a virtio disk and ext2 (virtio_pci,
  virtio_blk, ext4, which serves ext2 in Debian's config, ``CONFIG_EXT4_USE_FOR_EXT2``) with
  the modules they depend on, and ``/init``, a busybox shell script that is the guest's pid 1.
  The package ships no ``modules.dep`` (``depmod`` makes it at install time), so dependencies
  are read from each module's ``.modinfo`` section (``depends=``, written by modpost at build
  time; the same list ``depmod`` would write).  Modules are stored uncompressed (``.ko.xz``
  is decompressed on the host with :mod:`lzma`), so busybox ``insmod`` always takes them.
  Each run appends a second cpio archive with ``/plan`` and ``/run.conf`` (the kernel unpacks
  concatenated archives in order).
* **Data disk.**  The plan's files (``Plan.files``, made by ``Plan.write_files``: real bytes,
  so reading them is disk I/O into the guest's page cache) go into an ext2 image made with the
  host's ``mke2fs -d``, cached per file set in ``.real/qemu/``, with room for what the plan
  writes.  It is the guest's ``/dev/vda`` on ``/data`` (mode 1777: tasks may run as another
  uid), attached with ``snapshot=on`` so each run writes to a throw-away overlay and starts
  from the same clean image.  There is always a data disk (so always the same modules), so the
  measured overhead holds for every run.
* **Swap.**  Only if the workload has swap: a sparse image of ``swap_mb`` is ``/dev/vdb``,
  ``mkswap`` + ``swapon`` in the guest.  Otherwise the guest has no swap at all.
* **Memory.**  ``-m`` is what the simulated machine's tasks can get plus the guest kernel's own
  use, measured, not assumed.  The target is :func:`harness.real.plan.usable_kb` -- the
  workload's RAM minus what the simulated 2.4 kernel keeps for itself (boot reservation, boot
  slab, ``pages_min``), the same number the memcg backend uses as its limit (61 440 KB for
  64 MB).  The guest's "usable" memory is ``MemFree`` plus the free pages on the per-CPU lists
  (``count:`` of the pagesets in /proc/zoneinfo; MemFree leaves them out and alone varies by
  ~0.7 MB from boot to boot) minus the zones' ``min`` watermarks (below them only the kernel
  allocates, as below ``pages_min`` in the model), read by ``/init`` after the modules are
  loaded and the disk is mounted, just before the run.  The guest is booted at two sizes
  (``PROBE_MB``) with the same initramfs and command line; the line ``free = a * m - b``
  through the two points (the overhead grows with ``m``: ``struct page`` is 64 bytes per 4 KB
  page) gives a first guess, which is booted and corrected (hash tables grow in powers of two,
  so the line is not exact) until ``-m`` is the smallest whole MB with ``usable >= target``.
  One to three boots per target and CPU count, once: ``.real/overhead.json``.  Never below
  ``MIN_GUEST_MB``: Debian's 6.1 kernel with this command line panics at boot below ~100 MB
  ("System is deadlocked on memory"), where about 10 MB are free; a workload with less RAM
  than that starts with more free memory than it asks for (the record shows how much).  Every
  run records what it really started with (``meta["guest_free_kb"]``, ``guest_usable_kb``).
* **Console.**  Two serial ports.  ttyS0 (a file, ``<seed>.qemu-console.log``) is the kernel
  console at ``loglevel=4``: only errors and worse (``Out of memory: Killed process ...``,
  panics, hung tasks) are printed live, so a run killed at the wall bound still has its kills.
  ttyS1 (qemu's stdout, read by the host, ``<seed>.qemu-serial.log``) carries the runner's lines
  and ``/init``'s marked sections, all written from user space one after the other, so no
  kernel message splits a line.  After the run ``/init`` prints the two trace buffers below,
  ``/proc/zoneinfo``, ``/proc/pressure/memory`` (``psi=1``), ``/proc/meminfo``,
  ``/proc/vmstat`` (its ``oom_kill`` counter goes to the record) and the whole kernel log
  (``dmesg``; ``log_buf_len=2M`` so that many OOM reports, each with its task list, fit), then
  powers off.
* **Clocks.**  printk stamps are ``local_clock()``, the runner's are ``CLOCK_MONOTONIC``; both
  count from boot but differ by some 10-50 ms (the TSC clocksource takes over late).  The
  runner writes ``vmreal: clock <t_us>`` to /dev/kmsg (the record uses it); ``/init`` also
  brackets a read of ``now at`` in /proc/timer_list (``ktime_get()``) between two /dev/kmsg
  writes, before and after the run (``meta["printk_minus_monotonic_us"]``, its error and
  drift).
* **Onsets** come from the kernel's own tracepoints, recorded by ftrace with ``trace_clock =
  mono`` (CLOCK_MONOTONIC, the runner's clock) into an 8 KB buffer that keeps the first events
  (``overwrite`` off), set up before the free memory is measured; no process polls beside the
  workload.  Reclaim onset = the first ``vmscan:mm_vmscan_direct_reclaim_begin`` (an allocation
  entered direct reclaim; a trigger on the round's end event then disables it).  Pressure onset
  = the first ``vmscan:mm_vmscan_direct_reclaim_end`` with ``nr_reclaimed < 32`` (an event
  filter): a direct-reclaim round that freed less than it was asked for (``try_to_free_pages``
  asks for ``SWAP_CLUSTER_MAX`` = 32 pages).  (Per-instance buffers would cost ~10 MB of
  tracefs dentries each in this kernel; the top-level buffer costs 12 KB.)
* **Time.**  ``-accel tcg`` (KVM hangs on some machines: ``VMBENCH_QEMU_ACCEL=kvm`` opts in).
  Under TCG the guest clock follows the host's wall clock, so the runner's time limits are
  real seconds.  ``/init`` stops the runner with SIGTERM at the run's wall budget (SIGKILL 5 s
  later) and then kills whatever is left.
* **Safety.**  qemu runs in its own process group with ``PR_SET_PDEATHSIG = SIGKILL``; the host
  kills that group at a hard wall bound, on Ctrl-C, on any exception (``try/finally``), on
  SIGTERM (turned into an exception while a run is in progress) and at interpreter exit
  (``atexit``).  Only processes this module started are signalled.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import hashlib
import json
import lzma
import math
import os
import re
import select
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from .debs import REAL, SETUP_HINT, apt as _apt, fetch_deb, rel as _rel, run as _run
from .debs import Cpio as _Cpio
from .debs import DebError as QemuError   # one error type for the backend and its packages
from .plan import usable_kb
from ..atomic import write_atomic

KERNELS = REAL / "kernels"   # <package>.json -> <versioned package>_<version>/ (boot/, lib/modules/)
OVERHEAD = REAL / "overhead.json"
CACHE = REAL / "qemu"

META_PACKAGE = "linux-image-amd64"
QEMU = "qemu-system-x86_64"
# what the guest needs beyond the built-in drivers: the disk and its filesystem; ext4 (which
# mounts ext2 here) asks the crypto API for "crc32c" at every mount, a soft dependency that
# .modinfo does not list, so its generic implementation is named explicitly
# fuse: dwait_s (a real D state) needs /dev/fuse (built in from 6.12 on, a module in 6.1)
MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4", "fuse")
MIN_GUEST_MB = 100         # Debian 6.1 panics at boot below this ("deadlocked on memory")
PROBE_MB = (128, 256)      # the two sizes the overhead line is measured at
OVERHEAD_VERSION = 6       # bump when the guest's boot path changes what it uses
CMDLINE = ("console=ttyS0 loglevel=4 panic=-1 psi=1 log_buf_len=2M rdinit=/init "
           "printk.devkmsg=on")
BOOT_BUDGET_S = 60.0       # host wall allowance for boot + epilogue on top of the run's
MARK = "@@VMREAL"


class PolicyFailed(QemuError):
    """A real policy that could not be set up in the guest (one line naming its file and key);
    the guest's kernel log and the settings read back ride along."""

    def __init__(self, msg, kernel_lines=(), settings=None):
        super().__init__(msg)
        self.kernel_lines = list(kernel_lines)
        self.settings = settings or {}


# ============================================================================ availability
def _which_busybox() -> Path | None:
    for cand in ("/bin/busybox", "/usr/bin/busybox", shutil.which("busybox")):
        if cand and Path(cand).is_file() and _is_static_elf(Path(cand)):
            return Path(cand)
    return None


def _is_static_elf(path: Path) -> bool:
    """An x86-64 ELF without a PT_INTERP program header (no dynamic loader)."""
    try:
        with open(path, "rb") as f:
            hdr = f.read(64)
            if hdr[:4] != b"\x7fELF" or hdr[4] != 2:
                return False
            phoff, = struct.unpack_from("<Q", hdr, 0x20)
            phentsize, phnum = struct.unpack_from("<HH", hdr, 0x36)
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
    except OSError:
        return False
    return all(struct.unpack_from("<I", ph, i * phentsize)[0] != 3 for i in range(phnum))


def runner_path(build_it: bool = False) -> Path:
    """The static runner ``.real/bin/vmreal`` of :mod:`harness.real.build`; with ``build_it``,
    (re)built first if its source, flags or compiler changed."""
    try:
        from . import build
    except ImportError:
        return REAL / "bin" / "vmreal"
    if not build_it:
        return Path(build.BIN)
    try:
        return Path(build.vmreal_path())
    except build.BuildError as e:
        raise QemuError(str(e)) from None


def _kinfo_file(package: str) -> Path:
    return KERNELS / f"{package}.json"


def kernel_info(package: str = META_PACKAGE) -> dict | None:
    """What ``setup()`` fetched for the Debian package ``package`` (a meta-package such as
    ``linux-image-amd64`` or a versioned image): the versioned package, its version, release,
    paths; None if nothing is."""
    try:
        info = json.loads(_kinfo_file(package).read_text())
    except (OSError, ValueError):
        return None
    kdir = KERNELS / info.get("dir", "-")
    vml = kdir / "boot" / f"vmlinuz-{info.get('release')}"
    if not vml.is_file() or not set(MODULES) <= set(info.get("modules_for", [])):
        return None
    info["kdir"] = str(kdir)
    info["requested"] = package
    info["vmlinuz"] = str(vml)
    pvh = kdir / "boot" / f"vmlinux-{info.get('release')}"
    info["boot_image"] = str(pvh if pvh.is_file() else vml)
    info["boot_mode"] = "pvh" if pvh.is_file() else "bzimage"
    return info


def extract_vmlinux(bzimage: Path, config: Path, out: Path) -> bool:
    """Unpack the ELF ``vmlinux`` from a bzImage whose payload is xz (``CONFIG_KERNEL_XZ``) or
    zstd (``CONFIG_KERNEL_ZSTD``, with the host's ``zstd``)
    when the kernel can be entered through PVH (``CONFIG_PVH``): qemu then starts it directly,
    which saves the ~3 s the bzImage spends decompressing itself under TCG.  False (and the
    bzImage is used) when either does not hold."""
    try:
        cfg = config.read_text()
        if "CONFIG_PVH=y" not in cfg:
            return False
        b = bzimage.read_bytes()
        setup_sects = b[0x1F1] or 4
        off, length = struct.unpack_from("<II", b, 0x248)      # payload_offset, payload_length
        start = (setup_sects + 1) * 512 + off
        payload = b[start:start + length]
        if payload.startswith(b"\xfd7zXZ\x00"):
            elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        elif payload.startswith(b"\x28\xb5\x2f\xfd") and shutil.which("zstd"):
            # CONFIG_KERNEL_ZSTD (Debian 6.12): the payload's last 4 bytes are the size, not zstd
            elf = subprocess.run(["zstd", "-dc"], input=payload[:-4], capture_output=True,
                                 check=True).stdout
        else:
            return False
        if not elf.startswith(b"\x7fELF"):
            return False
    except (OSError, struct.error, lzma.LZMAError, IndexError, subprocess.CalledProcessError):
        return False
    write_atomic(out, elf, sync=False)
    return True


def available(package: str = META_PACKAGE) -> tuple[bool, str]:
    """(True, what will be used) when a qemu run can be made here, else (False, one line
    saying what is missing and how to fix it).  Builds and boots nothing."""
    missing = []
    if not shutil.which(QEMU):
        missing.append(f"{QEMU} (package qemu-system-x86)")
    if not _which_busybox():
        missing.append("a static busybox (package busybox-static)")
    if not shutil.which("mke2fs") and not Path("/sbin/mke2fs").exists():
        missing.append("mke2fs (package e2fsprogs)")
    if (kernel_info() if package == META_PACKAGE else kernel_info(package)) is None:
        missing.append(f"the guest kernel {package} in {_rel(KERNELS)}/ (fetched with "
                       f"apt-get download)")
    rp = runner_path()
    if not rp.is_file():
        missing.append(f"the runner {_rel(rp)}")
    elif not _is_static_elf(rp):
        missing.append(f"a static runner ({_rel(rp)} is dynamically linked)")
    if missing:
        return False, "missing " + ", ".join(missing) + f"; {SETUP_HINT}"
    info = kernel_info() if package == META_PACKAGE else kernel_info(package)
    return True, f"guest kernel {info['release']} ({info['boot_mode']}), accel {accel()}"


# ============================================================================ setup: the kernel
def resolve_kernel_package(package: str = META_PACKAGE) -> tuple[str, str]:
    """(versioned image package, its candidate version) for ``package``: a meta-package such
    as ``linux-image-amd64`` names the image it depends on (``apt-cache depends``); an image
    package names itself.  Raises :class:`QemuError` when Debian has no such package."""
    try:
        out = _apt(["apt-cache", "depends", package]).stdout
    except QemuError:
        raise QemuError(f"Debian has no package {package!r} (`apt-cache depends {package}` "
                        f"failed, after `apt-get update` where root may run it)") from None
    pkg = package
    for line in out.splitlines():
        m = re.match(r"\s*\|?Depends:\s*(linux-image-\S+)", line)
        if m and not m.group(1).startswith("<"):
            pkg = m.group(1)
            break
    show = _run(["apt-cache", "show", "--no-all-versions", pkg]).stdout
    m = re.search(r"^Version:\s*(\S+)", show, re.M)
    if not m:
        raise QemuError(f"`apt-cache show {pkg}` gives no version (a virtual package?)")
    return pkg, m.group(1)


def _modinfo(path: Path) -> dict:
    """The key=value strings of a module's ``.modinfo`` ELF section."""
    data = path.read_bytes()
    if path.suffix == ".xz":
        data = lzma.decompress(data)
    elif path.suffix == ".zst":
        raise QemuError(f"{path.name}: zstd-compressed modules are not supported")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def sec(i):
        name, _t, _f, _a, off, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, off, size

    _, stroff, _ = sec(shstrndx)
    info = {}
    for i in range(shnum):
        name, off, size = sec(i)
        end = data.index(b"\0", stroff + name)
        if data[stroff + name:end] == b".modinfo":
            for item in data[off:off + size].split(b"\0"):
                k, eq, v = item.decode("utf-8", "replace").partition("=")
                if eq:
                    info.setdefault(k, v)
    return info


def _module_name(path: Path) -> str:
    n = path.name
    for suf in (".ko.xz", ".ko.zst", ".ko.gz", ".ko"):
        if n.endswith(suf):
            n = n[: -len(suf)]
    return n.replace("-", "_")


def module_closure(moddir: Path, wanted=MODULES) -> list[tuple[str, Path]]:
    """``wanted`` and everything they depend on, in load order (dependencies first);
    modules built into the kernel (``modules.builtin``) are left out."""
    builtin = set()
    bfile = moddir / "modules.builtin"
    if bfile.exists():
        builtin = {_module_name(Path(l.strip())) for l in bfile.read_text().split() if l.strip()}
    index = {_module_name(p): p for p in (moddir / "kernel").rglob("*.ko*")}
    order, seen = [], set()

    def visit(name, chain):
        name = name.replace("-", "_")
        if name in seen or name in builtin:
            return
        if name not in index:
            raise QemuError(f"kernel module {name} (needed by {' <- '.join(chain) or 'the guest'})"
                            f" is neither built in nor in {_rel(moddir)}")
        seen.add(name)
        deps = [d for d in _modinfo(index[name]).get("depends", "").split(",") if d]
        for d in deps:
            visit(d, [name] + chain)
        order.append((name, index[name]))

    for w in wanted:
        visit(w, [])
    return order


def fetch_kernel(package: str = META_PACKAGE, verbose=True, offline_ok=True) -> dict:
    """Resolve ``package`` to its image and version, download it (once per version) and unpack
    the image, its config and the guest's modules (once per version) into
    ``.real/kernels/<image>_<version>/``.  Offline (apt-cache fails) the last one fetched is
    used."""
    say = print if verbose else (lambda *a, **k: None)
    have = kernel_info(package)
    try:
        pkg, version = resolve_kernel_package(package)
    except QemuError:
        if have is not None and offline_ok:
            return have
        raise
    if have is not None and (have["package"], have["version"]) == (pkg, version):
        return have
    dname = f"{pkg}_{version}".replace(":", "%3a")
    kdir = KERNELS / dname
    say(f"qemu: kernel package {pkg} {version} (from {package})")
    deb = fetch_deb(pkg, version)
    say(f"qemu: unpacking {_rel(deb)} (never installed on the host)")
    KERNELS.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="kernel.", dir=KERNELS))
    new = None
    try:
        _run(["dpkg", "-x", str(deb), str(tmp)])
        vmls = sorted((tmp / "boot").glob("vmlinuz-*"))
        if not vmls:
            raise QemuError(f"{deb.name} holds no /boot/vmlinuz-* (is {pkg} a kernel image?)")
        release = vmls[-1].name[len("vmlinuz-"):]
        moddir = tmp / "lib" / "modules" / release
        mods = module_closure(moddir)
        new = Path(tempfile.mkdtemp(prefix="kernel.new.", dir=KERNELS))
        new.chmod(0o755)
        (new / "boot").mkdir()
        for p in (tmp / "boot").iterdir():
            if p.name.endswith(release) and (p.name.startswith("vmlinuz") or
                                             p.name.startswith("config")):
                shutil.copy2(p, new / "boot" / p.name)
        ndir = new / "lib" / "modules" / release
        ndir.mkdir(parents=True)
        for f in ("modules.builtin", "modules.order"):
            if (moddir / f).exists():
                shutil.copy2(moddir / f, ndir / f)
        for _name, p in mods:
            dst = ndir / p.relative_to(moddir)
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(p, dst)
        extract_vmlinux(new / "boot" / f"vmlinuz-{release}", new / "boot" / f"config-{release}",
                        new / "boot" / f"vmlinux-{release}")
        if kdir.exists():
            shutil.rmtree(kdir)
        new.rename(kdir)
        new = None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if new is not None:
            shutil.rmtree(new, ignore_errors=True)
    info = {"package": pkg, "version": version, "release": release, "deb": deb.name,
            "dir": dname, "modules_for": list(MODULES), "modules": [n for n, _ in mods]}
    f = _kinfo_file(package)
    write_atomic(f, json.dumps(info, indent=1) + "\n")
    say(f"qemu: kernel {release} ({version}) in {_rel(kdir)}/, modules "
        f"{', '.join(info['modules'])}")
    return kernel_info(package)


def setup(verbose=True, package: str = META_PACKAGE, cmdline: str = "",
          extra: tuple = ()) -> dict:
    """Everything the backend needs beyond the Debian packages: the kernel ``package`` (fetched
    once per version, then offline), the runner (built by :mod:`harness.real.build`), the
    overhead measurement for one CPU and the ``-m`` of a 64 MB workload.  Raises
    :class:`QemuError` with one line on failure."""
    say = print if verbose else (lambda *a, **k: None)
    info = fetch_kernel(package, verbose)
    for what, ok in ((QEMU, shutil.which(QEMU)), ("busybox-static", _which_busybox())):
        if not ok:
            raise QemuError(f"{what} is missing; {SETUP_HINT} (as root, with apt)")
    runner_path(build_it=True)
    t = time.monotonic()
    ov = overhead(1, verbose=verbose, package=package, cmdline=cmdline, extra=extra)
    m64 = guest_mb(_usable_64(), 1, package=package, cmdline=cmdline, extra=extra)
    say(f"qemu: {info['release']} overhead (1 CPU): free = {ov['a']:.4f} * m - "
        f"{ov['b_kb']:.0f} KB; -m for 64 MB of RAM (usable {_usable_64()} KB): {m64} MB "
        f"({time.monotonic() - t:.1f} s)")
    return info


def _usable_64() -> int:
    """What a task of a default 64 MB simulated machine can get (for setup's message)."""
    from types import SimpleNamespace

    from .. import machine as M
    return usable_kb(SimpleNamespace(machine=M.MachineSpec(ram_mb=64)))[0]


# ============================================================================ the initramfs
INIT = r"""#!/bin/sh
# pid 1 of the guest (harness/real/qemu.py).  ttyS1 carries everything the host parses.
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
. /run.conf
stty -F /dev/ttyS1 raw -echo 115200 2>/dev/null
exec 3>/dev/ttyS1
say() { echo "@@VMREAL $*" >&3; }
section() { echo "@@VMREAL-BEGIN $1" >&3; cat "$2" >&3 2>&1; echo "@@VMREAL-END $1" >&3; }
say boot uptime=$(cut -d' ' -f1 /proc/uptime) release=$(uname -r) cpus=$(nproc)
for m in $MODULES; do insmod /lib/modules/$m.ko || say error insmod $m; done
i=0; while [ ! -b /dev/vda ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
mkdir -p /data
mount -t ext2 -o noatime /dev/vda /data || say error mount /dev/vda
chmod 1777 /data                     # tasks may run as another uid (a write to the overlay)
if [ "$SWAP" = 1 ]; then
  i=0; while [ ! -b /dev/vdb ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
  mkswap /dev/vdb >/dev/null && swapon /dev/vdb || say error swapon /dev/vdb
fi
FAIL=
setting() {  # KIND KEY PATH VALUE: a policy's sysctl or sysfs setting, written, then read back
  if { echo "$4" > "$3"; } 2>/tmp/setting.err; then
    say setting $1 $2 read=$(head -c 200 "$3" 2>&1 | tr '\n ' '__')
  else
    say error setting $1 $2 value=$4: $(head -c 200 /tmp/setting.err | tr '\n' ' '); FAIL=1
  fi
}
[ -r /policy.sh ] && . /policy.sh      # the real policy: settings, WCG (a cgroup2 group)
if [ -n "$WCG" ]; then                 # the workload's cgroup2 group (the memory controller on)
  mount -t cgroup2 none /sys/fs/cgroup || { say error cgroup2 mount; FAIL=1; }
  d=/sys/fs/cgroup
  for part in $(echo $WCG | tr / ' '); do
    echo +memory > $d/cgroup.subtree_control 2>/dev/null; d=$d/$part; mkdir -p $d
  done
  [ -w $d/cgroup.procs ] && say cgroup $WCG || { say error cgroup $WCG; FAIL=1; }
fi
T=/sys/kernel/tracing
E=$T/events/vmscan/mm_vmscan_direct_reclaim
tracing() {  # onsets from the kernel's own tracepoints (no polling; the first events are kept)
  mount -t tracefs nodev $T 2>/dev/null &&
  echo 8 > $T/buffer_size_kb && echo mono > $T/trace_clock &&
  echo 0 > $T/options/overwrite &&
  echo 'nr_reclaimed < 32' > ${E}_end/filter &&
  echo 'disable_event:vmscan:mm_vmscan_direct_reclaim_begin:1' > ${E}_end/trigger &&
  echo 1 > ${E}_end/enable && echo 1 > ${E}_begin/enable || say error tracing
}
[ "$TRACE" = 0 ] || tracing
sync; echo 3 > /proc/sys/vm/drop_caches
section meminfo-start /proc/meminfo
section zoneinfo-start /proc/zoneinfo
clock() {  # printk time vs CLOCK_MONOTONIC ("now at" of /proc/timer_list), shell builtins only
  echo "vmreal-clock $1 a" > /dev/kmsg
  while read -r w1 w2 ns rest; do [ "$w1 $w2" = "now at" ] && break; done < /proc/timer_list
  echo "vmreal-clock $1 b" > /dev/kmsg
  say clock $1 mono_ns=$ns
}
if [ -z "$FAIL" ] && [ -x /policy-daemon ]; then   # a user-space killer, its lines into the kernel log
  ( echo -1000 > /proc/self/oom_score_adj
    /policy-daemon 2>&1 | while IFS= read -r l; do echo "vmreal-daemon: $l" > /dev/kmsg; done ) &
  i=0; while [ ! -s /tmp/daemon.pid ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
  sleep 1
  DPID=$(cat /tmp/daemon.pid 2>/dev/null)
  if [ -n "$DPID" ] && [ -r /proc/$DPID/status ] && ! grep -q '^State:.*Z' /proc/$DPID/status; then
    say daemon pid=$DPID oom_score_adj=$(cat /proc/$DPID/oom_score_adj) \
        rss_kb=$(sed -n 's/^VmRSS:[^0-9]*\([0-9]*\).*/\1/p' /proc/$DPID/status)
  else
    say error daemon-exited pid=$DPID; FAIL=1
  fi
fi
[ -n "$FAIL" ] && say policy-failed
clock start
if [ "$MODE" = run ] && [ -z "$FAIL" ]; then
  say run uptime=$(cut -d' ' -f1 /proc/uptime)
  echo "@@VMREAL-BEGIN runner" >&3
  R="timeout -s TERM -k 5 $((RUN_S + 10)) /bin/vmreal run /plan /data --limit-ms $((RUN_S * 1000))"
  if [ -n "$WCG" ]; then sh -c "echo \$\$ > /sys/fs/cgroup/$WCG/cgroup.procs && exec $R" >&3 2>&3
  else $R >&3 2>&3; fi
  rc=$?
  echo "@@VMREAL-END runner" >&3
  say runner-exit rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)
  kill -9 -1 2>/dev/null; sleep 0.2
  clock end
  [ -r $T/trace ] && echo 0 > $T/tracing_on && section trace $T/trace
  section zoneinfo /proc/zoneinfo
  [ -r /proc/pressure/memory ] && section pressure-memory /proc/pressure/memory
  section meminfo-end /proc/meminfo
  section vmstat /proc/vmstat
  echo "@@VMREAL-BEGIN dmesg" >&3; dmesg -s 8388608 >&3; echo "@@VMREAL-END dmesg" >&3
  umount /data 2>/dev/null
elif [ "$MODE" = run ]; then           # the policy could not be set up: its lines, no run
  echo "@@VMREAL-BEGIN dmesg" >&3; dmesg -s 8388608 >&3; echo "@@VMREAL-END dmesg" >&3
fi
if [ "$MODE" = bench ]; then            # the TCG slowdown's micro-workload (harness/real/tcg.py)
  echo "@@VMREAL-BEGIN bench" >&3
  for i in 1 2 3; do /bin/vmreal bench >&3 2>&3; done
  echo "@@VMREAL-END bench" >&3
fi
say done uptime=$(cut -d' ' -f1 /proc/uptime)
exec 3>&-
sleep 0.1
poweroff -f
"""


def _busybox_applets(bb: Path) -> list[str]:
    out = subprocess.run([str(bb), "--list"], capture_output=True, text=True).stdout
    return [a for a in out.split() if re.fullmatch(r"[A-Za-z0-9_.\[\]-]+", a)]


def base_initramfs(package: str = META_PACKAGE) -> tuple[Path, str]:
    """The run-independent initramfs (cached by content) and the module load order."""
    info = kernel_info(package)
    if info is None:
        raise QemuError(f"no guest kernel {package} in {_rel(KERNELS)}; {SETUP_HINT}")
    bb = _which_busybox()
    if bb is None:
        raise QemuError(f"no static busybox; {SETUP_HINT}")
    rp = runner_path()
    if not rp.is_file():
        raise QemuError(f"the runner {_rel(rp)} is not built; {SETUP_HINT}")
    moddir = Path(info["kdir"]) / "lib" / "modules" / info["release"]
    mods = module_closure(moddir)
    bb_bytes, rp_bytes = bb.read_bytes(), rp.read_bytes()
    mod_bytes = []
    for name, p in mods:
        data = p.read_bytes()
        if p.name.endswith(".xz"):
            data = lzma.decompress(data)
        mod_bytes.append((name, data))
    h = hashlib.sha256()
    for part in (bb_bytes, rp_bytes, INIT.encode(), *(d for _, d in mod_bytes)):
        h.update(hashlib.sha256(part).digest())
    digest = h.hexdigest()[:16]
    out = CACHE / f"initramfs-{info['release']}-{digest}.cpio"
    order = " ".join(n for n, _ in mod_bytes)
    if out.exists():
        os.utime(out)                                  # most recently used: kept by _prune
        return out, order
    c = _Cpio()
    for d in ("bin", "dev", "proc", "sys", "data", "lib", "lib/modules", "tmp", "root"):
        c.dir(d)
    c.chardev("dev/console", 5, 1)
    c.chardev("dev/null", 1, 3)
    c.file("bin/busybox", bb_bytes, 0o755)
    for a in _busybox_applets(bb):
        if a != "busybox":
            c.link(f"bin/{a}", "busybox")
    c.file("bin/vmreal", rp_bytes, 0o755)
    for name, data in mod_bytes:
        c.file(f"lib/modules/{name}.ko", data)
    c.file("init", INIT.encode(), 0o755)
    CACHE.mkdir(parents=True, exist_ok=True)
    write_atomic(out, c.finish(), sync=False)
    _prune("initramfs-*.cpio", 4)
    return out, order


_PRUNE_LOCK = threading.Lock()


def _prune(pattern: str, keep: int):
    """Keep the ``keep`` most recently used cache files of ``pattern`` (a run in another
    process that still uses an older one has it open or was given it within the last minute).
    Runs in parallel prune at once (the matrix's threads, other processes): a file another one
    removed meanwhile is skipped, not an error."""
    def mtime(p: Path) -> float | None:
        try:
            return p.stat().st_mtime
        except FileNotFoundError:
            return None

    with _PRUNE_LOCK:
        files = sorted(((m, p) for p in CACHE.glob(pattern) if (m := mtime(p)) is not None),
                       reverse=True)
        for m, p in files[keep:]:
            if time.time() - m > 60:
                p.unlink(missing_ok=True)


def _run_cpio(conf: dict, plan_text: str | None) -> bytes:
    c = _Cpio()
    c.file("run.conf", "".join(f"{k}='{v}'\n" for k, v in conf.items()).encode())
    if plan_text is not None:
        c.file("plan", plan_text.encode())
    return c.finish()


DISK_VERSION = 1
KEEP_DISKS = 4


def data_disk(plan=None) -> Path:
    """The ext2 image with the plan's files (``Plan.files``, {name: size_kb}), built once per
    file set with the host's ``mke2fs -d`` and cached in ``.real/qemu/``; runs attach it with
    ``snapshot=on`` (their writes go to a throw-away overlay, the image stays clean).  The files
    are made by ``Plan.write_files`` (real bytes: reading them is disk I/O into the guest's page
    cache); the image has room for what the plan writes and 256 MB more."""
    files = {str(k): int(math.ceil(v)) for k, v in (getattr(plan, "files", None) or {}).items()}
    for name in files:
        if "/" in name or name in (".", ".."):
            raise QemuError(f"plan file name {name!r} is not a plain file name")
    write_kb = _write_kb(plan) if plan is not None else 0
    free_mb = 256 * math.ceil((write_kb / 1024 + 64) / 256)
    total_kb = sum(files.values())
    size_mb = math.ceil(total_kb * 1.05 / 1024) + free_mb + 16
    key = hashlib.sha256(json.dumps([DISK_VERSION, sorted(files.items()), size_mb]).encode())
    path = CACHE / f"data-{key.hexdigest()[:16]}.img"
    if path.exists():
        os.utime(path)
        return path
    mke2fs = shutil.which("mke2fs") or "/sbin/mke2fs"
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"data.{os.getpid()}.", dir=CACHE, ignore_cleanup_errors=True) as d:
        src = Path(d) / "files"
        src.mkdir()
        if files and callable(getattr(plan, "write_files", None)):
            plan.write_files(src)
        else:
            for name, kb in files.items():
                with open(src / name, "wb") as f:
                    f.truncate(kb * 1024)
        img = Path(d) / "data.img"
        with open(img, "wb") as f:
            f.truncate(size_mb << 20)
        _run([mke2fs, "-q", "-F", "-t", "ext2", "-m", "0", "-E", "root_owner=0:0",
              "-d", str(src), str(img)])
        img.replace(path)
    _prune("data-*.img", KEEP_DISKS)
    return path


# ============================================================================ qemu processes
_LIVE: dict[int, subprocess.Popen] = {}
_LIVE_LOCK = threading.Lock()


try:                                     # resolved here: the child only calls it
    _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
except (OSError, AttributeError):
    _PRCTL = None


def _pdeathsig():
    # in the child, before exec: die with SIGKILL when the thread that started us dies
    if _PRCTL is not None:
        _PRCTL(1, signal.SIGKILL)                  # PR_SET_PDEATHSIG


def _kill(p: subprocess.Popen):
    """SIGKILL qemu's process group (it is its own session leader) and reap it."""
    if p.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError):
            p.kill()
    with contextlib.suppress(Exception):
        p.wait(timeout=10)
    with _LIVE_LOCK:
        _LIVE.pop(p.pid, None)


def kill_all():
    """Kill every qemu this process started and that is still running."""
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    for p in procs:
        _kill(p)


atexit.register(kill_all)


@contextlib.contextmanager
def _sigterm_as_exception():
    """While a VM runs, SIGTERM/SIGHUP raise SystemExit in the main thread so ``finally``
    kills qemu (SIGINT already raises KeyboardInterrupt)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    def handler(signum, frame):
        raise SystemExit(128 + signum)
    old = {}
    for s in (signal.SIGTERM, signal.SIGHUP):
        with contextlib.suppress(ValueError, OSError):
            old[s] = signal.signal(s, handler)
    try:
        yield
    finally:
        for s, h in old.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(s, h)


def accel() -> str:
    """``tcg`` unless ``VMBENCH_QEMU_ACCEL=kvm`` (KVM is present but hangs on some hosts)."""
    a = os.environ.get("VMBENCH_QEMU_ACCEL", "tcg").strip().lower()
    if a not in ("tcg", "kvm"):
        raise QemuError(f"VMBENCH_QEMU_ACCEL={a!r}: use tcg or kvm")
    return a


def boot(*, mem_mb: int, cpus: int, conf: dict, plan_text: str | None, disks: list[Path],
         work: Path, wall_s: float, on_line=None, package: str = META_PACKAGE,
         cmdline: str = "", extra_cpio: tuple = (), throttle: dict | None = None) -> dict:
    """Boot one VM and read ttyS1 until the guest powers off or ``wall_s`` passes; the VM is
    dead when this returns or raises.  Returns the console texts and how it ended.

    ``extra_cpio``: archives appended to the initramfs after the base one (a daemon's files,
    the policy's script).  As soon as the guest prints its first line, qemu has opened every
    file it needs (the initrd is loaded, the drives and the snapshot overlay are open), so the
    run's files in ``work`` are unlinked then: a ``kill -9`` of the harness later leaves no
    image behind (qemu dies with it, ``PR_SET_PDEATHSIG``)."""
    info = kernel_info(package)
    if info is None:
        raise QemuError(f"no guest kernel {package} in {_rel(KERNELS)}; {SETUP_HINT}")
    base, order = base_initramfs(package)
    conf = dict(conf, MODULES=order)
    initrd = work / "initrd.cpio"
    with open(initrd, "wb") as f:
        with open(base, "rb") as b:
            shutil.copyfileobj(b, f)
        for piece in extra_cpio:
            f.write(piece)
        f.write(_run_cpio(conf, plan_text))
    console = work / "console.log"
    console.touch()
    append = CMDLINE + (" " + cmdline if cmdline else "")
    cmd = [shutil.which(QEMU) or QEMU, "-accel", accel(), "-machine", "pc", "-nodefaults",
           "-display", "none", "-no-reboot", "-m", str(int(mem_mb)), "-smp", str(int(cpus)),
           "-kernel", info["boot_image"], "-initrd", str(initrd), "-append", append,
           "-serial", f"file:{console}", "-serial", "stdio", "-monitor", "none"]
    limits = "".join(f",throttling.{k}={v}" for k, v in (throttle or {}).items())
    for i, d in enumerate(disks):        # the data disk (first) is read-only: writes to an overlay
        cmd += ["-drive", f"file={d},format=raw,if=virtio,cache=unsafe"
                + (",snapshot=on" if i == 0 else "") + limits]
    serial = bytearray()
    t0 = time.monotonic()
    ended, p, errf, conf_r = "running", None, None, None
    stderr = b""
    console_text = b""
    with _sigterm_as_exception():
        try:
            conf_r = open(console, "rb")
            errf = open(work / "qemu.stderr", "w+b")
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=errf, start_new_session=True,
                                 preexec_fn=_pdeathsig, cwd=work,
                                 env=dict(os.environ, TMPDIR=str(work)))
            with _LIVE_LOCK:
                _LIVE[p.pid] = p
            fd = p.stdout.fileno()
            os.set_blocking(fd, False)
            pending = b""
            unlinked = False
            while True:
                left = wall_s - (time.monotonic() - t0)
                if left <= 0:
                    ended = "timeout"
                    break
                r, _, _ = select.select([fd], [], [], min(left, 0.5))
                if not r:
                    if p.poll() is not None:
                        ended = "exited"
                        break
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    ended = "exited"
                    break
                if not unlinked:
                    _unlink_contents(work)
                    unlinked = True
                serial += chunk
                if on_line is not None:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for ln in lines:
                        on_line(ln.decode("utf-8", "replace").rstrip("\r"))
            if ended == "exited":
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=max(1.0, min(10.0, wall_s - (time.monotonic() - t0))))
        finally:
            if p is not None:
                _kill(p)
                p.stdout.close()
            if errf is not None:
                with contextlib.suppress(OSError):
                    errf.seek(0)
                    stderr = errf.read()
                errf.close()
            if conf_r is not None:
                with contextlib.suppress(OSError):
                    console_text = conf_r.read()
                conf_r.close()
    return {"serial": serial.decode("utf-8", "replace").replace("\r", ""),
            "console": console_text.decode("utf-8", "replace"),
            "ended": ended, "returncode": p.returncode if p else None,
            "qemu_stderr": stderr.decode("utf-8", "replace").strip(),
            "wall_s": time.monotonic() - t0, "cmd": cmd}


def _unlink_contents(work: Path):
    """Unlink every file in a run's folder (qemu keeps the ones it has open)."""
    for f in Path(work).iterdir():
        with contextlib.suppress(OSError):
            if f.is_dir() and not f.is_symlink():
                shutil.rmtree(f, ignore_errors=True)
            else:
                f.unlink()


RUN_PREFIX = "qemu-run."


def run_dir() -> tempfile.TemporaryDirectory:
    """A run's folder ``.real/qemu/qemu-run.<pid>.<random>``, removed at the end; the folders
    of a harness that died (``kill -9``, pid gone) are removed first."""
    sweep_stale()
    return tempfile.TemporaryDirectory(prefix=f"{RUN_PREFIX}{os.getpid()}.",
                                       dir=_scratch_parent(), ignore_cleanup_errors=True)


def sweep_stale() -> list[str]:
    """Remove run folders (``qemu-run.<pid>.*``, ``qemu-probe.<pid>.*``) whose process is
    gone.  Returns their names."""
    out = []
    if not CACHE.is_dir():
        return out
    for d in CACHE.iterdir():
        parts = d.name.split(".")
        if len(parts) < 3 or parts[0] not in ("qemu-run", "qemu-probe", "data") or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid():
            continue
        try:
            os.kill(pid, 0)
            continue
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(d, ignore_errors=True)
        out.append(d.name)
    return out


def parse_serial(text: str) -> dict:
    """Split ttyS1 into marked sections (``@@VMREAL-BEGIN name`` .. ``@@VMREAL-END name``),
    ``@@VMREAL key ...`` status lines, and the rest."""
    sections, status, other, cur, closed = {}, [], [], None, set()
    for line in text.split("\n"):
        if line.startswith(MARK + "-BEGIN "):
            cur = line.split(None, 1)[1].strip()
            sections[cur] = []
        elif line.startswith(MARK + "-END "):
            closed.add(line.split(None, 1)[1].strip())
            cur = None
        elif line.startswith(MARK + " "):
            status.append(line[len(MARK) + 1:])
        elif cur is not None:
            sections[cur].append(line)
        elif line.strip():
            other.append(line)
    return {"sections": sections, "status": status, "other": other, "closed": closed}


def _meminfo(lines) -> dict:
    out = {}
    for ln in lines or ():
        m = re.match(r"(\w+(?:\(\w+\))?):\s+(\d+)", ln)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out


def free_kb(sections: dict, when: str = "start") -> int | None:
    """Free memory: ``MemFree`` plus the free pages parked on the per-CPU lists (``count:``
    of every pageset in /proc/zoneinfo), which MemFree leaves out; without them a boot's
    MemFree varies by several hundred KB from boot to boot."""
    mi = _meminfo(sections.get(f"meminfo-{when}"))
    if "MemFree" not in mi:
        return None
    pcp = sum(int(m.group(1)) for ln in sections.get(f"zoneinfo-{when}", ())
              if (m := re.match(r"\s+count:\s+(\d+)", ln)))
    return mi["MemFree"] + 4 * pcp


def usable_guest_kb(sections: dict, when: str = "start") -> int | None:
    """What the guest's tasks can get: :func:`free_kb` minus the zones' ``min`` watermarks
    (``/proc/zoneinfo``), below which only the kernel's own allocations go -- as
    ``pages_min`` in the simulated machine (:func:`harness.real.plan.usable_kb`)."""
    free = free_kb(sections, when)
    if free is None:
        return None
    mins = sum(int(m.group(1)) for ln in sections.get(f"zoneinfo-{when}", ())
               if (m := re.match(r"\s+min\s+(\d+)\s*$", ln)))
    return free - 4 * mins


def _status_kv(status: list[str], key: str) -> dict:
    for s in status:
        if s.split(None, 1)[0] == key:
            return dict(kv.split("=", 1) for kv in s.split()[1:] if "=" in kv)
    return {}


def _boot_failure(res: dict, mem_mb: int) -> str:
    """One line for a guest that never reached /init's end."""
    txt = res["console"] + "\n" + res["serial"]
    m = re.search(r"Kernel panic - not syncing: ?(.*)", txt)
    if m:
        hint = (f"; -m {mem_mb} is too small for this kernel (>= {MIN_GUEST_MB})"
                if "deadlocked on memory" in m.group(1) or "Out of memory" in m.group(1) else "")
        return f"guest kernel panicked: {m.group(1).strip()}{hint}"
    if res["ended"] == "timeout":
        return f"the guest did not finish within {res['wall_s']:.0f} s (killed)"
    if res["qemu_stderr"]:
        return f"qemu exited with status {res['returncode']}: {res['qemu_stderr'].splitlines()[-1]}"
    return f"qemu exited with status {res['returncode']} before the guest finished"


# ============================================================================ kernel overhead
def _probe_free_kb(mem_mb: int, cpus: int, work: Path, package: str = META_PACKAGE,
                   cmdline: str = "", extra: tuple = ()) -> dict:
    disk = data_disk(None)
    res = boot(mem_mb=mem_mb, cpus=cpus, conf={"MODE": "measure", "SWAP": 0, "RUN_S": 0},
               package=package, cmdline=cmdline, extra_cpio=extra,
               plan_text=None, disks=[disk], work=work, wall_s=BOOT_BUDGET_S + 60)
    par = parse_serial(res["serial"])
    mi = _meminfo(par["sections"].get("meminfo-start"))
    if "MemFree" not in mi:
        why = _boot_failure(res, mem_mb)
        if "deadlocked on memory" in why:        # too small to boot: the caller goes up
            return {"m_mb": mem_mb, "free_kb": None, "error": why}
        raise QemuError(f"overhead probe at -m {mem_mb}: {why}")
    boot_kv = _status_kv(par["status"], "boot")
    return {"m_mb": mem_mb, "MemTotal": mi.get("MemTotal"), "MemFree": mi["MemFree"],
            "free_kb": free_kb(par["sections"]), "usable_kb": usable_guest_kb(par["sections"]),
            "MemAvailable": mi.get("MemAvailable"), "wall_s": round(res["wall_s"], 2),
            "release": boot_kv.get("release")}


def _overhead_key(cpus: int, package: str = META_PACKAGE, cmdline: str = "",
                  extra: tuple = ()) -> str:
    """The overhead's cache key: kernel, boot mode, CPUs, command line and what is added to the
    initramfs (a daemon's files stay in the guest's rootfs: shmem the tasks cannot have)."""
    info = kernel_info(package) or {}
    h = hashlib.sha256((CMDLINE + (" " + cmdline if cmdline else "")).encode())
    for piece in extra:
        h.update(hashlib.sha256(piece).digest())
    cmd = h.hexdigest()[:8]
    return (f"{info.get('release')}|{info.get('version')}|{info.get('boot_mode')}|smp{cpus}"
            f"|cmdline-{cmd}|v{OVERHEAD_VERSION}")


def overhead(cpus: int = 1, verbose=False, refresh=False, package: str = META_PACKAGE,
             cmdline: str = "", extra: tuple = ()) -> dict:
    """The kernel's own memory use as ``free_kb = a * m_kb - b_kb``, measured by booting the
    guest at ``PROBE_MB`` (once per kernel and CPU count; cached in ``.real/overhead.json``)."""
    key = _overhead_key(cpus, package, cmdline, extra)
    ent = _load_cache().get(key)
    if not refresh and ent and "a" in ent:
        return ent
    pts = []
    with tempfile.TemporaryDirectory(prefix=f"qemu-probe.{os.getpid()}.", dir=_scratch_parent(), ignore_cleanup_errors=True) as d:
        for mb in PROBE_MB:
            pts.append(_probe_free_kb(mb, cpus, Path(d), package, cmdline, extra))
            if pts[-1]["free_kb"] is None:
                raise QemuError(f"overhead probe at -m {mb}: {pts[-1]['error']}")
            if verbose:
                p = pts[-1]
                print(f"qemu: -m {mb} -smp {cpus}: MemTotal {p['MemTotal']} KB, free "
                      f"{p['free_kb']} KB at /init (boot {p['wall_s']} s)")
    (m1, f1), (m2, f2) = ((p["m_mb"] * 1024, p["free_kb"]) for p in pts)
    a = (f2 - f1) / (m2 - m1)
    ent = {"a": a, "b_kb": a * m1 - f1, "points": pts, "fits": {},
           "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    _save_cache(key, lambda old: ent)
    return ent


def _load_cache() -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(OVERHEAD.read_text())
    return {}


def _save_cache(key: str, update) -> None:
    cache = _load_cache()                       # re-read: another run may have added entries
    cache[key] = update(cache.get(key))
    write_atomic(OVERHEAD, json.dumps(cache, indent=1, sort_keys=True) + "\n")


def guest_mb(want_kb: int, cpus: int = 1, verbose=False, package: str = META_PACKAGE,
             cmdline: str = "", extra: tuple = ()) -> int:
    """``-m`` for a workload whose tasks should be able to get ``want_kb``
    (:func:`harness.real.plan.usable_kb`): the smallest whole MB at which the guest's usable
    memory at /init (:func:`usable_guest_kb`: free above the min watermarks) is at least
    ``want_kb``, never below ``MIN_GUEST_MB``.

    The line of :func:`overhead` gives the first guess; the kernel's use is not quite linear
    (hash tables are sized by powers of two of the memory, watermarks by its square root), so
    the guess is booted and corrected until the smallest such ``m`` is found (one to three
    boots per size and CPU count, cached in ``.real/overhead.json``)."""
    key = _overhead_key(cpus, package, cmdline, extra)
    fits = (_load_cache().get(key) or {}).get("fits", {})
    tag = f"usable:{int(want_kb)}"
    if tag in fits:
        return fits[tag]["m_mb"]
    ov = overhead(cpus, verbose=verbose, package=package, cmdline=cmdline, extra=extra)
    want = int(want_kb)
    m = max(MIN_GUEST_MB, math.ceil((want + ov["b_kb"]) / ov["a"] / 1024))
    seen: dict[int, int] = {p["m_mb"]: p.get("usable_kb") for p in ov["points"]
                            if p.get("usable_kb") is not None}
    with tempfile.TemporaryDirectory(prefix=f"qemu-probe.{os.getpid()}.", dir=_scratch_parent(), ignore_cleanup_errors=True) as d:
        for _ in range(6):
            if m not in seen:
                seen[m] = _probe_free_kb(m, cpus, Path(d), package, cmdline, extra)["usable_kb"]
                if verbose:
                    print(f"qemu: -m {m} -smp {cpus}: {seen[m]} KB usable at /init")
            if seen[m] is None:                  # the kernel cannot boot in this little
                m += 4
                continue
            below, slope = seen.get(m - 1, -1), ov["a"] * 1024  # KB free per MB of -m
            if seen[m] >= want and (m == MIN_GUEST_MB or (below is None or 0 <= below < want)
                                    or (below == -1 and seen[m] - want < slope)):
                break
            step = (want - seen[m]) / (ov["a"] * 1024)
            m = max(MIN_GUEST_MB, m + (math.ceil(step) if step > 0 else -max(1, math.floor(-step))))
        else:
            m = min((k for k, v in seen.items() if v is not None and v >= want), default=m)
    free = seen.get(m)

    def upd(ent):
        ent = dict(ent or ov)
        ent.setdefault("fits", {})[tag] = {"m_mb": m, "usable_kb": free}
        return ent

    _save_cache(key, upd)
    return m


def _scratch_parent() -> Path:
    CACHE.mkdir(parents=True, exist_ok=True)
    return CACHE


# ============================================================================ one run
def _kernel_lines(par: dict, console: str) -> tuple[list[str], bool]:
    """The kernel log as ``[seconds] message`` lines: the full ``dmesg`` of the epilogue, or,
    if the guest never got there, what the console (errors and worse) printed live."""
    stamp = re.compile(r"\[\s*(\d+\.\d+)\]")
    lines = [l for l in par["sections"].get("dmesg", []) if l.strip()]
    live = [l for l in console.splitlines() if stamp.match(l)]
    if lines and "dmesg" in par["closed"]:
        return lines, False
    if lines:                         # cut off by the wall bound: the console has the rest
        last = max((float(m.group(1)) for l in lines if (m := stamp.match(l))), default=0.0)
        return lines + [l for l in live if float(stamp.match(l).group(1)) > last], True
    return live, True


def clock_offsets(status: list[str], kernel_lines: list[str]) -> dict:
    """printk time minus CLOCK_MONOTONIC, in µs, at the start and the end of the run.  /init
    writes ``vmreal-clock X a`` to /dev/kmsg, reads ``now at N nsecs`` (ktime_get(), i.e.
    CLOCK_MONOTONIC) from /proc/timer_list and writes ``vmreal-clock X b``, all shell builtins;
    the offset is the midpoint of a and b minus N, its error half their distance."""
    stamps = {}
    for ln in kernel_lines:
        m = re.match(r"\[\s*(\d+\.\d+)\]\s+vmreal-clock (\w+) ([ab])$", ln.strip())
        if m:
            stamps[(m.group(2), m.group(3))] = float(m.group(1)) * 1e6
    out = {}
    for s in status:
        m = re.match(r"clock (\w+) mono_ns=(\d+)", s)
        if m and (m.group(1), "a") in stamps and (m.group(1), "b") in stamps:
            a, b = stamps[(m.group(1), "a")], stamps[(m.group(1), "b")]
            out[m.group(1)] = (round((a + b) / 2 - int(m.group(2)) / 1000), round((b - a) / 2))
    return out


def policy_cpio(policy, usable: int) -> tuple[bytes, ...]:
    """The archives a real policy adds to the initramfs: ``/policy.sh`` (its settings, sourced
    by /init) and its daemon's files (:func:`harness.real.daemon.stage`)."""
    if policy is None:
        return ()
    lines = ["# the real policy " + policy.name + " (" + policy.file + ")"]
    for kind, key, path, value in policy.settings(usable):
        lines.append(f"setting {kind} {key} {path} '{value}'")
    if policy.workload_cgroup:
        lines.append(f"WCG='{policy.workload_cgroup}'")
    c = _Cpio()
    c.file("policy.sh", ("\n".join(lines) + "\n").encode(), 0o644)
    out = [c.finish()]
    if policy.daemon is not None:
        from . import daemon as D
        try:
            st = D.stage(policy.daemon.package, policy.daemon.command, policy.daemon.oom_score_adj)
        except (D.DaemonError, QemuError) as e:
            raise QemuError(f"{policy.file}: daemon.package: {e}") from None
        out.append(Path(st["cpio"]).read_bytes())
    return tuple(out)


def policy_failure(policy, status: list[str]) -> str | None:
    """One line naming the policy file and the key, from /init's ``error`` lines of a policy
    that could not be set up (a setting the kernel refused, a daemon that exited at start)."""
    for s_ in status:
        parts = s_.split()
        if parts[:2] == ["error", "setting"] and len(parts) >= 4:
            where = f"{policy.file}: " if policy is not None else ""
            why = " ".join(parts[5:]) or "write failed"
            val = parts[4].removeprefix("value=").rstrip(":") if len(parts) > 4 else "?"
            return f"{where}{parts[2]}.{parts[3]}: the kernel refused {val!r} ({why})"
        if parts[:2] == ["error", "daemon-exited"]:
            where = f"{policy.file}: " if policy is not None else ""
            cmd = policy.daemon.command[0] if policy is not None and policy.daemon else "daemon"
            return f"{where}daemon.command: {cmd} exited at start"
        if parts[:2] == ["error", "cgroup2"] or parts[:2] == ["error", "cgroup"]:
            where = f"{policy.file}: " if policy is not None else ""
            return f"{where}workload_cgroup: cannot be made ({' '.join(parts[1:])})"
    return None


def disk_throttle(plan) -> dict | None:
    """The qemu ``throttling.*`` options that make the guest's disks the modelled disk at the
    run's time scale (``plan.disk_request_us``, ``plan.disk_page_us``: machine.Costs x scale):
    ``iops-total`` one request per ``disk_request_us``, ``bps-total`` one page per
    ``disk_page_us``, the data and swap disks in one throttle group (one spindle).  Departs from
    the model: qemu's leaky buckets limit the request rate and the byte rate each (a request
    waits for the slower of the two, with qemu's default bursts of a tenth of a second's
    budget), where ``Model.disk_io`` adds the two costs.  The host's page cache holds the image,
    so without this the guest's "disk" is memory-speed (docs/real-kernel.md)."""
    req, page = getattr(plan, "disk_request_us", 0), getattr(plan, "disk_page_us", 0)
    if not (req > 0 and page > 0):
        return None
    return {"iops-total": max(1, int(round(1e6 / req))),
            "bps-total": max(4096, int(round(4096 * 1e6 / page))), "group": "disk"}


def run(plan, workload, seed, out_dir, max_wall_s, policy=None) -> tuple[list, list, dict, dict]:
    """One VM, one run.  Returns (runner_lines, kernel_lines, extra, meta):

    * the runner's ``VMREAL ...`` lines (CLOCK_MONOTONIC µs);
    * the kernel log, ``[  12.345678] text`` lines in printk time (the runner's
      ``vmreal: clock`` line in it and ``meta["printk_minus_monotonic_us"]`` relate the two);
    * extra: ``reclaim_onset_us`` / ``pressure_onset_us`` (CLOCK_MONOTONIC, from tracepoints,
      None if none fired) with their events, ``oom_kill`` (/proc/vmstat), and the sections
      {name: [lines]}: trace, zoneinfo(-start), pressure-memory, meminfo-start/-end, vmstat;
    * meta: backend, kernel (the guest's ``uname -r``), status ok/timeout/error, -m, accel, the
      free memory the run started with, clocks, paths of the raw serial and console logs.

    Raises :class:`QemuError` when the runner never started.  The VM is always dead when this
    returns or raises."""
    runner_path(build_it=True)
    package = policy.kernel if policy is not None else META_PACKAGE
    cmdline = policy.cmdline if policy is not None else ""
    ok, why = available(package)
    if not ok:
        raise QemuError(f"qemu backend unavailable: {why}")
    info = kernel_info(package)
    mach = workload.machine
    cpus = max(1, int(getattr(mach, "cpus", 1)))
    swap_mb = int(getattr(mach, "swap_mb", 0) or 0)
    want_kb, want_terms = usable_kb(workload)
    extra_cpio = policy_cpio(policy, want_kb)
    trace = True
    mem = guest_mb(want_kb, cpus, package=package, cmdline=cmdline, extra=extra_cpio[1:])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    plan_text = _plan_text(plan)
    throttle = disk_throttle(plan)
    run_s = max(1, int(math.ceil(max_wall_s)))
    wall = run_s + 15 + BOOT_BUDGET_S           # /init's TERM at +10 s, KILL 5 s later
    t0 = time.monotonic()
    with run_dir() as d:
        work = Path(d)
        disks = [data_disk(plan)]
        if swap_mb:
            disks.append(work / "swap.img")
            with open(disks[1], "wb") as f:
                f.truncate(swap_mb << 20)
        seen: dict = {}
        res = boot(mem_mb=mem, cpus=cpus,
                   conf={"MODE": "run", "SWAP": int(bool(swap_mb)), "RUN_S": run_s,
                         "TRACE": int(trace)},
                   plan_text=plan_text, disks=disks, work=work, wall_s=wall,
                   on_line=lambda ln: _watch_line(ln, seen, t0), package=package,
                   cmdline=cmdline, extra_cpio=extra_cpio, throttle=throttle)
        serial_log = out_dir / f"{seed}.qemu-serial.log"
        console_log = out_dir / f"{seed}.qemu-console.log"
        serial_log.write_text(res["serial"])
        console_log.write_text(res["console"])
    par = parse_serial(res["serial"])
    runner_all = par["sections"].get("runner", [])
    runner_lines = [l for l in runner_all if l.startswith("VMREAL ")]
    kernel_lines, from_console = _kernel_lines(par, res["console"])
    st = [s.split(None, 1)[0] for s in par["status"]]
    mi0 = _meminfo(par["sections"].get("meminfo-start"))
    boot_kv = _status_kv(par["status"], "boot")
    exit_kv = _status_kv(par["status"], "runner-exit")
    settings = {f"{p[1]}.{p[2]}": p[3].removeprefix("read=").replace("_", " ").strip()
                for s_ in par["status"] if (p := s_.split()) and p[0] == "setting" and len(p) >= 4}
    daemon_kv = _status_kv(par["status"], "daemon")
    if "policy-failed" in st:                  # a setting refused, a daemon that exited
        why = policy_failure(policy, par["status"]) or "the policy could not be set up"
        raise PolicyFailed(why, kernel_lines=kernel_lines, settings=settings)
    if "run" not in st:                        # the runner never started: no result at all
        raise QemuError(f"qemu run of {getattr(workload, 'name', '?')} seed {seed} (-m {mem}): "
                        + _boot_failure(res, mem) + f"; serial log {_rel(serial_log)}")
    if "done" in st:
        status = "ok"
    elif res["ended"] == "timeout":
        status = "timeout"
    else:
        status = "error"
    meta = {
        "backend": "qemu", "kernel": boot_kv.get("release") or info["release"],
        "kernel_package": f"{info['package']} {info['version']}", "accel": accel(),
        "guest_mb": mem, "cpus": cpus, "swap_mb": swap_mb, "workload_ram_mb": mach.ram_mb,
        "guest_memtotal_kb": mi0.get("MemTotal"), "guest_free_kb": free_kb(par["sections"]),
        "guest_usable_kb": usable_guest_kb(par["sections"]), "usable_target_kb": want_kb,
        "usable_terms": want_terms,
        "guest_memfree_kb": mi0.get("MemFree"),
        "status": status, "hard_killed": res["ended"] == "timeout", "wall_s": time.monotonic() - t0,
        "vm_wall_s": res["wall_s"], "run_budget_s": run_s,
        "runner_rc": int(exit_kv["rc"]) if exit_kv.get("rc", "").lstrip("-").isdigit() else None,
        "runner_timed_out": exit_kv.get("rc") in ("124", "137", "143"),
        "boot_s": _uptime(par["status"], "run"), "host_boot_s": seen.get("run"),
        "kernel_log_from_console": from_console,
        "kernel_log_complete": bool(kernel_lines) and "Linux version" in kernel_lines[0],
        "serial_log": _rel(serial_log), "console_log": _rel(console_log),
        "settings": settings, "daemon": daemon_kv or None,
        "daemon_name": policy.daemon.name if policy is not None and policy.daemon else None,
        "cmdline": CMDLINE + (
            " " + cmdline if cmdline else ""),
        "disk_throttle": (",".join(f"{k}={v}" for k, v in throttle.items()) if throttle
                          else "none"),
    }
    if status != "ok":
        meta["error"] = _boot_failure(res, mem)
        errs = [s for s in par["status"] if s.startswith("error")]
        if errs:
            meta["error"] += "; guest: " + "; ".join(errs)
    offs = clock_offsets(par["status"], kernel_lines)
    if "start" in offs:
        meta["printk_minus_monotonic_us"] = offs["start"][0]
        meta["printk_offset_error_us"] = offs["start"][1]
    if "start" in offs and "end" in offs:
        meta["printk_offset_drift_us"] = offs["end"][0] - offs["start"][0]
    meta.update(kills_scope="all", max_wall_s=max_wall_s,
                runner_limit_s=min(float(getattr(plan, "limit_s", run_s) or run_s), run_s))
    extra = {k: v for k, v in par["sections"].items() if k not in ("runner", "dmesg")}
    trace = par["sections"].get("trace", [])
    for kind, event in (("reclaim", "mm_vmscan_direct_reclaim_begin"),
                        ("pressure", "mm_vmscan_direct_reclaim_end")):
        first = first_trace_event(trace, event)
        extra[f"{kind}_onset_us"] = first and first["t_us"]    # CLOCK_MONOTONIC, as the runner's
        if first:
            extra[f"{kind}_onset_event"] = first
    vm = dict(ln.split(None, 1) for ln in par["sections"].get("vmstat", []) if " " in ln)
    if vm.get("oom_kill", "").strip().isdigit():
        extra["oom_kill"] = int(vm["oom_kill"])
    extra["runner_other"] = [l for l in runner_all if not l.startswith("VMREAL ") and l.strip()]
    extra["status"] = par["status"]
    if par["other"]:
        extra["other"] = par["other"]
    return runner_lines, kernel_lines, extra, meta


TRACE_RE = re.compile(r"^\s*(.*?)-(\d+)\s+\[\d+\].*?\s(\d+)\.(\d+):\s+(\w+):\s*(.*)$")


def first_trace_event(lines, event: str) -> dict | None:
    """The earliest ``event`` in the ftrace ``trace`` text (``trace_clock`` mono, so its
    timestamps are CLOCK_MONOTONIC): {t_us, task, pid, event, args}."""
    best = None
    for ln in lines:
        if ln.startswith("#"):
            continue
        m = TRACE_RE.match(ln)
        if m and m.group(5) == event:
            t_us = int(m.group(3)) * 1_000_000 + int(m.group(4).ljust(6, "0")[:6])
            if best is None or t_us < best["t_us"]:
                best = {"t_us": t_us, "task": m.group(1), "pid": int(m.group(2)),
                        "event": m.group(5), "args": m.group(6)}
    return best


def _watch_line(line: str, seen: dict, t0: float):
    """Called for every ttyS1 line while the VM runs: the host time of /init's milestones."""
    if line.startswith(MARK + " "):
        key = line[len(MARK) + 1:].split(None, 1)[0]
        seen.setdefault(key, round(time.monotonic() - t0, 3))


def _uptime(status, key):
    v = _status_kv(status, key).get("uptime")
    with contextlib.suppress(TypeError, ValueError):
        return float(v)
    return None


def _plan_text(plan) -> str:
    """The plan file (``Plan.to_text()`` of :mod:`harness.real.plan`), passed on unchanged."""
    if isinstance(plan, str):
        return plan
    fn = getattr(plan, "to_text", None)
    if callable(fn):
        return fn()
    v = getattr(plan, "text", None)
    if isinstance(v, str):
        return v
    raise QemuError(f"cannot get the text of plan {type(plan).__name__}")


def _write_kb(plan) -> int:
    """Room for what the plan writes (the plan format is the runner's; an upper bound)."""
    total = 0
    for line in _plan_text(plan).splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0] == "op" and parts[2] == "write":
            with contextlib.suppress(ValueError):
                total += int(float(parts[4]))
    return total


def main(argv=None) -> int:
    """``python -m harness.real.qemu {setup,available,overhead}``: one line on error."""
    import argparse
    ap = argparse.ArgumentParser(prog="python -m harness.real.qemu")
    ap.add_argument("what", choices=("setup", "available", "overhead"))
    ap.add_argument("--cpus", type=int, default=1)
    args = ap.parse_args(argv)
    try:
        if args.what == "setup":
            setup()
        elif args.what == "available":
            ok, why = available()
            print("qemu backend available" if ok else f"qemu backend unavailable: {why}")
            return 0 if ok else 1
        else:
            print(json.dumps(overhead(args.cpus, verbose=True), indent=1))
    except QemuError as e:
        print(f"qemu: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

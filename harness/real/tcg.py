"""The guest's slowdown under TCG, measured once by ``real-setup`` and stated beside real times.

``vmreal bench`` (csrc/vmreal.c) is a fixed micro-workload: a CPU loop of multiply-adds on one
register, and page-fault throughput (fresh anonymous memory touched one store per page).  It runs
three times on the host and three times in a VM (one boot of the default guest kernel, 1 vCPU);
the fastest of each is kept, and the factor is VM time / host time, one for the CPU loop and one
for faults.  ``.real/tcg.json`` keeps them with the host's CPU model, the qemu binary and the
kernel.  The report states the factors beside every real time; nothing is rescaled by them.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

from . import build
from ..atomic import write_atomic
from . import qemu as Q

TCG = Q.REAL / "tcg.json"
_CACHE: dict = {}


def _parse(text: str) -> dict[str, list[float]]:
    out = {"cpu_ns": [], "fault_ns": []}
    for ln in text.splitlines():
        m = re.match(r"bench (cpu_ns|fault_ns) (\d+) (?:iters|pages) (\d+)", ln.strip())
        if m:
            out[m.group(1)].append(int(m.group(2)) / int(m.group(3)))   # ns per iter / page
    return out


def _cpu_model() -> str:
    try:
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                return ln.split(":", 1)[1].strip()
    except OSError:
        pass
    return "?"


def measure(verbose=True, package: str = Q.META_PACKAGE) -> dict:
    say = print if verbose else (lambda *a, **k: None)
    binary = build.vmreal_path()
    host = {"cpu_ns": [], "fault_ns": []}
    for _ in range(3):
        r = subprocess.run([str(binary), "bench"], capture_output=True, text=True, timeout=120,
                           check=True)
        for k, v in _parse(r.stdout).items():
            host[k] += v
    info = Q.kernel_info(package)
    if info is None:
        raise Q.QemuError(f"no guest kernel {package}; {Q.SETUP_HINT}")
    with tempfile.TemporaryDirectory(prefix=f"qemu-probe.{os.getpid()}.", dir=Q._scratch_parent(),
                                     ignore_cleanup_errors=True) as d:
        res = Q.boot(mem_mb=256, cpus=1, conf={"MODE": "bench", "SWAP": 0, "RUN_S": 0},
                     plan_text=None, disks=[Q.data_disk(None)], work=Path(d),
                     wall_s=Q.BOOT_BUDGET_S + 120, package=package)
    vm = _parse("\n".join(Q.parse_serial(res["serial"])["sections"].get("bench", [])))
    if not vm["cpu_ns"] or not vm["fault_ns"]:
        raise Q.QemuError("the TCG benchmark printed nothing in the guest: "
                          + Q._boot_failure(res, 256))
    ent = {
        "cpu_factor": round(min(vm["cpu_ns"]) / min(host["cpu_ns"]), 2),
        "fault_factor": round(min(vm["fault_ns"]) / min(host["fault_ns"]), 2),
        "host_ns_per_iter": round(min(host["cpu_ns"]), 3),
        "vm_ns_per_iter": round(min(vm["cpu_ns"]), 3),
        "host_ns_per_fault": round(min(host["fault_ns"]), 1),
        "vm_ns_per_fault": round(min(vm["fault_ns"]), 1),
        "kernel": info["release"], "accel": Q.accel(), "host_cpu": _cpu_model(),
        "host_kernel": os.uname().release, "qemu": _qemu_version(),
        "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    write_atomic(TCG, json.dumps(ent, indent=1, sort_keys=True) + "\n")
    _CACHE.clear()
    say(f"tcg: the guest is {ent['cpu_factor']}x slower than the host on a CPU loop and "
        f"{ent['fault_factor']}x on page faults ({ent['vm_ns_per_fault']:.0f} vs "
        f"{ent['host_ns_per_fault']:.0f} ns a fault) -> {Q._rel(TCG)}")
    return ent


def _qemu_version() -> str:
    try:
        r = subprocess.run([Q.QEMU, "--version"], capture_output=True, text=True, timeout=10)
        return r.stdout.splitlines()[0].strip()
    except (OSError, subprocess.SubprocessError, IndexError):
        return "?"


def factors() -> dict | None:
    """The stored measurement, or None when ``real-setup`` has not made one."""
    try:
        st = TCG.stat()
    except OSError:
        return None
    key = (st.st_mtime_ns, st.st_size)
    if _CACHE.get("key") != key:
        try:
            _CACHE.update(key=key, value=json.loads(TCG.read_text()))
        except (OSError, ValueError):
            return None
    return _CACHE["value"]


def ensure(verbose=True) -> dict | None:
    """The stored factors, measured now if there are none (once)."""
    return factors() or measure(verbose)

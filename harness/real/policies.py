"""Real policies: a kernel, its knobs and an optional user-space killer, one TOML file each.

``policies/real/<name>.toml`` is the policy ``<name>`` (the file's stem); :func:`discover` scans
the folder as :func:`harness.registry.discover` scans ``policies/*.py`` (which never looks into
this folder: it globs ``*.py`` only).  The format, every key optional except ``description``:

.. code-block:: toml

    description = "one line"
    backend = "qemu"                  # "qemu": a VM booting `kernel`; "memcg": the host's kernel
    kernel = "linux-image-amd64"      # a Debian package (a meta-package names the image it
                                      # depends on); "host" with backend = "memcg"
    cmdline = "lru_gen.enabled=1"     # added to the guest kernel's command line
    models = "oom_reaper"             # the simulated policy it is held against ("" = none)
    model_params = { daemon = "oomd" }  # that policy's parameters
    workload_cgroup = "user.slice/x"  # run the workload in this cgroup2 group (mounts cgroup2)

    [sysctl]                          # written by /init before the run, read back into the record
    "vm.overcommit_memory" = 2
    [sysfs]                           # paths under /sys, same
    "kernel/mm/lru_gen/enabled" = "y"

    [daemon]                          # a user-space killer started before the workload
    package = "earlyoom"              # Debian package: its files, binary and shared libraries
    command = ["/usr/bin/earlyoom", "-r", "3600"]   # are copied into the initramfs
    oom_score_adj = -100              # written for it before it starts

The daemon's shared libraries come from the Debian packages it depends on (fetched as needed,
``harness.real.daemon``).  A setting's value ``"{usable_kb}"`` is replaced by what a task of
the simulated machine can get (:func:`harness.real.plan.usable_kb`) for each workload.

A file that cannot be used is one line naming the file and the key (:class:`PolicyError`);
the others still load.  Problems only the machine can reveal (a package Debian does not have, a
daemon that exits at start, a setting the kernel refuses) are found when the policy is set up
or run, and reported the same way (``harness.real.qemu``, ``harness.real.matrix``).
"""
from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
POLICY_DIR = ROOT / "policies" / "real"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
PKG_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")           # Debian policy 5.6.1
SYSCTL_RE = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_-]+)+$")
SYSFS_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$")

TOP_KEYS = {"description", "backend", "kernel", "cmdline", "models", "model_params",
            "workload_cgroup", "sysctl", "sysfs", "daemon"}
DAEMON_KEYS = {"package", "command", "oom_score_adj"}
BACKENDS = ("qemu", "memcg")


class PolicyError(ValueError):
    """``<file>: <key>: what is wrong`` (one line)."""

    def __init__(self, path, key: str, msg: str):
        self.path, self.key = Path(path), key
        super().__init__(f"{_show(path)}: {key}: {msg}")


def _show(path) -> str:
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class Daemon:
    package: str
    command: tuple[str, ...]
    oom_score_adj: int

    @property
    def name(self) -> str:
        return Path(self.command[0]).name


@dataclass(frozen=True)
class RealPolicy:
    name: str
    path: Path
    description: str
    backend: str = "qemu"
    kernel: str = "linux-image-amd64"
    cmdline: str = ""
    models: str | None = "oom_reaper"
    model_params: dict = field(default_factory=dict)
    workload_cgroup: str = ""
    sysctl: dict = field(default_factory=dict)
    sysfs: dict = field(default_factory=dict)
    daemon: Daemon | None = None
    sha256: str = ""

    @property
    def file(self) -> str:
        return _show(self.path)

    @property
    def run_sha256(self) -> str:
        """What of the file a real run depends on: everything but ``description``, ``models``
        and ``model_params``, which only the report reads (holding a real policy against a
        new model must not throw its real runs away)."""
        d = self.daemon
        run = [self.backend, self.kernel, self.cmdline, self.workload_cgroup,
               sorted(self.sysctl.items()), sorted(self.sysfs.items()),
               None if d is None else [d.package, list(d.command), d.oom_score_adj]]
        return hashlib.sha256(json.dumps(run, default=str).encode()).hexdigest()

    @property
    def model_label(self) -> str | None:
        """The simulated policy as the report names it: ``psi_userspace[daemon=oomd]``."""
        if not self.models:
            return None
        if not self.model_params:
            return self.models
        return self.models + "[" + ",".join(f"{k}={v}" for k, v in
                                            sorted(self.model_params.items())) + "]"

    def settings(self, usable_kb: int | None = None) -> list[tuple[str, str, str, str]]:
        """(kind, key, path in the guest, value) of every setting, in file order;
        ``{usable_kb}`` in a value becomes ``usable_kb``."""
        def val(v):
            v = _value(v)
            return v.replace("{usable_kb}", str(usable_kb)) if usable_kb is not None else v
        out = [("sysctl", k, "/proc/sys/" + k.replace(".", "/"), val(v))
               for k, v in self.sysctl.items()]
        out += [("sysfs", k, "/sys/" + k.lstrip("/"), val(v)) for k, v in self.sysfs.items()]
        return out


def _value(v) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def _unknown(path, keys, known, where=""):
    for k in keys:
        if k not in known:
            near = difflib.get_close_matches(k, sorted(known), n=1)
            hint = f" (did you mean {near[0]!r}?)" if near else f"; known: {', '.join(sorted(known))}"
            raise PolicyError(path, where + k, f"unknown key{hint}")


def _str(path, d, key, default, where=""):
    v = d.get(key, default)
    if not isinstance(v, str):
        raise PolicyError(path, where + key, f"must be a string, got {type(v).__name__}")
    return v


def load(path) -> RealPolicy:
    """One policy file; raises :class:`PolicyError`."""
    path = Path(path)
    name = path.stem
    if not NAME_RE.match(name):
        raise PolicyError(path, "name", f"{name!r} is not a policy name (letters, digits, _.+-)")
    try:
        raw = path.read_bytes()
        d = tomllib.loads(raw.decode())
    except (OSError, UnicodeDecodeError) as e:
        raise PolicyError(path, "file", f"cannot be read: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise PolicyError(path, "toml", str(e)) from None
    _unknown(path, d, TOP_KEYS)
    if "description" not in d:
        raise PolicyError(path, "description", "missing (one line saying what the policy is)")
    desc = _str(path, d, "description", "")
    backend = _str(path, d, "backend", "qemu")
    if backend not in BACKENDS:
        raise PolicyError(path, "backend", f"{backend!r}: use one of {', '.join(BACKENDS)}")
    kernel = _str(path, d, "kernel", "host" if backend == "memcg" else "linux-image-amd64")
    if backend == "memcg" and kernel != "host":
        raise PolicyError(path, "kernel", "the memcg backend runs on the host's kernel: "
                                          "give kernel = \"host\" or leave it out")
    if backend == "qemu" and not PKG_RE.match(kernel):
        raise PolicyError(path, "kernel", f"{kernel!r} is not a Debian package name")
    cmdline = _str(path, d, "cmdline", "")
    if any(c in cmdline for c in "'\"\\\n`$"):
        raise PolicyError(path, "cmdline", "quotes, backslashes, $ and newlines are not allowed")
    models = _str(path, d, "models", "")
    mp = d.get("model_params", {})
    if not isinstance(mp, dict):
        raise PolicyError(path, "model_params", "must be a table, e.g. { daemon = \"oomd\" }")
    if mp and not models:
        raise PolicyError(path, "model_params", "given without `models`")
    cg = _str(path, d, "workload_cgroup", "")
    if cg and not re.fullmatch(r"[A-Za-z0-9_.@-]+(/[A-Za-z0-9_.@-]+)*", cg):
        raise PolicyError(path, "workload_cgroup", f"{cg!r} is not a relative cgroup path")
    tables = {}
    for kind, rx in (("sysctl", SYSCTL_RE), ("sysfs", SYSFS_RE)):
        t = d.get(kind, {})
        if not isinstance(t, dict):
            raise PolicyError(path, kind, "must be a table of key = value")
        for k, v in t.items():
            if not rx.match(k) or ".." in k:
                raise PolicyError(path, f"{kind}.{k}", "not a valid "
                                  + ("sysctl name (e.g. vm.overcommit_memory)" if kind == "sysctl"
                                     else "path under /sys (e.g. kernel/mm/lru_gen/enabled)"))
            if not isinstance(v, (str, int, bool)) or isinstance(v, float) or \
                    any(c in str(v) for c in "'\"\\\n`$"):
                raise PolicyError(path, f"{kind}.{k}", "value must be an integer or a plain string")
        if t and backend == "memcg":
            raise PolicyError(path, kind, "the memcg backend runs on the host's kernel, whose "
                                          "settings a run must not change; use backend = \"qemu\"")
        tables[kind] = dict(t)
    daemon = None
    if "daemon" in d:
        dd = d["daemon"]
        if not isinstance(dd, dict):
            raise PolicyError(path, "daemon", "must be a table ([daemon])")
        _unknown(path, dd, DAEMON_KEYS, "daemon.")
        if backend == "memcg":
            raise PolicyError(path, "daemon", "a daemon runs only in the VM (backend = \"qemu\")")
        pkg = _str(path, dd, "package", "", "daemon.")
        if not PKG_RE.match(pkg):
            raise PolicyError(path, "daemon.package", f"{pkg!r} is not a Debian package name")
        cmd = dd.get("command")
        if not (isinstance(cmd, list) and cmd and all(isinstance(x, str) for x in cmd)):
            raise PolicyError(path, "daemon.command", "must be a list of strings, the binary first")
        if not cmd[0].startswith("/"):
            raise PolicyError(path, "daemon.command", f"{cmd[0]!r}: give the binary's absolute "
                                                      "path in the package")
        if any(c in x for x in cmd for c in "'\n"):
            raise PolicyError(path, "daemon.command", "single quotes and newlines are not allowed")
        adj = dd.get("oom_score_adj", 0)
        if not isinstance(adj, int) or isinstance(adj, bool) or not -1000 <= adj <= 1000:
            raise PolicyError(path, "daemon.oom_score_adj", "must be an integer in -1000..1000")
        daemon = Daemon(pkg, tuple(cmd), adj)
    return RealPolicy(name=name, path=path, description=desc, backend=backend, kernel=kernel,
                      cmdline=cmdline, models=models or None, model_params=dict(mp),
                      workload_cgroup=cg, sysctl=tables["sysctl"], sysfs=tables["sysfs"],
                      daemon=daemon, sha256=hashlib.sha256(raw).hexdigest())


def discover(folder=POLICY_DIR) -> tuple[dict[str, RealPolicy], list[str]]:
    """({name: policy}, [one-line errors]) of ``folder/*.toml``; a bad file never stops the
    others."""
    good, errors = {}, []
    folder = Path(folder)
    if not folder.is_dir():
        return good, errors
    for p in sorted(folder.glob("*.toml")):
        try:
            pol = load(p)
        except PolicyError as e:
            errors.append(str(e))
            continue
        good[pol.name] = pol
    return good, errors


def check_model(pol: RealPolicy, sim_policies: dict) -> str | None:
    """None, or one line when the model is not a simulated policy (or refuses its params)."""
    if not pol.models:
        return None
    cls = sim_policies.get(pol.models)
    if cls is None:
        return f"{pol.file}: models: simulated policy {pol.models!r} not found"
    unknown = set(pol.model_params) - set(getattr(cls, "params", {}))
    if unknown:
        return (f"{pol.file}: model_params: {pol.models} has no parameter "
                f"{', '.join(sorted(unknown))}; known: {', '.join(sorted(cls.params))}")
    return None


def parse_model_label(label: str) -> tuple[str, dict]:
    """A model as ``RealPolicy.model_label`` names it -> (simulated policy, parameters):
    ``psi_userspace[daemon=oomd]`` -> ("psi_userspace", {"daemon": "oomd"})."""
    name, _, rest = label.partition("[")
    params = {}
    for kv in rest.rstrip("]").split(","):
        if "=" in kv:
            k, v = kv.split("=", 1)
            params[k] = v
    return name, params

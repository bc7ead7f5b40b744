"""Policy discovery: every ``*.py`` in ``policies/`` (files starting with ``_`` are skipped) is
imported when the harness starts, and every :class:`~harness.policy.Policy` subclass it defines
with a ``name`` is registered.  A broken file or a duplicate name is reported with the file and
reason; the other policies still load."""
from __future__ import annotations

import importlib
import inspect
import sys
import traceback
from pathlib import Path

from .policy import Policy

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policies"
WORKLOAD_DIR = ROOT / "workloads"


class PolicyLoadError(Exception):
    pass


def _ensure_importable():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def discover(folder: Path = POLICY_DIR):
    """Returns (policies by name -> class, errors as one-line strings)."""
    _ensure_importable()
    found, errors = {}, []
    for path in sorted(Path(folder).glob("*.py")):
        if path.name.startswith("_"):
            continue
        modname = f"policies.{path.stem}"
        try:
            mod = importlib.import_module(modname)
        except SyntaxError as e:
            errors.append(f"{path}:{e.lineno}: syntax error: {e.msg}")
            continue
        except Exception as e:  # noqa: BLE001 - any import failure is reported, not raised
            tb = traceback.extract_tb(e.__traceback__)
            line = next((fr.lineno for fr in reversed(tb) if fr.filename == str(path)), 0)
            errors.append(f"{path}:{line}: import failed: {type(e).__name__}: {e}")
            continue
        for _, cls in inspect.getmembers(mod, inspect.isclass):
            if not issubclass(cls, Policy) or cls is Policy or cls.__module__ != modname:
                continue
            if not cls.name:
                continue
            line = inspect.getsourcelines(cls)[1]
            if cls.name in found:
                other = found[cls.name]
                errors.append(f"{path}:{line}: duplicate policy name {cls.name!r} "
                              f"(also {inspect.getsourcefile(other)})")
                continue
            found[cls.name] = cls
    return found, errors


def get_policy(name: str, folder: Path = POLICY_DIR):
    found, errors = discover(folder)
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise PolicyLoadError(f"unknown policy {name!r}; known policies: {known}"
                              + (f" (and {len(errors)} file(s) that failed to load)" if errors else ""))
    return found[name]


def policy_file(cls) -> str:
    return inspect.getsourcefile(cls)

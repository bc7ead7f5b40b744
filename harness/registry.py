"""Policy discovery: the harness scans ``policies/`` (and every folder given with
``--policy-dir``) when it starts.  Nothing registers itself at import time; no list of names is
kept anywhere.

Rules (the guide ``docs/adding-a-policy.md`` says the same for authors):

* every ``*.py`` in a scanned folder is loaded by path, except files starting with ``_``
  (``_template.py``, private helpers);
* a file may define several policies; a policy is a :class:`~harness.policy.Policy` subclass
  *defined in that file* whose class body sets ``name``.  A class without its own ``name`` is a
  base for other classes in the file; if nothing in the file subclasses it, it is an error
  (the author most likely forgot the name);
* files in the project's ``policies/`` are loaded as ``policies.<stem>``, so that
  ``from policies.aa import AA`` inside a policy file gets the very module discovery loaded;
  files of any other folder get a module name of their own (``vmbench_ext_<hash>_<stem>``)
  and may import the project's policies the same way;
* a file that fails to import (syntax error, exception), a duplicate name, or a class that does
  not satisfy the interface (:func:`check_class`) is reported as one line
  ``<file>:<line>: <reason>``; the other policies still load.
"""
from __future__ import annotations

import hashlib
import importlib.util
import inspect
import re
import sys
import traceback
from pathlib import Path

from .policy import Base, Policy

ROOT = Path(__file__).resolve().parent.parent
POLICY_DIR = ROOT / "policies"
WORKLOAD_DIR = ROOT / "workloads"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")

# resolved file -> (stat key, module or None, error or None): a file is executed once per change
_loaded: dict = {}


class PolicyLoadError(Exception):
    pass


def _ensure_importable():
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))


def _show(path: Path) -> str:
    """A path as the user will recognise it: relative to the project if it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def module_name(path: Path) -> str:
    """``policies.<stem>`` for the project's folder, a name of its own for any other."""
    path = Path(path).resolve()
    if path.parent == POLICY_DIR.resolve():
        return f"policies.{path.stem}"
    tag = hashlib.sha256(str(path.parent).encode()).hexdigest()[:10]
    return f"vmbench_ext_{tag}_{path.stem}"


def _error_line(e: BaseException, path: Path) -> int:
    """The deepest line of ``path`` in the exception's traceback (0 if none)."""
    tb = traceback.extract_tb(e.__traceback__)
    want = str(path.resolve())
    for fr in reversed(tb):
        try:
            if str(Path(fr.filename).resolve()) == want:
                return fr.lineno or 0
        except (OSError, ValueError):
            continue
    return 0


def load_file(path: Path):
    """Execute one policy file by path (once per change of the file).
    Returns (module, None) or (None, one-line error)."""
    _ensure_importable()
    path = Path(path).resolve()
    try:
        st = path.stat()
    except OSError as e:
        return None, f"{_show(path)}:0: cannot read: {e.strerror}"
    key = (st.st_mtime_ns, st.st_size)
    modname = module_name(path)
    cached = _loaded.get(path)
    if cached is not None and cached[0] == key:
        if cached[1] is None or sys.modules.get(modname) is cached[1]:
            return cached[1], cached[2]
    mod = sys.modules.get(modname)
    if cached is None and mod is not None and getattr(mod, "__file__", None) \
            and Path(mod.__file__).resolve() == path:
        # already imported by another policy file (``from policies.aa import AA``): reuse it
        _loaded[path] = (key, mod, None)
        return mod, None
    spec = importlib.util.spec_from_file_location(modname, path)
    mod = importlib.util.module_from_spec(spec)
    old = sys.modules.get(modname)
    sys.modules[modname] = mod
    try:
        spec.loader.exec_module(mod)
    except SyntaxError as e:
        _restore(modname, old)
        err = f"{_show(path)}:{e.lineno or 0}: syntax error: {e.msg}"
        _loaded[path] = (key, None, err)
        return None, err
    except (Exception, SystemExit) as e:  # noqa: BLE001 - any import failure is reported
        _restore(modname, old)
        msg = str(e).splitlines()[0] if str(e) else ""
        err = (f"{_show(path)}:{_error_line(e, path)}: import failed: {type(e).__name__}"
               + (f": {msg}" if msg else ""))
        _loaded[path] = (key, None, err)
        return None, err
    _loaded[path] = (key, mod, None)
    return mod, None


def _restore(modname, old):
    if old is None:
        sys.modules.pop(modname, None)
    else:
        sys.modules[modname] = old


def _line(obj) -> int:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return 0


def check_class(cls) -> list[tuple[int, str]]:
    """What keeps ``cls`` from being a usable policy, as (line, reason) pairs (empty: fine).

    * ``name``: a non-empty plain string (letters, digits, ``_ . + -``): it is typed on the
      command line and names result files;  ``description``: a string;
    * ``params``: a dict from identifiers to default values (``__init__`` stores each as an
      attribute of that name, so a name may not hide a hook or attribute of the class);
    * it subclasses one of the two bases, :class:`harness.policy.Policy` (2.4) or
      :class:`harness.modern.Modern` (2.6 and later), and is checked against that base's
      ``HOOKS`` table;
    * the base's required hooks (``REQUIRED_HOOKS``; 2.4: ``try_to_free_pages``) are not the
      base class's, which raise ``NotImplementedError``;
    * every hook it overrides takes the base hook's arguments, and the hooks the engine drives
      with ``yield from`` are generator functions;
    * it does not override ``alloc_pages``, the engine's measured allocator entry.
    """
    errs = []
    here = _line(cls)
    base = base_of(cls)
    hooks = base.HOOKS
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        errs.append((here, f"class {cls.__name__}: name must be a plain non-empty string "
                           f"(letters, digits, _ . + -), got {name!r}"))
    if not isinstance(getattr(cls, "description", None), str):
        errs.append((here, f"class {cls.__name__}: description must be a string"))
    params = getattr(cls, "params", None)
    if not isinstance(params, dict):
        errs.append((here, f"class {cls.__name__}: params must be a dict of name -> default, "
                           f"got {type(params).__name__}"))
    else:
        for key in params:
            if not isinstance(key, str) or not key.isidentifier():
                errs.append((here, f"class {cls.__name__}: parameter name {key!r} is not an "
                                   "identifier"))
            elif key in hooks or key in ("name", "description", "params", "get_params"):
                errs.append((here, f"class {cls.__name__}: parameter {key!r} would hide the "
                                   f"attribute of that name"))
    for hook in base.REQUIRED_HOOKS:
        if getattr(cls, hook, None) is getattr(base, hook):
            errs.append((here, f"class {cls.__name__}: required hook {hook} is missing "
                               "(the base one raises NotImplementedError); subclass a policy "
                               "that has one or write it"))
    if getattr(cls, "alloc_pages", None) is not Base.alloc_pages:
        fn = cls.alloc_pages
        errs.append((fn.__code__.co_firstlineno if hasattr(fn, "__code__") else here,
                     f"class {cls.__name__}: alloc_pages is the engine's (it measures the slow "
                     "path); override fast_path and slow_path instead"))
    for hook, (args, is_gen, *_doc) in hooks.items():
        fn = getattr(cls, hook, None)
        if fn is getattr(base, hook, None):
            continue
        line = fn.__code__.co_firstlineno if hasattr(fn, "__code__") else here
        if not callable(fn):
            errs.append((line, f"class {cls.__name__}: hook {hook} is not a method"))
            continue
        try:
            inspect.signature(fn).bind(None, *args)
        except TypeError:
            errs.append((line, f"class {cls.__name__}: hook {hook} must take "
                               f"(self, {', '.join(args)}), has {inspect.signature(fn)}"))
            continue
        except ValueError:
            pass
        if is_gen and not inspect.isgeneratorfunction(fn):
            errs.append((line, f"class {cls.__name__}: hook {hook} must be a generator function "
                               "(the engine runs it with `yield from`; it yields scheduler "
                               "commands and returns its result)"))
    return errs


def base_of(cls):
    """The base class whose ``HOOKS`` table ``cls`` is checked against: the nearest class of
    its MRO that declares one (:class:`harness.policy.Policy` or :class:`harness.modern.Modern`)."""
    return next(c for c in cls.__mro__ if "HOOKS" in c.__dict__)


def _file_policies(mod, path: Path):
    """(policy classes, (line, reason) errors) defined by one loaded module."""
    modname = mod.__name__
    mine = [c for _, c in inspect.getmembers(mod, inspect.isclass) if c.__module__ == modname]
    mine.sort(key=_line)
    out, errs = [], []
    for cls in mine:
        if not issubclass(cls, Base) or base_of(cls) is Base:
            hooks = [h for h in Policy.HOOKS if h in cls.__dict__]
            if isinstance(cls.__dict__.get("name"), str) and hooks:
                errs.append((_line(cls), f"class {cls.__name__} has a name and hooks "
                                         f"({', '.join(hooks)}) but does not subclass "
                                         "harness.policy.Policy or harness.modern.Modern"))
            continue
        if "name" not in cls.__dict__ or not cls.__dict__["name"]:
            if any(o is not cls and issubclass(o, cls) for o in mine):
                continue                       # a base for other classes of this file
            errs.append((_line(cls), f"class {cls.__name__} sets no name (a policy class needs "
                                     "`name = \"...\"`; a base class needs a subclass in the file)"))
            continue
        bad = check_class(cls)
        if bad:
            errs.extend(bad)
            continue
        out.append(cls)
    if not out and not errs:
        errs.append((1, "defines no policy (a harness.policy.Policy or harness.modern.Modern "
                       "subclass with a name)"))
    return out, errs


def file_policies(path) -> tuple[list, list[str]]:
    """Load one file (whatever its name) and return (its policy classes, one-line errors)."""
    path = Path(path)
    mod, err = load_file(path)
    if err:
        return [], [err]
    classes, errs = _file_policies(mod, path)
    return classes, [f"{_show(path)}:{line}: {msg}" for line, msg in errs]


def discover(*folders):
    """Scan the folders (default: ``policies/``) in order, files sorted by name.
    Returns (policies by name -> class, errors as one-line strings)."""
    folders = [Path(f) for f in folders] or [POLICY_DIR]
    found, where, errors = {}, {}, []
    seen_files = set()
    for folder in folders:
        if not folder.is_dir():
            errors.append(f"{_show(folder)}:0: not a folder")
            continue
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_") or path.resolve() in seen_files:
                continue
            seen_files.add(path.resolve())
            classes, errs = file_policies(path)
            errors.extend(errs)
            for cls in classes:
                line = _line(cls)
                if cls.name in found:
                    errors.append(f"{_show(path)}:{line}: duplicate policy name {cls.name!r} "
                                  f"(also {where[cls.name]})")
                    continue
                found[cls.name] = cls
                where[cls.name] = f"{_show(path)}:{line}"
    return found, errors


def policy_dirs(extra=()) -> list[Path]:
    """The project's folder, then the ``--policy-dir`` folders."""
    return [POLICY_DIR, *(Path(d) for d in extra or ())]


def _as_folders(folder):
    if folder is None:
        return [POLICY_DIR]
    if isinstance(folder, (str, Path)):
        return [Path(folder)]
    return [Path(f) for f in folder]


def get_policy(name: str, folder=POLICY_DIR):
    """The class registered as ``name`` in ``folder`` (a folder or a list of folders)."""
    found, errors = discover(*_as_folders(folder))
    if name not in found:
        known = ", ".join(sorted(found)) or "none"
        raise PolicyLoadError(f"unknown policy {name!r}; known policies: {known}"
                              + (f" (and {len(errors)} file(s) that failed to load)" if errors else ""))
    return found[name]


def policy_file(cls) -> str:
    return inspect.getsourcefile(cls)

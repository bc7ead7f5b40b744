"""The contract suite: the checks every policy must pass, whoever wrote it.

``python -m harness check policies/X.py`` runs it on the policies of one file; ``make test``
runs it on every discovered policy (``tests/test_contract.py``), so a dropped-in file is
checked without a test edit (Gymnasium's ``check_env``, scikit-learn's
``parametrize_with_checks``).  Each check returns ``(check name, ok, message)``:

* ``construct``        ``cls()`` works with the defaults;
* ``params``           every parameter is stored as an attribute of its name, ``get_params()``
  gives them back, and ``cls(**params)`` takes them;
* ``pickle``           the instance and its params survive a pickle round trip (a run cell is
  plain data that crosses process boundaries);
* ``run:<workload>``   a run of the tiny workload, and of the canonical one cut to
  ``CANONICAL_LIMIT_S`` simulated seconds, with the page-conservation invariant checked after
  every engine step (``debug=True``);
* ``determinism:<w>``  the same seed gives the same ``trace_sha256``, with a fresh instance and
  with the instance of the first run used again (``reset`` rebuilds per-run state);
* ``victims:<w>``      every task the policy names in a ``kill`` event is alive at that moment;
* ``views:<w>``        the hooks that only choose (``watermarks``, ``need_balance``,
  ``badness``, ``select_bad_process``) leave the zones, the tasks and swap as they found them;
* ``measure:<w>``      the policy measures nothing itself: no policy code emits an event the
  metrics or the watchdog read (:data:`MEASURED`; ``kill`` and ``reclaim`` come from the blocks
  ``B.record_kill`` / ``B.note_reclaim``, the slow path's stalls from the engine) or writes
  the watchdog's inputs (``in_alloc_since``, ``last_progress``);
* ``replay``           which speed shortcuts of :mod:`harness.replay` the class gets: each is
  exact (the functions it replays are those it was proven against) or the plain path (an
  override of one of them), never a silently changed result -- informational, never fails;
* ``select``           called directly on a machine in mid-run, ``select_bad_process`` returns
  ``(None or a live task, table)`` and ``badness`` an integer >= 0 for every task.
"""
from __future__ import annotations

import dataclasses
import inspect
import pickle
import re
import sys
from pathlib import Path

from . import registry, replay, runner
from . import workload as W
from .engine import Kernel, Zone
from .errors import where_raised

CANONICAL = "morton-make-usemem"
TINY = "tiny"
CANONICAL_LIMIT_S = 40.0
CHOOSING_HOOKS = ("watermarks", "need_balance", "badness", "select_bad_process")
#: trace event kinds that the metrics (harness.metrics) and the watchdog's verdict are made of:
#: only the engine and the harness's blocks emit them
MEASURED = frozenset(("stall", "stall_end", "alloc_fail", "fault_kill", "enomem", "exit", "kill",
                      "reclaim", "watchdog", "time_limit", "ff"))
HARNESS_DIR = str(Path(__file__).resolve().parent)
_WATCHDOG_INPUT = re.compile(r"\.(in_alloc_since|last_progress)\s*=[^=]|\bk\.progress\(")


def _where(e: BaseException) -> str:
    return where_raised(e)


def _err(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}{_where(e)}"


def workloads(folder=registry.WORKLOAD_DIR):
    """The tiny workload and the canonical one with its time limit cut."""
    tiny = runner.resolve_workload(TINY, folder)
    canon = runner.resolve_workload(CANONICAL, folder)
    canon = dataclasses.replace(canon, time_limit_s=min(canon.time_limit_s, CANONICAL_LIMIT_S))
    return [tiny, canon]


# ---------------------------------------------------------------------------- views
def _snapshot(k):
    zones = tuple(tuple(getattr(z, s) for s in Zone.__slots__) for z in k.zones)
    tasks = []
    for t in k.live.values():
        mm = t.mm
        tasks.append((t.pid, t.state, t.flags, t.sigpending, t.killed_at, t.boost_us,
                      t.oom_score_adj, t.nice, t.uid, t.euid,
                      None if mm is None else (mm.total_vm, tuple(mm.anon), tuple(mm.pt),
                                               tuple(mm.swapc), mm.swapped, mm.users)))
    return zones, tuple(tasks), k.nr_swap_pages, len(k.live)


def _diff(a, b) -> str:
    names = ("zones", "tasks", "nr_swap_pages", "number of live tasks")
    for n, x, y in zip(names, a, b):
        if x != y:
            return n
    return "?"


class ViewGuard:
    """Wraps an instance's choosing hooks: snapshot before, compare after, remember the first
    change (hook name, what changed, simulated time)."""

    def __init__(self, policy, hooks=CHOOSING_HOOKS):
        self.first = None
        self.calls = dict.fromkeys(hooks, 0)
        for h in hooks:
            bound = getattr(policy, h)
            setattr(policy, h, self._wrap(h, bound))

    def _wrap(self, hook, fn):
        def guarded(k, *args):
            before = _snapshot(k)
            out = fn(k, *args)
            self.calls[hook] += 1
            if self.first is None:
                after = _snapshot(k)
                if after != before:
                    self.first = (hook, _diff(before, after), k.now)
            return out
        return guarded


# ---------------------------------------------------------------------------- checks
def _victims_alive(k) -> tuple[bool, str]:
    alive = set()
    n = 0
    for ev in k.trace:
        kind = ev[1]
        if kind == "spawn":
            alive.add(ev[2])
        elif kind == "exit":
            alive.discard(ev[2])
        elif kind == "kill":
            n += 1
            if ev[2] not in alive:
                return False, (f"kill at t={ev[0] / 1e6:.3f} s names pid {ev[2]} ({ev[3]}), "
                               "which is not a live task")
    return True, f"{n} kill(s), every victim alive when named"


class EmitGuard:
    """While active, records the first measured event (:data:`MEASURED`) that code outside
    ``harness/`` -- a policy -- emits itself: (kind, file, line)."""

    def __init__(self):
        self.first = None

    def __enter__(self):
        plain = self.plain = Kernel.emit
        guard = self

        def emit(k, kind, *fields):
            if kind in MEASURED and guard.first is None:
                fr = sys._getframe(1)
                if not fr.f_code.co_filename.startswith(HARNESS_DIR):
                    guard.first = (kind, fr.f_code.co_filename, fr.f_lineno)
            plain(k, kind, *fields)
        Kernel.emit = emit
        return self

    def __exit__(self, *exc):
        Kernel.emit = self.plain
        return False


def watchdog_writes(cls) -> list[str]:
    """``file:line`` of every line in the policy's own source files (not harness/) that writes
    the watchdog's inputs."""
    out, seen = [], set()
    for c in cls.__mro__:
        try:
            path = inspect.getsourcefile(c)
        except TypeError:
            continue
        if not path or path in seen or str(Path(path).resolve()).startswith(HARNESS_DIR):
            continue
        seen.add(path)
        for i, line in enumerate(Path(path).read_text().splitlines(), 1):
            if _WATCHDOG_INPUT.search(line.split("#")[0]):
                out.append(f"{registry._show(Path(path))}:{i}")
    return out


def check_parts(cls, wls=None) -> list:
    """The suite as parts that can each run on their own (:mod:`harness.isolate` runs each in
    a child process): ``(name, function returning its results)``."""
    wls = wls if wls is not None else workloads()
    parts = [("construct", lambda: _basic_checks(cls))]
    parts += [(f"run:{w.name}", (lambda w: lambda: _run_checks(cls, w))(w)) for w in wls]
    parts.append(("select", lambda: [_select_check(cls, wls[0])]))
    parts.append(("replay", lambda: [_replay_line(cls)]))
    return parts


def _replay_line(cls) -> tuple[str, bool, str]:
    lines = replay.describe(cls)
    return ("replay", True, "; ".join(lines) if lines else "no shortcut replays its loops")


def check_policy(cls, wls=None) -> list[tuple[str, bool, str]]:
    """Run the whole suite on one policy class."""
    res = []
    for _name, part in check_parts(cls, wls):
        out = part()
        res.extend(out)
        if out and out[0][0] == "construct" and not out[0][1]:
            break                               # nothing else can run
    return res


def _basic_checks(cls) -> list[tuple[str, bool, str]]:
    """construct, params, pickle."""
    res = []
    try:
        p = cls()
    except Exception as e:  # noqa: BLE001
        return [("construct", False, _err(e))]
    res.append(("construct", True, f"{cls.__name__}() with defaults"))

    # params stored as attributes
    params = dict(cls.params)
    missing = [key for key in params if not hasattr(p, key) or getattr(p, key) != params[key]]
    try:
        same = p.get_params() == params
        cls(**params)
        again = None
    except Exception as e:  # noqa: BLE001
        same, again = False, _err(e)
    if missing or not same or again:
        res.append(("params", False, again or (f"not stored as attributes: {missing}" if missing
                                               else "get_params() differs from the defaults")))
    else:
        res.append(("params", True, f"{len(params)} parameter(s) stored as attributes"))

    # pickle
    try:
        q = pickle.loads(pickle.dumps(p))
        pp = pickle.loads(pickle.dumps(params))
        ok = type(q) is cls and q.get_params() == p.get_params() and pp == params
        res.append(("pickle", ok, "instance and params round-trip" if ok
                    else "the round trip changed the parameters"))
    except Exception as e:  # noqa: BLE001
        res.append(("pickle", False, _err(e)))
    return res


def _run_checks(cls, w) -> list[tuple[str, bool, str]]:
    out = []
    p = cls()
    guard = ViewGuard(p)
    try:
        with EmitGuard() as emits:
            k = runner.simulate(p, w, 0, debug=True)
    except Exception as e:  # noqa: BLE001
        return [(f"run:{w.name}", False, _err(e))]
    out.append((f"run:{w.name}", True, f"{k.now / 1e6:.1f} s simulated, ended by {k.finished}, "
                                       "pages conserved at every step"))
    sha = k.trace_sha256()
    try:
        fresh = runner.simulate(cls(), w, 0).trace_sha256()
        unguarded = cls()
        runner.simulate(unguarded, w, 0)
        reused = runner.simulate(unguarded, w, 0).trace_sha256()   # reset() must start afresh
    except Exception as e:  # noqa: BLE001
        out.append((f"determinism:{w.name}", False, _err(e)))
    else:
        if sha == fresh == reused:
            out.append((f"determinism:{w.name}", True, f"trace_sha256 {sha[:12]} three times"))
        else:
            what = "a fresh instance" if fresh != sha else "the same instance run again"
            out.append((f"determinism:{w.name}", False,
                        f"seed 0 gave another trace with {what} ({sha[:12]} / {fresh[:12]} / "
                        f"{reused[:12]})"))
    ok, msg = _victims_alive(k)
    out.append((f"victims:{w.name}", ok, msg))
    writes = watchdog_writes(cls)
    if emits.first is not None:
        kind, path, line = emits.first
        out.append((f"measure:{w.name}", False,
                    f"the policy emits the measured event {kind!r} itself "
                    f"({registry._show(Path(path))}:{line}); the engine records stalls and "
                    "failures, B.record_kill and B.note_reclaim kills and reclaim"))
    elif writes:
        out.append((f"measure:{w.name}", False,
                    f"the policy writes the watchdog's inputs ({', '.join(writes[:3])}); the "
                    "engine keeps in_alloc_since and last_progress"))
    else:
        out.append((f"measure:{w.name}", True, "no measured event or watchdog input written by "
                                              "the policy"))
    if guard.first is None:
        calls = ", ".join(f"{h} x{n}" for h, n in guard.calls.items() if n)
        out.append((f"views:{w.name}", True, f"nothing changed by {calls or 'no choosing hook call'}"))
    else:
        hook, what, t = guard.first
        out.append((f"views:{w.name}", False, f"{hook} changed the {what} (t={t / 1e6:.3f} s)"))
    return out


def _select_check(cls, w) -> tuple[str, bool, str]:
    """Stop a run half-way and call the selection hooks directly."""
    from .engine import Task
    half = dataclasses.replace(w, time_limit_s=max(1.0, w.time_limit_s / 4))
    p = cls()
    try:
        k = runner.simulate(p, half, 0)
        guard = ViewGuard(p, ("badness", "select_bad_process"))
        victim, table = p.select_bad_process(k)
        for t in list(k.live.values()):
            pts = p.badness(k, t)
            if not isinstance(pts, int) or isinstance(pts, bool) or pts < 0:
                return ("select", False, f"badness of pid {t.pid} is {pts!r}, not an integer >= 0")
    except Exception as e:  # noqa: BLE001
        return ("select", False, _err(e))
    if victim is not None and (not isinstance(victim, Task) or not victim.alive):
        return ("select", False, f"select_bad_process returned {victim!r}, not a live task")
    if not isinstance(table, tuple):
        return ("select", False, f"the table is a {type(table).__name__}, not a tuple")
    if guard.first is not None:
        return ("select", False, f"{guard.first[0]} changed the {guard.first[1]}")
    return ("select", True, f"at t={k.now / 1e6:.0f} s: victim "
                            f"{'none' if victim is None else victim.pid}, {len(k.live)} tasks scored")


def check_file(path, extra_dirs=()) -> tuple[list, list]:
    """The suite on every policy a file defines (a file starting with ``_``, such as the
    template, is loaded too when named here).  Returns (one-line errors of the file, [(policy
    name, results)]); a name that another file of the registry already uses is an error."""
    errors, ok = file_classes(path, extra_dirs)
    if not ok:
        return errors, []
    wls = workloads()
    return errors, [(c.name, check_policy(c, wls)) for c in ok]


def file_classes(path, extra_dirs=()) -> tuple[list, list]:
    """(one-line errors of the file, the policy classes it defines that the suite can run)."""
    path = Path(path)
    target = path.resolve()
    dirs = registry.policy_dirs(extra_dirs)
    if not target.exists():
        return [f"{path}:0: no such file"], []
    if target.suffix != ".py" or not target.is_file():
        return [f"{path}:0: not a policy file (a .py file) or a workload file (a .toml file)"], []
    if target.parent not in [d.resolve() for d in dirs]:
        dirs.append(target.parent)
    found, _others = registry.discover(*dirs)
    classes, errors = registry.file_policies(target)
    ok = []
    for c in classes:
        other = found.get(c.name)
        if other is not None and Path(registry.policy_file(other)).resolve() != target:
            errors.append(f"{registry._show(target)}:{registry._line(c)}: duplicate policy name "
                          f"{c.name!r} (also {registry._show(Path(registry.policy_file(other)))}:"
                          f"{registry._line(other)})")
            continue
        ok.append(c)
    return errors, ok

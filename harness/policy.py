"""The policy interface: what differs between the kernels of the 2002 thread and their successors.

A policy file in ``policies/`` subclasses one of two bases (or an existing policy) and overrides
some of its hooks: :class:`Policy` here for 2.4, :class:`harness.modern.Modern` for 2.6 and
later.  Each base declares its hooks in a ``HOOKS`` table (:class:`Hook`: arguments, generator
or not, return value and meaning, when called, default); discovery checks a policy against its
base's table, and ``docs/adding-a-policy.md`` prints both tables (generated from them, a test
keeps them equal) with a worked example.  These docstrings are the reference.

The 2.4 hooks, in the order an allocation meets them: :meth:`Policy.fast_path` (passes A and B,
with :meth:`Policy.watermarks` and :meth:`Policy.wakeup_kswapd`), :meth:`Policy.slow_path`
(with :meth:`Policy.balance_classzone`, and in an -aa-style slow path
:meth:`Policy.after_failed_reclaim`), :meth:`Policy.try_to_free_pages` (the one **required**
hook: the base one raises; also run by :meth:`Base.kswapd` with :meth:`Policy.need_balance`),
:meth:`Policy.out_of_memory`, :meth:`Policy.badness` / :meth:`Policy.select_bad_process`,
:meth:`Policy.oom_kill`; plus :meth:`Base.reset` (per-run state), :meth:`Base.boot` (start a
policy's own threads) and :meth:`Base.memstall` (told of every memory stall).

The allocator's entry is not a hook: the engine runs :func:`harness.mm.alloc_pages` (fast path,
then the slow path, measured: stalls, failures and the watchdog's inputs are the engine's).

Contract:

* **Registration.**  ``name`` (plain, unique, typed on the command line), ``description`` (one
  line) and ``params`` (a dict of parameter name -> default) are set in the class body.
  Discovery (:mod:`harness.registry`) registers every such class a file defines.
* **Parameters** like scikit-learn: ``__init__(**params)`` only stores them (plain, picklable
  values) as attributes of the same names.  Per-run state (limiters, per-zone tables, queues)
  is built in :meth:`reset`, which runs once before each run; nothing carries over between runs.
* **Generators.**  The hooks in :data:`HOOKS` marked as generators are run by the engine with
  ``yield from``: they ``yield`` scheduler commands -- ``(CPU, us, False)`` to spend kernel CPU
  time, ``CMD_YIELD``, ``(SLEEP, until_us)``, ``(DWAIT, until_us)`` (uninterruptible),
  ``(WAITQ, queue, interruptible)``, ``(REPEAT, us, count)``, ``(ITER, us, is_user, fn)`` (the
  guide lists them all) -- and ``return`` their result.  A
  generator hook that has nothing to wait for still needs a ``yield`` somewhere (``return x``
  followed by an unreachable ``yield``).
* **Views.**  A policy reads the machine through the kernel object ``k``, read-only:
  ``k.zones`` (per zone ``size``, ``free``, ``pages_min/low/high``, ``need_balance`` and the page
  counts ``anon clean mapped dirty wb swapc slab dcache pt ts kmem reserved``), ``k.live`` (pid
  -> task, in creation order; a task has ``pid``, ``state`` R/S/D/Z/X, ``flags``, ``mm`` with
  ``total_vm``, ``rss``, ``anon``/``pt``/``swapc`` per zone and ``swapped``, ``uid``, ``euid``,
  ``nice``, ``caps``, ``utime``, ``stime``, ``start_us``, ``kthread``, ``oom_score_adj``,
  ``sigpending``, ``killed_at``; a task leaves ``k.live`` when it exits, so all there are
  ``alive``; ``B.oom_kill_24`` sets PF_MEMALLOC|PF_MEMDIE, cleared only at exit; ``killed_at``
  is set by ``B.record_kill`` only, never by a fault kill), ``k.now`` (us),
  ``k.nr_swap_pages``, ``k.swap_total``, ``k.files``, ``k.spec``, ``k.costs``, ``k.kswapd``.
  The hooks that only choose -- :meth:`watermarks`, :meth:`need_balance`, :meth:`badness`,
  :meth:`select_bad_process` -- must not change anything (the contract suite checks it).
* **Acting.**  A policy changes the machine only through the engine and the blocks of
  :mod:`harness.blocks`: ``k.take`` / ``k.take_nowatermark`` (allocate), the reclaim blocks,
  ``k.signal``, ``k.boost``, ``B.oom_kill_24`` / ``B.record_kill`` (kill delivery and its trace
  event), ``k.free_to_zone`` and ``k.move`` (give pages back, keeping every zone's count),
  ``k.new_task`` (a policy thread, from :meth:`boot`), ``k.changed`` / ``k.alarm`` /
  ``k.spin_point`` (so that a loop that changes nothing is fast-forwarded), ``k.emit`` (a
  trace event of its own kind: never a measured one, see ``harness.contract.MEASURED``).
* **Names are not data.**  A policy never looks at a task's or workload's name (or ``role``) to
  decide anything; outcomes must come from mechanisms.
* Every policy module starts with a docstring naming the tree or project version, the files and
  functions it models, and where it departs from them.
"""
from __future__ import annotations

from typing import NamedTuple

from . import blocks as B
from . import machine as M
from . import mm as MMops
from .engine import CMD_YIELD, CPU, SLEEP, WAITQ
from .machine import PF_MEMALLOC, PF_MEMDIE

class Hook(NamedTuple):
    """One row of a base class's hook table: what an override must take, be and give back."""
    args: tuple          # the arguments after ``self``
    generator: bool      # run with ``yield from`` (it yields scheduler commands)
    returns: str         # the return value and what it means
    when: str            # who calls it, when
    default: str         # what the base class does


#: the hooks of both bases (:class:`Policy` for 2.4, :class:`harness.modern.Modern` for 2.6+)
COMMON_HOOKS = {
    "reset": Hook(("k",), False, "nothing",
                  "once before each run, after the machine exists, before any task",
                  "the base's per-run state; call super().reset(k) first"),
    "boot": Hook(("k",), False, "nothing",
                 "once init and the kernel threads exist, before the workload's tasks start",
                 "nothing (start a policy's own threads here with k.new_task)"),
    "fast_path": Hook(("k", "req"), False,
                      "blocks obtained (> 0); 0: failed, no slow path; None: enter the slow path",
                      "first for every allocation (mm.alloc); again after a slow path "
                      "returned None", "the base's"),
    "slow_path": Hook(("k", "req"), True,
                      "blocks (> 0); 0: failed (a user fault then kills the task, fork/read "
                      "get -ENOMEM); None: back to fast_path (goto try_again)",
                      "by the engine when fast_path returned None; for a __GFP_WAIT caller "
                      "the engine measures it as a stall", "the base's"),
    "memstall": Hook(("k", "task", "enter"), False, "nothing",
                     "by the engine when a task enters (enter=True) and leaves a memory stall: "
                     "a __GFP_WAIT slow path, kswapd's reclaim", "nothing (no PSI)"),
    "try_to_free_pages": Hook(("k", "task", "cz", "gfp", "order"), True,
                              "(ok, rr): ok the kernel's return value, rr a blocks.ReclaimRound "
                              "or None", "by the policy's slow path and by kswapd", "the base's"),
    "kswapd": Hook(("k", "task"), True, "never returns",
                   "the kswapd thread's body, started at boot", "the -aa shaped loop over "
                   "zones flagged need_balance"),
    "need_balance": Hook(("k", "cz"), False, "bool: classzone cz still needs reclaim",
                         "by kswapd after each reclaim round; must not change anything",
                         "the base's"),
    "badness": Hook(("k", "p"), False, "int >= 0 points; 0 = never",
                    "by select_bad_process; must not change anything", "the base's"),
}

#: 2.4's hooks (:class:`Policy`): discovery checks that an overriding method takes these
#: arguments and is a generator function where marked; the guide's tables are made from these
HOOKS = {
    **COMMON_HOOKS,
    "fast_path": COMMON_HOOKS["fast_path"]._replace(
        default="mainline 2.4: pass A at low, wake kswapd, pass B at min, PF_MEMALLOC/PF_MEMDIE "
                "take anything, a caller that cannot sleep fails"),
    "slow_path": COMMON_HOOKS["slow_path"]._replace(
        default="mainline 2.4's rebalance loop (balance_classzone, retry at min; never fails "
                "for order <= 3)"),
    "try_to_free_pages": COMMON_HOOKS["try_to_free_pages"]._replace(
        default="**required**: the base raises NotImplementedError"),
    "need_balance": COMMON_HOOKS["need_balance"]._replace(
        default="mainline's: no, once any zone is above its pages_high"),
    "badness": COMMON_HOOKS["badness"]._replace(default="2.4.19 badness (B.badness_24)"),
    "watermarks": Hook(("k", "zl", "order", "gfp", "which"), False,
                       "thresholds, one per zone of zl (None skips a zone): k.take allocates "
                       "while zone.free > threshold",
                       "by fast_path and slow_path for pass 'low', 'min', 'atomic', 'retry', "
                       "'high'; must not change anything", "mainline's sums over the zonelist"),
    "wakeup_kswapd": Hook(("k", "cz"), False, "nothing", "by fast_path after pass A failed",
                          "flag classzone cz need_balance, wake kswapd"),
    "balance_classzone": Hook(("k", "req"), True, "(blocks, freed)",
                              "by the default slow_path", "reclaim with PF_MEMALLOC; the "
                              "first page freed goes to the caller"),
    "after_failed_reclaim": Hook(("k", "req"), True,
                                 "blocks (> 0), or 0: the allocation fails (the slow path "
                                 "returns it)",
                                 "by an -aa-style slow path (policies/aa.py) once "
                                 "balance_classzone freed nothing, in place of failing; not "
                                 "by the base's slow path (mainline has no such point)",
                                 "0: fail at once (aa: one look at 'high', then 0; morton: "
                                 "more reclaim, then kill, yield and retry, then aa's)"),
    "out_of_memory": Hook(("k", "task"), True,
                          "bool: the calling task itself was chosen (2.4's meaning)",
                          "wherever the policy calls it (2.4: reclaim, kswapd, slow path)",
                          "B.OOMRateLimiter (self.oom_limiter, one per run, lastkill on), "
                          "then oom_kill if it says yes"),
    "select_bad_process": Hook(("k",), False,
                               "(victim or None, table): table the top of the badness table "
                               "((pid, name, points), ...)",
                               "by oom_kill (None there: 2.4's panic, the run ends in an "
                               "error); must not change anything",
                               "2.4: the highest badness, init eligible"),
    "oom_kill": Hook(("k", "task"), True, "bool: task itself was killed",
                     "by out_of_memory", "select, B.oom_kill_24 (raises RuntimeError for "
                     "a None victim: 2.4's panic), the scan's CPU, yield"),
}
#: the hooks a concrete 2.4 policy must end up with other than the base class's
REQUIRED_HOOKS = ("try_to_free_pages",)


def hook_table(hooks: dict) -> str:
    """A hook table as the guide (``docs/adding-a-policy.md``) prints it, in Markdown; a test
    fails when the guide's copy differs."""
    rows = ["| hook | arguments | generator | returns | called | default |",
            "|---|---|---|---|---|---|"]
    for name, h in hooks.items():
        rows.append(f"| `{name}` | `{', '.join(h.args)}` | {'yes' if h.generator else 'no'} "
                    f"| {h.returns} | {h.when} | {h.default} |")
    return "\n".join(rows) + "\n"


class Base:
    """What every policy shares, 2.4 or modern: registration, parameters, the allocator's entry
    as the engine runs it, kswapd's loop.  Subclass :class:`Policy` (2.4) or
    :class:`harness.modern.Modern` (2.6 and later), never this."""

    name: str = ""
    description: str = ""
    params: dict = {}
    HOOKS = COMMON_HOOKS
    REQUIRED_HOOKS = ()

    def __init__(self, **params):
        unknown = set(params) - set(self.params)
        if unknown:
            raise TypeError(f"{type(self).__name__}: unknown parameter(s) {sorted(unknown)}; "
                            f"known: {sorted(self.params)}")
        for key, default in self.params.items():
            setattr(self, key, params.get(key, default))

    def get_params(self) -> dict:
        """The parameters as given (defaults filled in): ``type(p)(**p.get_params())`` is an
        equal policy."""
        return {key: getattr(self, key) for key in self.params}

    def reset(self, k):
        """Build per-run state once before each run, after the machine exists and before any
        task does (``k.zones`` and ``k.spec`` are set).  Everything a run changes belongs here,
        not in ``__init__``; an override usually calls ``super().reset(k)`` first."""

    def boot(self, k):
        """Called once init and the kernel threads exist (pid 1 is init), before the workload's
        tasks start: the place to start a policy's own threads (an oom_reaper, a user-space
        killer daemon) with ``k.new_task(name, lambda t: gen(k, t), role="protected",
        kthread=True, daemon=True)`` (a user-space daemon: ``kthread=False`` and an ``mm``).
        Default: nothing."""

    def alloc_pages(self, k, req):
        """The whole allocator as the engine runs it (:func:`harness.mm.alloc_pages`):
        :meth:`fast_path`, then the measured :meth:`slow_path`.  Not a hook: override those."""
        return MMops.alloc_pages(k, req)

    def memstall(self, k, task, enter: bool):
        """``psi_memstall_enter`` / ``_leave``: called by the engine when ``task`` enters
        (``enter`` True) and leaves a memory stall (the slow path of a ``__GFP_WAIT``
        allocation; kswapd's reclaim).  Default: nothing (no pressure stall accounting)."""

    def kswapd(self, k, task):
        """The kswapd thread (-aa shape, S4 mm/vmscan.c ``kswapd``/``kswapd_balance_pgdat``): for
        each zone flagged ``need_balance``, highest first, run reclaim (a memory stall for
        :meth:`memstall`); if it fails clear the flag and sleep ``kswapd_fail_sleep`` jiffies;
        sleep on ``kswapd_wait`` when none is flagged."""
        task.flags |= PF_MEMALLOC
        fail_sleep = getattr(self, "kswapd_fail_sleep", M.HZ)
        while True:
            flagged = [z for z in reversed(k.zones) if z.need_balance and z.size]
            if not flagged:
                yield (WAITQ, k.kswapd_wait, True)
                continue
            for z in flagged:
                k.memstall(task, True)
                try:
                    ok, rr = yield from self.try_to_free_pages(k, task, z.idx, M.GFP_KSWAPD, 0)
                finally:
                    k.memstall(task, False)
                if not ok:
                    z.need_balance = 0
                    k.changed()
                    yield (SLEEP, k.now + fail_sleep * M.JIFFY_US)
                    continue
                if not self.need_balance(k, z.idx):
                    z.need_balance = 0
                    k.changed()


class Policy(Base):
    """The 2.4 base class.  The defaults are mainline 2.4.19's ``__alloc_pages``, kswapd and OOM
    killer; it has no reclaim (:meth:`try_to_free_pages` raises), so a policy writes one or
    subclasses a policy that has one.

    Subclasses set, in the class body, ``name`` (unique, plain: letters, digits, ``_ . + -``;
    used on the command line), ``description`` (one line) and ``params`` (name -> default).
    """

    HOOKS = HOOKS
    REQUIRED_HOOKS = REQUIRED_HOOKS

    def reset(self, k):
        """The default keeps one shared 2.4 ``out_of_memory`` limiter (with ``lastkill``)."""
        self.oom_limiter = B.OOMRateLimiter(lastkill=True)

    # ------------------------------------------------------------------ 1. watermark test
    def watermarks(self, k, zl, order: int, gfp: int, which: str):
        """Exclusive lower bounds on ``zone.free``, one per zone of ``zl``, for pass ``which``:
        ``"low"`` (pass A), ``"min"`` (pass B), ``"atomic"`` (pass B without ``__GFP_WAIT``),
        ``"retry"`` (after reclaim), ``"high"`` (-aa's "has someone been killed" check).
        ``None`` skips a zone.  ``k.take(req, thresholds)`` then allocates from each zone while
        ``zone.free > threshold``.  Must not change anything.
        Default: mainline's sums over the zonelist."""
        if which == "low":
            return B.summed_thresholds(k, zl, order, "low")
        if which == "atomic":
            return B.summed_thresholds(k, zl, order, "min", shift=2)
        if which == "high":
            return B.summed_thresholds(k, zl, order, "high")
        return B.summed_thresholds(k, zl, order, "min")

    # ------------------------------------------------------------------ __alloc_pages
    def fast_path(self, k, req):
        """The passes of ``__alloc_pages`` (2.4 mm/page_alloc.c) that never sleep: pass A at
        ``low``, wake kswapd, pass B at ``min`` (``min>>2`` for atomic), the PF_MEMALLOC /
        PF_MEMDIE no-watermark branch.  Returns the blocks obtained, 0 for a failure that does
        not enter the slow path (a caller that cannot sleep), or ``None``: go to
        :meth:`slow_path` (the engine does, and measures the stall).  Not a generator."""
        zl, order, gfp, task = req.zl, req.order, req.gfp, req.task
        n = k.take(req, self.watermarks(k, zl, order, gfp, "low"))
        if n:
            return n
        self.wakeup_kswapd(k, zl[0])
        which = "min" if gfp & M.GFPF_WAIT else "atomic"
        n = k.take(req, self.watermarks(k, zl, order, gfp, which))
        if n:
            return n
        if task.flags & (PF_MEMALLOC | PF_MEMDIE):
            return k.take_nowatermark(req, 1)
        if not gfp & M.GFPF_WAIT:
            return 0
        return None

    def wakeup_kswapd(self, k, cz: int):
        z = k.zones[cz]
        if not z.need_balance:
            z.need_balance = 1
            k.changed()
        if k.kswapd_wait.tasks:
            k.wake_queue(k.kswapd_wait)

    # ------------------------------------------------------------------ 2. slow path
    def slow_path(self, k, req):
        """Generator.  After passes A and B failed for a ``__GFP_WAIT`` caller (``req.task`` is
        the allocating task, ``req.zl`` the zonelist, ``req.order``, ``req.gfp``).  Returns the
        blocks obtained (>= 1) or 0 for failure: a failed user fault then kills the faulting
        task, a failed fork or read returns -ENOMEM.  A loop that retries without changing
        anything calls ``k.spin_point(task)`` before it yields, so that a livelock is
        fast-forwarded.  Default: mainline's rebalance loop (never fails for order <= 3)."""
        task = req.task
        while True:
            if task.flags & (PF_MEMALLOC | PF_MEMDIE):
                n = k.take_nowatermark(req, 1)
                return n
            n, _freed = yield from self.balance_classzone(k, req)
            if n:
                return n
            n = k.take(req, self.watermarks(k, req.zl, req.order, req.gfp, "retry"), 1)
            if n:
                return n
            if req.order > 3:
                return 0
            k.spin_point(task)
            yield CMD_YIELD

    def balance_classzone(self, k, req):
        """``balance_classzone`` (2.4 mm/page_alloc.c): reclaim with PF_MEMALLOC|PF_FREE_PAGES; the
        first page this task frees is handed straight to it if the order fits (order 0 here).
        Returns ``(blocks, freed)`` where ``freed`` is reclaim's return value."""
        task = req.task
        had = B.memalloc_enter(task)
        try:
            ok, rr = yield from self.try_to_free_pages(k, task, req.zl[0], req.gfp, req.order)
        finally:
            B.memalloc_exit(task, had, memdie_keeps=True)
        if rr is not None and rr.first_zone is not None and req.order == 0:
            z = k.zones[rr.first_zone]
            if z.free >= 1:
                z.free -= 1
                req.got[rr.first_zone] += 1
                k.changed()
                return 1, ok
        return 0, ok

    def after_failed_reclaim(self, k, req):
        """Generator.  What an -aa-style slow path (-aa ``mm/page_alloc.c`` ``__alloc_pages``'
        ``!freed`` branch, S4; ``policies/aa.py``) does once :meth:`balance_classzone` freed
        nothing, instead of failing: returns the blocks obtained (>= 1) or 0, and the slow path
        returns that (0: the allocation fails).  The base's :meth:`slow_path` (mainline 2.4)
        never calls it: mainline retries whatever reclaim freed and never fails for order <= 3,
        and an order > 3 request fails without this step.  Default: 0, fail at once; ``aa``
        takes one look at ``high`` first, ``morton`` reclaims more, then kills, yields and
        retries before that."""
        return 0
        yield  # pragma: no cover  (a generator, like the overrides)

    # ------------------------------------------------------------------ 3. reclaim
    def try_to_free_pages(self, k, task, cz: int, gfp: int, order: int):
        """Generator; the **required** hook.  Direct reclaim for classzone ``cz`` (an index into
        ``k.zones``), also run by kswapd (``task is k.kswapd``).  Returns ``(ok, rr)``: ``ok`` is
        the kernel's return value (enough freed), ``rr`` a :class:`harness.blocks.ReclaimRound`
        (``rr.freed``, ``rr.first_zone`` for ``balance_classzone``) or ``None``.  Charge the
        work with ``yield (CPU, us, False)``; 2.4 reclaim also calls :meth:`out_of_memory` from
        here.  Building blocks: ``B.aa_reclaim_round``, ``B.shrink_cache``, ``B.swap_out``,
        ``B.shrink_vfs``."""
        raise NotImplementedError

    def need_balance(self, k, cz: int) -> bool:
        """``check_classzone_need_balance``: does classzone ``cz`` still need reclaim?  Must not
        change anything.  Default mainline's (no, once any zone is above its own
        ``pages_high``)."""
        return B.mainline_need_balance(k, cz)

    # ------------------------------------------------------------------ 4. OOM trigger
    def out_of_memory(self, k, task):
        """Generator.  2.4 ``out_of_memory()`` (mm/oom_kill.c): ``self.oom_limiter``
        (:class:`harness.blocks.OOMRateLimiter`, one per run, shared by every caller, kswapd
        included) decides whether this call goes on to :meth:`oom_kill`; it looks at time and
        call counts only, not at whether an earlier victim is still alive, so it alone decides
        whether a second OOM pass happens while a victim is on its way out.  Emits ``oom_call``
        (pid, 1 the killer ran / 0 it declined).  Returns True if the calling task itself was
        chosen.  Where it is called from (reclaim, the slow path, kswapd) is the policy's
        choice."""
        if not self.oom_limiter(k):
            k.emit("oom_call", task.pid, 0)
            return False
        k.emit("oom_call", task.pid, 1)
        killed_self = yield from self.oom_kill(k, task)
        return killed_self

    # ------------------------------------------------------------------ 5. victim selection
    def badness(self, k, p) -> int:
        """Points for task ``p`` (an integer); 0 means never.  Must not change anything.
        Default: 2.4.19 ``badness`` (no PF_MEMDIE skip)."""
        return B.badness_24(k, p, memdie_skip=False)

    def select_bad_process(self, k):
        """Returns ``(victim or None, table)``; ``table`` is the top of the badness table as
        ``((pid, name, points), ...)`` for the trace.  Every victim must be a live task
        (``p.alive``).  ``None`` (nobody scores > 0) makes the default :meth:`oom_kill` panic as
        2.4 does.  Must not change anything.  Default: 2.4, init eligible."""
        return B.select_bad_process(k, self.badness)

    # ------------------------------------------------------------------ 6. kill delivery
    def oom_kill(self, k, task):
        """Generator.  ``oom_kill``: select, signal every task sharing the mm, then yield.
        Returns True if ``task`` itself was killed.  A kill is delivered with ``k.signal`` (and
        ``k.boost``, PF_MEMDIE) and recorded with ``B.record_kill`` -- the ``kill`` trace event
        the metrics count; ``B.oom_kill_24`` does all of it the 2.4 way.  A ``None`` victim:
        ``B.oom_kill_24`` raises ``RuntimeError`` (2.4 ``panic("Out of memory and no killable
        processes...")``), which ends the run as an error; to kill nobody instead, override this
        hook and return False when the victim is ``None`` (a departure from 2.4: say so)."""
        victim, table = self.select_bad_process(k)
        killed_self = B.oom_kill_24(k, task, victim, table)
        yield (CPU, int(len(k.live) * k.costs.oom_scan_us_per_task), False)   # the scan's cost
        yield CMD_YIELD
        return killed_self

"""The contract suite (harness/contract.py) over every policy discovery finds, so a file dropped
into policies/ is checked without a test edit; and tests of the suite itself: each check can
fail."""
from __future__ import annotations

import pytest

from harness import blocks as B
from harness import contract, registry
from harness.machine import SIGKILL
from harness.policy import Policy
from policies.aa import AA
from policies.mainline import Mainline
from policies.morton import Morton

POLICIES = registry.discover()[0]


@pytest.fixture(scope="module")
def wls():
    return contract.workloads()


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_contract(name, wls):
    results = contract.check_policy(POLICIES[name], wls)
    names = [r[0] for r in results]
    assert names == ["construct", "params", "pickle",
                     "run:tiny", "determinism:tiny", "victims:tiny", "measure:tiny", "views:tiny",
                     "run:morton-make-usemem", "determinism:morton-make-usemem",
                     "victims:morton-make-usemem", "measure:morton-make-usemem",
                     "views:morton-make-usemem", "select", "replay"]
    failed = [f"{n}: {m}" for n, ok, m in results if not ok]
    assert not failed, "\n".join(failed)


def test_canonical_run_is_cut_to_the_limit(wls):
    assert [w.name for w in wls] == ["tiny", "morton-make-usemem"]
    assert wls[1].time_limit_s == contract.CANONICAL_LIMIT_S == 40.0


# ---------------------------------------------------------------------------- each check can fail
def _failed(cls, wls):
    return {n: m for n, ok, m in contract.check_policy(cls, wls) if not ok}


class NoDefault(AA):
    name = "t_nodefault"
    params = {"x": 1}

    def __init__(self, *, y, **params):       # needs an argument that is not a parameter
        super().__init__(**params)


class Unstored(AA):
    name = "t_unstored"
    params = {**AA.params, "extra": 3}

    def __init__(self, **params):
        params.pop("extra", None)
        super().__init__(**params)
        del self.extra                          # not stored as an attribute


class Unpicklable(AA):
    name = "t_unpicklable"
    params = {**AA.params, "fn": None}

    def __init__(self, **params):
        super().__init__(**params)
        self.fn = lambda: 0                     # a lambda cannot be pickled


class Mutates(Mainline):
    name = "t_mutates"

    def badness(self, k, p):
        p.nice = 1                              # a choosing hook that changes a task
        return super().badness(k, p)


class KillsTheDead(Morton):
    name = "t_killsdead"

    def select_bad_process(self, k):
        victim, table = super().select_bad_process(k)
        dead = next((t for t in k.tasks if not t.alive), None)
        return (dead or victim), table

    def oom_kill(self, k, task):
        dead = next((t for t in k.tasks if not t.alive), None)
        if dead is not None:                    # names a task that has already exited
            B.record_kill(k, dead, SIGKILL, (), task)
        return (yield from super().oom_kill(k, task))


class Nondeterministic(Mainline):
    name = "t_random"
    runs = 0

    def reset(self, k):
        super().reset(k)
        type(self).runs += 1
        self.vm_passes = 60 + type(self).runs   # another reclaim effort on every run


class Raises(AA):
    name = "t_raises"

    def slow_path(self, k, req):
        raise ZeroDivisionError("broken on purpose")
        yield  # pragma: no cover


def test_construct_fails(wls):
    assert "construct" in _failed(NoDefault, wls)


def test_params_fail(wls):
    assert "params" in _failed(Unstored, wls)


def test_pickle_fails(wls):
    bad = _failed(Unpicklable, wls)
    assert "pickle" in bad and "PicklingError" in bad["pickle"] or "AttributeError" in bad["pickle"]


def test_view_mutation_is_caught(wls):
    bad = _failed(Mutates, wls)
    assert "badness changed the tasks" in bad["views:tiny"]


def test_a_dead_victim_is_caught(wls):
    bad = _failed(KillsTheDead, wls)
    assert "not a live task" in bad["victims:morton-make-usemem"]
    assert "not a live task" in bad["select"]


def test_nondeterminism_is_caught(wls):
    bad = _failed(Nondeterministic, wls)
    assert "determinism:tiny" in bad or "determinism:morton-make-usemem" in bad


def test_a_raising_hook_is_reported_with_its_line(wls):
    bad = _failed(Raises, wls)
    assert "ZeroDivisionError: broken on purpose" in bad["run:tiny"]
    assert "test_contract.py" in bad["run:tiny"]


def test_base_policy_is_not_a_policy():
    # the base class has no reclaim: discovery refuses such a class (see test_registry)
    assert registry.check_class(type("Bare", (Policy,), {"name": "bare"}))

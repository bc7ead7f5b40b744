"""The engine's shortcuts and those of ``harness.replay`` change no result: each is checked
against the plain code it stands for, on a run that exercises it thousands of times.

* ``harness.replay``'s ``noop_round`` (a reclaim round that can free nothing, as arithmetic),
  ``noop_retries`` (no-op reclaim retries made by the engine through an ``ITER`` command, many
  at a time), ``select_415`` / ``select_26`` (the badness scan inline), for every policy that
  declares them: against a subclass that overrides a method each replays, which gets the plain
  code -- and ``replay.status`` says so.
* ``ITER``'s ``many`` (several iterations in one call): against the same run in debug mode,
  where the engine makes every iteration through ``fn`` (and checks page conservation after
  each step).
"""
import tomllib

import pytest

from harness import registry, replay, runner
from harness import workload as W


def small_fork_bomb():
    """fork-bomb.toml on 24 MB with 2 bombers of 150 children: ~100 OOM kills, tens of
    thousands of no-op reclaim retries."""
    raw = tomllib.loads((registry.WORKLOAD_DIR / "fork-bomb.toml").read_text())
    raw["machine"]["ram_mb"] = 24
    for t in raw["task"]:
        if t["name"] == "bomber":
            t["count"] = 2
            t["script"][0]["loop"] = 150
    return W.from_dict(raw)


def plain_subclass(cls):
    """``cls`` with an override of a function every shortcut replays (behaving the same): the
    plain reclaim round, retry loop and ``badness`` calls."""
    class Plain(cls):
        def file_lru(self, k, cz):
            return super().file_lru(k, cz)

        def badness(self, k, p):
            return super().badness(k, p)
    Plain.name = cls.name
    return Plain


def record(policy, w, debug=False):
    k = runner.simulate(policy, w, 0, debug=debug)
    rec = runner.metrics.compute(k)
    return rec, k


@pytest.mark.parametrize("name", ["oom_reaper", "psi_userspace", "kill_allocating",
                                  "linux26"])
def test_replays_equal_the_plain_code(name, monkeypatch):
    cls = registry.get_policy(name)
    w = small_fork_bomb()
    plain_cls = plain_subclass(cls)
    declared = replay.describe(cls)
    assert declared and all(": exact" in line or "overrides select_bad_process" in line
                            for line in declared)
    assert all(": plain path" in line for line in replay.describe(plain_cls))
    rounds = []
    noop_round = replay.noop_round

    def counted(*a, **kw):
        rounds.append(1)
        return noop_round(*a, **kw)
    monkeypatch.setattr(replay, "noop_round", counted)
    fast, kf = record(cls(), w)
    used = len(rounds)
    plain, kp = record(plain_cls(), w)
    if name != "linux26":
        # the shortcuts were exercised: the badness scan at every kill, the no-op round
        # (rounds with an empty file LRU: with harness.lru a scan of any page changes it)
        assert fast["kills"] > 20 and used > 20 and len(rounds) == used
    else:
        assert fast["kills"] > 0
    assert fast == plain                                  # trace hash and events included


def test_iter_many_equals_one_iteration_at_a_time():
    cls = registry.get_policy("oom_reaper")
    w = small_fork_bomb()
    fast, _ = record(cls(), w)
    one_by_one, _ = record(cls(), w, debug=True)         # debug: no ``many``, check_pages
    assert fast == one_by_one

"""The engine's and the policies' shortcuts change no result: each is checked against the plain
code it stands for, on a run that exercises it thousands of times.

* oom_reaper / psi_userspace ``noop_retries`` (no-op reclaim retries made by the engine through
  an ``ITER`` command, many at a time) and the inline badness scan: against a subclass that
  overrides the methods they reproduce, which gets the plain retry loop and ``badness`` calls.
* ``ITER``'s ``many`` (several iterations in one call): against the same run in debug mode,
  where the engine makes every iteration through ``fn`` (and checks page conservation after
  each step).
"""
import tomllib

import pytest

from harness import registry, runner
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
    """``cls`` with every shortcut's guard tripped: overrides that behave the same."""
    class Plain(cls):
        def noop_round(self, k, cz, file_pages):
            return super().noop_round(k, cz, file_pages)

        def badness(self, k, p):
            return super().badness(k, p)
    Plain.name = cls.name
    return Plain


def record(policy, w, debug=False):
    k = runner.simulate(policy, w, 0, debug=debug)
    rec = runner.metrics.compute(k)
    return rec, k


@pytest.mark.parametrize("name", ["oom_reaper", "psi_userspace"])
def test_noop_retries_and_inline_badness_equal_the_plain_loop(name):
    cls = registry.get_policy(name)
    w = small_fork_bomb()
    fast_policy = cls()
    plain_policy = plain_subclass(cls)()
    fast, kf = record(fast_policy, w)
    plain, kp = record(plain_policy, w)
    assert fast_policy.fast_retries and fast_policy.inline_badness and fast_policy.inline_noop_round
    assert not (plain_policy.fast_retries or plain_policy.inline_badness
                or plain_policy.inline_noop_round)
    reclaims = sum(1 for ev in kf.trace if ev[1] == "reclaim")
    assert fast["kills"] > 20 and reclaims > 10_000      # the shortcuts were exercised
    assert fast == plain                                  # trace hash and events included


def test_iter_many_equals_one_iteration_at_a_time():
    cls = registry.get_policy("oom_reaper")
    w = small_fork_bomb()
    fast, _ = record(cls(), w)
    one_by_one, _ = record(cls(), w, debug=True)         # debug: no ``many``, check_pages
    assert fast == one_by_one

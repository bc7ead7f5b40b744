"""The engine's shortcuts and those of ``harness.replay`` change no result: each is checked
against the plain code it stands for, on a run that exercises it thousands of times.

* ``harness.replay``'s ``noop_round`` (a reclaim round that can free nothing, as arithmetic),
  ``noop_retries`` (no-op reclaim retries made by the engine through an ``ITER`` command, many
  at a time), ``select_415`` / ``select_26`` (the badness scan inline), for every policy that
  declares them: against a subclass that overrides a method each replays, which gets the plain
  code -- and ``replay.status`` says so.
* ``abort_restarts`` (2.6.36's restart loop while ``out_of_memory`` meets a TIF_MEMDIE task,
  made by the engine through an ``ITER`` command): linux26 on a short ``rstate-hang`` whose
  victim loops in the kernel for 7 s, against the plain code.
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


def short_rstate_hang(spin_s=7.0):
    """rstate-hang.toml with the victim's in-kernel loop cut to ``spin_s``: the hog restarts
    its allocation tens of thousands of times while select_bad_process meets the victim."""
    raw = tomllib.loads((registry.WORKLOAD_DIR / "rstate-hang.toml").read_text())
    for t in raw["task"]:
        if t["name"] == "spinner":
            step = next(s for s in t["script"] if "kernel_spin_s" in s)
            step["kernel_spin_s"] = spin_s
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
                            or "overrides slow_path" in line for line in declared)
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


def test_abort_restarts_equal_the_plain_code(monkeypatch):
    cls = registry.get_policy("linux26")
    w = short_rstate_hang()
    assert "abort_restarts: exact (proven for Linux26)" in replay.describe(cls)
    assert "abort_restarts: plain path: Plain overrides file_lru" in replay.describe(
        plain_subclass(cls))
    calls = []
    abort_restarts = replay.abort_restarts

    def counted(*a, **kw):
        calls.append(1)
        return (yield from abort_restarts(*a, **kw))
    monkeypatch.setattr(replay, "abort_restarts", counted)
    fast, kf = record(cls(), w)
    used = len(calls)
    plain, kp = record(plain_subclass(cls)(), w)
    one_by_one, _ = record(cls(), w, debug=True)         # debug: no ``many``, check_pages
    oom_calls = sum(1 for ev in kp.trace if ev[1] == "oom_call")
    assert fast["kills"] == 1 and oom_calls > 20_000 and 0 < used < oom_calls // 100
    assert len(calls) > used                             # (the debug run used it too)
    assert fast == plain == one_by_one                   # trace hash and events included


def test_lru_round_idle_is_the_priority_loop():
    """``lru_round_idle`` in closed form against the 13 priorities' ``nr_scan_try_batch``."""
    def loop(file_pages, saved):
        for prio in range(12, -1, -1):
            saved += file_pages >> prio
            if saved >= 32:
                return False
        return True
    for file_pages in list(range(0, 70)) + [4095, 4096, 8191, 8192, 100_000]:
        for saved in range(0, 40):
            assert replay.lru_round_idle(file_pages, saved) == loop(file_pages, saved)

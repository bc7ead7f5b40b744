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


# ---------------------------------------------------------------------------- progress windows
def plain_windows(p, steps, t_end):
    """:meth:`harness.progress.Progress.windows` from its definitions, bucket by bucket: a
    step's credit up to ``x`` is ``floor(nominal * (x - start) / (end - start))`` (nominal
    capped at the step's duration), a bucket's alive and queued time the overlap of each
    interval with it, a window the sum of its ``window / step`` buckets."""
    step, n = p.step, p.window // p.step
    nb = t_end // step
    credit, alive, queued = [0] * nb, [0] * nb, [0] * nb
    for a, z, nom in steps:
        nom = min(nom, z - a)
        if nom <= 0:
            continue
        for i in range(a // step, min(nb, (z - 1) // step + 1)):
            lo, hi = max(a, i * step), min(z, (i + 1) * step)
            credit[i] += nom * (hi - a) // (z - a) - nom * (lo - a) // (z - a)
    opened = [(a, t_end) for a in p.open.values()]
    for per, intervals in ((alive, p.closed + opened), (queued, p.waits)):
        for a, z in intervals:
            for i in range(a // step, min(nb, (z - 1) // step + 1) if z > a else 0):
                per[i] += max(0, min(z, (i + 1) * step) - max(a, i * step))
    return [((b + 1) * step, sum(credit[b + 1 - n:b + 1]), sum(alive[b + 1 - n:b + 1]),
             sum(queued[b + 1 - n:b + 1])) for b in range(n - 1, nb)]


def plain_finish(p, wins, t_end):
    """:meth:`harness.progress.Progress.finish`, window by window over ``wins``."""
    stretches, s, lowest = [], None, None
    for t, c, a, q in wins:
        w = a - q
        below = w > 0 and 5 * c < w
        if w > 0:
            lowest = min(1.0, c / w) if lowest is None else min(lowest, min(1.0, c / w))
        if below and s is None:
            s = t
        elif not below and s is not None:
            stretches.append((s, t, True))
            s = None
    if s is not None:
        stretches.append((s, t_end, False))
    thrashing, best = False, None
    for s, e, ended in stretches:
        inside = [k for k in p.kills if max(s, e - p.window) <= k <= e] if ended else []
        ender = max(inside) if inside else None
        if (ender if ender is not None else e) - s >= p.limit:
            thrashing = True
        if best is None or e - s > best[0]:
            best = (e - s, s, ender)
    return {"progress_min10": None if lowest is None else round(lowest, 6),
            "thrash_s": 0.0 if best is None else best[0] / 1e6,
            "thrash_start_s": None if best is None else best[1] / 1e6,
            "thrash_to_kill_s": None if best is None or best[2] is None
            else (best[2] - best[1]) / 1e6,
            "thrashing": thrashing}


def logged_steps(monkeypatch):
    """Every ``step_done`` of every Progress made from now on, as ``(start, end, nominal)``."""
    from harness.progress import Progress
    steps = []
    step_done = Progress.step_done

    def logged(self, task, a, z, nominal):
        steps.append((a, z, nominal))
        return step_done(self, task, a, z, nominal)
    monkeypatch.setattr(Progress, "step_done", logged)
    return steps


def test_progress_windows_equal_their_definition_on_random_steps(monkeypatch):
    """The int64 running sums (and the difference array of 100 %-productive steps) against
    the bucket-by-bucket sums, on random steps, waits, suspensions and kills."""
    import random

    from harness.progress import Progress
    steps = logged_steps(monkeypatch)
    rnd = random.Random(7)
    for case in range(150):
        steps.clear()
        p = Progress(thrash_limit_s=rnd.choice([1.0, 3.0]), window_s=1.0, step_s=0.1)
        now = {}
        for _ in range(rnd.randrange(0, 60)):
            task = rnd.randrange(4)
            a = now.get(task, rnd.randrange(0, 500_000))
            z = a + rnd.choice([0, 1, 99_999, 100_000, rnd.randrange(1, 3_000_000)])
            nominal = rnd.choice([z - a, (z - a) // 3, z - a + 5, 0, rnd.randrange(0, 50_000)])
            kind = rnd.random()
            if kind < 0.1:
                p.suspend(task, a)
                p.resume(task, z)
            elif kind < 0.3:
                p.queued(task, a, z)
            elif kind < 0.35:
                p.task_exit(task, z)
            elif kind < 0.4:
                p.kill(z)
            else:
                p.step_done(task, a, z, nominal)
            now[task] = z
        if case % 50 == 0:          # a step too long to spread in int64: the plain loop
            p.step_done(9, 0, 2_200_000_000, 1_000_000_001)
            now[9] = 2_200_000_000
        t_end = max([0] + list(now.values())) + rnd.randrange(0, 2_000_000)
        want = plain_windows(p, steps, t_end)
        assert list(p.windows(t_end)) == want, case
        assert p.finish(t_end) == plain_finish(p, want, t_end), case


@pytest.mark.parametrize("policy,workload", [("oom_reaper", "fork-bomb"),
                                             ("mainline", "desktop-thrash")])
def test_progress_windows_equal_their_definition_on_a_run(monkeypatch, policy, workload):
    """The same on a whole run: the fork bomb's minutes-long sleeps of goal tasks (the
    difference array), the desktop's refaulting bursts (partly productive steps)."""
    steps = logged_steps(monkeypatch)
    w = small_fork_bomb() if workload == "fork-bomb" else runner.resolve_workload(workload)
    k = runner.simulate(registry.get_policy(policy)(), w, 0)
    want = plain_windows(k.prog, steps, k.now)
    assert len(want) > 100 and len(steps) > 1000
    assert list(k.prog.windows(k.now)) == want
    assert k.prog.finish(k.now) == plain_finish(k.prog, want, k.now)

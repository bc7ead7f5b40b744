"""Unit tests of the kernel mechanisms, with the exact numbers of shared/spec/kernel-2.4.md.

Every expected value below is written out by hand from the spec (section numbers in the
docstrings), never recomputed with the code under test.
"""
import pytest

from harness import blocks as B
from harness import machine as M
from harness import mm as MMops
from harness import registry
from harness.engine import MM, SLEEP, Kernel, Task
from harness.machine import (GFP_ATOMIC, GFP_DMA, GFP_HIGHUSER, GFP_KERNEL, GFP_NOFS, GFP_USER,
                             PF_MEMDIE, ZONE_DMA, ZONE_HIGHMEM, ZONE_NORMAL, MachineSpec)
from harness.policy import Policy

NORMAL_DMA = (ZONE_NORMAL, ZONE_DMA)
SEC = 1_000_000          # simulated microseconds
JIFFY = 10_000


def kernel(ram_mb=64, policy=None, **kw):
    return Kernel(MachineSpec(ram_mb=ram_mb, **kw), policy if policy is not None else Policy())


def policy(name, **params):
    return registry.get_policy(name)(**params)


# ============================================================================ §2 watermarks

def test_64mb_zone_sizes_and_watermarks():
    k = kernel(64)
    dma, normal, high = k.zones
    assert (dma.size, dma.pages_min, dma.pages_low, dma.pages_high) == (4096, 32, 64, 96)
    assert (normal.size, normal.pages_min, normal.pages_low, normal.pages_high) == (12288, 96, 192, 288)
    assert high.size == 0
    assert (high.pages_min, high.pages_low, high.pages_high) == (0, 0, 0)


def test_zone_watermarks_clamping():
    # mask = clamp(realsize / 128, 20, 255); {mask, 2 mask, 3 mask}
    assert M.zone_watermarks(ZONE_DMA, 100) == (20, 40, 60)          # 100/128 = 0 -> 20
    assert M.zone_watermarks(ZONE_NORMAL, 20 * 128 - 1) == (20, 40, 60)  # 19 -> 20
    assert M.zone_watermarks(ZONE_NORMAL, 21 * 128) == (21, 42, 63)
    assert M.zone_watermarks(ZONE_NORMAL, 255 * 128) == (255, 510, 765)
    assert M.zone_watermarks(ZONE_NORMAL, 1_000_000) == (255, 510, 765)  # 7812 -> 255
    assert M.zone_watermarks(ZONE_HIGHMEM, 32768) == (255, 510, 765)     # 256 -> 255


def test_1024mb_zones_and_clamped_watermarks():
    k = kernel(1024)
    dma, normal, high = k.zones
    assert (dma.size, normal.size, high.size) == (4096, 225280, 32768)
    assert (dma.pages_min, dma.pages_low, dma.pages_high) == (32, 64, 96)
    assert (normal.pages_min, normal.pages_low, normal.pages_high) == (255, 510, 765)  # 1760 -> 255
    assert (high.pages_min, high.pages_low, high.pages_high) == (255, 510, 765)


# ============================================================================ §2 zonelists

def test_zonelists_64mb():
    k = kernel(64)
    assert k.zonelist(GFP_KERNEL) == NORMAL_DMA
    assert k.zonelist(GFP_HIGHUSER) == NORMAL_DMA        # no HIGHMEM zone: skipped
    assert k.zonelist(GFP_USER) == NORMAL_DMA
    assert k.zonelist(GFP_NOFS) == NORMAL_DMA
    assert k.zonelist(GFP_ATOMIC) == NORMAL_DMA
    assert k.zonelist(GFP_DMA) == (ZONE_DMA,)
    assert k.zonelist(GFP_KERNEL | GFP_DMA) == (ZONE_DMA,)
    assert M.build_zonelist(GFP_HIGHUSER, k.sizes) == NORMAL_DMA


def test_zonelists_1024mb():
    k = kernel(1024)
    assert k.zonelist(GFP_HIGHUSER) == (ZONE_HIGHMEM, ZONE_NORMAL, ZONE_DMA)
    assert k.zonelist(GFP_KERNEL) == NORMAL_DMA
    assert k.zonelist(GFP_DMA) == (ZONE_DMA,)


def test_gfp_flag_values():
    assert (GFP_ATOMIC, GFP_NOFS, GFP_KERNEL, GFP_USER, GFP_HIGHUSER, GFP_DMA) == (
        0x20, 0xF0, 0x1F0, 0x1D0, 0x1D2, 0x01)


# ============================================================================ §2 summed thresholds

def test_summed_thresholds_normal_dma():
    k = kernel(64)
    assert B.summed_thresholds(k, NORMAL_DMA, 0, "low") == [193, 257]
    assert B.summed_thresholds(k, NORMAL_DMA, 0, "min") == [97, 129]
    assert B.summed_thresholds(k, NORMAL_DMA, 0, "min", shift=2) == [25, 33]


def test_summed_thresholds_dma_only():
    k = kernel(64)
    dma = (ZONE_DMA,)
    assert B.summed_thresholds(k, dma, 0, "low") == [65]
    assert B.summed_thresholds(k, dma, 0, "min") == [33]
    assert B.summed_thresholds(k, dma, 0, "min", shift=2) == [9]


def test_summed_thresholds_order_offset():
    k = kernel(64)
    # order 1 (task_struct): acc starts at 1<<1 = 2
    assert B.summed_thresholds(k, NORMAL_DMA, 1, "min") == [98, 130]


@pytest.mark.parametrize("pol", [Policy(), None], ids=["base", "mainline"])
def test_policy_watermarks_are_summed(pol):
    if pol is None:
        pol = policy("mainline")
    k = kernel(64, pol)
    pol.reset(k)
    w = pol.watermarks
    assert w(k, NORMAL_DMA, 0, GFP_HIGHUSER, "low") == [193, 257]
    assert w(k, NORMAL_DMA, 0, GFP_HIGHUSER, "min") == [97, 129]
    assert w(k, NORMAL_DMA, 0, GFP_ATOMIC, "atomic") == [25, 33]
    assert w(k, NORMAL_DMA, 0, GFP_HIGHUSER, "retry") == [97, 129]      # pass C: summed too
    dma = (ZONE_DMA,)
    assert w(k, dma, 0, GFP_DMA, "low") == [65]
    assert w(k, dma, 0, GFP_DMA, "min") == [33]
    assert w(k, dma, 0, GFP_DMA, "atomic") == [9]


def test_akpm_fix_pass_c_is_per_zone():
    pol = policy("mainline_akpm_fix")
    k = kernel(64, pol)
    pol.reset(k)
    assert pol.watermarks(k, NORMAL_DMA, 0, GFP_HIGHUSER, "retry") == [97, 33]
    # passes A and B stay summed
    assert pol.watermarks(k, NORMAL_DMA, 0, GFP_HIGHUSER, "low") == [193, 257]
    assert pol.watermarks(k, NORMAL_DMA, 0, GFP_HIGHUSER, "min") == [97, 129]
    assert B.per_zone_thresholds(k, NORMAL_DMA, 0, "min") == [97, 33]


# ============================================================================ §4.1 -aa classzone

def test_classzone_watermarks_2423_ratios():
    k = kernel(64)
    wm = B.classzone_watermarks(k, (256, 32))
    assert wm[ZONE_DMA][ZONE_DMA] == (32, 64, 96)
    assert wm[ZONE_NORMAL][ZONE_NORMAL] == (96, 192, 288)
    assert wm[ZONE_DMA][ZONE_NORMAL] == (80, 112, 144)          # + 12288/256 = 48
    assert wm[ZONE_NORMAL][ZONE_DMA] is None                    # a higher zone is not in a lower class


def test_classzone_watermarks_2001_ratios():
    k = kernel(64)
    wm = B.classzone_watermarks(k, (128, 8))
    assert wm[ZONE_DMA][ZONE_NORMAL] == (128, 160, 192)         # + 12288/128 = 96
    assert wm[ZONE_DMA][ZONE_DMA] == (32, 64, 96)


def test_classzone_watermarks_1024mb_highmem_class():
    k = kernel(1024)
    wm = B.classzone_watermarks(k, (256, 32))
    # NORMAL seen from HIGHMEM: 255 + 32768/32 = 1279; DMA: 32 + (32768+225280)/256 = 32 + 1008
    assert wm[ZONE_NORMAL][ZONE_HIGHMEM] == (255 + 1024, 510 + 1024, 765 + 1024)
    assert wm[ZONE_DMA][ZONE_HIGHMEM] == (32 + 1008, 64 + 1008, 96 + 1008)
    assert wm[ZONE_DMA][ZONE_NORMAL] == (32 + 880, 64 + 880, 96 + 880)  # 225280/256 = 880


def test_aa_thresholds():
    pol = policy("aa")
    k = kernel(64, pol)
    pol.reset(k)
    # free - (1<<order) > wm  <=>  free > wm + 1
    assert pol.watermarks(k, NORMAL_DMA, 0, GFP_HIGHUSER, "min") == [97, 81]
    assert pol.watermarks(k, NORMAL_DMA, 0, GFP_HIGHUSER, "low") == [193, 113]
    assert pol.watermarks(k, NORMAL_DMA, 0, GFP_HIGHUSER, "high") == [289, 145]
    assert pol.watermarks(k, NORMAL_DMA, 0, GFP_HIGHUSER, "retry") == [97, 81]
    assert pol.watermarks(k, NORMAL_DMA, 0, GFP_ATOMIC, "atomic") == [25, 21]   # 96>>2+1, 80>>2+1
    assert pol.watermarks(k, (ZONE_DMA,), 0, GFP_DMA, "min") == [33]          # class DMA
    assert B.classzone_thresholds(k, pol.wm, NORMAL_DMA, 0, "min") == [97, 81]


def test_need_balance_views():
    k = kernel(64)
    wm = B.classzone_watermarks(k, (256, 32))
    dma, normal, _ = k.zones
    normal.free = 0
    dma.free = 97
    assert B.mainline_need_balance(k, ZONE_NORMAL) is False       # 97 > 96 (DMA's own high)
    assert B.classzone_need_balance(k, wm, ZONE_NORMAL) is True   # 97 <= 144
    dma.free = 96
    assert B.mainline_need_balance(k, ZONE_NORMAL) is True
    dma.free = 145
    assert B.classzone_need_balance(k, wm, ZONE_NORMAL) is False
    dma.free = 0
    normal.free = 289
    assert B.mainline_need_balance(k, ZONE_NORMAL) is False
    assert B.classzone_need_balance(k, wm, ZONE_NORMAL) is False
    normal.free = 288
    assert B.mainline_need_balance(k, ZONE_NORMAL) is True
    assert B.classzone_need_balance(k, wm, ZONE_NORMAL) is True


# ============================================================================ §3.1 int_sqrt

@pytest.mark.parametrize("x, want", [(0, 1), (1, 1), (3, 1), (4, 2), (16, 3), (25, 5), (36, 4),
                                     (64, 6), (100, 9), (256, 12), (1024, 24)])
def test_int_sqrt_spec_table(x, want):
    assert M.int_sqrt(x) == want


# ============================================================================ §3.1 badness

def add(k, *tasks):
    """Put directly built tasks on the kernel's task list (and its pid maps, where the engine
    keeps them: ``by_pid``, and ``live`` for tasks not yet dead)."""
    for t in tasks:
        k.tasks.append(t)
        k.by_pid[t.pid] = t
        if hasattr(k, "live") and t.alive:
            k.live[t.pid] = t
    return tasks[-1]


def set_order(k, tasks):
    """Replace the task list, in this order."""
    k.tasks[:] = []
    k.by_pid.clear()
    if hasattr(k, "live"):
        k.live.clear()
    add(k, *tasks)


def user_task(k, pid=10, total_vm=10240, **kw):
    kw.setdefault("uid", 500)
    return add(k, Task(pid, f"t{pid}", mm=MM(total_vm), **kw))


def score(k, t, memdie_skip=False):
    return B.badness_24(k, t, memdie_skip=memdie_skip)


def test_badness_plain_user_task():
    k = kernel(64)
    t = user_task(k)
    assert score(k, t) == 10240


def test_badness_root_and_caps():
    k = kernel(64)
    assert score(k, user_task(k, 11, uid=0)) == 2560
    assert score(k, user_task(k, 12, uid=500, euid=0)) == 2560
    assert score(k, user_task(k, 13, caps=("CAP_SYS_ADMIN",))) == 2560
    assert score(k, user_task(k, 14, caps=("CAP_SYS_RAWIO",))) == 2560
    assert score(k, user_task(k, 15, uid=0, caps=("CAP_SYS_RAWIO",))) == 640
    assert score(k, user_task(k, 16, caps=("CAP_SYS_ADMIN", "CAP_SYS_RAWIO"))) == 640
    # root + CAP_SYS_ADMIN is still one /4 (the same "or" test)
    assert score(k, user_task(k, 17, uid=0, caps=("CAP_SYS_ADMIN",))) == 2560


def test_badness_nice():
    k = kernel(64)
    assert score(k, user_task(k, 11, nice=5)) == 20480
    assert score(k, user_task(k, 12, nice=-5)) == 10240
    assert score(k, user_task(k, 13, nice=0)) == 10240
    # niced root: x2 then /4
    assert score(k, user_task(k, 14, nice=19, uid=0)) == 5120


def test_badness_kernel_threads_score_zero():
    k = kernel(64)
    kt = add(k, Task(2, "kswapd", kthread=True))
    assert score(k, kt) == 0
    kt2 = add(k, Task(3, "withmm", kthread=True, mm=MM(10240), uid=500))
    assert score(k, kt2) == 0
    nomm = Task(4, "nomm", uid=500)
    assert score(k, nomm) == 0


def test_badness_cpu_time():
    k = kernel(64)
    t = user_task(k)
    t.utime, t.stime = 30 * SEC, 11 * SEC        # 4100 jiffies >> 10 = 4 -> int_sqrt 2
    assert score(k, t) == 5120
    t.utime, t.stime = 10 * SEC, 0               # 1000 >> 10 = 0 -> int_sqrt 1
    assert score(k, t) == 10240
    t.utime, t.stime = 10_240_000, 0             # 1024 jiffies >> 10 = 1 -> 1
    assert score(k, t) == 10240
    t.utime = 256 * 1024 * JIFFY                 # >> 10 = 256 -> int_sqrt 12
    assert score(k, t) == 10240 // 12 == 853


@pytest.mark.parametrize("now_s, run, want", [
    (30 * 60, 1, 10240),           # 180000 jiffies >> 17 = 1; int_sqrt(int_sqrt(1)) = 1
    (6 * 3600, 16, 10240),         # 2160000 >> 17 = 16; int_sqrt 3; int_sqrt(3) = 1
    (12 * 3600, 32, 5120),         # 4320000 >> 17 = 32; int_sqrt 4; int_sqrt(4) = 2
    (24 * 3600, 65, 3413),         # 8640000 >> 17 = 65; int_sqrt 6; int_sqrt(6) = 3
])
def test_badness_run_time(now_s, run, want):
    k = kernel(64)
    t = user_task(k)
    t.start_us = 0
    k.now = now_s * SEC
    assert (k.now // JIFFY) >> 17 == run
    assert score(k, t) == want


def test_badness_run_time_counts_from_start():
    k = kernel(64)
    t = user_task(k)
    k.now = 12 * 3600 * SEC
    t.start_us = k.now - 30 * 60 * SEC            # started 30 min ago
    assert score(k, t) == 10240


def test_badness_divisions_in_order():
    k = kernel(64)
    t = user_task(k, total_vm=10001, uid=0, caps=("CAP_SYS_RAWIO",), nice=1)
    t.utime = 4100 * JIFFY                        # /2
    k.now = 12 * 3600 * SEC                       # /2
    # 10001 // 2 = 5000; // 2 = 2500; * 2 = 5000; // 4 = 1250; // 4 = 312
    assert score(k, t) == 312


def test_badness_memdie():
    k = kernel(64)
    t = user_task(k)
    t.flags |= PF_MEMDIE
    assert score(k, t, memdie_skip=True) == 0
    assert score(k, t, memdie_skip=False) == 10240
    # the policies' choice of variant
    assert policy("mainline").badness(k, t) == 10240        # 2.4.19-pre6: no skip
    assert policy("rmap").badness(k, t) == 10240             # rmap: no skip (§5)


# ============================================================================ §3.2 selection

def test_select_ties_go_to_earlier_task():
    k = kernel(64)
    a = user_task(k, 20, total_vm=5000)
    b = user_task(k, 21, total_vm=5000)
    victim, table = B.select_bad_process(k, lambda k, p: B.badness_24(k, p, False))
    assert victim is a
    assert table == ((20, "t20", 5000), (21, "t21", 5000))
    # list order, not pid order, decides
    set_order(k, [b, a])
    victim, _ = B.select_bad_process(k, lambda k, p: B.badness_24(k, p, False))
    assert victim is b


def test_select_largest_wins_and_table():
    k = kernel(64)
    user_task(k, 20, total_vm=5000)
    big = user_task(k, 21, total_vm=9000)
    user_task(k, 22, total_vm=9000, uid=0)       # 2250
    victim, table = B.select_bad_process(k, lambda k, p: B.badness_24(k, p, False))
    assert victim is big
    assert table == ((21, "t21", 9000), (20, "t20", 5000), (22, "t22", 2250))


def test_select_zero_never_chosen():
    k = kernel(64)
    add(k, Task(2, "kswapd", kthread=True))
    user_task(k, 20, total_vm=0)
    victim, table = B.select_bad_process(k, lambda k, p: B.badness_24(k, p, False))
    assert victim is None
    assert table == ()
    with pytest.raises(RuntimeError, match="no killable processes"):
        B.oom_kill_24(k, k.tasks[-1], victim, table)


def test_select_init_eligible_unless_skipped():
    k = kernel(64)
    init = add(k, Task(1, "init", uid=500, mm=MM(20000)))  # pid 1 with the largest score
    other = user_task(k, 20, total_vm=5000)
    sc = lambda k, p: B.badness_24(k, p, False)  # noqa: E731
    assert B.select_bad_process(k, sc)[0] is init              # mainline 2.4: pid != 0 only
    assert B.select_bad_process(k, sc, skip_pid_le=1)[0] is other
    assert policy("mainline").select_bad_process(k)[0] is other  # akpm: pid <= 1 skipped
    assert policy("rmap").select_bad_process(k)[0] is init


def test_select_skip_no_mm():
    k = kernel(64)
    kt = add(k, Task(2, "kthread", kthread=True))    # no mm, first in the list
    u = user_task(k, 20, total_vm=100)
    const = lambda k, p: 100  # noqa: E731  (a score that does not itself exclude kernel threads)
    assert B.select_bad_process(k, const)[0] is kt
    assert B.select_bad_process(k, const, skip_no_mm=True)[0] is u


def test_select_skips_dead_tasks():
    k = kernel(64)
    dead = Task(20, "dead", uid=500, mm=MM(9000))
    dead.state = "X"
    add(k, dead)
    u = user_task(k, 21, total_vm=100)
    assert B.select_bad_process(k, lambda k, p: B.badness_24(k, p, False))[0] is u


def test_oom_kill_signals_every_task_sharing_the_mm():
    k = kernel(64)
    shared = MM(9000)
    a = Task(20, "a", uid=500, mm=shared)
    b = Task(21, "b", uid=500, mm=MM(100))
    c = Task(22, "c", uid=500, mm=shared, caps=("CAP_SYS_RAWIO",))
    add(k, a, b, c)
    killer = b
    victim, table = B.select_bad_process(k, lambda k, p: B.badness_24(k, p, False))
    assert victim is a
    assert B.oom_kill_24(k, killer, victim, table) is False
    assert a.sigpending == M.SIGKILL and c.sigpending == M.SIGTERM and b.sigpending == 0
    for t in (a, c):
        assert t.flags & (M.PF_MEMALLOC | PF_MEMDIE) == M.PF_MEMALLOC | PF_MEMDIE
        assert t.boost_us == 5 * M.HZ * JIFFY
    assert [e[1:3] for e in k.trace if e[1] == "kill"] == [("kill", 20), ("kill", 22)]


# ============================================================================ §3.3 rate limiter

def call_at(k, lim, jiffies, swap=0):
    k.now = jiffies * JIFFY
    k.nr_swap_pages = swap
    return lim(k)


def sequence(lastkill, n=130):
    """Calls every 0.1 s from t = 10 s (jiffies 1000 + 10 i); returns the indices that kill."""
    k = kernel(64)
    lim = B.OOMRateLimiter(lastkill=lastkill)
    out = []
    for i in range(n):
        if call_at(k, lim, 1000 + 10 * i):
            out.append(i)
    return out


def test_rate_limiter_exact_sequence_without_lastkill():
    k = kernel(64)
    lim = B.OOMRateLimiter(lastkill=False)
    got = [call_at(k, lim, 1000 + 10 * i) for i in range(40)]
    # i=0: quiet since boot (1000 > 500) -> reset, first = 1000
    # i=1..9: within the first second (now - first < 100) -> not counted
    # i=10..18: count 1..9; i=19: count 10 -> kill, reset (first = 1190)
    # i=20..28: first second again; i=29..37: count 1..9; i=38: kill
    want = [False] * 40
    want[19] = want[38] = True
    assert got == want
    assert (lim.first, lim.count, lim.lastkill) == (1380, 0, 1380)


def test_rate_limiter_period_without_lastkill():
    assert sequence(False) == [19, 38, 57, 76, 95, 114]


def test_rate_limiter_lastkill_gate():
    assert sequence(True) == [19, 69, 119]


def test_rate_limiter_count_stays_high_while_gate_closed():
    k = kernel(64)
    lim = B.OOMRateLimiter(lastkill=True)
    got = [call_at(k, lim, 1000 + 10 * i) for i in range(69)]
    assert [i for i, g in enumerate(got) if g] == [19]
    # i=38 (jiffies 1380) reached count 10, but 1380 - 1190 < 500: no kill, no reset;
    # i=68 (jiffies 1680): count 40, 1680 - 1190 = 490 < 500 still closed
    k2 = kernel(64)
    lim2 = B.OOMRateLimiter(lastkill=True)
    for i in range(69):
        call_at(k2, lim2, 1000 + 10 * i)
    assert lim2.count == 40 and lim2.first == 1190 and lim2.lastkill == 1190
    assert call_at(k2, lim2, 1690) is True        # first call once now - lastkill >= 500 kills


def test_rate_limiter_first_call_after_quiet_only_resets():
    k = kernel(64)
    lim = B.OOMRateLimiter(lastkill=False)
    assert call_at(k, lim, 1000) is False
    assert (lim.first, lim.last, lim.count) == (1000, 1000, 0)


def test_rate_limiter_calls_may_be_sparse_but_under_5s():
    k = kernel(64)
    lim = B.OOMRateLimiter(lastkill=False)
    # one call every 5 s exactly (since = 500 is not > 500): first resets, next 9 count 1..9
    got = [call_at(k, lim, 1000 + 500 * i) for i in range(11)]
    assert got == [False] * 10 + [True]


def test_rate_limiter_gap_over_5s_resets():
    k = kernel(64)
    lim = B.OOMRateLimiter(lastkill=False)
    got = [call_at(k, lim, 1000 + 10 * i) for i in range(16)]   # counts 1..6 at i=10..15
    assert not any(got) and lim.count == 6
    assert call_at(k, lim, 1150 + 501) is False                   # gap 501 > 500: reset
    assert (lim.first, lim.count) == (1651, 0)
    # again 1 s uncounted, then 10 counted calls
    got = [call_at(k, lim, 1651 + 10 * i) for i in range(1, 21)]
    assert [i + 1 for i, g in enumerate(got) if g] == [19]


def test_rate_limiter_gap_of_exactly_5s_does_not_reset():
    k = kernel(64)
    lim = B.OOMRateLimiter(lastkill=False)
    for i in range(16):
        call_at(k, lim, 1000 + 10 * i)
    assert lim.count == 6
    assert call_at(k, lim, 1150 + 500) is False
    assert (lim.first, lim.count) == (1000, 7)


def test_rate_limiter_early_boot_call_is_not_a_reset():
    # jiffies start at 0 and last = 0: a call at 2 s is "2 s after the previous one"
    k = kernel(64)
    lim = B.OOMRateLimiter(lastkill=False)
    assert call_at(k, lim, 200) is False
    assert (lim.first, lim.count) == (0, 1)


def test_rate_limiter_never_kills_with_free_swap():
    k = kernel(64)
    lim = B.OOMRateLimiter(lastkill=False)
    got = [call_at(k, lim, 1000 + 10 * i, swap=1) for i in range(200)]
    assert not any(got)
    assert (lim.first, lim.last, lim.count) == (0, 0, 0)     # returns before touching state


# ============================================================================ §1.5 the livelock window

def sleeper(k):
    def gen(t):
        while True:
            yield (SLEEP, k.now + 3600 * SEC)
    return gen


def window_run(policy_name, dma_free, normal_free, *, with_kswapd=False, gfp=GFP_HIGHUSER):
    """A 64 MB machine with nothing reclaimable: DMA and NORMAL free set by hand, the rest
    "reserved".  init sleeps; one user task (pid 2 or 3) allocates one page."""
    pol = policy(policy_name)
    k = Kernel(MachineSpec(ram_mb=64, dcache_kb=0), pol, seed=0, debug=True,
               watchdog_s=30, time_limit_s=60)
    pol.reset(k)
    for z, free in ((k.zones[ZONE_DMA], dma_free), (k.zones[ZONE_NORMAL], normal_free)):
        assert z.free >= free
        z.reserved += z.free - free
        z.free = free
    k.check_pages()
    k.new_task("init", sleeper(k), mm=MM(128), daemon=True, role="protected")
    if with_kswapd:
        k.kswapd = k.new_task("kswapd", lambda t: pol.kswapd(k, t), kthread=True, daemon=True)
    results = []

    def user(t):
        req = yield from MMops.alloc(k, t, gfp, 0, 1, True)
        results.append((k.now, tuple(req.got)))
        k.assign(req, "anon", t.mm.anon)

    task = k.new_task("hog", user, uid=500, mm=MM(256), goal=True, role="culprit")
    k.run()
    k.check_pages()
    kinds = [e[1] for e in k.trace]
    return k, task, results, kinds


# (DMA free, NORMAL free) inside the window: DMA in (96, 129], NORMAL <= 97
WINDOW = [(129, 96), (97, 96), (129, 97), (113, 0)]


@pytest.mark.parametrize("dma, normal", WINDOW)
def test_mainline_livelocks_in_the_window(dma, normal):
    k, task, results, kinds = window_run("mainline", dma, normal)
    assert results == []                      # the allocation never returned
    assert "kill" not in kinds
    assert "oom_call" not in kinds            # reclaim says "no need": out_of_memory never called
    assert "stall" in kinds and "reclaim" in kinds
    assert k.finished == "watchdog"
    assert k.watchdog_kind == "livelock"
    assert k.now == 30 * SEC
    assert task.state == "R" and task.in_alloc_since == 0
    assert (k.zones[ZONE_DMA].free, k.zones[ZONE_NORMAL].free) == (dma, normal)


def test_mainline_livelocks_with_kswapd_too():
    k, task, results, kinds = window_run("mainline", 129, 96, with_kswapd=True)
    assert results == []
    assert "kill" not in kinds and "oom_call" not in kinds
    assert k.watchdog_kind == "livelock"
    # kswapd ran reclaim as well, and also gave up without calling out_of_memory
    assert any(e[1] == "reclaim" and e[2] == k.kswapd.pid for e in k.trace)


def test_mainline_just_above_the_window_allocates_at_pass_b():
    k, task, results, kinds = window_run("mainline", 130, 96)
    assert results == [(0, (1, 0, 0))]       # 130 > 129: DMA gives the page at once
    assert "stall" not in kinds
    assert k.finished == "all-exited" and k.watchdog_kind is None


def test_mainline_just_below_the_window_reaches_the_oom_killer():
    # DMA 96 is not > 96: check_classzone_need_balance says "need", so akpm's loop calls
    # out_of_memory(); after >= 1 s and 10 counted calls the only candidate (pid 2) is killed
    k, task, results, kinds = window_run("mainline", 96, 96)
    assert "oom_call" in kinds
    kills = [e for e in k.trace if e[1] == "kill"]
    assert len(kills) == 1 and kills[0][2] == task.pid
    assert k.watchdog_kind is None
    assert len(results) == 1 and results[0][1] == (0, 1, 0)   # the victim used the reserves
    assert results[0][0] >= 1 * SEC


@pytest.mark.parametrize("dma, normal", WINDOW)
def test_akpm_fix_takes_a_dma_page(dma, normal):
    k, task, results, kinds = window_run("mainline_akpm_fix", dma, normal)
    assert len(results) == 1
    t_done, got = results[0]
    assert got == (1, 0, 0)                   # from DMA: 97..129 > 1 + 32 = 33
    assert t_done < 1 * SEC                   # after one reclaim round, no loop
    assert "oom_call" not in kinds and "kill" not in kinds
    assert k.finished == "all-exited" and k.watchdog_kind is None


@pytest.mark.parametrize("dma, normal", WINDOW)
def test_aa_does_not_loop(dma, normal):
    k, task, results, kinds = window_run("aa", dma, normal)
    assert len(results) == 1
    t_done, got = results[0]
    assert t_done < 1 * SEC
    # DMA > 81 = its min seen from the NORMAL class + 1: a page from DMA without reclaim
    assert got == (1, 0, 0)
    assert "stall" not in kinds and "kill" not in kinds
    assert k.finished == "all-exited" and k.watchdog_kind is None


def test_aa_fails_fast_below_its_min():
    # DMA 81 is not > 80 + 1: one failed reclaim round, the high check, then NULL
    k, task, results, kinds = window_run("aa", 81, 96)
    assert results == [(results[0][0], (0, 0, 0))]
    assert results[0][0] < 1 * SEC
    assert "alloc_fail" in kinds and "alloc_failed_msg" in kinds
    assert "oom_call" not in kinds and "kill" not in kinds
    assert k.finished == "all-exited" and k.watchdog_kind is None

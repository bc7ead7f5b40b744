"""The thrashing building blocks on scripted scenarios, with numbers worked out by hand.

``harness.workingset`` (mm/workingset.c), ``harness.psi`` (kernel/sched/psi.c) and
``harness.progress`` (the engine's progress / thrashing measurement) are standalone; these
tests drive them the way the engine will (docs/thrashing.md).
"""
import pytest

from harness.progress import Progress
from harness.psi import (PSI_MEM_FULL, PSI_MEM_SOME, PSIGroup, calc_load, fixed_power_int,
                         load_str)
from harness.workingset import Workingset

S = 1_000_000   # one second in us


# ============================================================================ workingset.c

def scripted(kernel, swap=0):
    """Active file list of 4 pages, 5 inactive; 10 active anon pages; ``swap`` free swap.

    Evict A (PG_workingset: it had been deactivated), then B, C, D, E; refault A, then B."""
    w = Workingset(kernel)
    lv = w.lruvec
    lv.nr_active_file, lv.nr_inactive_file = 4, 5
    lv.nr_active_anon, lv.nr_swap_pages = 10, swap
    a = w.evict(workingset=True)
    b = w.evict()
    for _ in range(3):
        w.evict()
    return w, a, b


def test_refault_distance_6_1_no_swap():
    # 6.1 snapshots nonresident_age *before* ageing it: A=0, B=1, and the age is 5 after the
    # five evictions.  Without swap the workingset size is NR_ACTIVE_FILE = 4.
    w, a, b = scripted("6.1")
    assert w.lruvec.nonresident_age == 5
    assert w.distance(a) == 5 and w.workingset_size() == 4
    # A: 5 > 4, not activated, and so not flagged PG_workingset although it was workingset
    assert w.refault(a) == (False, False)
    assert w.lruvec.nonresident_age == 5            # a refault that does not activate: no ageing
    # B: 5 - 1 = 4 <= 4, activated (age 6); it was not workingset at eviction: no flag
    assert w.distance(b) == 4
    assert w.refault(b) == (True, False)
    assert w.lruvec.nonresident_age == 6
    lv = w.lruvec
    assert (lv.workingset_refault_file, lv.workingset_activate_file,
            lv.workingset_restore_file) == (2, 1, 0)


def test_refault_of_workingset_page_is_restored():
    # F evicted at age 6 with PG_workingset, refaults at age 7: distance 1 <= 4 -> active and
    # PG_workingset (WORKINGSET_RESTORE): this is the read PSI counts as a memstall.
    w, a, b = scripted("6.1")
    w.activation()                                   # age 6 (folio_mark_accessed)
    f = w.evict(workingset=True)                     # stamp 6, age 7
    assert w.distance(f) == 1
    assert w.refault(f) == (True, True)
    assert w.lruvec.workingset_restore_file == 1


def test_refault_distance_6_1_with_swap_counts_anon():
    # With free swap a file refault competes with anon too: 4 active file + 10 active anon
    # + 0 inactive anon = 14 >= 5, so A is activated and, being workingset, flagged.
    w, a, b = scripted("6.1", swap=100)
    assert w.workingset_size(file=True) == 14
    assert w.workingset_size(file=False) == 4 + 5 + 10
    assert w.refault(a) == (True, True)


def test_refault_distance_4_15_and_4_20():
    # 4.x bump inactive_age before the snapshot: A=1, B=2, age 5.  A's distance is 4 <= 4:
    # activated where 6.1 (distance 5) is not.  4.15 has no workingset bit; 4.20 has it.
    w, a, b = scripted("4.15")
    assert w.distance(a) == 4
    assert w.refault(a) == (True, False)
    assert w.lruvec.nonresident_age == 6             # add_to_page_cache_lru's activation
    w, a, b = scripted("4.20")
    assert w.refault(a) == (True, True)
    # reclaim-side activation (move_pages_to_lru) ages only 5.9+
    w.activation(3, by_reclaim=True)
    assert w.lruvec.nonresident_age == 6


def test_shadow_packing_wraps_and_buckets():
    # timestamp_bits 4: distances are taken mod 16, so an entry lapped by 17 evictions looks
    # 1 old (the "false small refault distance" workingset_refault's comment accepts).
    w = Workingset("6.1", timestamp_bits=4)
    s = w.evict()                                    # stamp 0
    w.activation(16)                                 # age 17
    assert w.distance(s) == 1
    # 64 pages of RAM need fls(63) = 6 bits: bucket_order 2, stamps lose their low 2 bits
    w = Workingset("6.1", totalram_pages=64, timestamp_bits=4)
    assert w.bucket_order == 2
    w.activation(7)
    s = w.evict()                                    # stamp (7 >> 2) << 2 = 4, age 8
    assert w.distance(s) == 4
    # 4.20 shifts inside pack_shadow, after inc_return: age 6 -> 7, stamp (7 >> 2) << 2 = 4
    w = Workingset("4.20", totalram_pages=64, timestamp_bits=4)
    w.activation(6)
    s = w.evict()
    assert w.distance(s) == 3


def test_unknown_kernel_is_refused():
    with pytest.raises(ValueError, match="unknown kernel"):
        Workingset("5.4")


# ============================================================================ psi.c

def test_one_of_two_stalled_is_some_only():
    # 1 CPU. A enters a memstall and sleeps on the read; B runs. NR_MEMSTALL=1, NR_RUNNING=1,
    # NR_MEMSTALL_RUNNING=0, B on the CPU not in a memstall: SOME, not FULL.
    g = PSIGroup(ncpus=1)
    g.wake(0, "A"), g.wake(0, "B")
    g.switch(0, 0, "A")
    g.memstall_enter(0, "A")
    g.sleep(0, "A", iowait=True)
    g.switch(0, 0, "B")
    assert g.totals(1 * S) == {"some": 1 * S, "full": 0}


def test_all_stalled_is_full():
    g = PSIGroup(ncpus=1)
    g.wake(0, "A"), g.wake(0, "B")
    for p in "AB":
        g.switch(0, 0, p)
        g.memstall_enter(0, p)
        g.sleep(0, p, iowait=True)
    assert g.totals(1 * S) == {"some": 1 * S, "full": 1 * S}
    # A's read completes at 1 s: it runs again, still inside its memstall (leaves at 1.5 s).
    # 1-1.5 s: running 1 == memstall_running 1 -> still FULL; then B alone stalled: SOME.
    g.wake(1 * S, "A")
    g.switch(1 * S, 0, "A")
    g.memstall_leave(1_500_000, "A")
    assert g.totals(2 * S) == {"some": 2 * S, "full": 1_500_000}


def test_reclaimer_on_cpu_is_full_even_with_runnable_tasks():
    # Direct reclaim: A runs in a memstall on the only CPU while B is runnable. test_state
    # alone says SOME (running 2 != memstall_running 1), but the CPU's current task is
    # in_memstall, so psi_group_change adds FULL: nothing productive can run.
    g = PSIGroup(ncpus=1)
    g.wake(0, "A"), g.wake(0, "B")
    g.switch(0, 0, "A")
    g.memstall_enter(0, "A")
    g.switch(400_000, 0, "B")                        # A preempted at 0.4 s, still reclaiming
    assert g.totals(1 * S) == {"some": 1 * S, "full": 400_000}


def test_two_cpus_weighted_by_nonidle_jiffies():
    # CPU0: A stalled asleep (FULL on CPU0), CPU1: B running. Both CPUs non-idle 1 s = 250
    # jiffies at HZ=250: total FULL = (1e9 * 250 + 0 * 250) / 500 ns = 0.5 s; SOME likewise.
    g = PSIGroup(ncpus=2)
    g.wake(0, "A", cpu=0), g.wake(0, "B", cpu=1)
    g.switch(0, 0, "A"), g.switch(0, 1, "B")
    g.memstall_enter(0, "A")
    g.sleep(0, "A", iowait=True)
    assert g.totals(1 * S) == {"some": 500_000, "full": 500_000}
    # Next second: B sleeps after 0.5 s. CPU0 non-idle 250 jiffies, all FULL; CPU1 125:
    #   1e9 * 250 // 375 = 666666666 ns -> +666666 us (not the unweighted 0.5 s)
    g.sleep(1_500_000, "B")
    assert g.totals(2 * S) == {"some": 1_166_666, "full": 1_166_666}


def test_refault_not_flagged_workingset_is_no_memstall():
    # The fault path as docs/thrashing.md wires it: memstall only around the read of a page
    # that workingset_refault flagged.  A refaults a page whose distance is too long (not
    # flagged) and waits 270 ms for it, then one that is flagged and waits 270 ms again.
    w, a, b = scripted("6.1")
    g = PSIGroup(ncpus=1)
    g.wake(0, "A"), g.switch(0, 0, "A")

    def fault(t, shadow):
        _, flagged = w.refault(shadow)
        if flagged:
            g.memstall_enter(t, "A")
        g.sleep(t, "A", iowait=True)
        g.wake(t + 270_000, "A")
        g.switch(t + 270_000, 0, "A")
        if flagged:
            g.memstall_leave(t + 270_000, "A")

    fault(0, a)                                      # distance 5 > 4: not flagged
    assert g.totals(1 * S) == {"some": 0, "full": 0}
    w.activation()
    fault(1 * S, w.evict(workingset=True))           # distance 1: flagged
    assert g.totals(2 * S) == {"some": 270_000, "full": 270_000}


def test_avg10_from_the_fixed_point_arithmetic():
    # HZ=250: psi_period = PSI_FREQ = 2*250+1 = 501 jiffies = 2.004 s. A runs from t=0 and is
    # in a memstall (FULL, alone) for its first 1.002 s.  The worker runs at 2.004 s:
    #   sample = 1.002e9 ns, period = 2.004e9 ns, pct = 1.002e9*100 // 2.004e9 = 50,
    #   pct * FIXED_1 = 102400;  calc_load(0, 1677, 102400) = (102400*(2048-1677) + 2047)
    #   // 2048 = (37990400 + 2047) // 2048 = 18550  ->  LOAD_INT 9, LOAD_FRAC
    #   (18550 & 2047)*100 >> 11 = 11800 >> 11 = 5: "9.05".
    # It re-arms nsecs_to_jiffies(4.008 s - 2.004 s) + 1 = 502 jiffies later: 4.012 s, period
    # 2.008 s, no stall: calc_load(18550, 1677, 0) = 18550*1677 // 2048 = 31108350 // 2048
    #   = 15189 -> 7 and (853*100) >> 11 = 41: "7.41".
    g = PSIGroup(ncpus=1, hz=250)
    g.wake(0, "A"), g.switch(0, 0, "A")
    g.memstall_enter(0, "A")
    g.memstall_leave(1_002_000, "A")
    assert g.avg[PSI_MEM_FULL] == [0, 0, 0]          # nothing before the first period ends
    assert g.show(2_004_000).splitlines()[1] == \
        "full avg10=9.05 avg60=1.63 avg300=0.34 total=1002000"
    assert g.avg[PSI_MEM_FULL][0] == g.avg[PSI_MEM_SOME][0] == 18550
    assert g.work_at == 4_012_000 * 1000
    assert g.avgs(4_012_000)["full"][0] == 7.41
    assert g.avg[PSI_MEM_FULL][0] == 15189
    assert g.full_avg10_max == 18550
    assert calc_load(18550, 1677, 0) == 15189 and load_str(18550) == "9.05"


def test_averaging_worker_stops_when_idle():
    # A stalls 1 s then sleeps (not iowait): the 2nd collection sees no non-idle time, the
    # worker is not re-armed (psi_avgs_work); the next task change re-arms it PSI_FREQ later.
    g = PSIGroup(ncpus=1, hz=250)
    g.wake(0, "A"), g.switch(0, 0, "A")
    g.memstall_enter(0, "A")
    g.memstall_leave(1 * S, "A")
    g.sleep(1 * S, "A")
    g.totals(5 * S)
    assert g.work_at is None
    g.wake(20 * S, "A")
    assert g.work_at == (20 * S + 2_004_000) * 1000


def test_fixed_power_int():
    # 1677/2048 squared: (1677*1677 + 1024) >> 11 = (2812329 + 1024) >> 11 = 1373
    assert fixed_power_int(1677, 11, 2) == 1373
    assert fixed_power_int(1677, 11, 0) == 2048


def test_time_must_not_go_backwards():
    g = PSIGroup()
    g.wake(10, "A")
    with pytest.raises(ValueError, match="backwards"):
        g.wake(5, "B")


# ============================================================================ progress

def freeze(d_us, kill_at=None, tail_s=30, second_task=False):
    """Goal task A: 100 ms steps at full speed for 100 s, then one 10 ms step that takes
    ``d_us`` (a text refault that never comes back quickly), then full speed again."""
    p = Progress()
    t = 0
    while t < 100 * S:
        p.step_done("A", t, t + 100_000, 100_000)
        if second_task:
            p.step_done("B", t, t + 100_000, 100_000)
        t += 100_000
    f = 100 * S + d_us
    p.step_done("A", 100 * S, f, 10_000)
    end = f + tail_s * S
    t = f
    while t < end:
        p.step_done("A", t, t + 100_000, 100_000)
        t += 100_000
    if second_task:
        t = 100 * S
        while t < end:
            p.step_done("B", t, t + 100_000, 100_000)
            t += 100_000
    if kill_at is not None:
        p.kill(kill_at)
    return p.finish(end)


def test_stretch_of_exactly_60_s_is_thrashing():
    # Window [t-10 s, t] near the freeze start: credit = 110 s - t (+ a sliver of the 10 ms),
    # below 20 % (credit < 2 s) first at t = 108.1 s.  After the freeze ends at F = 100 s + d,
    # credit = t - F, not below first at t = F + 2 s.  Length = d - 6.1 s: d = 66.1 s -> 60 s.
    # Deepest window: the 10 ms over 66.1 s, floor-credited, gives 1512 us in 10 s.
    r = freeze(66_100_000)
    assert r == {"progress_min10": 0.000151, "thrash_s": 60.0, "thrash_start_s": 108.1,
                 "thrash_to_kill_s": None, "thrashing": True}


def test_stretch_of_59_s_is_not():
    r = freeze(65_100_000)
    assert r["thrash_s"] == 59.0 and r["thrashing"] is False


def test_kill_ending_the_stretch():
    # Freeze ends by a kill at 130 s (A runs again at once): stretch 108.1 s .. 132 s, 23.9 s
    # long, ended by the kill 21.9 s after it began: not thrashing.
    r = freeze(30 * S, kill_at=130 * S)
    assert (r["thrash_s"], r["thrash_to_kill_s"], r["thrashing"]) == (23.9, 21.9, False)
    # The kill comes 66.9 s into the stretch: it ended it, but only after the 60 s limit.
    r = freeze(75 * S, kill_at=175 * S)
    assert (r["thrash_s"], r["thrash_to_kill_s"], r["thrashing"]) == (68.9, 66.9, True)


def test_kill_before_the_limit_is_not_thrashing_even_if_the_window_lag_passes_it():
    # Freeze of 67.1 s ended by a kill at 167.1 s (A runs again at once): the stretch runs
    # 108.1 s .. 169.1 s = 61 s, because the window still holds the freeze for 2 s after the
    # kill; but it held only 167.1 - 108.1 = 59 s before the kill ended it: not thrashing.
    r = freeze(67_100_000, kill_at=167_100_000)
    assert (r["thrash_s"], r["thrash_to_kill_s"], r["thrashing"]) == (61.0, 59.0, False)


def test_pooled_over_goal_tasks():
    # B keeps running at full speed while A is frozen: pooled progress ~50 %, no stretch.
    r = freeze(66_100_000, second_task=True)
    assert r["thrash_s"] == 0.0 and r["thrashing"] is False
    assert r["progress_min10"] == 0.500076            # (10 s + 1512 us) / 20 s


def test_unfinished_step_earns_nothing():
    # A completes 5 s of steps, then is stuck in a step that never ends until the run ends at
    # 80 s: windows from 15 s on have credit 0; the stretch runs to the end of the run.
    p = Progress()
    for i in range(50):
        p.step_done("A", i * 100_000, (i + 1) * 100_000, 100_000)
    r = p.finish(80 * S)
    assert r["progress_min10"] == 0.0
    # credit 5 s - (t - 10 s) < 2 s first at t = 13.1 s; stretch to 80 s = 66.9 s
    assert (r["thrash_start_s"], r["thrash_s"], r["thrashing"]) == (13.1, 66.9, True)


def test_a_kill_before_any_low_window_leaves_no_stretch_to_end():
    # mglru_ttl on desktop-thrash, scripted: goal task A at full speed from 1 s, one 300 ms
    # text refault at 5.6 s, the hog killed at 5.9 s, A at full speed again until 40 s.  The
    # lowest window (ending 10.0 s: A alive 9 s, 8.7 s of nominal plus the refault's 10 ms)
    # is far above 20 %: no stretch, so no thrash_to_kill_s -- the kill prevented the thrash.
    # Starting a stretch at the start of its first low window instead would change nothing:
    # there is no low window.
    p = Progress()
    t = 1 * S
    while t < 40 * S:
        if t == 5_600_000:
            p.step_done("A", t, t + 300_000, 10_000)
            t += 300_000
            continue
        p.step_done("A", t, t + 100_000, 100_000)
        t += 100_000
    p.kill(5_900_000)
    r = p.finish(40 * S)
    assert r == {"progress_min10": 0.967778, "thrash_s": 0.0, "thrash_start_s": None,
                 "thrash_to_kill_s": None, "thrashing": False}

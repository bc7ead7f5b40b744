"""The successors of policies.md with exact numbers, written out by hand from the kernel formulas
quoted in each policy file's docstring (never recomputed with the code under test)."""
from __future__ import annotations

import pytest

from harness import machine as M
from harness import registry, runner
from harness.engine import DWAIT, MM, REPEAT, File, Kernel
from harness.machine import GFP_ATOMIC, GFP_HIGHUSER, PF_MEMDIE, MachineSpec

SEC = 1_000_000
HZ_10 = 100_000                     # HZ/10 in simulated us


def policy(name, **params):
    return registry.get_policy(name)(**params)


def machine(name, ram_mb=64, swap_mb=0, **params):
    p = policy(name, **params)
    k = Kernel(MachineSpec(ram_mb=ram_mb, swap_mb=swap_mb), p)
    p.reset(k)
    return p, k


def idle(t):
    return iter(())


def task(k, name, anon=0, pt=0, uid=500, adj=0, text=None, **kw):
    mm = MM(anon + 100, text)
    mm.anon[1] = anon
    mm.pt[1] = pt
    return k.new_task(name, idle, mm=mm, uid=uid, oom_score_adj=adj, **kw)


def drive(gen, k):
    """Run a kernel generator by hand: time jumps to the end of every DWAIT; CPU is free."""
    cmds = []
    try:
        cmd = next(gen)
        while True:
            cmds.append(cmd)
            if cmd[0] == DWAIT:
                k.now = cmd[1]
            cmd = gen.send(cmd[2] if cmd[0] == REPEAT else None)
    except StopIteration as e:
        return cmds, e.value


# ============================================================================ watermarks
def test_linux26_watermarks_and_lowmem_reserve_on_64mb():
    # min_free_kbytes = int_sqrt(16384 pages * 4 KB * 16) = int_sqrt(1048576) = 1024 -> 256 pages
    # DMA: 256 * 4096 / 16384 = 64; NORMAL: 256 * 12288 / 16384 = 192; low = min + min/4,
    # high = min + min/2.  lowmem_reserve: DMA keeps NORMAL's 12288 pages / 256 = 48 back
    p, k = machine("linux26")
    assert p.wm == [(64, 80, 96), (192, 240, 288), (0, 0, 0)]
    assert p.reserve == [[0, 48, 48], [0, 0, 0], [0, 0, 0]]
    zl = k.zonelist(GFP_HIGHUSER)
    assert zl == (1, 0)
    # zone_watermark_ok: free - (1<<order) + 1 > mark + reserve[classzone NORMAL]
    assert p.watermarks(k, zl, 0, GFP_HIGHUSER, "low") == [240, 80 + 48]
    assert p.watermarks(k, zl, 0, GFP_HIGHUSER, "min") == [192, 64 + 48]
    assert p.watermarks(k, zl, 1, GFP_HIGHUSER, "high") == [288 + 1, 96 + 48 + 1]
    # GFP_ATOMIC: ALLOC_HIGH halves the mark, ALLOC_HARDER takes a quarter more:
    # NORMAL 192 -> 96 -> 72; DMA 64 -> 32 -> 24, + 48 reserve
    assert p.watermarks(k, zl, 0, GFP_ATOMIC, "atomic") == [72, 72]


def test_oom_reaper_watermarks_count_managed_pages():
    # 4.x: managed = present - boot reservation (2560 KB = 640 pages, all in DMA):
    # lowmem 3456 + 12288 = 15744 pages = 62976 KB; int_sqrt(62976 * 16) = 1003 -> 250 pages;
    # DMA 250 * 3456 / 15744 = 54, gap max(54/4, 3456 * 10 / 10000) = 13 -> (54, 67, 80);
    # NORMAL 250 * 12288 / 15744 = 195, gap max(48, 12) = 48 -> (195, 243, 291)
    p, k = machine("oom_reaper")
    assert k.zones[0].reserved == 640
    assert p.wm == [(54, 67, 80), (195, 243, 291), (0, 0, 0)]
    assert p.reserve == [[0, 48, 48], [0, 0, 0], [0, 0, 0]]
    assert p.totalpages == 15744


def test_lowmem_reserve_with_highmem():
    # 1 GB: DMA 4096, NORMAL 225280, HIGHMEM 32768; ratios {256, 32}:
    # NORMAL keeps 32768 / 32 = 1024 back from HIGHMEM allocations; DMA 225280 / 256 = 880 from
    # NORMAL ones and (32768 + 225280) / 256 = 1008 from HIGHMEM ones
    p, k = machine("linux26", ram_mb=1024)
    assert p.reserve == [[0, 880, 1008], [0, 0, 1024], [0, 0, 0]]
    # HIGHMEM min = 32768 / 1024 = 32 (clamped to 32..128); its share of min_free_kbytes
    # (int_sqrt(229376 * 4 * 16) = 3831 KB -> 957 pages) is 957 * 32768 / 229376 = 136
    assert p.wm[2] == (32, 32 + 34, 32 + 68)


# ============================================================================ badness
def test_oom_badness_of_a_few_tasks():
    p26, k26 = machine("linux26")
    p4, k4 = machine("oom_reaper")
    text = File("bin/x", 200, 50)
    text.mapped[1] = 50
    for p, k in ((p26, k26), (p4, k4)):
        init = task(k, "init", anon=64)
        user = task(k, "user", anon=1000, pt=2)
        root = task(k, "root", anon=3000, pt=3, uid=0)
        adj = task(k, "adj", anon=100, pt=1, adj=500)
        never = task(k, "never", anon=5000, adj=-1000)
        low = task(k, "low", anon=100, pt=1, adj=-900)
        texty = task(k, "texty", anon=100, pt=1, text=text)
        kth = k.new_task("kthread", idle, kthread=True)
        got = [p.badness(k, t) for t in (init, user, root, adj, never, low, texty, kth)]
        if p is p26:
            # 2.6.36: (rss + ptes + swap) * 1000 / totalpages (15744), -30 root, + adj, >= 1
            assert got == [0, 1002000 // 15744, 3003000 // 15744 - 30, 101000 // 15744 + 500,
                           0, 1, 151000 // 15744, 0]
            assert got == [0, 63, 160, 506, 0, 1, 9, 0]
        else:
            # 4.15: pages; root - 3 %; adj * (15744 / 1000 = 15); at least 1
            assert got == [0, 1002, 3003 - 90, 101 + 7500, 0, 1, 151, 0]


def test_linux26_select_aborts_while_a_victim_lives():
    p, k = machine("linux26")
    task(k, "init", anon=64)
    big = task(k, "big", anon=4000)
    task(k, "small", anon=10)
    victim, table = p.select_bad_process(k)
    assert victim is big and table[0] == (big.pid, "big", 4000 * 1000 // 15744)
    exiting = task(k, "exiting", anon=1)
    exiting.flags |= PF_MEMDIE                   # a TIF_MEMDIE task anywhere in the list
    victim, table = p.select_bad_process(k)
    assert victim is None and type(table).__name__ == "Aborted"


def test_oom_reaper_select_skips_a_reaped_victim():
    p, k = machine("oom_reaper")
    task(k, "init", anon=64)
    big = task(k, "big", anon=4000)
    nxt = task(k, "next", anon=3000)
    p.mark_oom_victim(k, big)
    victim, table = p.select_bad_process(k)
    assert victim is None and type(table).__name__ == "Aborted"      # waits for it
    p.set_oom_skip(big.mm)                                          # MMF_OOM_SKIP
    victim, table = p.select_bad_process(k)
    assert victim is nxt and table == ((nxt.pid, "next", 3000),)


# ============================================================================ the reaper
class Locked:
    """A trylock that fails ``fails`` times."""

    def __init__(self, fails):
        self.fails = fails

    def __call__(self, k, mm):
        self.fails -= 1
        return self.fails < 0


def _reaper_case(fails):
    p, k = machine("oom_reaper")
    p.mmap_sem_trylock = Locked(fails)
    reaper = k.new_task("oom_reaper", idle, kthread=True)
    victim = task(k, "victim", anon=0)
    req_pages = 2000
    k.zones[1].free -= req_pages                   # the victim's anonymous pages, accounted
    k.zones[1].anon += req_pages
    victim.mm.anon[1] = req_pages
    p.mark_oom_victim(k, victim)
    k.now = 7 * SEC
    free0 = k.zones[1].free
    cmds, _ = drive(p.oom_reap_task(k, reaper, victim), k)
    return p, k, victim, cmds, free0


def test_reaper_gives_up_after_ten_tries_hz10_apart():
    p, k, victim, cmds, free0 = _reaper_case(fails=99)
    waits = [c[1] for c in cmds if c[0] == DWAIT]
    assert waits == [7 * SEC + i * HZ_10 for i in range(1, 11)]       # 10 tries, HZ/10 apart
    assert k.now == 7 * SEC + 10 * HZ_10                               # MMF_OOM_SKIP after 1 s
    assert p.oom_skip(victim.mm) and victim.mm.anon[1] == 2000 and k.zones[1].free == free0
    assert k.trace[-1][1:] == ("oom_reap", victim.pid, 10, 0)
    k.check_pages()


def test_reaper_frees_anonymous_memory_at_the_third_try():
    p, k, victim, cmds, free0 = _reaper_case(fails=2)
    waits = [c[1] for c in cmds if c[0] == DWAIT]
    assert waits == [7 * SEC + HZ_10, 7 * SEC + 2 * HZ_10]
    assert victim.mm.anon == [0, 0, 0] and k.zones[1].free == free0 + 2000
    assert p.oom_skip(victim.mm) and victim.alive                      # the victim still lives
    assert k.trace[-1][1:] == ("oom_reap", victim.pid, 3, 1)
    k.check_pages()


def test_should_reclaim_retry_gives_up_after_16_rounds_without_progress():
    from harness.engine import AllocReq
    p, k = machine("oom_reaper")
    t = task(k, "t")
    req = AllocReq(t, GFP_HIGHUSER, 0, 1, k.zonelist(GFP_HIGHUSER), True)
    loops, answers = 0, []
    for _ in range(18):
        (_, (retry, loops)) = drive(p.should_reclaim_retry(k, req, 0, False, loops), k)
        answers.append((retry, loops))
    assert answers[:16] == [(True, i) for i in range(1, 17)]          # free pages pass min
    assert answers[16] == (False, 17)                                   # > MAX_RECLAIM_RETRIES
    _, (retry, loops) = drive(p.should_reclaim_retry(k, req, 0, True, 12), k)
    assert (retry, loops) == (True, 0)                                  # progress resets it


# ============================================================================ 2.4 variants
def test_mainline_pure_kills_init_when_it_is_the_biggest():
    p, k = machine("mainline_pure")
    init = task(k, "init", anon=64)
    init.mm.total_vm = 5000
    task(k, "small", anon=10).mm.total_vm = 300
    assert p.select_bad_process(k)[0] is init                           # pid != 0: init eligible
    q, k2 = machine("mainline")
    init2 = task(k2, "init", anon=64)
    init2.mm.total_vm = 5000
    assert q.select_bad_process(k2)[0] is None                          # akpm: pid <= 1 skipped


def test_mainline_2419_has_the_lastkill_gate():
    p, _ = machine("mainline_pure")
    q, _ = machine("mainline_2419")
    assert p.oom_limiter.use_lastkill is False and q.oom_limiter.use_lastkill is True


def test_tiny_golden_numbers():
    # the same box, the same hog: the 5 s lastkill gate (jiffies start at 0) holds the first
    # kill of 2.4.19 final to t >= 5 s; pre6 kills as soon as its rate limiter allows
    pure = runner.run_one("mainline_pure", "tiny", 0)
    final = runner.run_one("mainline_2419", "tiny", 0)
    assert (pure["first_kill_s"], pure["first_victim"]) == (2.807772, "hog")
    assert (final["first_kill_s"], final["first_victim"]) == (5.001079, "hog")


# ============================================================================ the headline
@pytest.mark.parametrize("seed", range(3))
def test_linux26_stalls_behind_a_d_state_victim_oom_reaper_does_not(seed):
    a, ka = runner.run_one("linux26", "dstate-victim", seed, keep_kernel=True)
    b = runner.run_one("oom_reaper", "dstate-victim", seed)
    # both pick the 36 MB database asleep in D state, once
    assert a["first_victim"] == b["first_victim"] == "db"
    assert a["kills"] == b["kills"] == 1
    # 2.6: select_bad_process aborts while the TIF_MEMDIE victim sleeps: once reclaim has
    # taken what the two-list file LRU still gives (the sleeping tasks' text, for ~4 s after
    # the kill), nothing moves for the watchdog's 120 s; 4.15: the reaper frees the victim's
    # memory in D state
    last = ka.last_progress / 1e6
    assert a["outcome"] == "livelock" and a["sim_s"] == pytest.approx(last + 120, abs=0.01)
    assert 0 <= last - a["first_kill_s"] < 10
    assert b["outcome"] == "recovered"


def test_the_reaper_frees_the_d_state_victim_at_once():
    rec, k = runner.run_one("oom_reaper", "dstate-victim", 0, keep_kernel=True)
    kill = next(ev for ev in k.trace if ev[1] == "kill")
    reap = next(ev for ev in k.trace if ev[1] == "oom_reap")
    db = k.by_pid[kill[2]]
    assert reap[2] == db.pid and reap[3:] == (1, 1)                     # first try, reaped
    assert reap[0] - kill[0] < 0.1 * SEC
    exit_t = next(ev[0] for ev in k.trace if ev[1] == "exit" and ev[2] == db.pid)
    assert exit_t - kill[0] > 100 * SEC                                 # it slept on in D


def test_without_mmap_sem_the_reaper_gives_up_and_another_victim_dies():
    """MMF_OOM_SKIP after ten tries: the selector moves on to the next task."""
    from policies.oom_reaper import OomReaper

    class Stuck(OomReaper):
        name = "stuck"

        def mmap_sem_trylock(self, k, mm):
            return False

    w = runner.resolve_workload("dstate-victim")
    k = runner.simulate(Stuck(), w, 0)
    kills = [ev for ev in k.trace if ev[1] == "kill"]
    reap = next(ev for ev in k.trace if ev[1] == "oom_reap")
    assert [k.by_pid[ev[2]].name for ev in kills[:2]] == ["db", "hog"]
    assert reap[3:] == (10, 0)
    # ten tries HZ/10 apart (exact in test_reaper_gives_up_after_ten_tries_hz10_apart), each
    # behind oom_lock and the CPU queue of the allocating tasks
    assert 1.0 * SEC <= reap[0] - kills[0][0] < 2.0 * SEC
    assert kills[1][0] > reap[0]


# ============================================================================ user space
def test_meminfo_of_a_fresh_64mb_box():
    # free: DMA 4096 - 640 reserved - 256 slab - 256 dcache = 2944, NORMAL 12288 -> 15232;
    # totalreserve: DMA 48 + 80, NORMAL 0 + 291 = 419; wmark_low 67 + 243 = 310;
    # reclaimable slab 256 - min(128, 310) = 128 -> MemAvailable 15232 - 419 + 128 = 14941
    p, k = machine("psi_userspace")
    assert p.meminfo(k) == (15744, 14941, 0, 0)


def test_oomd_reads_the_engines_full_avg10():
    # The daemon keeps no PSI of its own: it reads k.psi as /proc/pressure/memory.  Task 99
    # alone stalls FULL for 1.002 s: at 2.004 s (PSI_FREQ, HZ 250) full avg10 = 9.05 %.
    p, k = machine("psi_userspace", daemon="oomd")
    k.psi.wake(0, 99)
    k.psi.memstall_enter(0, 99)
    k.psi.memstall_leave(1_002_000, 99)
    k.now = 2_004_000
    assert p.full_avg10_percent(k) == 9.05
    assert not hasattr(p, "full_by_period") and "memstall" not in type(p).__dict__


def test_earlyoom_kills_before_the_kernel_on_tiny():
    rec, k = runner.run_one("psi_userspace", "tiny", 0, keep_kernel=True)
    kill = next(ev for ev in k.trace if ev[1] == "kill")
    killer = k.by_pid[kill[6]]
    assert killer.name == "earlyoom" and not killer.kthread
    assert k.by_pid[kill[2]].name == "hog" and kill[4] == M.SIGTERM   # 10 %: SIGTERM first
    assert not any(ev[1] == "oom_call" for ev in k.trace)                # no kernel OOM at all


def test_lmkd_psi_triggers():
    # window 1 s, polled every 100 ms (PSI_POLL: reading it leaves the averages alone);
    # "some" fires at 70 ms of stall within the window, "full" at 700 ms; a trigger fires at
    # most once per window.  Task 99 stalls FULL (alone on the CPU) from 9 s on.
    p, k = machine("psi_userspace", daemon="lmkd")
    k.psi.wake(0, 99)
    k.psi.memstall_enter(9 * SEC, 99)

    def poll(t):
        k.now = t
        p._psi_poll(k)

    poll(9 * SEC)
    assert p.psi_events == []
    poll(9 * SEC + 100_000)                                  # 100 ms >= 70 ms: partial
    assert p.psi_events == ["some"]
    for i in range(2, 7):
        poll(9 * SEC + i * 100_000)
    assert p.psi_events == ["some"]                          # 600 ms < 700 ms
    poll(9 * SEC + 700_000)
    assert p.psi_events == ["some", "full"]
    poll(9 * SEC + 800_000)                                  # same window: nothing new
    assert p.psi_events == ["some", "full"]
    poll(10 * SEC + 100_000)                                 # a window after "some" fired
    assert p.psi_events == ["some", "full", "some"]
    from harness.psi import MemPSI                           # polls left the averages alone
    q = MemPSI()
    q.wake(0, 99)
    q.memstall_enter(9 * SEC, 99)
    q._advance(k.now)
    assert (k.psi.avg, k.psi.total) == (q.avg, q.total) and q.avg[1][0] > 0

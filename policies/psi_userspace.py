"""psi_userspace: a user-space OOM killer (earlyoom 1.7, systemd-oomd, Android lmkd) on 4.15.

The modern answer to "the kernel kills too late": a daemon watches memory from user space and
kills the largest task before the kernel's allocator gets to its OOM killer.  The kernel
underneath is ``oom_reaper`` (4.15) unchanged, so when the daemon is too slow or its victim
cannot die, the kernel's own OOM killer and reaper still act (``policies.md``, successors).

``daemon`` chooses which of three published daemons runs, each with its defaults:

* ``"earlyoom"`` (rfjakob/earlyoom v1.7, ``main.c`` ``poll_loop``/``sleep_time_ms``, ``kill.c``
  ``find_largest_process``/``kill_wait``, ``meminfo.c``): reads MemAvailable and SwapFree;
  when both are at or below ``mem_term_percent``/``swap_term_percent`` (10 %) it sends SIGTERM
  to the process with the highest ``/proc/<pid>/oom_score`` (ties: larger VmRSS; never pid 1,
  itself, a task without RSS or with ``oom_score_adj`` -1000), SIGKILL at or below
  ``mem_kill_percent``/``swap_kill_percent`` (5 %); before killing it reads memory again and
  lets go if it recovered; then waits up to ``kill_wait_s`` (10 s) for the victim to exit,
  polling every 100 ms and escalating SIGTERM to SIGKILL when memory falls below the kill
  limits.  It polls "up to 10 times a second": ``sleep_time_ms`` sleeps the time in which
  memory could fill the headroom above the SIGTERM limit at 6000 KiB/ms (swap 800 KiB/ms),
  clamped to 100..1000 ms.  A machine without swap counts as "swap at 0 %".
* ``"oomd"`` (systemd-oomd, ``oomd.conf`` defaults ``DefaultMemoryPressureLimit=60%``,
  ``DefaultMemoryPressureDurationSec=30s``): every second it reads the memory pressure "full
  avg10"; once above the limit for the whole duration it SIGKILLs the largest task and starts
  the duration again.
* ``"lmkd"`` (Android lmkd, PSI monitors ``ro.lmk.psi_partial_stall_ms`` 70 and
  ``ro.lmk.psi_complete_stall_ms`` 700 over a 1 s window): it sleeps until a PSI trigger fires;
  a partial stall ("some" >= 70 ms per 1 s) is the low level, which kills nothing here; a
  complete stall ("full" >= 700 ms per 1 s) is critical and SIGKILLs the heaviest task (largest
  RSS) among those with the highest ``oom_score_adj`` >= 0 it has not killed yet; it then
  waits ``lmkd_kill_timeout_ms`` (100) or until the victim is gone.

Pressure stall information (kernel/sched/psi.c, 4.20): a task stalls on memory while it is in
the allocator's slow path (reclaim, the OOM path, their waits) and kswapd while it reclaims;
"some" time has at least one such task, "full" time has no other task running.  ``avg10`` is
updated every 2 s with ``EXP_10s`` = 1677/2048.  Triggers fire when the stall time within the
window reaches the threshold, at most once per window.

Departures: the kernel's stall clock is sampled once a jiffy, and only while some task stalls
(when none does, both stall times are zero); the daemon is a user task of ``daemon_rss_kb`` of
locked anonymous memory that runs on the simulated CPU like any other (reading /proc costs
``PROC_READ_US`` per file); signals are sent with ``kill()`` -- no TIF_MEMDIE, no reaper, no
boost -- and recorded as kills; systemd-oomd kills the largest task, not the cgroup with the
most reclaim activity (there are no cgroups); lmkd watches every user task, not just the
applications ActivityManager registers.
"""
from collections import deque

from harness import blocks as B
from harness import machine as M
from harness import mm as MMops
from harness.engine import CPU, MM, SLEEP, WAITQ, WaitQueue
from harness.machine import SIGKILL, SIGTERM

from policies.oom_reaper import OomReaper

PROC_READ_US = 40            # open+read+parse of one small /proc file on a ~500 MHz PIII
EXP_10S = 1677               # kernel/sched/psi.c: 1/exp(2s/10s) as fixed-point, FIXED_1 = 2048
FIXED_1 = 2048
PSI_FREQ_US = 2 * 1_000_000  # psi_avgs_work period (2 s)


class PsiUserspace(OomReaper):
    name = "psi_userspace"
    description = ("a user-space killer (earlyoom by default; systemd-oomd, lmkd) acts on "
                   "memory or PSI thresholds before the 4.15 kernel does")
    params = {**OomReaper.params,
              "daemon": "earlyoom",
              "mem_term_percent": 10, "mem_kill_percent": 5,
              "swap_term_percent": 10, "swap_kill_percent": 5,
              "kill_wait_s": 10,
              "oomd_pressure_limit_percent": 60, "oomd_duration_s": 30, "oomd_interval_s": 1,
              "lmkd_partial_stall_ms": 70, "lmkd_complete_stall_ms": 700,
              "lmkd_window_ms": 1000, "lmkd_kill_timeout_ms": 100,
              "daemon_rss_kb": 256, "daemon_oom_score_adj": -100}

    DAEMONS = ("earlyoom", "oomd", "lmkd")

    def reset(self, k):
        super().reset(k)
        if self.daemon not in self.DAEMONS:
            raise ValueError(f"psi_userspace: daemon must be one of {self.DAEMONS}, "
                             f"got {self.daemon!r}")
        self.stalled = set()          # pids in a memory stall
        self.sampling = False         # the jiffy sampler is armed
        self.samples = deque()        # (t_us, some, full), the last lmkd window
        self.full_by_period = {}      # psi_avgs period index -> full stall us
        self.avg10 = 0                # full avg10, fixed point (FIXED_1 = 100 %)
        self.avg_period = 0           # next period to fold into avg10
        self.trigger_last = {"some": -10**12, "full": -10**12}
        self.psi_events = []          # fired triggers not yet seen by lmkd
        self.psi_wait = WaitQueue()
        self.daemon_task = None
        self.killed = set()           # pids lmkd has killed (dropped from its lists)

    def boot(self, k):
        super().boot(k)
        init = k.by_pid[1]
        pages = self.daemon_rss_kb * 1024 // M.PAGE_SIZE
        self.daemon_task = k.new_task(
            self.daemon, lambda t: self.daemon_main(k, t), role="protected", uid=0,
            parent=init, mm=MM(4 * pages, None), daemon=True,
            oom_score_adj=self.daemon_oom_score_adj)

    # ------------------------------------------------------------------ PSI (kernel side)
    def memstall(self, k, task, enter):
        """``psi_memstall_enter``/``_leave``: the engine calls it around every stall in the
        slow path and around kswapd's reclaim (``balance_pgdat`` in psi_memstall)."""
        if enter:
            self.stalled.add(task.pid)
            if not self.sampling:
                self.sampling = True
                k.at(k.now + M.JIFFY_US - k.now % M.JIFFY_US, self._psi_tick, k)
        else:
            self.stalled.discard(task.pid)

    def _psi_tick(self, k):
        """One jiffy of the stall clock: "some" if a task stalls, "full" if no other runs."""
        live = k.live
        stalled = [p for p in self.stalled if p in live]
        now = k.now
        if not stalled:
            self.sampling = False
            return
        full = not any(t.state == "R" and t.pid not in self.stalled for t in live.values())
        self.samples.append((now, 1, int(full)))
        period = now // PSI_FREQ_US
        if full:
            self.full_by_period[period] = self.full_by_period.get(period, 0) + M.JIFFY_US
        if self.daemon == "lmkd":
            self._check_triggers(k, now)
        k.at(now + M.JIFFY_US, self._psi_tick, k)

    def stall_us(self, k, kind: str, window_us: int) -> int:
        """Stall time of ``kind`` ("some" or "full") within the last ``window_us``."""
        cut = k.now - window_us
        while self.samples and self.samples[0][0] <= cut - window_us:
            self.samples.popleft()
        i = 1 if kind == "some" else 2
        return sum(s[i] for s in self.samples if s[0] > cut) * M.JIFFY_US

    def _check_triggers(self, k, now):
        """``psi_trigger``s: fire when the window's stall time reaches the threshold, at most
        once per window."""
        win = self.lmkd_window_ms * 1000
        for kind, thr in (("some", self.lmkd_partial_stall_ms), ("full", self.lmkd_complete_stall_ms)):
            if now < self.trigger_last[kind] + win:
                continue
            if self.stall_us(k, kind, win) >= thr * 1000:
                self.trigger_last[kind] = now
                self.psi_events.append(kind)
                if self.psi_wait.tasks:
                    k.wake_queue(self.psi_wait)

    def full_avg10_percent(self, k) -> float:
        """``/proc/pressure/memory`` "full avg10": fold every finished 2 s period in."""
        last = k.now // PSI_FREQ_US
        while self.avg_period < last:
            pct = self.full_by_period.pop(self.avg_period, 0) * FIXED_1 // PSI_FREQ_US
            self.avg10 = (self.avg10 * EXP_10S + pct * (FIXED_1 - EXP_10S)) // FIXED_1
            self.avg_period += 1
        return 100.0 * self.avg10 / FIXED_1

    # ------------------------------------------------------------------ /proc (what a daemon reads)
    def meminfo(self, k):
        """``si_mem_available`` and friends, in pages: (MemTotal, MemAvailable, SwapTotal,
        SwapFree)."""
        wmark_low = sum(w[1] for w in self.wm)
        totalreserve = 0
        for zi, z in enumerate(k.zones):
            if z.size:
                worst = max(self.reserve[zi]) + self.wm[zi][2]
                totalreserve += min(worst, z.size - z.reserved)
        free = sum(z.free for z in k.zones)
        pagecache = sum(z.clean + z.mapped + z.dirty + z.wb for z in k.zones)
        slab = sum(z.dcache for z in k.zones)
        avail = free - totalreserve
        avail += pagecache - min(pagecache // 2, wmark_low)
        avail += slab - min(slab // 2, wmark_low)
        return self.totalpages - k.swap_total, max(0, avail), k.swap_total, k.nr_swap_pages

    def oom_score(self, k, p) -> int:
        """``/proc/<pid>/oom_score``: ``oom_badness * 1000 / totalpages``."""
        return self.badness(k, p) * 1000 // max(1, self.totalpages)

    def vm_rss(self, p) -> int:
        mm = p.mm
        if mm is None:
            return 0
        return sum(mm.anon) + (sum(mm.text.mapped) if mm.text is not None else 0)

    def candidates(self, k, me):
        """Processes a daemon may kill: not init, not itself, resident, not -1000."""
        return [p for p in k.live.values()
                if p.alive and p.pid > 1 and p is not me and self.vm_rss(p) > 0
                and p.oom_score_adj > -1000]

    # ------------------------------------------------------------------ the daemons
    def daemon_main(self, k, t):
        yield from MMops.fault_anon(k, t, t.mm.total_vm // 4, 0)      # mlockall()ed at start
        loop = {"earlyoom": self.earlyoom, "oomd": self.oomd, "lmkd": self.lmkd}[self.daemon]
        yield from loop(k, t)

    def _alive_or_exit(self, k, t) -> bool:
        if k.fatal_pending(t):
            k.do_exit(t, -t.sigpending, "oom-kill" if t.killed_at is not None else "signal")
            return False
        return True

    def _kill(self, k, t, victim, sig, table) -> bool:
        """``kill(pid, sig)``: ESRCH once the victim is gone."""
        if not victim.alive:
            return False
        k.signal(victim, sig)
        B.record_kill(k, victim, sig, table, t)
        return True

    def _percent(self, part, whole) -> float:
        return 100.0 * part / whole if whole else 0.0

    def earlyoom(self, k, t):
        while True:
            if not self._alive_or_exit(k, t):
                return
            total, avail, swap_total, swap_free = self.meminfo(k)
            yield (CPU, PROC_READ_US, True)
            mem_pct = self._percent(avail, total)
            swap_pct = self._percent(swap_free, swap_total)
            sig = 0
            if mem_pct <= self.mem_kill_percent and swap_pct <= self.swap_kill_percent:
                sig = SIGKILL
            elif mem_pct <= self.mem_term_percent and swap_pct <= self.swap_term_percent:
                sig = SIGTERM
            if sig:
                yield from self.earlyoom_kill(k, t, sig)
            # sleep_time_ms: how long memory needs to fill the headroom at the fastest rates
            mem_head_kib = max(0.0, (mem_pct - self.mem_term_percent) * total * 4 / 100)
            swap_head_kib = max(0.0, (swap_pct - self.swap_term_percent) * swap_total * 4 / 100)
            ms = int(mem_head_kib / 6000 + swap_head_kib / 800)
            ms = max(100, min(1000, ms))
            yield (SLEEP, k.now + ms * 1000)

    def earlyoom_kill(self, k, t, sig):
        cands = self.candidates(k, t)
        yield (CPU, PROC_READ_US * (len(k.live) + 1), True)
        if not self._alive_or_exit(k, t):
            return
        scored = sorted(((self.oom_score(k, p), self.vm_rss(p), -p.pid, p) for p in cands),
                        key=lambda r: r[:3], reverse=True)
        if not scored:
            return
        victim = scored[0][3]
        table = tuple((p.pid, p.name, s) for s, _r, _n, p in scored[:5])
        total, avail, swap_total, swap_free = self.meminfo(k)          # double-check (1.6.2)
        if not (self._percent(avail, total) <= self.mem_term_percent
                and self._percent(swap_free, swap_total) <= self.swap_term_percent):
            return
        if not self._kill(k, t, victim, sig, table):
            return
        for _ in range(self.kill_wait_s * 10):                          # kill_wait
            if sig != SIGKILL:
                total, avail, swap_total, swap_free = self.meminfo(k)
                if (self._percent(avail, total) <= self.mem_kill_percent
                        and self._percent(swap_free, swap_total) <= self.swap_kill_percent):
                    sig = SIGKILL
                    self._kill(k, t, victim, sig, table)
            if not victim.alive:
                return
            yield (SLEEP, k.now + 100_000)
            if not self._alive_or_exit(k, t):
                return

    def largest(self, k, t, min_adj=None):
        """The task with the most resident pages (lmkd: of the highest ``oom_score_adj`` >=
        ``min_adj`` that it has not killed yet)."""
        cands = [p for p in self.candidates(k, t) if p.pid not in self.killed]
        if min_adj is not None:
            cands = [p for p in cands if p.oom_score_adj >= min_adj]
            if cands:
                top = max(p.oom_score_adj for p in cands)
                cands = [p for p in cands if p.oom_score_adj == top]
        if not cands:
            return None, ()
        ranked = sorted(cands, key=lambda p: (self.vm_rss(p), -p.pid), reverse=True)
        return ranked[0], tuple((p.pid, p.name, self.vm_rss(p)) for p in ranked[:5])

    def oomd(self, k, t):
        above_since = None
        while True:
            if not self._alive_or_exit(k, t):
                return
            pressure = self.full_avg10_percent(k)
            yield (CPU, PROC_READ_US, True)
            if pressure > self.oomd_pressure_limit_percent:
                if above_since is None:
                    above_since = k.now
                elif k.now - above_since >= self.oomd_duration_s * 1_000_000:
                    victim, table = self.largest(k, t)
                    yield (CPU, PROC_READ_US * (len(k.live) + 1), True)
                    if victim is not None and victim.alive:
                        self._kill(k, t, victim, SIGKILL, table)
                    above_since = None
            else:
                above_since = None
            yield (SLEEP, k.now + self.oomd_interval_s * 1_000_000)

    def lmkd(self, k, t):
        while True:
            if not self._alive_or_exit(k, t):
                return
            if not self.psi_events:
                yield (WAITQ, self.psi_wait, True)
                continue
            events, self.psi_events = self.psi_events, []
            if "full" not in events:
                continue                          # the low level: nothing to kill here
            victim, table = self.largest(k, t, min_adj=0)
            yield (CPU, PROC_READ_US * (len(k.live) + 1), True)
            if victim is None or not victim.alive:
                continue
            if not self._kill(k, t, victim, SIGKILL, table):
                continue
            self.killed.add(victim.pid)
            waited = 0
            while victim.alive and waited < self.lmkd_kill_timeout_ms:
                yield (SLEEP, k.now + 10_000)
                waited += 10

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

Pressure stall information is the engine's (``k.psi``, ``kernel/sched/psi.c`` of 6.1 at HZ 250,
fed by the scheduler and the engine's memory stalls: direct reclaim, kswapd's balance pass,
the read of a refaulting page flagged workingset), read as the daemons read
``/proc/pressure/memory``: ``k.psi.avgs`` for oomd's "full avg10"; for lmkd's triggers the
PSI_POLL aggregator (``k.psi.poll_totals``) polled every ``window / 10`` (psi.c
``UPDATES_PER_WINDOW``) as ``psi_poll_work`` does: a trigger fires when the stall time grown
within the last window reaches its threshold, at most once per window.  The daemon keeps no
pressure accounting of its own.  Free memory is ``/proc/meminfo``'s (:meth:`meminfo`).

Departures: PSI as 6.1 computes it (4.15 had none; 4.20 already counted these stalls); the
trigger's window is the growth between two polls exactly one window apart, not
``window_update``'s interpolation over a window started at the first growth; the daemon is a user task of ``daemon_rss_kb`` of
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
UPDATES_PER_WINDOW = 10      # kernel/sched/psi.c: a trigger's window is polled 10 times


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
        self.samples = deque()        # (t_us, some us, full us): lmkd's polls of the last window
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
        if self.daemon == "lmkd":             # its triggers, polled by the kernel
            k.at(k.now, self._psi_poll, k)

    # ------------------------------------------------------------------ PSI (read, not kept)
    def full_avg10_percent(self, k) -> float:
        """``/proc/pressure/memory`` "full avg10" (percent), as the engine's PSI shows it."""
        return k.psi.avgs(k.now)["full"][0]

    def _psi_poll(self, k):
        """``psi_poll_work`` for lmkd's two triggers, every ``window / UPDATES_PER_WINDOW``."""
        now = k.now
        tot = k.psi.poll_totals(now)
        self.samples.append((now, tot["some"], tot["full"]))
        self._check_triggers(k, now)
        k.at(now + self.lmkd_window_ms * 1000 // UPDATES_PER_WINDOW, self._psi_poll, k)

    def stall_us(self, k, kind: str, window_us: int) -> int:
        """Stall time of ``kind`` ("some" or "full") grown within the last ``window_us``: the
        newest poll minus the oldest one at most ``window_us`` old."""
        s = self.samples
        while s and s[0][0] < k.now - window_us:
            s.popleft()
        i = 1 if kind == "some" else 2
        return s[-1][i] - s[0][i] if s else 0

    def _check_triggers(self, k, now):
        """``update_triggers``: fire when the window's stall time reaches the threshold, at
        most once per window."""
        win = self.lmkd_window_ms * 1000
        for kind, thr in (("some", self.lmkd_partial_stall_ms), ("full", self.lmkd_complete_stall_ms)):
            if now < self.trigger_last[kind] + win:
                continue
            if self.stall_us(k, kind, win) >= thr * 1000:
                self.trigger_last[kind] = now
                self.psi_events.append(kind)
                if self.psi_wait.tasks:
                    k.wake_queue(self.psi_wait)

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

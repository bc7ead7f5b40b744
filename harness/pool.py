"""A pool of worker processes that outlives its workers: the matrix's executor.

Each worker is a fresh ``python -m harness.pool`` process (nothing inherited from the parent
but the environment) talking to the parent over two pipes, one job at a time.  Because the
parent knows which job each worker holds, a worker that dies -- any exit, any signal, the
host's OOM killer -- is pinned to its job exactly: the job is reported as crashed with the exit
code or signal, the worker is replaced, and the other jobs go on.  Each worker runs under an
address-space limit (``RLIMIT_AS``, ``mem_mb``), so no job can exhaust the host: an allocation
over it raises ``MemoryError`` in the job (the worker is replaced after such a job).  A job that
holds a worker past its hard wall limit (stuck in C code that no alarm interrupts) has its
worker killed and is reported as such.  Ctrl-C or an error in the parent kills every worker;
a worker whose parent is gone exits by itself.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection, wait
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)


def describe_exit(code: int) -> str:
    """A worker's return code as words: ``killed by signal SIGKILL (9)`` / ``exit code 3``."""
    if code is None:
        return "no exit status"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"killed by {name} ({-code})"
    return f"exit code {code}"


class _Worker:
    __slots__ = ("proc", "tx", "rx", "job", "since", "limit")

    def __init__(self, mem_mb):
        r_job, w_job = os.pipe()        # parent -> worker
        r_out, w_out = os.pipe()        # worker -> parent
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_ROOT, env.get("PYTHONPATH")) if p)
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "harness.pool", str(r_job), str(w_out), str(mem_mb or 0)],
                pass_fds=(r_job, w_out), env=env, stdin=subprocess.DEVNULL, stdout=2)
        finally:
            os.close(r_job)
            os.close(w_out)
        self.tx = Connection(w_job, readable=False)
        self.rx = Connection(r_out, writable=False)
        self.job = None
        self.since = 0.0
        self.limit = None

    def kill(self):
        try:
            self.proc.kill()
        except OSError:
            pass
        for c in (self.tx, self.rx):
            try:
                c.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass


class Pool:
    """``n`` workers under ``mem_mb`` MB of address space each (0: no limit)."""

    def __init__(self, n: int, mem_mb: int = 0):
        self.mem_mb = mem_mb
        self.workers = [_Worker(mem_mb) for _ in range(n)]

    def run(self, jobs, hard_limit_s=None):
        """Run ``jobs`` -- ``(fn, args)`` with ``fn`` a module-level function -- and yield
        ``(job, result, failure)`` as they finish: ``failure`` is None, or ``(status,
        message)``: ``("crashed", how the worker died)``, ``("timeout", ...)`` when it was
        killed for holding the job longer than ``hard_limit_s`` wall seconds, ``("error",
        the exception)`` when ``fn`` raised."""
        pending = deque(jobs)
        idle = list(self.workers)
        busy = {}
        while pending or busy:
            while idle and pending:
                w = idle.pop()
                job = pending.popleft()
                try:
                    w.tx.send(job)
                except OSError:                  # died while idle: replace it, retry the job
                    self._replace(w)
                    pending.appendleft(job)
                    idle.append(self.workers[-1])
                    continue
                w.job, w.since = job, time.monotonic()
                busy[w.rx] = w
            timeout = None
            if hard_limit_s:
                oldest = min(w.since for w in busy.values())
                timeout = max(0.0, oldest + hard_limit_s - time.monotonic())
            ready = wait(list(busy), timeout)
            if not ready and hard_limit_s:
                now = time.monotonic()
                for rx, w in list(busy.items()):
                    if now - w.since >= hard_limit_s:
                        del busy[rx]
                        job = w.job
                        self._replace(w)
                        idle.append(self.workers[-1])
                        yield job, None, ("timeout", f"the worker held the run for "
                                                     f"{hard_limit_s:g} s of wall time and was "
                                                     "killed")
                continue
            for rx in ready:
                w = busy.pop(rx)
                job = w.job
                try:
                    result = rx.recv()
                except (EOFError, OSError):
                    try:
                        code = w.proc.wait(timeout=10)
                    except subprocess.TimeoutExpired:
                        code = None
                    self._replace(w)
                    idle.append(self.workers[-1])
                    yield job, None, ("crashed", f"the worker died: {describe_exit(code)}")
                    continue
                ok, value = result
                if ok == "exit":                   # the worker asked to be replaced
                    self._replace(w)
                    idle.append(self.workers[-1])
                else:
                    idle.append(w)
                if ok is False:
                    yield job, None, ("error", value)
                else:
                    yield job, value, None

    def _replace(self, w):
        w.kill()
        self.workers.remove(w)
        self.workers.append(_Worker(self.mem_mb))

    def close(self):
        for w in self.workers:
            try:
                w.tx.close()                      # EOF: the worker's loop ends
            except OSError:
                pass
        deadline = time.monotonic() + 5
        for w in self.workers:
            try:
                w.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            w.kill()
        self.workers = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if exc[0] is not None:                    # Ctrl-C, an error: no worker is left behind
            for w in self.workers:
                w.kill()
            self.workers = []
        else:
            self.close()


def _watch_parent(ppid):
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:
            os._exit(0)


def serve(r_job: int, w_out: int, mem_mb: int):
    """The worker's loop: receive ``(fn, args)``, send back ``(ok, value)``; ``ok`` is True,
    False (``value`` is the exception as one line) or ``"exit"`` (a MemoryError: the value is
    sent, then the worker exits so that the next job starts in a fresh process)."""
    import resource
    if mem_mb > 0:
        lim = mem_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    signal.signal(signal.SIGINT, signal.SIG_IGN)      # the parent handles Ctrl-C
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    rx = Connection(r_job, writable=False)
    tx = Connection(w_out, readable=False)
    while True:
        try:
            fn, args = rx.recv()
        except EOFError:
            return
        try:
            value = fn(*args)
            ok = "exit" if isinstance(value, dict) and value.get("status") == "memory" else True
        except MemoryError:
            value, ok = "MemoryError", "exit"
        except BaseException as e:  # noqa: BLE001 - reported to the parent, the loop goes on
            value, ok = f"{type(e).__name__}: {e}", False
        tx.send((ok, value))
        if ok == "exit":
            return


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))

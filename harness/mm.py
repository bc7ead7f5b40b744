"""Memory-management paths that every policy shares: page faults, read/write, fork, exit, kupdated.

Each is a generator run inside a task.  Allocation always goes through the policy's
``alloc_pages`` (its ``__alloc_pages``); what happens when that fails is the kernel's, not the
policy's: the i386 fault path (arch/i386/mm/fault.c ``do_page_fault``), ``-ENOMEM`` from fork
(kernel/fork.c ``do_fork``) or read (mm/filemap.c ``generic_file_read``).
"""
from __future__ import annotations

from . import machine as M
from .engine import CMD_YIELD, CPU, DWAIT, ITER, SLEEP, AllocReq

ENOMEM = -12
_ZONEMASK = M.GFP_ZONEMASK
_WAIT = M.GFPF_WAIT
PTES_PER_PAGE = 1024       # i386 without PAE: one page-table page maps 4 MB
READAHEAD_PAGES = 64       # pages read in one disk request (2.4's max read-ahead is 31-127)
FORK_US = 200              # copy_process + exec: a fixed 0.2 ms of CPU


class Killed(Exception):
    """Raised inside a task's generator when it dies synchronously (fault kill, -ENOMEM exit)."""


def alloc(k, task, gfp: int, order: int, n: int, user: bool):
    """Allocate up to ``n`` blocks through the policy; returns the finished AllocReq (pages in got).
    :func:`alloc_pages` inlined (no generator of its own on the path every fault takes: most
    allocations end in the plain :meth:`fast_path` call), then the engine's bookkeeping of the
    result: a user page is forward progress, no page an ``alloc_fail``."""
    req = AllocReq(task, gfp, order, n, k.zonelists.get(gfp & _ZONEMASK) or k.zonelist(gfp), user)
    blocks = k.policy.fast_path(k, req)
    if blocks is None:
        blocks = yield from slow_path(k, req)
    if blocks and user:
        k.last_progress = k.now              # k.progress()
    if not blocks:
        k.emit("alloc_fail", task.pid, gfp, order)
    return req


def alloc_pages(k, req):
    """Generator: the allocator's entry (``__alloc_pages``), as the engine runs it for every
    allocation: the policy's :meth:`fast_path` (the passes that never sleep), and while that says
    "the slow path" (``None``) the measured :func:`slow_path`.  Returns the blocks obtained."""
    blocks = k.policy.fast_path(k, req)
    if blocks is None:
        blocks = yield from slow_path(k, req)
    return blocks


def slow_path(k, req):
    """Generator: the policy's :meth:`slow_path`, measured, as often as it answers ``None``
    ("goto try_again": back to the fast passes, as -rmap's ``__alloc_pages`` does).

    The measurement is the engine's, never the policy's: for a ``__GFP_WAIT`` caller each call
    of the slow path is a stall -- the ``stall`` event (pid, gfp, order) when it starts and
    ``stall_end`` (pid, 1 = got memory, 0 = failed, 2 = back to the fast passes) when it
    returns; ``task.in_alloc_since`` (the watchdog's input: who is waiting for memory, since
    when) is set for the outermost one; and the policy's :meth:`memstall` (pressure stall
    accounting, a kernel mechanism some policies model) is told when the task enters and leaves
    it.  A caller that cannot sleep goes through the slow path unmeasured (it cannot stall)."""
    policy = k.policy
    task = req.task
    while True:
        if not req.gfp & _WAIT:
            blocks = yield from policy.slow_path(k, req)
        else:
            since = task.in_alloc_since
            if since is None:
                task.in_alloc_since = k.now
                k.memstall(task, True)
            k.emit("stall", task.pid, req.gfp, req.order)
            try:
                blocks = yield from policy.slow_path(k, req)
            finally:
                if since is None:
                    task.in_alloc_since = None
                    k.memstall(task, False)
            k.emit("stall_end", task.pid, 2 if blocks is None else int(bool(blocks)))
        if blocks is not None:
            return blocks
        blocks = policy.fast_path(k, req)
        if blocks is not None:
            return blocks


def fault_kill(k, task):
    """``do_page_fault`` out_of_memory: init yields and retries; anyone else ``do_exit(SIGKILL)``."""
    k.emit("fault_kill", task.pid, task.name)
    k.do_exit(task, -M.SIGKILL, "fault-kill")
    raise Killed


def fault_anon(k, task, pages: int, rate_us: float):
    """Touch ``pages`` new anonymous pages (``do_anonymous_page``, GFP_HIGHUSER), with page tables.

    User work per page is ``rate_us``; the kernel side is the fault, the zeroing and the allocator
    passes.  Allocation is done in chunks as large as the allocator's fast path allows.
    """
    mm = task.mm
    c = k.costs
    per_page = c.fault_us + c.page_zero_us + c.alloc_pass_us
    left = pages
    user_us = 0

    def user_part():                       # the kernel part is done: the user part, then us
        nonlocal user_us
        if user_us:
            task.cmd_user = True
            us, user_us = user_us, 0
            return us
        return None

    while left > 0:
        if task.sigpending and k.fatal_pending(task):
            return
        # page table coverage for the next chunk
        pt = mm.pt
        covered = (pt[0] + pt[1] + pt[2]) * PTES_PER_PAGE - PTES_PER_PAGE  # the pgd maps nothing
        if mm.touched >= covered:
            req = yield from alloc(k, task, M.GFP_KERNEL, 0, 1, False)
            if not sum(req.got):
                if task.pid == 1:
                    yield CMD_YIELD
                    continue
                fault_kill(k, task)
            k.assign(req, "pt", mm.pt)
            covered += PTES_PER_PAGE
        room = covered - mm.touched                 # chunk = min(left, max(1, room), 256)
        chunk = left if left < room else (room if room > 1 else 1)
        if chunk > 256:
            chunk = 256
        req = yield from alloc(k, task, M.GFP_HIGHUSER, 0, chunk, True)
        g = req.got
        got = g[0] + g[1] + g[2]
        if not got:
            if task.pid == 1:              # init: yield and retry the fault
                yield CMD_YIELD
                continue
            fault_kill(k, task)
        k.assign(req, "anon", mm.anon)
        mm.touched += got
        left -= got
        kernel_us = int(got * per_page)
        user_us = int(got * rate_us) if rate_us else 0
        if kernel_us > 0 and user_us > 0:
            # the two CPU commands back to back; the engine starts the second (user_part)
            yield (ITER, kernel_us, False, user_part)
            continue
        yield (CPU, kernel_us, False)
        if rate_us:
            yield (CPU, user_us, True)


SWAP_CLUSTER_PAGES = 8     # 2.4 and 6.1 page_cluster = 3 on more than 16 MB: 8 pages a read


def access_anon(k, task, pages: int, rate_us: float):
    """Touch ``pages`` of the task's own anonymous memory again (a loop over a working set that
    was faulted in before).  The touched pages are a uniform sample of the task's anonymous
    pages -- resident, in the swap cache, or out on swap -- so each kind is met in proportion
    to its count (pages are counts, ``model.md``).  Then, per kind:

    * resident: the user's work only (``rate_us`` a page);
    * in the swap cache (unmapped, its write still queued): a minor fault, ``do_swap_page``
      finds it with ``lookup_swap_cache`` and maps it again (2.4 ``mm/memory.c``, 6.1
      ``do_swap_page``);
    * out on swap: a major fault, ``do_swap_page`` -> ``swapin_readahead`` (2.4; 6.1
      ``swap_cluster_readahead``): allocate the pages (GFP_HIGHUSER, a user fault) and read
      ``SWAP_CLUSTER_PAGES`` of them in one disk request, waiting in D state until it is done.

    Departures: the swap slot is freed when its page comes back, as 6.1's
    ``should_try_to_free_swap`` does for a write fault (2.4 keeps it in the swap cache until
    swap is half full); readahead reads only pages the task will touch (no wasted reads).  A
    failed allocation takes the i386 fault path, as :func:`fault_anon` does.
    """
    mm = task.mm
    c = k.costs
    resident = sum(mm.anon)
    cached = sum(mm.swapc)
    out = mm.swapped - cached
    total = resident + cached + out
    pages = min(pages, total)
    if pages <= 0:
        return
    if pages >= total:
        want_cached, want_out = cached, out
    else:
        want_cached = pages * cached // total
        want_out = pages * out // total
    user_us = int(pages * rate_us) if rate_us else 0
    if want_cached:                           # minor faults on the swap cache
        left = want_cached
        for zi in range(3):
            n = min(left, mm.swapc[zi])
            if n:
                mm.swapc[zi] -= n
                mm.anon[zi] += n
                k.move(zi, "swapc", "anon", n)
                left -= n
        mm.swapped -= want_cached
        k.nr_swap_pages += want_cached
        k.changed()
        yield (CPU, int(want_cached * c.fault_us), False)
    left = want_out
    while left > 0:                           # major faults: read back from swap
        if task.sigpending and k.fatal_pending(task):
            return
        out_now = mm.swapped - sum(mm.swapc)
        if out_now <= 0:                      # the reaper freed our slots meanwhile
            break
        req = yield from alloc(k, task, M.GFP_HIGHUSER, 0,
                               min(left, out_now, SWAP_CLUSTER_PAGES), True)
        got = req.pages
        if not got:
            if task.pid == 1:
                yield CMD_YIELD
                continue
            fault_kill(k, task)
        if task.mm is not mm:                 # exited while allocating
            return
        k.assign(req, "anon", mm.anon)
        got = min(got, mm.swapped - sum(mm.swapc))
        mm.swapped -= got
        k.nr_swap_pages += got
        left -= got
        k.changed()
        yield (CPU, int(got * c.fault_us), False)
        yield (DWAIT, k.disk_io(got))
    if user_us:
        yield (CPU, user_us, True)


def ensure_text(k, task):
    """Before user code runs on, its program's text working set is touched once (minor or
    major faults): one pass over the working set per compute quantum.

    ``swap_out`` drops text ptes under pressure (2.4 ``try_to_swap_out``: a page with a mapping
    is simply unmapped; 6.1 ``shrink_folio_list`` -> ``try_to_unmap``); the task then refaults
    them here, from the cache (``filemap_map_pages``) or from disk (``filemap_fault``).  A
    program needs each page of its working set when it executes it, not all of them at once:
    the pass faults in the pages missing when it starts, each once, and pages evicted again
    while it waits for the later ones -- behind it -- are the next pass's (the real runner,
    ``csrc/vmreal.c`` ``ensure_text``, touches the pages in order each quantum).  Pages are
    counts (model.md), so "behind it" is the count brought in so far: the pass ends when it
    has brought in as many pages as were missing at its start, or none is missing.
    """
    mm = task.mm
    if mm is None or mm.text is None:
        return
    f = mm.text
    todo = f.ws - sum(f.mapped)          # the pages this pass must fault in
    while True:
        if k.fatal_pending(task):        # killed while waiting for its text: go and die
            return
        mapped = sum(f.mapped)
        need = min(todo, f.ws - mapped)
        if need <= 0:
            return
        # minor faults: resident clean pages of the file are mapped again
        remap = k.file_move(f, "clean", "mapped", need, range(3))
        if remap:
            todo -= remap
            k.changed()
            k.touch_file(f)
            yield (CPU, int(remap * k.costs.fault_us), False)
            continue
        # major faults: allocate page cache pages and read them (filemap_nopage)
        req = yield from alloc(k, task, M.GFP_HIGHUSER, 0, min(need, READAHEAD_PAGES), True)
        if not req.pages:
            if task.pid == 1:
                yield CMD_YIELD
                continue
            fault_kill(k, task)
        got = req.pages
        todo -= got
        lru = k.lru
        if lru is None:                   # the 2.4 models: no LRU of their own here
            k.assign(req, "mapped", f.mapped)
            k.touch_file(f)
            done = k.disk_io(got)
            yield (DWAIT, done)
            continue
        zones = list(req.got)
        k.assign(req, "mapped", f.mapped)
        k.touch_file(f)
        # add_to_page_cache_lru: refault detection, the pages locked until read
        lock, stall = lru.add(f, zones, "fault")
        done = k.disk_io(got)
        lru.unlock_at(lock, done)
        yield from read_wait(k, task, done, stall)


def read_wait(k, task, done: int, stall: bool):
    """Wait for a page-cache read to complete at ``done``: a memory stall when the pages read
    back were flagged workingset (6.1 ``mm/filemap.c`` ``folio_wait_bit_common``:
    ``!folio_test_uptodate && folio_test_workingset`` -> ``psi_memstall_enter``), else a plain
    I/O wait."""
    if not stall:
        yield (DWAIT, done)
        return
    k.memstall(task, True)
    try:
        yield (DWAIT, done)
    finally:
        k.memstall(task, False)


def compute(k, task, us: int, quantum_us: int = 10_000):
    """User computation, in quanta so that the text working set is re-checked as it runs.

    Between quanta the engine calls ``boundary`` (an ``ITER`` command) rather than resuming this
    generator: it makes the loop's tail and, when the head's tests pass (no fatal signal, text
    mapped), its head -- the same reads and writes at the same instant, fewer Python steps."""
    left = us
    q = 0

    def boundary():
        nonlocal left, q
        k.last_progress = k.now              # k.progress()
        left -= q
        if left <= 0 or (task.sigpending and k.fatal_pending(task)):
            return None                      # the generator goes on from the loop's head
        mm = task.mm
        if mm is not None and mm.text is not None:
            f = mm.text
            if f.ws - sum(f.mapped) > 0:     # ensure_text has work to do
                return None
        q = left if left < quantum_us else quantum_us
        return q

    while left > 0:
        if k.fatal_pending(task):
            return
        yield from ensure_text(k, task)
        q = min(left, quantum_us)
        yield (ITER, q, True, boundary)      # boundary() has made the tail when we resume


def file_read(k, task, f, pages: int):
    """``generic_file_read``: cached pages are copied; missing ones allocated and read from disk.

    Readers of one file share its page cache (2.4 ``do_generic_file_read``, 6.1
    ``filemap_read``: ``find_get_page`` first).  Pages are counts, so a read's misses are the
    file's pages not in the cache (never read, or evicted) -- at most ``f.size - f.resident``,
    counted again before each read-ahead window, since readers that started at the same time
    bring pages in for each other: what another reader brought in meanwhile is a hit.  A hit
    while a read of the file is still in flight waits for it (2.4 ``wait_on_page`` of a page
    not uptodate, 6.1 ``filemap_update_page`` -> ``folio_lock``): the pages it copies may be
    those.  Departure: which pages are in flight is not known (counts), so any hit waits for
    the file's last read issued here."""
    k.touch_file(f)
    lru = k.lru
    resident = f.resident
    miss = max(0, min(pages, f.size - resident))
    hit = pages - miss
    c = k.costs
    while True:
        if hit:
            if f.read_until > k.now:      # wait_on_page: the read that brought them is in flight
                yield (DWAIT, f.read_until)
                if k.fatal_pending(task):
                    return 0
            if lru is not None:
                lru.accessed(f, hit)      # mark_page_accessed on the pages copied
            yield (CPU, int(hit * 1), False)
            k.progress()
        if miss <= 0:
            return 0
        avail = max(0, f.size - f.resident)   # another reader may have brought some in
        if miss > avail:
            hit, miss = miss - avail, avail
            continue
        hit = 0
        # one read-ahead window: allocate its pages (one page_cache_alloc each), then one request
        want = min(miss, READAHEAD_PAGES)
        batch = 0
        lock = None
        stall = False
        while batch < want:
            if k.fatal_pending(task):
                if lock is not None:      # never read: plain cache pages, unlocked now
                    lock[0] = False
                return 0
            req = yield from alloc(k, task, M.GFP_HIGHUSER, 0, want - batch, True)
            got = req.pages
            if not got:
                if not batch:
                    return ENOMEM
                break
            if lru is not None:
                zones = list(req.got)
                k.assign(req, "clean", f.clean)
                lock, st = lru.add(f, zones, "read", lock)
                stall = stall or st
            else:
                k.assign(req, "clean", f.clean)
            batch += got
        miss -= batch
        yield (CPU, int(batch * c.alloc_pass_us), False)
        done = k.disk_io(batch)
        if done > f.read_until:
            f.read_until = done
        if lru is None:
            yield (DWAIT, done)
        else:
            lru.unlock_at(lock, done)
            yield from read_wait(k, task, done, stall)


def file_write(k, task, f, pages: int):
    """``generic_file_write`` into new page cache pages (dirty), throttled like balance_dirty."""
    k.touch_file(f)
    left = pages
    while left > 0:
        if k.fatal_pending(task):
            return 0
        req = yield from alloc(k, task, M.GFP_HIGHUSER, 0, min(left, 64), True)
        got = req.pages
        if not got:
            return ENOMEM
        if k.lru is not None:
            zones = list(req.got)
            k.assign(req, "dirty", f.dirty)
            k.lru.add(f, zones, "write")
        else:
            k.assign(req, "dirty", f.dirty)
        f.size += got
        left -= got
        yield (CPU, int(got * k.costs.page_zero_us), True)
        # balance_dirty(): past 40% of RAM dirty, the writer starts write-back itself and waits
        dirty = sum(z.dirty + z.wb for z in k.zones)
        if dirty * 10 > 4 * k.spec.ram_pages:
            done = 0
            for zi in range(3):
                if f.dirty[zi]:
                    k.start_writeback(f, zi, f.dirty[zi])
                    done = k.disk_busy_until
            if done:
                yield (DWAIT, done)
    return 0


def spawn(k, parent, make_child):
    """fork()+exec(): ``alloc_task_struct`` (GFP_KERNEL, order 1) and the pgd, else -ENOMEM.

    ``make_child(ts_zone)`` creates the child task once both allocations succeeded.
    """
    req = yield from alloc(k, parent, M.GFP_KERNEL, 1, 1, False)
    if not req.pages:
        return None
    ts_zone = next(zi for zi in range(3) if req.got[zi])
    k.assign(req, "kmem", parent.kmem)      # the parent holds it until the child exists
    pgd = yield from alloc(k, parent, M.GFP_KERNEL, 0, 1, False)
    if not pgd.pages:
        kfree_zone(k, parent, ts_zone, 2)
        return None
    parent.kmem[ts_zone] -= 2
    k.move(ts_zone, "kmem", "ts", 2)
    child = make_child(ts_zone)
    k.assign(pgd, "pt", child.mm.pt)
    yield (CPU, FORK_US, False)
    return child


def kalloc(k, task, gfp: int, order: int, count: int):
    """Kernel allocations held by the task (driver buffers, slab for it): ``count`` blocks."""
    done = 0
    while done < count:
        req = yield from alloc(k, task, gfp, order, count - done, False)
        if not req.pages:
            return done
        done += req.pages >> order
        k.assign(req, "kmem", task.kmem)
        yield (CPU, int(k.costs.alloc_pass_us), False)
    return done


def kfree_zone(k, task, zi: int, pages: int):
    task.kmem[zi] -= pages
    k.zones[zi].kmem -= pages
    k.free_to_zone(zi, pages)


def kfree(k, task, pages: int):
    kmem = task.kmem
    for zi in (0, 1, 2):
        n = kmem[zi]
        if pages < n:
            n = pages
        if n:
            kmem[zi] -= n
            z = k.zones[zi]
            z.kmem -= n
            z.free += n                       # k.free_to_zone(zi, n)
            k.changed()
            pages -= n


def munmap_anon(k, task, pages: int):
    """Free anonymous pages (free() of a big block) and shrink total_vm."""
    mm = task.mm
    left = pages
    for zi in range(3):
        n = min(left, mm.anon[zi])
        if n:
            mm.anon[zi] -= n
            k.zones[zi].anon -= n
            k.free_to_zone(zi, n)
            left -= n
    mm.total_vm = max(0, mm.total_vm - pages)
    mm.touched = max(0, mm.touched - pages)


def kupdated(k, task):
    """kupdated (fs/buffer.c): every 5 s start write-back of data dirty for more than 30 s.

    Departure: page-granular ages are not kept; a file's dirty pages are written once the file
    has not been written for 30 s, or at once when 40% of RAM is dirty (bdflush's role).
    """
    interval = 5 * M.HZ * M.JIFFY_US
    last_dirty = {}
    while True:
        yield (SLEEP, k.now + interval)
        total_dirty = sum(z.dirty for z in k.zones)
        for f in list(k.files.values()):
            d = sum(f.dirty)
            if not d:
                last_dirty.pop(f.name, None)
                continue
            first = last_dirty.setdefault(f.name, k.now)
            if k.now - first >= 30_000_000 or total_dirty * 10 > 4 * k.spec.ram_pages:
                for zi in range(3):
                    k.start_writeback(f, zi, f.dirty[zi])
                last_dirty.pop(f.name, None)
        yield (CPU, 100, False)


def idle_kthread(k, task):
    """keventd, bdflush: asleep for the purposes of this model."""
    while True:
        yield (SLEEP, k.now + 3600 * 1_000_000)

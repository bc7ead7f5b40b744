"""The modern models' two-list file LRU (harness/lru.py): vmscan.c's rules on scripted
scenarios with exact counts, the refault distance rule, and the whole-run properties on
desktop-thrash (determinism, conservation) -- and that the 2.4 models' traces did not move.

Every expected number is written out by hand from the kernel rule it tests."""
import dataclasses

import pytest

from harness import metrics, registry, runner
from harness import workload as W
from harness.engine import MM, Kernel, Task
from harness.lru import ACTIVE, INACTIVE, REFERENCED, WORKINGSET, ClassicLRU
from harness.machine import GFP_HIGHUSER, MachineSpec

NORMAL = 1


def machine(rules="6.1", workingset="6.1"):
    """A 64 MB kernel under oom_reaper (for its zones) with a fresh LRU of the rules given."""
    k = Kernel(MachineSpec(ram_mb=64), registry.get_policy("oom_reaper")())
    k.lru = ClassicLRU(k, rules, workingset)
    return k


def text_file(k, name, pages, zi=NORMAL):
    """A program text file whose ``pages`` pages are resident and mapped (zone counts kept)."""
    f = k.file(name, pages * 3, pages)
    f.mapped[zi] = pages
    k.zones[zi].mapped += pages
    k.zones[zi].free -= pages
    return f


def mapper(k, f, pid):
    """A live task mapping ``f`` (its program text), not on any run queue."""
    t = Task(pid, f"t{pid}", mm=MM(10, f))
    f.mappers += 1
    k.live[pid] = t
    k.by_pid[pid] = t
    k.next_pid = max(k.next_pid, pid + 1)
    return t


def on_list(k, lst, f):
    return sum(r.n for r in k.lru.lists[lst] if r.f is f)


# ------------------------------------------------------------------ shrink_active_list

def test_vm_exec_text_gets_one_more_trip_around_the_active_list():
    k = machine()
    lru = k.lru
    f = text_file(k, "bin/a", 100)
    lru._push(ACTIVE, f, NORMAL, 100, 0, 0)
    t = mapper(k, f, 50)
    t.utime += 1000                           # it ran user code since the pages were scanned
    lru.refresh()
    scanned, ptes = lru.shrink_active(NORMAL, 100)
    assert (scanned, ptes) == (100, 100)
    assert on_list(k, ACTIVE, f) == 100 and on_list(k, INACTIVE, f) == 0
    assert lru.nr_rotated == 100
    # page_referenced cleared the young ptes: without another run the trip is over
    lru.refresh()
    lru.shrink_active(NORMAL, 100)
    assert on_list(k, ACTIVE, f) == 0 and on_list(k, INACTIVE, f) == 100
    assert lru.nr_deactivated == 100
    # 6.1: deactivation sets PG_workingset
    assert all(r.flags & WORKINGSET for r in lru.lists[INACTIVE])
    lru.check()


def test_referenced_pages_without_vm_exec_are_deactivated_anyway():
    k = machine()
    lru = k.lru
    f = text_file(k, "bin/data-mapping", 100)
    assert lru.is_vm_exec(f)                  # program text is VM_EXEC ...
    lru.noexec.add(id(f))                     # ... this one is mapped PROT_READ
    assert not lru.is_vm_exec(f)
    lru._push(ACTIVE, f, NORMAL, 100, 0, 0)
    mapper(k, f, 50).utime += 1000
    lru.refresh()
    lru.shrink_active(NORMAL, 60)             # 60 of the 100 scanned, all deactivated
    assert on_list(k, ACTIVE, f) == 40 and on_list(k, INACTIVE, f) == 60


@pytest.mark.parametrize("rules", ["2.6.36", "4.15"])
def test_before_4_20_deactivation_sets_no_workingset_flag(rules):
    k = machine(rules, None if rules == "2.6.36" else "4.15")
    f = text_file(k, "bin/a", 32)
    k.lru._push(ACTIVE, f, NORMAL, 32, 0, 0)
    k.lru.refresh()
    k.lru.shrink_active(NORMAL, 32)
    assert on_list(k, INACTIVE, f) == 32
    assert not any(r.flags & WORKINGSET for r in k.lru.lists[INACTIVE])


# ------------------------------------------------------------------ page_check_references

def test_page_check_references_exec_on_first_use_others_on_second_and_unreferenced_freed():
    k = machine()
    lru = k.lru
    exe = text_file(k, "bin/exe", 64)
    dat = text_file(k, "bin/dat", 64)
    cold = text_file(k, "bin/cold", 64)
    lru.noexec.add(id(dat))                   # exe mapped PROT_EXEC, dat and cold PROT_READ
    lru.noexec.add(id(cold))
    for f in (exe, dat, cold):
        lru._push(INACTIVE, f, NORMAL, 64, 0, 0)
    te, td = mapper(k, exe, 50), mapper(k, dat, 51)
    mapper(k, cold, 52)                       # maps it, never runs
    te.utime += 1
    td.utime += 1
    free0 = k.zones[NORMAL].free
    lru.refresh()
    freed, scanned, ptes = lru.shrink_inactive(NORMAL, 192, GFP_HIGHUSER)
    assert (freed, scanned, ptes) == (64, 192, 192)
    assert on_list(k, ACTIVE, exe) == 64                   # VM_EXEC: activated at once
    assert on_list(k, INACTIVE, dat) == 64                 # kept once, PG_referenced set
    assert all(r.flags & REFERENCED for r in lru.lists[INACTIVE] if r.f is dat)
    assert on_list(k, INACTIVE, cold) + on_list(k, ACTIVE, cold) == 0
    assert sum(cold.mapped) == 0 and k.zones[NORMAL].free == free0 + 64
    assert lru.shadowed[id(cold)] == 64                    # the evicted pages left a shadow
    # the second reference activates the non-exec pages
    td.utime += 1
    lru.refresh()
    freed, scanned, _ = lru.shrink_inactive(NORMAL, 64, GFP_HIGHUSER)
    assert (freed, scanned) == (0, 64)
    assert on_list(k, ACTIVE, dat) == 64
    lru.check()


@pytest.mark.parametrize("rules", ["6.1", "4.15", "2.6.36"])
def test_more_than_one_young_pte_activates_on_the_first_reference(rules):
    k = machine(rules, None if rules == "2.6.36" else rules)
    lru = k.lru
    dat = text_file(k, "bin/shared", 32)
    lru.noexec.add(id(dat))                    # PROT_READ
    lru._push(INACTIVE, dat, NORMAL, 32, 0, 0)
    a, b = mapper(k, dat, 50), mapper(k, dat, 51)
    a.utime += 1
    b.utime += 1
    lru.refresh()
    _, _, ptes = lru.shrink_inactive(NORMAL, 32, GFP_HIGHUSER)
    assert ptes == 64                                      # two mappings walked per page
    # 3.3+ (34dbc67a644f): shared pages on the first reference; 2.6.36 keeps them once
    assert on_list(k, ACTIVE, dat) == (0 if rules == "2.6.36" else 32)
    assert on_list(k, INACTIVE, dat) == (32 if rules == "2.6.36" else 0)


@pytest.mark.parametrize("rules,vm_exec", [("6.1", False), ("6.1", True), ("2.6.36", True)])
def test_a_text_page_under_read_is_not_reclaimed(rules, vm_exec):
    k = machine(rules, None if rules == "2.6.36" else rules)
    lru = k.lru
    f = k.file("bin/prog", 300, 100)
    if not vm_exec:
        lru.noexec.add(id(f))
    f.mapped[NORMAL] = 64
    k.zones[NORMAL].mapped += 64
    k.zones[NORMAL].free -= 64
    lock, stall = lru.add(f, [0, 64, 0], "fault")
    assert stall is False and lock == [True]
    lru.refresh()
    freed, scanned, _ = lru.shrink_inactive(NORMAL, 64, GFP_HIGHUSER)
    assert (freed, scanned) == (0, 64) and on_list(k, INACTIVE, f) == 64
    lru._unlock(lock)
    # the faulting access left one young pte: VM_EXEC is activated at the first scan (3.3+,
    # c909e99364c8); a PROT_READ mapping (the runner's text), and any mapping under 2.6.36,
    # gets PG_referenced and one more trip, inactive
    lru.refresh()
    lru.shrink_inactive(NORMAL, 64, GFP_HIGHUSER)
    first_use = vm_exec and rules != "2.6.36"
    assert on_list(k, ACTIVE, f) == (64 if first_use else 0)
    assert on_list(k, INACTIVE, f) == (0 if first_use else 64)
    if not first_use:
        assert all(r.flags & REFERENCED for r in lru.lists[INACTIVE] if r.f is f)
        # nobody ran since: no young pte at the next scan -> unmapped and freed, PG_referenced
        # or not (FOLIOREF_RECLAIM_CLEAN), leaving a shadow without the workingset bit
        lru.refresh()
        freed, _, _ = lru.shrink_inactive(NORMAL, 64, GFP_HIGHUSER)
        assert freed == 64 and lru.shadowed[id(f)] == 64
        assert not any(sh & 1 for sh, _ in lru.shadows[id(f)])


# ------------------------------------------------------------------ refault distance

def evict_all(k, f, pages, flags=0):
    """Put ``pages`` mapped pages of ``f`` on the inactive list and evict them all."""
    k.lru._push(INACTIVE, f, NORMAL, pages, flags, k.lru.epoch)
    k.lru.refresh()
    freed, _, _ = k.lru.shrink_inactive(NORMAL, pages, GFP_HIGHUSER)
    assert freed == pages


def refault(k, f, pages):
    f.mapped[NORMAL] += pages
    k.zones[NORMAL].mapped += pages
    k.zones[NORMAL].free -= pages
    return k.lru.add(f, [0, pages, 0], "fault")


@pytest.mark.parametrize("others, active", [(136, True), (137, False)])
def test_refault_distance_against_the_active_file_list(others, active):
    """6.1: eviction of 64 pages stamps age a and ages the counter by 64; ``others`` more
    evicted pages age it further; the refault distance is 64 + others and the page is
    activated iff that is <= NR_ACTIVE_FILE (200 here, no swap)."""
    k = machine()
    hot = text_file(k, "bin/hot", 200)
    k.lru._push(ACTIVE, hot, NORMAL, 200, 0, 0)
    f = text_file(k, "bin/f", 64)
    evict_all(k, f, 64, WORKINGSET)
    g = text_file(k, "bin/g", others)
    evict_all(k, g, others)
    refaults = k.refaults
    _lock, stall = refault(k, f, 64)
    assert k.refaults == refaults + 64
    assert on_list(k, ACTIVE, f) == (64 if active else 0)
    assert on_list(k, INACTIVE, f) == (0 if active else 64)
    # PG_workingset restored only with the activation: then the read is a memory stall
    assert stall is active
    k.lru.check()


def test_4_15_refaults_activate_by_distance_but_never_stall():
    k = machine("4.15", "4.15")
    hot = text_file(k, "bin/hot", 200)
    k.lru._push(ACTIVE, hot, NORMAL, 200, 0, 0)
    f = text_file(k, "bin/f", 64)
    evict_all(k, f, 64)
    _lock, stall = refault(k, f, 64)
    assert on_list(k, ACTIVE, f) == 64 and stall is False


def test_2_6_36_refaults_are_plain_reads():
    """No workingset.c before 3.15: counted as refaults, put on the inactive list."""
    k = machine("2.6.36", None)
    hot = text_file(k, "bin/hot", 200)
    k.lru._push(ACTIVE, hot, NORMAL, 200, 0, 0)
    f = text_file(k, "bin/f", 64)
    evict_all(k, f, 64)
    _lock, stall = refault(k, f, 64)
    assert k.refaults == 64 and stall is False
    assert on_list(k, INACTIVE, f) == 64 and on_list(k, ACTIVE, f) == 0


def test_a_file_read_refaults_only_once_every_page_was_read():
    k = machine()
    f = k.file("data", 100)
    f.clean[NORMAL] = 64
    k.zones[NORMAL].clean += 64
    k.zones[NORMAL].free -= 64
    k.lru.add(f, [0, 64, 0], "read")
    assert k.refaults == 0
    k.lru._unlock(k.lru.lists[INACTIVE][-1].lock)
    k.lru.lists[INACTIVE][-1].flags = 0
    k.lru.refresh()
    assert k.lru.shrink_inactive(NORMAL, 64, GFP_HIGHUSER)[0] == 64
    # 100 pages not resident: 36 never read, 64 with shadows; a 50-page read: 36 + 14
    f.clean[NORMAL] = 50
    k.zones[NORMAL].clean += 50
    k.zones[NORMAL].free -= 50
    k.lru.add(f, [0, 50, 0], "read")
    assert k.refaults == 14


# ------------------------------------------------------------------ whole runs

def short(w_name="desktop-thrash", limit_s=40.0):
    w = runner.resolve_workload(w_name)
    return dataclasses.replace(w, time_limit_s=limit_s)


@pytest.mark.parametrize("policy", sorted(registry.discover()[0]))
def test_desktop_thrash_is_deterministic_and_conserves_pages(policy):
    w = short()
    a = runner.simulate(registry.get_policy(policy)(), w, 3, debug=True)   # check_pages each step
    b = runner.simulate(registry.get_policy(policy)(), w, 3)
    assert a.trace_sha256() == b.trace_sha256()
    assert a.now == b.now


def test_desktop_thrash_modern_reclaim_refaults_text():
    k = runner.simulate(registry.get_policy("oom_reaper")(), short(limit_s=60.0), 0)
    assert k.lru is not None and k.refaults > 10_000
    assert not [e for e in k.trace if e[1] == "kill"]


def test_linux26_is_kept_out_of_the_thrash_by_its_naps_and_its_reference_rules():
    """What keeps ``linux26`` from thrashing on desktop-thrash, separated: 2.6.36 alone
    completes (the goal tasks keep 26 % of their pace at seed 0); the same policy with 6.1's
    ``folio_check_references`` rules, 6.1's workingset.c and no nap between reclaim
    priorities (4.15+'s ``do_try_to_free_pages``) thrashes as ``oom_reaper`` does.  Either
    change alone is not enough (docs/thrashing.md, 20 seeds each)."""
    base = registry.get_policy("linux26")

    class Without(base):
        lru_rules = workingset_kernel = "6.1"

        def priority_nap(self, k, scanned, prio):
            return
            yield  # pragma: no cover

    w = runner.resolve_workload("desktop-thrash")
    plain = runner.run_one("linux26", w, 0)
    k = runner.simulate(Without(), w, 0)
    changed = metrics.compute(k)
    assert plain["outcome"] == "completed" and plain["progress_min10"] > 0.2
    assert plain["kills"] == 0 and changed["kills"] == 0
    assert changed["outcome"] == "thrashing" and changed["progress_min10"] < 0.1
    assert changed["refaults"] > 4 * plain["refaults"]


#: trace_sha256 of 2.4 runs taken before the modern file LRU existed: the 2.4 models' reclaim
#: must not have moved by a bit.  One was taken again when concurrent readers of a file came to
#: share its page cache (``mm.file_read``): morton-make-usemem's cc1s read one include tree.
PINNED_24 = {
    ("mainline_pure", "tiny", 0): "a5dc53e0b1dfc554e10ff38530e8112951d33d36345a09667ebd16225f2f2319",
    ("mainline_akpm_fix", "dma-driver", 0):
        "4a326efbb5c0ce3af6b2c99f4ab65987b364afd2798029f56571bec0630fd3ae",
    ("morton", "slow-leak", 2): "57f59dc0d7c92f19ae1620ac5c1f8364f58fd12f8773123ed42c574ef88a9c2c",
    ("aa", "morton-make-usemem", 0):
        "6dc78824b273558d017a9aad2257544d23b88b707b9438a360b8097b68e3edaf",
    ("rmap", "streaming-reader", 1):
        "8356e3eab6f63e92acb1816806ce3e3d4ce3865a302c2c21a64842e394eae6f2",
}


@pytest.mark.parametrize("cell", sorted(PINNED_24), ids=lambda c: "-".join(map(str, c)))
def test_2_4_traces_did_not_move(cell):
    policy, workload, seed = cell
    rec = runner.run_one(policy, workload, seed)
    assert rec["trace_sha256"] == PINNED_24[cell]


def test_mark_page_accessed_references_then_activates_read_pages():
    """``mark_page_accessed``: an inactive page gets PG_referenced at the first access and is
    activated (PG_referenced cleared, the non-resident age advanced) at the second."""
    k = machine()
    f = k.file("data", 64)
    f.clean[NORMAL] = 64
    k.zones[NORMAL].clean += 64
    k.zones[NORMAL].free -= 64
    k.lru._push(INACTIVE, f, NORMAL, 64, 0, 0)
    age = k.lru.ws.lruvec.nonresident_age
    k.lru.accessed(f, 40)
    assert on_list(k, INACTIVE, f) == 64
    assert sum(r.n for r in k.lru.lists[INACTIVE] if r.flags & REFERENCED) == 40
    k.lru.accessed(f, 64)                  # 40 referenced ones activated, 24 referenced now
    assert on_list(k, ACTIVE, f) == 40 and on_list(k, INACTIVE, f) == 24
    assert not any(r.flags & REFERENCED for r in k.lru.lists[ACTIVE])
    assert k.lru.ws.lruvec.nonresident_age == age + 40
    k.lru.check()


def _two_readers():
    """Two tasks each reading a whole 1 MB (256-page) file, started at the same instant with
    nothing of it cached (a scripted make: two cc1s reading one include tree)."""
    raw = {
        "name": "two-readers", "description": "d", "question": "q", "thread": "t",
        "provenance": "p",
        "machine": {"ram_mb": 64, "swap_mb": 0, "cpus": 1},
        "run": {"time_limit_s": 10, "watchdog_s": 5, "seeds": 1},
        "file": [{"name": "tree", "size_mb": 1}],
        "program": [{"name": "cc", "text_kb": 16, "ws_kb": 16, "vm_kb": 400}],
        "task": [{"name": n, "program": "cc", "role": "bystander", "uid": 500, "start_s": 1,
                  "script": [{"read": "tree", "mb": 1}, {"exit": 0}]} for n in ("a", "b")],
    }
    return W.from_dict(raw)


@pytest.mark.parametrize("policy", ["oom_reaper", "mainline"])
def test_readers_of_one_file_share_its_page_cache(policy):
    """``mm.file_read``: two readers that start together read the file's pages from the disk
    once -- 4 read-ahead windows of 64 pages -- and the second waits for the first's reads
    (``wait_on_page``), so both finish when the last window is in.  Counting a read's misses
    only when it starts, each read all 256 pages: 8 windows of a 256-page file."""
    w = _two_readers()
    k = Kernel(w.machine, registry.get_policy(policy)(), 0)
    read = []
    disk_io = k.disk_io

    def counted(pages):
        read.append(pages)
        return disk_io(pages)

    k.disk_io = counted
    k.policy.reset(k)
    W.Builder(k, w).start()
    k.run()
    assert read == [64, 64, 64, 64]                 # the text is mapped at the start
    exits = sorted(e[0] for e in k.trace if e[1] == "exit" and e[3] in ("a", "b"))
    c = k.costs
    last = 1_000_000 + 4 * (c.disk_request_us + 64 * c.disk_page_us)
    assert len(exits) == 2 and all(t >= last for t in exits)
    assert exits[1] - exits[0] < 1_000             # the second waited for the same reads

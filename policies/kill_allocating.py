"""kill_allocating: Linux 4.15 with ``vm.oom_kill_allocating_task = 1``.

``out_of_memory`` (tree ``torvalds/linux`` ~v4.15, ``mm/oom_kill.c``): with the sysctl set, a
task that runs into the OOM killer is itself the victim if it has an mm, is not init or a
kernel thread and its ``oom_score_adj`` is not -1000 -- no task-list scan; otherwise the usual
``select_bad_process``.  Everything else is ``oom_reaper`` (4.15) unchanged.

Departures: the kernel kills the allocating task before the scan and returns without the
one-jiffy sleep; here the choice is made in the modern base's victim-choice hook, so the
scan's CPU time is still charged and the caller still sleeps a jiffy after the kill.  The
kill goes through ``oom_kill_process`` as in the kernel (which may sacrifice a child).
"""
from harness.modern import OOM_SCORE_ADJ_MIN

from policies.oom_reaper import OomReaper


class KillAllocating(OomReaper):
    name = "kill_allocating"
    description = "4.15 with vm.oom_kill_allocating_task=1: the task that hits OOM dies"

    def select_bad_process(self, k, current=None):
        """``sysctl_oom_kill_allocating_task``: ``current`` if it can be killed."""
        if (current is not None and current.mm is not None and not self.unkillable(current)
                and current.oom_score_adj != OOM_SCORE_ADJ_MIN):
            return current, ((current.pid, current.name, self.badness(k, current)),)
        return super().select_bad_process(k, current)

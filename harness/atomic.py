"""One atomic file writer for the whole harness: a temporary file named by process *and*
thread, optionally fsync'd, then a rename.  The name matters: the real matrix runs its VMs on
threads of one process, and two threads that made the same cache file at once (a new base
initramfs, a daemon's archive) with a temporary named by the pid alone wrote one file and
renamed it twice -- the second rename failed and took its run down with it."""
from __future__ import annotations

import os
import threading
from pathlib import Path


def write_atomic(path: Path, data: str | bytes, sync: bool = True) -> None:
    """Write ``path`` whole or not at all.  ``sync=False`` leaves the fsync to the caller
    (``bench.Syncer``): the file is complete and in place all the same, so no kill of any
    process loses it; only a crash of the machine before the caller's fsync could."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
        if sync:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)

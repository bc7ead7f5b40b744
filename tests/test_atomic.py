"""harness.atomic.write_atomic: threads of one process writing one file at once (the real
matrix's VM threads building the same new initramfs) all succeed, and the file is one of the
writes, whole.  With a temporary named by the pid alone, two threads shared it and the second
rename failed (FileNotFoundError; a run of bench-real was lost to it)."""
from __future__ import annotations

import threading

from harness.atomic import write_atomic


def test_threads_writing_one_file_at_once_all_succeed(tmp_path):
    path = tmp_path / "initramfs.cpio"
    payloads = [bytes([65 + i]) * 200_000 for i in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(payloads))

    def writer(data: bytes):
        start.wait()
        for _ in range(30):
            try:
                write_atomic(path, data, sync=False)
            except BaseException as e:           # noqa: BLE001 -- collected for the assert
                errors.append(e)
                return

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert path.read_bytes() in payloads
    assert sorted(p.name for p in tmp_path.iterdir()) == ["initramfs.cpio"]   # no temporaries left

"""fsck reports progress as it verifies, not once everything is done (issue 12)."""

import os
import threading

from zcas.cas import codec
from zcas.cas import fsck as fsck_mod
from zcas.cas.db import ObjectDB
from zcas.cas.fsck import fsck
from zcas.cas.memory import MemoryBackend


def test_progress_advances_while_objects_are_verified(monkeypatch):
    db = ObjectDB(MemoryBackend())
    batches = 4 * (2 * (os.cpu_count() or 2)) + 4  # well past the window of batches in flight
    n = 64 * batches
    ids = [db.put(codec.KIND_BLOB, b"object %d" % i) for i in range(n)]
    db.flush()
    verified = 0
    lock = threading.Lock()
    real = fsck_mod._verify

    def counting(d, oid):
        nonlocal verified
        with lock:
            verified += 1
        return real(d, oid)

    monkeypatch.setattr(fsck_mod, "_verify", counting)
    calls = []

    def progress(done, total):
        with lock:
            calls.append((done, total, verified))

    rep = fsck(db, ids, progress=progress)
    assert rep.ok and rep.checked == n
    dones = [d for d, _, _ in calls]
    assert dones == sorted(set(dones)) and dones[-1] == n  # strictly increasing, to the total
    assert all(t == n for _, t, _ in calls)
    assert len(calls) >= batches
    # the first report comes while most objects are still to be verified
    first_done, _, verified_then = calls[0]
    assert first_done < n and verified_then < n // 2
    # and each report counts what was verified by then, never more
    assert all(d <= v for d, _, v in calls)

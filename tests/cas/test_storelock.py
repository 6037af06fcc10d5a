"""The lock on a shared store (cas.storelock): pushes share it, gc holds it alone."""

from __future__ import annotations

import threading
import time

import pytest

from zcas.cas import storelock
from zcas.cas.memory import MemoryBackend
from zcas.cas.storelock import StoreBusyError, StoreLock


def _locks(b: MemoryBackend) -> list[str]:
    return list(b.list(storelock.PREFIX))


def _age(b: MemoryBackend, key: str, seconds: float) -> None:
    data, mtime = b._data[key]
    b._data[key] = (data, mtime - seconds)


def test_shared_holders_do_not_exclude_each_other_and_release_their_objects():
    b = MemoryBackend()
    with StoreLock(b, "push", False, "remote r"), StoreLock(b, "push", False, "remote r"):
        assert len(_locks(b)) == 2
    assert _locks(b) == []


def test_gc_refuses_while_a_push_holds_the_lock_and_leaves_no_lock_behind():
    b = MemoryBackend()
    with StoreLock(b, "push", False, "remote r"):
        with pytest.raises(StoreBusyError, match=r"remote r is in use: push from .* \(pid \d+\)"):
            StoreLock(b, "gc", True, "remote r").acquire()
        assert len(_locks(b)) == 1  # only the push's
    with StoreLock(b, "gc", True, "remote r"):
        pass


def test_push_refuses_while_gc_holds_the_lock():
    b = MemoryBackend()
    with StoreLock(b, "gc", True, "remote r"):
        with pytest.raises(StoreBusyError, match="remote r is garbage-collected: gc from"):
            StoreLock(b, "push", False, "remote r").acquire()
        assert len(_locks(b)) == 1


def test_a_stale_lock_is_ignored_and_gc_removes_it():
    b = MemoryBackend()
    dead = StoreLock(b, "push", False, "remote r").acquire()
    dead._stop.set()  # its holder died: no more refreshes
    key = dead.key
    _age(b, key, storelock.STALE + 60)
    with StoreLock(b, "gc", True, "remote r"):
        assert key not in _locks(b)


def test_an_unreadable_lock_object_counts_as_exclusive():
    b = MemoryBackend()
    junk = f"{storelock.PREFIX}{'ab' * 16}"
    b.put(junk, b"\x00not json")
    with pytest.raises(StoreBusyError, match="a lock object zcas cannot read"):
        StoreLock(b, "push", False, "remote r").acquire()
    _age(b, junk, storelock.STALE + 1)
    with StoreLock(b, "push", False, "remote r"):
        pass


def test_a_lock_seen_half_written_is_read_again_and_other_names_are_not_locks(monkeypatch):
    """A store whose writes are not atomic (a local folder) can show another push's lock
    half written, or its staging file: neither may make a push refuse."""
    b = MemoryBackend()
    other = StoreLock(b, "push", False, "remote r").acquire()
    other._stop.set()
    full = b._data[other.key]
    b._data[other.key] = (b"{", full[1])  # half written when first read
    real_get = b.get_bounded
    reads = []

    def get_bounded(key, limit):
        reads.append(key)
        if len(reads) == 2:
            b._data[other.key] = full  # the write finished meanwhile
        return real_get(key, limit)

    monkeypatch.setattr(b, "get_bounded", get_bounded)
    b.put(f"{storelock.PREFIX}{'cd' * 16}.part", b"")  # a staging file beside it
    with StoreLock(b, "push", False, "remote r"):
        pass
    assert reads == [other.key, other.key]


def test_a_long_holder_refreshes_its_lock_so_it_never_goes_stale(monkeypatch):
    monkeypatch.setattr(storelock, "REFRESH", 0.05)
    b = MemoryBackend()
    with StoreLock(b, "push", False, "remote r") as held:
        first = held.key
        deadline = time.time() + 5
        while held.key == first and time.time() < deadline:
            time.sleep(0.01)
        assert held.key != first and _locks(b) == [held.key]  # replaced, never two, never none
    assert _locks(b) == []


def test_racing_gc_and_pushes_never_both_hold_the_lock():
    """Many pushes and gcs start at once: whenever a gc holds the lock, no push does."""
    b = MemoryBackend()
    state = {"push": 0, "gc": 0}
    mutex = threading.Lock()
    overlaps = []

    def worker(kind: str) -> None:
        for _ in range(30):
            try:
                with StoreLock(b, kind, kind == "gc", "remote r"):
                    with mutex:
                        state[kind] += 1
                        if state["gc"] and (state["push"] or state["gc"] > 1):
                            overlaps.append(dict(state))
                    time.sleep(0.001)
                    with mutex:
                        state[kind] -= 1
            except StoreBusyError:
                pass

    threads = [threading.Thread(target=worker, args=(k,)) for k in ("gc", "gc", "push", "push", "push")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert overlaps == []
    assert _locks(b) == []


def test_a_holder_that_cannot_refresh_its_lock_stops_before_writing(monkeypatch):
    """The store refuses the refresh writes (any error): the refresher keeps going, and the
    holder's check raises once the lock may have gone stale for others."""
    monkeypatch.setattr(storelock, "REFRESH", 0.02)
    b = MemoryBackend()
    with StoreLock(b, "push", False, "remote r") as held:
        held.check()  # fresh
        real_put = b.put

        def refuse(key, data):
            if key.startswith(storelock.PREFIX):
                raise RuntimeError("store unreachable")
            return real_put(key, data)

        monkeypatch.setattr(b, "put", refuse)
        monkeypatch.setattr(storelock, "STALE", 0.1)
        time.sleep(0.3)
        assert held._thread is not None and held._thread.is_alive()  # the refresher did not die
        with pytest.raises(StoreBusyError, match="could not keep its lock fresh"):
            held.check()
        monkeypatch.setattr(b, "put", real_put)
        deadline = time.time() + 5
        while time.time() < deadline:
            try:
                held.check()
                break
            except StoreBusyError:
                time.sleep(0.02)
        held.check()  # refreshed again once the store answers

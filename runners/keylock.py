"""Locks that keep two executions of one cache key, or of steps touching one path, apart.

Across processes they are ``flock`` locks on files in ``.zcas/locks/``; a cache key maps to
one of 4096 stripe files so the folder stays small. Within a process one stripe file is
locked once and shared by every thread holding a key in it (a second ``flock`` on another
descriptor of the same file would wait for the first, and a pipeline that holds a key until
its step is recorded would then wait on itself). Threads of one process wanting the same key
are kept apart by a plain lock per key.
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable

from zcas.cas.oid import hash_bytes

_registries: dict[str, KeyLocks] = {}
_registries_lock = threading.Lock()


def key_locks(zdir: str) -> KeyLocks:
    """The one registry of key locks of this process for a repository."""
    path = os.path.realpath(zdir)
    with _registries_lock:
        reg = _registries.get(path)
        if reg is None:
            reg = _registries[path] = KeyLocks(os.path.join(path, "locks"))
        return reg


class KeyLock:
    """A held key lock; ``release()`` once the key's run is recorded (idempotent)."""

    def __init__(self, registry: KeyLocks, key: bytes):
        self.registry, self.key, self.held = registry, key, True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.registry.release(self.key)


class KeyLocks:
    def __init__(self, folder: str):
        self.folder = folder
        self._cv = threading.Condition()
        self._stripes: dict[str, list[int] | None] = {}  # None: a thread is taking its flock
        self._keys: dict[bytes, threading.Lock] = {}

    def acquire(self, key: bytes, on_wait: Callable[[], None]) -> KeyLock:
        with self._cv:
            mine = self._keys.setdefault(key, threading.Lock())
        if not mine.acquire(blocking=False):
            on_wait()
            mine.acquire()
        try:
            self._take_stripe(key.hex()[:3], on_wait)
        except BaseException:
            mine.release()
            raise
        return KeyLock(self, key)

    def _take_stripe(self, stripe: str, on_wait: Callable[[], None]) -> None:
        with self._cv:
            while True:
                if stripe not in self._stripes:
                    self._stripes[stripe] = None  # ours to take
                    break
                held = self._stripes[stripe]
                if held is None:
                    self._cv.wait()
                    continue
                held[1] += 1  # already locked by this process: share it
                return
        try:
            os.makedirs(self.folder, exist_ok=True)
            fd = os.open(os.path.join(self.folder, stripe + ".lock"), os.O_RDWR | os.O_CREAT, 0o666)
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    on_wait()
                    fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        except BaseException:
            with self._cv:
                del self._stripes[stripe]
                self._cv.notify_all()
            raise
        with self._cv:
            self._stripes[stripe] = [fd, 1]
            self._cv.notify_all()

    def release(self, key: bytes) -> None:
        stripe = key.hex()[:3]
        with self._cv:
            held = self._stripes[stripe]
            assert held is not None
            held[1] -= 1
            if held[1] == 0:
                del self._stripes[stripe]
                fcntl.flock(held[0], fcntl.LOCK_UN)
                os.close(held[0])
                self._cv.notify_all()
            self._keys[key].release()


class PathLocks:
    """Shared locks on a step's inputs, exclusive on its outputs, held from hashing the
    inputs to recording the run. Another zcas process cannot rewrite a file this step is
    reading, or restore over one it is writing, in between: what is recorded under a key is
    what the key describes. Taken in one global order, so two processes never deadlock."""

    def __init__(self, zdir: str, inputs: list[str], outputs: list[str]):
        self.folder = os.path.join(zdir, "locks")
        want: dict[str, int] = {}
        for path, mode in [(i, fcntl.LOCK_SH) for i in inputs] + [(o, fcntl.LOCK_EX) for o in outputs]:
            name = os.path.join(self.folder, "path-" + hash_bytes(path.encode()).hex()[:24])
            want[name] = max(want.get(name, 0), mode)  # both read and written: exclusive
        self.want = sorted(want.items())
        self.fds: list[int] = []

    def __enter__(self) -> PathLocks:
        os.makedirs(self.folder, exist_ok=True)
        for name, mode in self.want:
            fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o666)
            self.fds.append(fd)
            fcntl.flock(fd, mode)
        return self

    def __exit__(self, *exc: object) -> None:
        for fd in reversed(self.fds):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self.fds = []

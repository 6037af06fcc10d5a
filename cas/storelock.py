"""A lock on a store many machines write with no server between them: pushes share it,
garbage collection takes it alone.

The lock is objects, as restic's is: each holder writes ``locks/<random>`` (create-only)
saying who it is and whether it is shared or exclusive, keeps it fresh while it works
(a new object every ``REFRESH`` seconds, the old one deleted), and deletes it at the end.
Having written its own, a holder lists the others: a shared holder that sees an exclusive
one, or an exclusive holder that sees any other, deletes its own and refuses. Two that race
may both refuse (each then tries again later); neither can miss the other, because each
writes before it looks.

A lock not refreshed for ``STALE`` seconds belongs to a holder that died and is ignored.
Ages are measured in the store's clock: the mtime of each lock against the mtime of the
one just written, so clocks that disagree between machines do not matter. A lock object
that does not read as one (a hostile or damaged store) counts as exclusive: the worst it
can cause is a refusal.
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
from typing import TYPE_CHECKING

from .errors import ObjectNotFoundError, StoreError, ZcasError
from .safetext import printable

if TYPE_CHECKING:
    from .backend import Backend

PREFIX = "locks/"
_LOCK_KEY = re.compile(r"locks/[0-9a-f]{32}")
STALE = 1800.0  # seconds without a refresh after which a lock's holder is taken for dead
REFRESH = 300.0
_MAX_LOCK_BYTES = 4096


class StoreBusyError(ZcasError):
    """Another holder's lock conflicts with the one asked for."""


class StoreLock:
    """``with StoreLock(backend, "push", exclusive=False, where="remote origin"):`` ..."""

    def __init__(self, backend: Backend, purpose: str, exclusive: bool, where: str) -> None:
        self.backend = backend
        self.purpose = purpose
        self.exclusive = exclusive
        self.where = where
        self.key: str | None = None
        self._mutex = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fresh = 0.0  # time.monotonic() of the last lock object written

    def _write(self) -> str:
        body = {"v": 1, "purpose": self.purpose, "exclusive": self.exclusive, "host": socket.gethostname(),
                "pid": os.getpid(), "time": time.time()}
        key = f"{PREFIX}{os.urandom(16).hex()}"
        self.backend.put(key, json.dumps(body).encode())
        return key

    def acquire(self) -> StoreLock:
        self.key = self._write()
        self._fresh = time.monotonic()
        try:
            conflict = self._conflict()
        except BaseException:
            self._delete_own()
            raise
        if conflict is not None:
            self._delete_own()
            raise StoreBusyError(conflict)
        self._thread = threading.Thread(target=self._refresh, name="zcas-store-lock", daemon=True)
        self._thread.start()
        return self

    def _conflict(self) -> str | None:
        """Why another lock stops this one (None: none does). Stale locks are removed by an
        exclusive holder (it is about to rewrite the store: nothing they guard is alive)."""
        assert self.key is not None
        now = self.backend.info(self.key).mtime
        for key in self.backend.list(PREFIX):
            if key == self.key or not _LOCK_KEY.fullmatch(key):
                continue  # (not a lock: a store's staging file of a lock being written, say)
            try:
                age = now - self.backend.info(key).mtime
                other = self._read(key)
            except ObjectNotFoundError:
                continue  # released meanwhile
            if age > STALE:
                if self.exclusive:
                    self.backend.delete(key)
                continue
            if self.exclusive or other is None or other.get("exclusive"):
                return self._busy(other, age)
        return None

    def _read(self, key: str) -> dict | None:
        """A lock's body (None: it does not read as one). A store whose writes are not
        atomic may show a lock half written: one that does not read is read again, once,
        a moment later, before it counts as an unreadable (so exclusive) lock."""
        for attempt in range(2):
            try:
                other = _parse(self.backend.get_bounded(key, _MAX_LOCK_BYTES))
            except ObjectNotFoundError:
                raise
            except StoreError:
                other = None  # too large or unreadable
            if other is not None or attempt:
                return other
            time.sleep(0.2)
        return None

    def _busy(self, other: dict | None, age: float) -> str:
        if other is None:
            who = "a lock object zcas cannot read"
        else:
            who = (f"{printable(str(other.get('purpose', '?')))} from {printable(str(other.get('host', '?')))} "
                   f"(pid {printable(str(other.get('pid', '?')))})")
        left = max(0, int((STALE - max(age, 0)) // 60) + 1)
        what = "garbage-collected" if other and other.get("purpose") == "gc" else "in use"
        return (f"{self.where} is {what}: {who} holds its lock; try again when it is done "
                f"(a lock its holder stops refreshing expires, this one in at most {left} min)")

    def _refresh(self) -> None:
        while not self._stop.wait(REFRESH):
            with self._mutex:
                if self._stop.is_set():
                    return
                try:
                    new = self._write()
                except Exception:  # noqa: BLE001 - any failure: ``check`` tells the holder in time
                    continue
                self._fresh = time.monotonic()
                old, self.key = self.key, new
                if old:
                    try:
                        self.backend.delete(old)
                    except Exception:  # noqa: BLE001 - a leftover lock goes stale and is ignored
                        pass

    def check(self) -> None:
        """Raise unless the lock is surely still held: a holder whose lock could not be
        refreshed (the store unreachable, the machine suspended) may have been taken for
        dead by now, so it stops before it writes what the lock guards, as restic does."""
        if time.monotonic() - self._fresh > STALE - REFRESH:
            raise StoreBusyError(f"{self.where}: this {self.purpose} could not keep its lock fresh "
                                 f"(nothing more was written); run it again")

    def _delete_own(self) -> None:
        with self._mutex:
            key, self.key = self.key, None
            if key is not None:
                try:
                    self.backend.delete(key)
                except ZcasError:
                    pass  # unreachable: the lock goes stale and is ignored

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._delete_own()

    def __enter__(self) -> StoreLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _parse(body: bytes) -> dict | None:
    try:
        d = json.loads(body)
    except ValueError:
        return None
    if not isinstance(d, dict) or d.get("v") != 1 or not isinstance(d.get("exclusive"), bool):
        return None
    return d

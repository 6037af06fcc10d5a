"""The repository lock: every command that reads or writes the store holds it shared;
gc holds it exclusive.

gc decides what is unreachable and deletes it; a writer stores objects (or finds them
already stored) and only afterwards records the names that keep them alive. Without a
lock, ``gc --grace 0`` could delete an object in between. Shared holders never wait for
each other, only for gc, and gc waits for them.
"""

from __future__ import annotations

import fcntl
import os
import sys


class RepoLock:
    def __init__(self, zdir: str):
        self.path = os.path.join(zdir, "lock")
        self.fd = -1
        self.mode = 0

    def _take(self, mode: int, waiting_message: str) -> RepoLock:
        if self.fd < 0:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            if sys.stderr.isatty():
                print(f"zcas: {waiting_message}", file=sys.stderr, flush=True)
            fcntl.flock(self.fd, mode)
        self.mode = mode
        return self

    def shared(self) -> RepoLock:
        return self._take(fcntl.LOCK_SH, "waiting for gc to finish")

    def exclusive(self) -> RepoLock:
        return self._take(fcntl.LOCK_EX, "waiting for other zcas commands to finish")

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.release()

"""The stat cache: (path, inode, size, mtime_ns, ctime_ns) -> id, so unchanged files are
never read again.

A file modified within the filesystem's timestamp granularity of being hashed could keep
the same stat, so entries whose mtime or ctime fall within ``RACY_NS`` of the scan's start
are not trusted by the next scan ("racily clean", as git calls it): they are hashed again.
The cache is only an accelerator, kept in one ``marshal`` file replaced atomically; a lost
or corrupt cache costs a rehash, never a wrong id. gc clears it, since it may name objects
that gc removed.
"""

from __future__ import annotations

import marshal
import os
import time

VERSION = 2  # 2: paths are bytes
RACY_NS = 50_000_000  # coarse kernel clocks tick every 4-10 ms; leave a wide margin


def stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class StatCache:
    def __init__(self, path: str | None):
        self.path = path
        self.started_ns = time.time_ns()
        self._old: dict[bytes, tuple] = {}
        self._new: dict[bytes, tuple] = {}
        self._racy_before = 0
        self.dirty = False
        if path:
            self._load()

    def _load(self) -> None:
        if self.path is None:
            return
        try:
            with open(self.path, "rb") as f:
                version, racy_before, entries = marshal.loads(f.read())  # load(f) reads piecemeal
        except (OSError, EOFError, ValueError, TypeError):
            return
        if version == VERSION and isinstance(entries, dict):
            self._old = entries
            self._racy_before = racy_before

    def get(self, path: bytes, key: tuple) -> bytes | None:
        hit = self._old.get(path)
        if hit is None or hit[:4] != key:
            return None
        if max(key[2], key[3]) >= self._racy_before:
            return None
        self._new[path] = hit
        return hit[4]

    def known(self, path: bytes, ino: int, size: int, mtime_ns: int, ctime_ns: int) -> bytes | None:
        """``get`` for a stat given field by field (what a folder walk has at hand)."""
        hit = self._old.get(path)
        if (hit is None or hit[0] != ino or hit[1] != size or hit[2] != mtime_ns or hit[3] != ctime_ns
                or mtime_ns >= self._racy_before or ctime_ns >= self._racy_before):
            return None
        self._new[path] = hit
        return hit[4]

    def put(self, path: bytes, key: tuple, oid: bytes) -> None:
        self._new[path] = (*key, oid)
        self.dirty = True

    def save(self) -> None:
        """Write the entries seen in this scan merged over the old ones, atomically."""
        if not self.path or not self.dirty:
            return
        merged = dict(self._old)
        merged.update(self._new)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "wb") as f:
                marshal.dump((VERSION, self.started_ns - RACY_NS, merged), f)
            os.replace(tmp, self.path)
        except OSError:
            try:
                os.unlink(tmp)
            except OSError:
                pass

    @staticmethod
    def clear(path: str) -> None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass

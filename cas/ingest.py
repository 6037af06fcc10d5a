"""Adding files and folders: walk, consult the stat cache, hash and compress what changed.

Small files are read, hashed and compressed in batches on every core and appended to the
current pack by one thread; large files are chunked (see chunking.py). A file whose stat
changes between the walk and the end of its read is an error, not a silently wrong id.
"""

from __future__ import annotations

import os
import stat as st_
from collections import deque

from . import codec
from .chunking import CHUNK_THRESHOLD, pool, store_chunked
from .errors import ChangedWhileReadingError, InputPathError
from .oid import hash_bytes
from .statcache import StatCache, stat_key
from .tree import MODE_EXEC, MODE_FILE, MODE_LINK, MODE_TREE, encode_entries

SKIP_NAMES = frozenset({".zcas"})
_BATCH = 32


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def _read_small(path: bytes, key: tuple) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise InputPathError(os.fsdecode(path), _reason(e)) from None
    try:
        chunks = []
        remaining = key[1] + 1
        while remaining > 0:
            b = os.read(fd, remaining)
            if not b:
                break
            chunks.append(b)
            remaining -= len(b)
        if stat_key(os.fstat(fd)) != key:
            raise ChangedWhileReadingError(os.fsdecode(path))
    finally:
        os.close(fd)
    data = b"".join(chunks) if len(chunks) != 1 else chunks[0]
    if len(data) != key[1]:
        raise ChangedWhileReadingError(os.fsdecode(path))
    return data


def _encode_files(db, batch):
    out = []
    for path, key in batch:
        data = _read_small(path, key)
        oid = hash_bytes(data)
        out.append((path, key, oid, None if db.has(oid) else codec.encode(codec.KIND_BLOB, data)))
    return out


class Ingester:
    """One ``add``: shares the stat cache and the pool of workers across every path given.

    Paths are walked as bytes (what the kernel gives: no decoding per name), and entries
    known from the stat cache carry their id straight into the tree being built.
    """

    def __init__(self, db, cache: StatCache):
        self.db = db
        self.cache = cache
        self._inflight: deque = deque()
        self._batch: list = []
        self._results: dict[bytes, bytes] = {}
        self.files = 0
        self.bytes = 0

    def add(self, path: str) -> tuple[bytes, int]:
        """Store a file, symlink or folder; returns (id, kind) with kind a tree mode."""
        bpath = os.fsencode(os.path.abspath(path))
        try:
            st = os.lstat(bpath)
        except OSError as e:
            raise InputPathError(path, _reason(e)) from None
        if st_.S_ISDIR(st.st_mode):
            plan = self._walk(bpath)
            self._drain(0)
            return self._build(plan), MODE_TREE
        mode, value = self._plan_entry(bpath, st)
        self._drain(0)
        return (bytes(value) if value.__class__ is _OID else self._results.pop(value)), mode

    # Phase 1: walk, answering from the stat cache or queueing work.
    def _walk(self, top: bytes) -> list:
        """[name, mode, id | pending path | sub-plan] for each entry of ``top``."""
        try:
            it = os.scandir(top)
        except OSError as e:
            raise InputPathError(os.fsdecode(top), _reason(e)) from None
        entries = []
        cache_get = self.cache.get
        with it:
            for de in it:
                name = de.name
                if name in SKIP_NAMES:
                    continue
                path = de.path
                try:
                    if de.is_dir(follow_symlinks=False):
                        entries.append((name, MODE_TREE, self._walk(path)))
                        continue
                    st = de.stat(follow_symlinks=False)
                except OSError as e:
                    raise InputPathError(os.fsdecode(path), _reason(e)) from None
                m = st.st_mode
                if st_.S_ISREG(m):  # the common case, inline: a cache hit costs one lookup
                    key = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
                    oid = cache_get(path, key)
                    if oid is not None:
                        self.files += 1
                        self.bytes += key[1]
                        entries.append((name, MODE_EXEC if m & 0o100 else MODE_FILE, _OID(oid)))
                        continue
                entries.append((name, *self._plan_entry(path, st)))
        return entries

    def _plan_entry(self, path: bytes, st: os.stat_result) -> tuple[int, bytes]:
        """(mode, id) when known now, else (mode, path) with the work queued."""
        if st_.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(path)
            except OSError as e:
                raise InputPathError(os.fsdecode(path), _reason(e)) from None
            return MODE_LINK, _OID(self.db.put(codec.KIND_BLOB, target))
        if not st_.S_ISREG(st.st_mode):
            raise InputPathError(os.fsdecode(path), "not a regular file, folder or symlink")
        mode = MODE_EXEC if st.st_mode & 0o100 else MODE_FILE
        key = stat_key(st)
        self.files += 1
        self.bytes += st.st_size
        oid = self.cache.get(path, key)
        if oid is not None:
            return mode, _OID(oid)
        if st.st_size >= CHUNK_THRESHOLD:
            return mode, _OID(self._add_large(path, key))
        self._batch.append((path, key))
        if len(self._batch) >= _BATCH:
            self._flush_batch()
        return mode, path

    def _flush_batch(self) -> None:
        if self._batch:
            self._inflight.append(pool().submit(_encode_files, self.db, self._batch))
            self._batch = []
        self._drain(4 * (os.cpu_count() or 2))

    def _drain(self, keep: int) -> None:
        if keep == 0 and self._batch:
            self._inflight.append(pool().submit(_encode_files, self.db, self._batch))
            self._batch = []
        while len(self._inflight) > keep:
            done = self._inflight.popleft().result()
            self.db.put_records([(oid, codec.KIND_BLOB, key[1], rec) for _, key, oid, rec in done if rec is not None])
            for path, key, oid, _ in done:
                self.cache.put(path, key, oid)
                self._results[path] = oid

    def _add_large(self, path: bytes, key: tuple) -> bytes:
        shown = os.fsdecode(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError as e:
            raise InputPathError(shown, _reason(e)) from None
        try:
            oid = store_chunked(self.db, fd, key[1])
            if stat_key(os.fstat(fd)) != key:
                raise ChangedWhileReadingError(shown)
        except ValueError:
            raise ChangedWhileReadingError(shown) from None
        finally:
            os.close(fd)
        self.cache.put(path, key, oid)
        return oid

    # Phase 2: every file has an id now; build trees bottom-up.
    def _build(self, plan: list) -> bytes:
        entries = []
        results = self._results
        for name, mode, value in plan:
            if mode == MODE_TREE:
                oid = self._build(value)
            elif value.__class__ is _OID:
                oid = value
            else:
                oid = results.pop(value)  # a path whose work is done
            entries.append((name, mode, oid))
        return self.db.put(codec.KIND_TREE, encode_entries(entries))


class _OID(bytes):
    """An id returned where a pending path could be: the type tells them apart."""

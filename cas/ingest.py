"""Adding files and folders: walk, consult the stat cache, hash and compress what changed.

Small files are read, hashed and compressed in batches on every core and appended to the
current pack by one thread; large files are chunked (see chunking.py). A file whose stat
changes between the walk and the end of its read is an error, not a silently wrong id, and
so is a path that turned into a FIFO or device in between: files are opened non-blocking
and without following links, and refused unless the open file is a regular one.

Only what a checkout can restore is stored: a symlink whose target is absolute or climbs
out of the folder being added, and any spelling of ``.zcas`` other than the repository's
own (skipped), are refused up front with a one-line error naming the path, rather than
stored and refused at checkout. Walks are iterative, so folders thousands deep are fine.
"""

from __future__ import annotations

import os
import stat as st_
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from . import codec
from .chunking import CHUNK_THRESHOLD, pool, store_chunked
from .errors import (
    ChangedWhileReadingError,
    InputPathError,
    RefusedInputError,
    UnsafePathError,
    UsageError,
)
from .oid import hash_bytes, hash_fd
from .statcache import StatCache, stat_key
from .tree import (
    MODE_EXEC,
    MODE_FILE,
    MODE_LINK,
    MODE_TREE,
    check_link_target,
    encode_entries,
    is_reserved_name,
)

if TYPE_CHECKING:
    from .db import ObjectDB

SKIP_NAMES = frozenset({b".zcas", ".zcas"})
_BATCH = 32
# Opening never blocks (a FIFO swapped in after the walk), never follows a link, and never
# makes a terminal the controlling one.
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def open_regular(path) -> int:
    """An fd on ``path`` if it is a regular file now (not a link, FIFO, device or socket)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as e:
        raise InputPathError(os.fsdecode(path), _reason(e)) from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as e:
        os.close(fd)
        raise InputPathError(os.fsdecode(path), _reason(e)) from None
    if not st_.S_ISREG(mode):
        os.close(fd)
        raise InputPathError(os.fsdecode(path), "not a regular file")
    return fd


def _read_small(path: bytes, key: tuple) -> bytes:
    fd = open_regular(path)
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


def _encode_files(db: ObjectDB | None, batch: list[tuple[bytes, tuple]]) -> list[tuple[bytes, tuple, bytes, bytes | None]]:
    """(path, stat key, id, record or None) per file; ``db`` None: ids only (nothing encoded)."""
    out = []
    for path, key in batch:
        data = _read_small(path, key)
        oid = hash_bytes(data)
        out.append((path, key, oid, None if db is None or db.has(oid) else codec.encode(codec.KIND_BLOB, data)))
    return out


class _Dir:
    """A folder being added: its entries (name, mode, id | pending path | _Dir) and, once
    built, its tree id."""

    __slots__ = ("path", "rel", "entries", "oid")

    def __init__(self, path: bytes, rel: str):
        self.path = path
        self.rel = rel  # below the added folder, "/"-separated ("" for the folder itself)
        self.entries: list = []
        self.oid: bytes | None = None


class Ingester:
    """One ``add``: shares the stat cache and the pool of workers across every path given.

    Paths are walked as bytes (what the kernel gives: no decoding per name), and entries
    known from the stat cache carry their id straight into the tree being built.

    ``db`` None names paths without storing anything (``path_id``): the same walk, the same
    ids, the stat cache read but never written (an entry there says its object is stored).
    """

    def __init__(self, db: ObjectDB | None, cache: StatCache, progress: Callable[[int], None] | None = None):
        self.db = db
        self.cache = cache
        self._tell = progress  # hears of each file's bytes once its id is known (a progress bar)
        self._inflight: deque = deque()
        self._batch: list = []
        self._results: dict[bytes, bytes] = {}
        self._bufs: list[bytearray] = []  # read buffers of large files, reused across them
        self.files = 0
        self.bytes = 0

    def add(self, path: str) -> tuple[bytes, int]:
        """Store a file, symlink or folder; returns (id, kind) with kind a tree mode.

        A symlink given itself (``zcas add link``) is stored as a link, under the same rule
        as a link at the top of an added folder: its target must be relative and stay in
        the link's own folder, so that restoring it anywhere never points outside.
        """
        bpath = os.fsencode(os.path.abspath(path))
        try:
            st = os.lstat(bpath)
        except OSError as e:
            raise InputPathError(path, _reason(e)) from None
        if st_.S_ISDIR(st.st_mode):
            dirs = self._walk(bpath)
            self._drain(0)
            return self._build(dirs), MODE_TREE
        mode, value = self._plan_entry(bpath, st, "")
        self._drain(0)
        return (bytes(value) if value.__class__ is _OID else self._results.pop(value)), mode

    # Phase 1: walk, answering from the stat cache or queueing work.
    def _walk(self, top: bytes) -> list[_Dir]:
        """Every folder under ``top``, parents before children (iteratively)."""
        root = _Dir(top, "")
        order = [root]
        todo = [root]
        known = self.cache.known
        tell = self._tell
        files = size = 0
        try:
            while todo:
                d = todo.pop()
                try:
                    it = os.scandir(d.path)
                except OSError as e:
                    raise InputPathError(os.fsdecode(d.path), _reason(e)) from None
                entries = d.entries
                with it:
                    for de in it:
                        name = de.name
                        # only a name starting with "." or holding non-ASCII can fold to .zcas
                        if (name[0] == 46 or not name.isascii()) and (name in SKIP_NAMES or is_reserved_name(name)):
                            if name in SKIP_NAMES:
                                continue
                            raise RefusedInputError(os.fsdecode(de.path), "a name that folds to .zcas would be a "
                                                    "repository's store on a case-insensitive filesystem, and "
                                                    "checkout refuses it")
                        path = de.path
                        try:
                            if de.is_dir(follow_symlinks=False):
                                sub = _Dir(path, f"{d.rel}/{os.fsdecode(name)}" if d.rel else os.fsdecode(name))
                                entries.append((name, MODE_TREE, sub))
                                order.append(sub)
                                todo.append(sub)
                                continue
                            st = de.stat(follow_symlinks=False)
                        except OSError as e:
                            raise InputPathError(os.fsdecode(path), _reason(e)) from None
                        m = st.st_mode
                        if m & 0o170000 == 0o100000:  # a regular file, inline: a cache hit is one lookup
                            n = st.st_size
                            oid = known(path, st.st_ino, n, st.st_mtime_ns, st.st_ctime_ns)
                            if oid is not None:
                                files += 1
                                size += n
                                if tell is not None:
                                    tell(n)
                                entries.append((name, MODE_EXEC if m & 0o100 else MODE_FILE, _OID(oid)))
                                continue
                            if n < CHUNK_THRESHOLD:  # read, hashed and encoded by a worker
                                files += 1
                                size += n
                                self._batch.append((path, (st.st_ino, n, st.st_mtime_ns, st.st_ctime_ns)))
                                if len(self._batch) >= _BATCH:
                                    self._flush_batch()
                                entries.append((name, MODE_EXEC if m & 0o100 else MODE_FILE, path))
                                continue
                        entries.append((name, *self._plan_entry(path, st, d.rel)))
        finally:
            self.files += files
            self.bytes += size
        return order

    def _plan_entry(self, path: bytes, st: os.stat_result, rel_dir: str) -> tuple[int, bytes]:
        """(mode, id) when known now, else (mode, path) with the work queued."""
        if st_.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(path)
            except OSError as e:
                raise InputPathError(os.fsdecode(path), _reason(e)) from None
            _check_link(path, rel_dir, target)
            return MODE_LINK, _OID(self._put(codec.KIND_BLOB, target))
        if not st_.S_ISREG(st.st_mode):
            raise InputPathError(os.fsdecode(path), "not a regular file, folder or symlink")
        mode = MODE_EXEC if st.st_mode & 0o100 else MODE_FILE
        key = stat_key(st)
        self.files += 1
        self.bytes += st.st_size
        oid = self.cache.get(path, key)
        if oid is not None or st.st_size >= CHUNK_THRESHOLD:
            if oid is None:
                oid = self._add_large(path, key)
            if self._tell is not None:
                self._tell(st.st_size)
            return mode, _OID(oid)
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
            if self.db is not None:
                self.db.put_records([(oid, codec.KIND_BLOB, key[1], rec) for _, key, oid, rec in done if rec is not None])
            for path, key, oid, _ in done:
                if self.db is not None:
                    self.cache.put(path, key, oid)
                self._results[path] = oid
            if self._tell is not None:
                self._tell(sum(key[1] for _, key, _, _ in done))

    def _add_large(self, path: bytes, key: tuple) -> bytes:
        shown = os.fsdecode(path)
        fd = open_regular(path)
        try:
            if self.db is None:  # its id is the hash of its bytes: no chunking needed to name it
                oid = hash_fd(fd)
                if os.fstat(fd).st_size != key[1]:
                    raise ValueError("file size changed while being read")
            else:
                oid = store_chunked(self.db, fd, key[1], self._bufs)
            if stat_key(os.fstat(fd)) != key:
                raise ChangedWhileReadingError(shown)
        except ValueError:
            raise ChangedWhileReadingError(shown) from None
        finally:
            os.close(fd)
        if self.db is not None:
            self.cache.put(path, key, oid)
        return oid

    def _put(self, kind: int, payload: bytes) -> bytes:
        """Store a payload (``db`` None: only check it could be stored) and return its id."""
        if self.db is not None:
            return self.db.put(kind, payload)
        codec.check_size(kind, len(payload), codec.MAX_STORED_SIZE)
        return hash_bytes(payload)

    # Phase 2: every file has an id now; build trees bottom-up.
    def _build(self, dirs: list[_Dir]) -> bytes:
        results = self._results
        for d in reversed(dirs):  # children were found after their parents
            entries = []
            for name, mode, value in d.entries:
                if mode == MODE_TREE:
                    oid = value.oid
                elif value.__class__ is _OID:
                    oid = value
                else:
                    oid = results.pop(value)  # a path whose work is done
                entries.append((name, mode, oid))
            d.entries = []
            try:
                d.oid = self._put(codec.KIND_TREE, encode_entries(entries))
            except UsageError:
                raise RefusedInputError(os.fsdecode(d.path), f"{len(entries)} entries are too many for one folder "
                                        f"(a tree is at most {codec.MAX_SIZE[codec.KIND_TREE]} bytes)") from None
        return dirs[0].oid  # type: ignore[return-value]


def _check_link(path: bytes, rel_dir: str, target: bytes) -> None:
    """Refuse, at add time, a link checkout would refuse: absolute, or leading out of the
    folder being added (``rel_dir`` is the link's folder below it)."""
    name = os.fsdecode(os.path.basename(path))
    try:
        check_link_target(rel_dir, name, target)
    except UnsafePathError as e:
        shown = os.fsdecode(target)
        why = "points to an absolute path" if shown.startswith("/") else "leads outside the folder being added"
        if not target or b"\0" in target:
            why = "has an empty target"
        raise RefusedInputError(os.fsdecode(path), f"symlink {why} ({shown!r}); zcas stores only relative links "
                                "that stay inside the added folder") from e


class _OID(bytes):
    """An id returned where a pending path could be: the type tells them apart."""


def path_id(path: str, cache: StatCache | None = None) -> tuple[bytes, int]:
    """(id, tree mode) that adding ``path`` (a file, symlink or folder) would give it,
    without storing anything: the same walk and rules as ``Ingester.add``, files the stat
    cache knows are not read again, and a large file is hashed whole, not chunked. Errors
    are ``add``'s (a path that cannot be read, a link that could not be restored)."""
    return Ingester(None, cache if cache is not None else StatCache(None)).add(path)

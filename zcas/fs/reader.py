"""Byte ranges of a stored file, every byte verified, reading only the chunks a range needs.

A chunked file's manifest lists its chunks in order, each a blob with its own id. A range
read looks up the chunks that cover it (by their offsets, summed once) and reads each
through ``ObjectDB.get``, which hashes it against its id: no byte is handed out that does
not match the id it was stored under.

The manifest itself is stored under the hash of the whole file, so only a whole read can
tie the chunk list to the file's id (``cas/db.py`` explains why): a remote may plant
another file's manifest, of the same size, under this file's id, and every chunk would
still verify. So a chunked file's bytes are handed out only

- in an in-order pass from its start (streaming, as ``zcas cat`` does): the pass hashes
  what it reads and refuses its last read if the whole does not hash to the id; or
- once the file is proven: before the first read that jumps (a footer, a ``seek``) or
  ``verify()`` (a caller that wants only part of the file), ``ObjectDB.prove`` reassembles
  and hashes the whole file once per process, so later readers of that id, in any order,
  read only the chunks they need.

A reader that failed either check raises the same IntegrityError on every later read.
``verify_whole=True`` proves the file on open.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import accumulate
from typing import Any

from zcas.cas import codec
from zcas.cas.chunking import pool
from zcas.cas.db import ObjectDB
from zcas.cas.errors import IntegrityError, ObjectNotFoundError
from zcas.cas.manifest import decode_manifest
from zcas.cas.oid import hasher

_KEEP = 8  # chunks kept decoded per reader: a pattern of small reads near each other reads each chunk once
AHEAD = 16 << 20  # bytes fetched ahead of a reader going through a file in order
BATCH = 8  # consecutive chunks fetched by one pool task (fewer futures and thread hand-offs)


class FileReader:
    """Ranged, verified reads of one stored file (a blob or a chunked file)."""

    def __init__(self, db: ObjectDB, oid: bytes, verify_whole: bool = False) -> None:
        self.db, self.oid = db, oid
        self.chunks_read = 0  # blobs fetched from the store (tests count them)
        self._lock = threading.Lock()
        self._kept: OrderedDict[int, bytes] = OrderedDict()
        self._whole: bytes | None = None
        self._ahead: dict[int, tuple[Future[list[bytes]], int]] = {}  # chunk -> (its task, its place in it)
        self._next = -1  # the chunk after the last range read: a read starting there is in order
        self._lane: ThreadPoolExecutor | None = None  # hashes in-order chunks into the whole-file hash
        self._failed: IntegrityError | None = None  # the whole-file check failed: every read raises it
        self._proven = True  # the bytes handed out are tied to the id (a blob is, whole)
        kind, payload = db.get(oid)
        if kind == codec.KIND_TREE:
            raise IsADirectoryError(f"{oid.hex()} is a folder")
        if kind == codec.KIND_CHUNKED:
            self._manifest = bytes(payload)
            self._use_manifest(self._manifest)
            self._proven = False
            self._hash = hasher()
            self._hashed = 0  # chunks hashed in order so far
            if verify_whole:
                self.verify()
        else:
            self._whole = bytes(payload)  # a blob: verified by get, whole
            self.size = len(self._whole)

    def _use_manifest(self, payload: bytes) -> None:
        total, items = decode_manifest(self.oid, payload)
        self.size = total
        self._ids = [c for c, _ in items]
        self._lens = [n for _, n in items]
        self._starts = [0, *accumulate(self._lens)][:-1]

    def verify(self) -> None:
        """Prove a chunked file whole (``ObjectDB.prove``: once per process for an id) before
        a read that is not an in-order pass from the start; IntegrityError if it does not hash
        to its id, then and on every later read."""
        if self._failed is not None:
            raise self._failed
        if self._proven:
            return
        try:
            payload = bytes(self.db.prove(self.oid))
        except IntegrityError as e:
            self._failed = e
            raise
        with self._lock:
            if payload != self._manifest:  # the store settled on another copy since this reader opened
                self._use_manifest(payload)
                self._manifest = payload
                self._kept.clear()
                self._ahead.clear()
            self._proven = True

    def read(self, start: int, end: int) -> bytes:
        """Bytes [start, end) (clipped to the file), every one verified."""
        if self._failed is not None:
            raise self._failed
        start, end = max(0, start), min(end, self.size)
        if start >= end:
            return b""
        if self._whole is not None:
            return self._whole[start:end]
        if not self._proven and bisect.bisect_right(self._starts, start) - 1 > self._hashed:
            self.verify()  # a jump: no byte of it before the whole file is proven
        first = bisect.bisect_right(self._starts, start) - 1
        last = bisect.bisect_right(self._starts, end - 1) - 1
        parts: list[bytes | memoryview] = list(self._chunks(range(first, last + 1)))
        parts[-1] = memoryview(parts[-1])[: end - self._starts[last]]  # trimmed first: a view, not a copy
        parts[0] = memoryview(parts[0])[start - self._starts[first]:]
        return b"".join(parts)  # the one copy

    def _chunks(self, wanted: range) -> list[bytes]:
        """The chunks at these indexes: kept ones, ones already being fetched ahead, the rest
        fetched now on the pool, BATCH consecutive chunks a task. A read that continues the
        last one also starts fetching what follows (up to AHEAD bytes), so decoding and
        verifying overlap the caller's work."""
        ex = pool()
        got: dict[int, bytes | tuple[Future[list[bytes]], int]] = {}
        with self._lock:
            missing = []
            for i in wanted:
                kept = self._kept.get(i)
                ahead = self._ahead.pop(i, None) if kept is None else None
                if kept is not None:
                    got[i] = kept
                elif ahead is not None:
                    got[i] = ahead
                else:
                    missing.append(i)
            for at in range(0, len(missing), BATCH):
                part = missing[at : at + BATCH]
                fut = ex.submit(self._fetch_many, part)
                got.update((i, (fut, k)) for k, i in enumerate(part))
            sequential = self._next - 1 <= wanted.start <= self._next  # (consecutive ranges may share a chunk)
            self._next = wanted.stop
            if sequential:
                self._fetch_ahead(wanted.stop, ex)
            else:
                self._ahead.clear()  # a jump: what was fetched ahead is not wanted next
        out = []
        for i in wanted:
            v = got[i]
            out.append(v[0].result()[v[1]] if isinstance(v, tuple) else v)
        self._account(wanted.start, out)
        return out

    def _fetch_ahead(self, at: int, ex: Any) -> None:
        budget, i, part = AHEAD, at, []
        while i < len(self._ids) and budget > 0:
            if i not in self._ahead and i not in self._kept:
                part.append(i)
            if len(part) == BATCH or (part and part[-1] != i):
                fut = ex.submit(self._fetch_many, part)
                self._ahead.update((j, (fut, k)) for k, j in enumerate(part))
                part = []
            budget -= self._lens[i]
            i += 1
        if part:
            fut = ex.submit(self._fetch_many, part)
            self._ahead.update((j, (fut, k)) for k, j in enumerate(part))

    def _fetch_many(self, indexes: list[int]) -> list[bytes]:
        out = [self._fetch(i) for i in indexes]
        with self._lock:
            self.chunks_read += len(out)
        return out

    def _fetch(self, i: int) -> bytes:
        coid = self._ids[i]
        try:
            kind, data = self.db.get(coid)
        except ObjectNotFoundError:
            raise IntegrityError(self.oid, f"chunk {coid.hex()} listed in its manifest is missing") from None
        except IntegrityError as e:
            raise IntegrityError(self.oid, f"chunk {coid.hex()} is corrupt: {e.reason}") from None
        if kind != codec.KIND_BLOB or len(data) != self._lens[i]:
            raise IntegrityError(self.oid, f"chunk {coid.hex()} differs from the manifest")
        return bytes(data)

    def _account(self, first: int, chunks: list[bytes]) -> None:
        """Keep the last chunks, and extend the in-order hash (one task a read, on a lane of
        its own); the read reaching the end of an in-order pass is refused if the whole file
        does not hash to its id."""
        with self._lock:
            for k, data in enumerate(chunks[-_KEEP:], first + max(0, len(chunks) - _KEEP)):
                self._kept[k] = data
                self._kept.move_to_end(k)
            while len(self._kept) > _KEEP:
                self._kept.popitem(last=False)
            if self._proven or not first <= self._hashed < first + len(chunks):
                return
            todo = chunks[self._hashed - first :]
            self._hashed = first + len(chunks)
            if self._lane is None:
                self._lane = ThreadPoolExecutor(1, thread_name_prefix="zcas-fs-hash")
            hashed = self._lane.submit(_update, self._hash, todo)  # one worker: in order
            if self._hashed < len(self._ids):
                return
        hashed.result()
        self._lane.shutdown()
        if self._hash.digest() != self.oid:
            with self._lock:
                self._kept.clear()
                self._ahead.clear()
                self._failed = IntegrityError(self.oid, "reassembled content hash mismatch", self.oid,
                                              self._hash.digest())
            raise self._failed
        self._proven = True

def _update(h: Any, chunks: list[bytes]) -> None:
    for c in chunks:
        h.update(c)

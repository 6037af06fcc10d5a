"""Large files: content-defined chunks, each its own object, listed by a manifest.

A large file's id is still the BLAKE3 of its whole content (so ``b3sum`` agrees); what is
stored under that id is a manifest naming its chunks. Cut points come from FastCDC, so an
edit or insertion moves only nearby boundaries and a new version stores only the chunks
that changed. Chunks are hashed and compressed on all cores; the manifest is only trusted
once the reassembled bytes hash to the file's id.

Manifest payload: u64 total size, then per chunk: id (32 bytes), length u32 (encoded,
decoded and checked in ``manifest.py``, which ``verify.py`` uses too).
"""

from __future__ import annotations

import mmap
import os
import threading
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from . import codec
from .errors import IntegrityError, ObjectNotFoundError, ZcasError
from .manifest import AVG_CHUNK, decode_manifest, encode_manifest
from .oid import hash_bytes, hasher
from .verify import check_header

if TYPE_CHECKING:
    from .db import ObjectDB

CHUNK_THRESHOLD = 1 << 20  # files at least this large are chunked
_BATCH = 64  # chunks per task: enough work to amortise the pool, small enough to overlap
_WINDOW = 8  # tasks in flight per core, bounding memory held by encoded records

_pool: ThreadPoolExecutor | None = None


def pool() -> ThreadPoolExecutor:
    """One process-wide pool: zstd and blake3 release the GIL, so threads use every core."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="zcas")
    return _pool


def _forget_pool() -> None:
    """In a forked child (a processes runner's worker) the parent's pool threads do not
    exist: work handed to the copied pool would wait forever. The child makes its own."""
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def check_total(db: ObjectDB, oid: bytes, total: int) -> None:
    """A manifest's total must be the size its pack index records, before any file is
    truncated, written or assembled to that size."""
    size = db.entry(oid).size
    if total != size:
        raise IntegrityError(oid, f"manifest total {total} differs from the pack index size {size}")


def _cutter():
    from pyfastcdc import FastCDC

    return FastCDC(AVG_CHUNK)


def _encode_batch(db, view, cuts) -> list[tuple[bytes, int, bytes | None]]:
    """Hash and encode a run of chunks. If the first new chunk does not compress, the rest
    of the run is stored raw without trying: neighbouring chunks of one file are alike, and
    random or already-compressed data would otherwise pay for a useless zstd pass."""
    out: list[tuple[bytes, int, bytes | None]] = []
    compress = True
    for off, n in cuts:
        piece = view[off : off + n]
        oid = hash_bytes(piece)
        if db.has(oid):
            out.append((oid, n, None))
            continue
        rec = codec.encode(codec.KIND_BLOB, piece) if compress else codec.encode_raw(codec.KIND_BLOB, piece)
        if compress and rec[1] == codec.CODEC_RAW:
            compress = False
        out.append((oid, n, rec))
    return out


_READ = 16 << 20  # bytes read at a time; far larger than FastCDC's max chunk
_BUFFERS = 4  # reused read buffers: fresh pages cost a fault each, reused ones nothing


def store_chunked(db: ObjectDB, fd: int, size: int, bufs: list[bytearray] | None = None) -> bytes:
    """Chunk, hash and store an open file expected to hold ``size`` bytes; returns its id.

    The file is read (not mapped: a file truncated under a mapping kills the process) into
    a ring of reused buffers (``bufs``: a list the caller keeps across files, filled on
    first use, so the next file reads into pages already faulted in; emptied if this
    raises, since workers may still be reading them). The main thread reads and cuts;
    workers hash and compress batches of chunks; one thread keeps the whole-file hash, in
    order; results are appended to the pack in file order. Cuts are the same as cutting
    the whole file at once: the last chunk of each buffer, cut only by the buffer's end,
    is carried over.
    """
    if bufs is None:
        bufs = []
    try:
        return _store_chunked(db, fd, size, bufs)
    except BaseException:
        bufs.clear()
        raise


def _store_chunked(db: ObjectDB, fd: int, size: int, bufs: list[bytearray]) -> bytes:
    from concurrent.futures import ThreadPoolExecutor as _TPE

    cutter = _cutter()
    whole = hasher()
    ex = pool()
    chunks: list[tuple[bytes, int]] = []
    inflight: deque = deque()  # (future, buffer index)
    pending = [0] * _BUFFERS  # tasks still reading each buffer
    cap = _READ + (cutter.max_size if hasattr(cutter, "max_size") else 1 << 20)
    if len(bufs) != _BUFFERS or len(bufs[0]) != cap:
        bufs[:] = [bytearray(cap) for _ in range(_BUFFERS)]
    hashed: list[Future[Any] | None] = [None] * _BUFFERS
    limit = _WINDOW * (os.cpu_count() or 2)

    def drain(keep: int) -> None:
        while len(inflight) > keep:
            fut, bi = inflight.popleft()
            results = fut.result()
            pending[bi] -= 1
            db.put_records([(o, codec.KIND_BLOB, n, r) for o, n, r in results if r is not None])
            chunks.extend((o, n) for o, n, _ in results)

    carry = b""
    seen = 0
    bi = 0
    with _TPE(max_workers=1, thread_name_prefix="zcas-hash") as hash_ex:
        while True:
            while pending[bi]:  # the buffer is still being read by workers
                drain(len(inflight) - 1)
            prev = hashed[bi]
            if prev is not None:
                prev.result()
            buf = bufs[bi]
            mv = memoryview(buf)
            mv[: len(carry)] = carry
            got = os.readv(fd, [mv[len(carry) : len(carry) + _READ]])
            if got:
                hashed[bi] = hash_ex.submit(whole.update, mv[len(carry) : len(carry) + got])
            seen += got
            if seen > size:
                raise ValueError("file grew while being read")
            end = len(carry) + got
            final = got == 0
            view = mv[:end]
            cuts = [(c.offset, c.length) for c in cutter.cut_buf(view)] if end else []
            used = end
            if not final and cuts:
                used = cuts.pop()[0]
            for i in range(0, len(cuts), _BATCH):
                inflight.append((ex.submit(_encode_batch, db, view, cuts[i : i + _BATCH]), bi))
                pending[bi] += 1
            drain(limit)
            carry = bytes(view[used:end])
            if final:
                break
            bi = (bi + 1) % _BUFFERS
        drain(0)
        for h in hashed:
            if h is not None:
                h.result()
    if seen != size:
        raise ValueError("file size changed while being read")
    oid = whole.digest()
    db.put_manifest(oid, size, encode_manifest(size, chunks))  # never trusts a copy found under oid
    return oid


def store_buffer(db: ObjectDB, data) -> bytes:
    """Store an in-memory value of any size; large ones are chunked on all cores like files."""
    if len(data) < CHUNK_THRESHOLD:
        return db.put(codec.KIND_BLOB, data)
    view = memoryview(data).cast("B")
    ex = pool()
    whole = ex.submit(hash_bytes, view)
    cuts = [(c.offset, c.length) for c in _cutter().cut_buf(view)]
    futs = [ex.submit(_encode_batch, db, view, cuts[i : i + _BATCH]) for i in range(0, len(cuts), _BATCH)]
    chunks: list[tuple[bytes, int]] = []
    for f in futs:
        results = f.result()
        db.put_records([(o, codec.KIND_BLOB, n, r) for o, n, r in results if r is not None])
        chunks.extend((o, n) for o, n, _ in results)
    oid = whole.result()
    db.put_manifest(oid, len(view), encode_manifest(len(view), chunks))  # never trusts a copy found under oid
    return oid


def reassembles(db: ObjectDB, oid: bytes, manifest: bytes, size: int) -> bool:
    """Whether this copy of ``oid``'s manifest lists chunks, all present and sound, whose
    bytes hash to ``oid`` and add up to ``size``. Read one chunk at a time on the calling
    thread (it may be a pool worker): only manifests with rival copies are checked so."""
    try:
        total, items = decode_manifest(oid, manifest)
        if total != size:
            return False
        h = hasher()
        for coid, n in items:
            data = _chunk_bytes(db, coid)
            if len(data) != n:
                return False
            h.update(data)
    except ZcasError:
        return False
    return h.digest() == oid


def _chunk_bytes(db, oid: bytes) -> bytes:
    kind, data = db.get(oid)
    if kind != codec.KIND_BLOB:
        raise IntegrityError(oid, "chunk is not a blob")
    return data


def iter_content(db: ObjectDB, oid: bytes, manifest: bytes) -> Iterator[bytes]:
    """Yield a large file's bytes in order; raises at the end if they don't hash to ``oid``."""
    total, items = decode_manifest(oid, manifest)
    check_total(db, oid, total)
    h = hasher()
    ex = pool()
    window: deque[tuple[Future[bytes], int]] = deque()
    limit = 4 * (os.cpu_count() or 2)
    for coid, n in items:
        window.append((ex.submit(_chunk_bytes, db, coid), n))
        if len(window) > limit:
            yield _take(window, h, oid)
    while window:
        yield _take(window, h, oid)
    if h.digest() != oid:
        raise IntegrityError(oid, "reassembled content hash mismatch", oid, h.digest())


def _take(window: deque, h, oid: bytes) -> bytes:
    """The next chunk, verified; errors name the file, with the chunk as the reason."""
    fut, n = window.popleft()
    try:
        data = fut.result()
    except ObjectNotFoundError as e:
        raise IntegrityError(oid, f"chunk {e.oid} listed in its manifest is missing") from None
    except IntegrityError as e:
        raise IntegrityError(oid, f"chunk {e.oid} is corrupt: {e.reason}") from None
    if len(data) != n:
        raise IntegrityError(oid, "a chunk's length differs from the manifest")
    h.update(data)
    return data


def assemble(db: ObjectDB, oid: bytes, manifest: bytes) -> bytes:
    return b"".join(iter_content(db, oid, manifest))


def write_chunked(db: ObjectDB, oid: bytes, manifest: bytes, fd: int) -> None:
    """Write a large file into ``fd`` (opened read-write) on all cores, then verify it.

    Workers take runs of consecutive chunks: their records are read a span at a time
    (``ObjectDB.read_records``), checked against the index and the manifest, inflated and
    written with one ``pwritev``. Chunks are not hashed one by one: the whole-file hash of
    what was written, checked at the end, covers every byte. Only on a mismatch is each
    chunk read again through ``db.get``, which verifies it (and, when a copy is damaged,
    finds another copy that verifies) and rewritten; then the whole is hashed again, and a
    chunk with no good copy is named.
    """
    total, items = decode_manifest(oid, manifest)
    check_total(db, oid, total)
    os.ftruncate(fd, total)
    placed = []
    pos = 0
    for coid, n in items:
        placed.append((coid, n, pos))
        pos += n
    parts = [placed[i : i + _BATCH] for i in range(0, len(placed), _BATCH)]

    def repair(part):
        for coid, n, at in part:
            try:
                data = _chunk_bytes(db, coid)  # verified, from any good copy; raises naming it
            except ObjectNotFoundError:
                raise IntegrityError(oid, f"chunk {coid.hex()} listed in its manifest is missing") from None
            if len(data) != n:
                raise IntegrityError(coid, "chunk differs from the manifest")
            os.pwrite(fd, data, at)

    for careful in (False, True):
        futs = [pool().submit(repair, part) if careful else pool().submit(_write_run, db, oid, part, fd) for part in parts]
        errors: list[BaseException] = []
        for f in futs:  # every run ends before anything is raised: none may write into a closed fd
            if f.cancelled():
                continue
            try:
                f.result()
            except BaseException as e:
                errors.append(e)
                if not isinstance(e, IntegrityError):  # a failed write: what has not started never will
                    for g in futs:
                        g.cancel()
        other = next((e for e in errors if not isinstance(e, IntegrityError)), None)
        if other is not None:
            raise other
        if errors and careful:
            raise errors[0]
        if not errors and _file_hash(fd, total) == oid:
            return
    raise IntegrityError(oid, "reassembled content hash mismatch")


_spans = threading.local()  # each worker's read buffer for runs of records (reused: no fresh pages)


def _write_run(db: ObjectDB, oid: bytes, part: list[tuple[bytes, int, int]], fd: int) -> None:
    """Read, check, inflate and write consecutive chunks (the caller hashes the file)."""
    try:
        ents = [db.entry(coid) for coid, _, _ in part]
        need = sum(e.length for e in ents)
        buf = getattr(_spans, "buf", None)
        if buf is None or len(buf) < need:  # a new one: views of the old may still be held
            buf = _spans.buf = bytearray(max(need, 8 << 20))
        records = db.read_records([(coid, e) for (coid, _, _), e in zip(part, ents, strict=True)], buf)
    except ObjectNotFoundError as e:
        raise IntegrityError(oid, f"chunk {e.oid} listed in its manifest is missing") from None
    datas = [_chunk_payload(coid, rec, e, n) for (coid, n, _), e, rec in zip(part, ents, records, strict=True)]
    _pwrite_all(fd, datas, part[0][2])


def _chunk_payload(coid: bytes, record, e, n: int) -> bytes:
    """A chunk's bytes from its record, unhashed (the caller hashes the whole file): the
    header must agree with the index entry and the manifest, and a frame may inflate to
    exactly its declared size, nothing more. A raw chunk is copied out of ``record``."""
    if len(record) >= codec.HEADER_SIZE:
        kind, how, raw = codec.HEADER.unpack_from(record, 0)
        if kind == e.kind == codec.KIND_BLOB and raw == e.size == n:
            body = memoryview(record)[codec.HEADER_SIZE :]
            if how == codec.CODEC_ZSTD:
                out = codec.inflate_small(body, raw)
                if out is not None:
                    return out
            elif how == codec.CODEC_RAW and len(body) == raw:
                return bytes(body)
    check_header(coid, record, e.kind, e.size)  # the careful way, for the reason
    kind, data = codec.decode(coid, record)
    if kind != codec.KIND_BLOB or len(data) != n:
        raise IntegrityError(coid, "chunk differs from the manifest")
    return data


def _pwrite_all(fd: int, bufs: list, at: int) -> None:
    """Write ``bufs`` back to back at offset ``at`` (short writes finished)."""
    for i in range(0, len(bufs), 512):
        part = bufs[i : i + 512]
        want = sum(len(b) for b in part)
        done = os.pwritev(fd, part, at)
        if done != want:
            rest = memoryview(b"".join(part))[done:]
            while rest:
                k = os.pwrite(fd, rest, at + done)
                done += k
                rest = rest[k:]
        at += want


def _file_hash(fd: int, total: int) -> bytes:
    if not total:
        return hash_bytes(b"")
    with mmap.mmap(fd, total, access=mmap.ACCESS_READ) as mm:
        return hash_bytes(memoryview(mm))

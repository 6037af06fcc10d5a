"""Large files: content-defined chunks, each its own object, listed by a manifest.

A large file's id is still the BLAKE3 of its whole content (so ``b3sum`` agrees); what is
stored under that id is a manifest naming its chunks. Cut points come from FastCDC, so an
edit or insertion moves only nearby boundaries and a new version stores only the chunks
that changed. Chunks are hashed and compressed on all cores; the manifest is only trusted
once the reassembled bytes hash to the file's id.

Manifest payload: u64 total size, then per chunk: id (32 bytes), length u32.
"""

from __future__ import annotations

import mmap
import os
import struct
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from . import codec
from .errors import IntegrityError
from .oid import hash_bytes, hasher

CHUNK_THRESHOLD = 1 << 20  # files at least this large are chunked
AVG_CHUNK = 32 << 10  # FastCDC's average is this plus its minimum (avg/4): about 40 KiB
_TOTAL = struct.Struct("<Q")
_ITEM = struct.Struct("<32sI")
_BATCH = 64  # chunks per task: enough work to amortise the pool, small enough to overlap
_WINDOW = 8  # tasks in flight per core, bounding memory held by encoded records

_pool: ThreadPoolExecutor | None = None


def pool() -> ThreadPoolExecutor:
    """One process-wide pool: zstd and blake3 release the GIL, so threads use every core."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="zcas")
    return _pool


def encode_manifest(total: int, chunks: list[tuple[bytes, int]]) -> bytes:
    return _TOTAL.pack(total) + b"".join(_ITEM.pack(o, n) for o, n in chunks)


def decode_manifest(oid_hex: str, payload: bytes) -> tuple[int, list[tuple[bytes, int]]]:
    if len(payload) < 8 or (len(payload) - 8) % _ITEM.size:
        raise IntegrityError(oid_hex, "malformed chunk manifest")
    (total,) = _TOTAL.unpack_from(payload, 0)
    items = list(_ITEM.iter_unpack(memoryview(payload)[8:]))
    if sum(n for _, n in items) != total:
        raise IntegrityError(oid_hex, "chunk lengths do not add up to the file size")
    return total, items


def _cutter():
    from pyfastcdc import FastCDC

    return FastCDC(AVG_CHUNK)


def _encode_batch(db, view, cuts) -> list[tuple[bytes, int, bytes | None]]:
    out = []
    for off, n in cuts:
        piece = view[off : off + n]
        oid = hash_bytes(piece)
        out.append((oid, n, None if db.has(oid) else codec.encode(codec.KIND_BLOB, piece)))
    return out


_READ = 32 << 20  # bytes read at a time; larger than FastCDC's max chunk, so cuts never move


def _cut(cutter, buf: bytes, final: bool) -> tuple[list[tuple[int, int]], int]:
    """Cuts in ``buf``; unless final, the last chunk (cut by the buffer's end) is carried."""
    cuts = [(c.offset, c.length) for c in cutter.cut_buf(buf)]
    if not final and cuts:
        off, _ = cuts.pop()
        return cuts, off
    return cuts, len(buf)


def store_chunked(db, fd: int, size: int) -> bytes:
    """Chunk, hash and store an open file expected to hold ``size`` bytes; returns its id.

    The file is read (not mapped: a file truncated under a mapping kills the process), a
    buffer at a time; the whole-file hash runs on its own thread, in order.
    """
    from concurrent.futures import ThreadPoolExecutor as _TPE

    cutter = _cutter()
    whole = hasher()
    ex = pool()
    chunks: list[tuple[bytes, int]] = []
    inflight: deque = deque()
    limit = _WINDOW * (os.cpu_count() or 2)

    def drain(keep: int) -> None:
        while len(inflight) > keep:
            for oid, n, record in inflight.popleft().result():
                if record is not None:
                    db.put_record(oid, codec.KIND_BLOB, n, record)
                chunks.append((oid, n))

    carry = b""
    seen = 0
    with _TPE(max_workers=1, thread_name_prefix="zcas-hash") as hash_ex:
        hashing = []
        while True:
            block = os.read(fd, _READ)
            seen += len(block)
            if seen > size:
                raise ValueError("file grew while being read")
            final = not block
            buf = carry + block if carry else block
            if final and not buf:
                break
            if block:
                hashing.append(hash_ex.submit(whole.update, block))
            cuts, used = _cut(cutter, buf, final)
            view = memoryview(buf)
            for i in range(0, len(cuts), _BATCH):
                inflight.append(ex.submit(_encode_batch, db, view, cuts[i : i + _BATCH]))
                drain(limit)
            carry = bytes(view[used:]) if used < len(buf) else b""
            if final:
                break
        for f in hashing:
            f.result()
    drain(0)
    if seen != size:
        raise ValueError("file size changed while being read")
    oid = whole.digest()
    if not db.has(oid):
        db.put(codec.KIND_CHUNKED, encode_manifest(size, chunks), oid=oid, size=size)
    return oid


def _chunk_bytes(db, oid: bytes) -> bytes:
    kind, data = db.get(oid)
    if kind != codec.KIND_BLOB:
        raise IntegrityError(oid.hex(), "chunk is not a blob")
    return data


def iter_content(db, oid: bytes, manifest: bytes) -> Iterator[bytes]:
    """Yield a large file's bytes in order; raises at the end if they don't hash to ``oid``."""
    _, items = decode_manifest(oid.hex(), manifest)
    h = hasher()
    ex = pool()
    window = deque()
    limit = 4 * (os.cpu_count() or 2)
    for coid, n in items:
        window.append((ex.submit(_chunk_bytes, db, coid), n))
        if len(window) > limit:
            yield _take(window, h)
    while window:
        yield _take(window, h)
    if h.digest() != oid:
        raise IntegrityError(oid.hex(), "reassembled content hash mismatch", oid.hex(), h.hexdigest())


def _take(window: deque, h) -> bytes:
    fut, n = window.popleft()
    data = fut.result()
    if len(data) != n:
        raise IntegrityError("", "chunk length differs from the manifest")
    h.update(data)
    return data


def assemble(db, oid: bytes, manifest: bytes) -> bytes:
    return b"".join(iter_content(db, oid, manifest))


def write_chunked(db, oid: bytes, manifest: bytes, fd: int) -> None:
    """Write a large file into ``fd`` on all cores, then verify the whole against its id."""
    total, items = decode_manifest(oid.hex(), manifest)
    os.ftruncate(fd, total)
    offsets = []
    pos = 0
    for coid, n in items:
        offsets.append((coid, n, pos))
        pos += n

    def work(part):
        for coid, n, at in part:
            data = _chunk_bytes(db, coid)
            if len(data) != n:
                raise IntegrityError(coid.hex(), "chunk length differs from the manifest")
            os.pwrite(fd, data, at)

    step = _BATCH
    futs = [pool().submit(work, offsets[i : i + step]) for i in range(0, len(offsets), step)]
    for f in futs:
        f.result()
    if total:
        with mmap.mmap(fd, total, access=mmap.ACCESS_READ) as mm:
            got = hash_bytes(mm)
    else:
        got = hash_bytes(b"")
    if got != oid:
        raise IntegrityError(oid.hex(), "reassembled content hash mismatch", oid.hex(), got.hex())

"""The stored form of one object: a 10-byte header, then raw or zstd-compressed payload.

The only module that imports zstandard. The id is always the hash of the *uncompressed*
payload, so the codec and its level can change without changing any id. Decoding checks the
declared size before allocating and never inflates past it, so a hostile object cannot
exhaust memory: each kind has its own cap (zcas never writes a blob of 1 MiB or more, so a
blob claiming 1 GiB is refused from its header alone), and objects above the blob cap are
decompressed (or, stored raw, copied) inside a process-wide byte budget, so many threads
decoding large trees, manifests or records at once hold at most ``BUDGET`` bytes between
them, not threads x 256 MiB.

Header (little-endian): kind u8, codec u8, raw_size u64.
"""

from __future__ import annotations

import struct
import threading

import zstandard

from .errors import IntegrityError

HEADER = struct.Struct("<BBQ")
HEADER_SIZE = HEADER.size

KIND_BLOB = 1  # a file's bytes (or a whole small file)
KIND_TREE = 2  # a directory listing, see tree.py
KIND_CHUNKED = 3  # a large file's manifest: its chunks in order, see chunking.py
KIND_RECORD = 4  # metadata written by upper layers (run records); opaque to the store
KINDS = {KIND_BLOB: "blob", KIND_TREE: "tree", KIND_CHUNKED: "chunked", KIND_RECORD: "record"}

CODEC_RAW = 0
CODEC_ZSTD = 1

LEVEL = 1  # level 1 compressed numeric CSV better and much faster than 3 on this kind of data
# Per kind, the most a coded record may declare: blobs are whole files under 1 MiB
# (chunking.CHUNK_THRESHOLD) or chunks of at most 128 KiB; a tree of 64 MiB lists about a
# million entries; a manifest of 256 MiB lists ~7.4 million chunks (a file of ~300 GiB).
# The record kind is also the envelope of a remote's lineage segments (many run records,
# at most 256 MiB decoded: lineage.remote.MAX_SEGMENT), so the codec allows 256 MiB.
# Writers refuse to create what readers would refuse to read.
MAX_SIZE = {KIND_BLOB: 4 << 20, KIND_TREE: 64 << 20, KIND_CHUNKED: 256 << 20, KIND_RECORD: 256 << 20}
MAX_OBJECT_SIZE = max(MAX_SIZE.values())  # no coded record may claim to be larger than this
# Per kind, the most an *object in a pack* may hold. A stored record object is one run
# record, and zcas never writes one over 16 MiB (lineage.serde.MAX_RECORD): a pack index
# entry claiming more is refused before a byte of it is fetched or read.
MAX_RECORD_OBJECT = 16 << 20
MAX_STORED_SIZE = {**MAX_SIZE, KIND_RECORD: MAX_RECORD_OBJECT}
BUDGET = 256 << 20  # bytes of large objects being decompressed at once, process-wide
_MIN_COMPRESS = 64  # below this a zstd frame costs more than it saves
_MAX_WINDOW = 1 << 27

_local = threading.local()


class Budget:
    """A weighted semaphore over bytes: decompressing a large object takes its size (at
    most the whole budget) and gives it back when done."""

    def __init__(self, total: int):
        self.total = total
        self.free = total
        self._cond = threading.Condition()

    def take(self, n: int) -> int:
        n = min(n, self.total)
        with self._cond:
            while self.free < n:
                self._cond.wait()
            self.free -= n
        return n

    def give(self, n: int) -> None:
        with self._cond:
            self.free += n
            self._cond.notify_all()


budget = Budget(BUDGET)


def check_size(kind: int, size: int, caps: dict[int, int] = MAX_SIZE) -> None:
    """Refuse to write an object no reader would accept (one line, names the limit); with
    ``caps=MAX_STORED_SIZE``, one no pack reader would accept."""
    cap = caps.get(kind, MAX_OBJECT_SIZE)
    if size > cap:
        from .errors import UsageError

        raise UsageError(f"{KINDS.get(kind, kind)} of {size} bytes exceeds the limit of {cap} bytes for one object")


def _cctx() -> zstandard.ZstdCompressor:
    c = getattr(_local, "c", None)
    if c is None:
        c = _local.c = zstandard.ZstdCompressor(level=LEVEL, write_checksum=False)
    return c


def _dctx() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
    return d


def encode(kind: int, payload) -> bytes:
    """Header plus payload, compressed when that saves at least 1/32 of the bytes."""
    n = len(payload)
    check_size(kind, n)
    if n >= _MIN_COMPRESS:
        packed = _cctx().compress(payload)
        if len(packed) < n - (n >> 5):
            return HEADER.pack(kind, CODEC_ZSTD, n) + packed
    return HEADER.pack(kind, CODEC_RAW, n) + bytes(payload)


def encode_raw(kind: int, payload) -> bytes:
    check_size(kind, len(payload))
    return HEADER.pack(kind, CODEC_RAW, len(payload)) + bytes(payload)


def read_header(what: bytes | str, record: bytes | memoryview) -> tuple[int, int, int]:
    if len(record) < HEADER_SIZE:
        raise IntegrityError(what, "truncated header")
    kind, codec, raw_size = HEADER.unpack_from(record, 0)
    if kind not in KINDS:
        raise IntegrityError(what, f"unknown object kind {kind}")
    if codec not in (CODEC_RAW, CODEC_ZSTD):
        raise IntegrityError(what, f"unknown codec {codec}")
    cap = MAX_SIZE[kind]
    if raw_size > cap:
        raise IntegrityError(what, f"{KINDS[kind]} declared size {raw_size} exceeds the limit {cap}")
    return kind, codec, raw_size


def inflate_small(body, raw_size: int) -> bytes | None:
    """A zstd frame declaring exactly ``raw_size`` (at most the blob limit), inflated; None
    when it does not (the caller then decodes it the careful way, for the reason)."""
    if raw_size > MAX_SIZE[KIND_BLOB]:
        return None
    try:
        if zstandard.frame_content_size(body) != raw_size:
            return None
        out = _dctx().decompress(body, max_output_size=raw_size)
    except zstandard.ZstdError:
        return None
    return out if len(out) == raw_size else None


def decode(what: bytes | str, record: bytes | memoryview) -> tuple[int, bytes]:
    """(kind, payload) of a stored record, bounded by its declared size."""
    kind, codec, raw_size = read_header(what, record)
    return kind, decode_body(what, codec, raw_size, record)


def decode_body(what: bytes | str, codec: int, raw_size: int, record: bytes | memoryview, view: bool = False) -> bytes:
    """The payload of a record whose header ``read_header`` accepted. ``view=True``: a raw
    payload is returned as a view into ``record`` (a verifier that only reads it needs no
    copy); otherwise a large raw payload is copied inside the budget, like an inflation."""
    body = memoryview(record)[HEADER_SIZE:]
    if codec == CODEC_RAW:
        if len(body) != raw_size:
            raise IntegrityError(what, f"size {len(body)} differs from declared {raw_size}")
        if view:
            return body  # type: ignore[return-value]
        held = budget.take(raw_size) if raw_size > MAX_SIZE[KIND_BLOB] else 0
        try:
            return bytes(body)
        finally:
            if held:
                budget.give(held)
    try:
        declared = zstandard.frame_content_size(body)
    except zstandard.ZstdError as e:
        raise IntegrityError(what, f"bad zstd frame: {e}") from None
    if declared != raw_size:
        raise IntegrityError(what, f"frame claims {declared} bytes, header {raw_size}")
    held = budget.take(raw_size) if raw_size > MAX_SIZE[KIND_BLOB] else 0
    try:
        out = _dctx().decompress(body, max_output_size=raw_size)
    except zstandard.ZstdError as e:
        raise IntegrityError(what, f"cannot decompress: {e}") from None
    finally:
        if held:
            budget.give(held)
    if len(out) != raw_size:
        raise IntegrityError(what, f"decompressed to {len(out)} bytes, declared {raw_size}")
    return out

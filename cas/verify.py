"""Verifying one stored record against what its pack index says about it.

Everything read from a store, and above all from a remote, is checked here before it is
used or kept: the index entry's shape first (``pack.check_entry``: a hostile length is
refused before any byte is read), then the record's header against the entry (kind, and size for everything but a
manifest, before anything is decompressed), then the decoded payload: blobs, trees and
records must hash to their id, trees must decode under checkout's rules, and a manifest
must decode and add up to the size the index records. (A manifest's own id is the hash of
the whole file, so it can only be checked on reassembly, which checkout and cat do.)
"""

from __future__ import annotations

from . import codec
from .errors import IntegrityError, ZcasError
from .manifest import check_manifest
from .oid import hash_bytes


def check_header(oid: bytes, record, kind: int, size: int) -> tuple[int, int]:
    """(codec, raw size) of a record whose header agrees with its index entry (checked
    before anything is decompressed)."""
    rkind, rcodec, raw_size = codec.read_header(oid, record)
    if rkind != kind:
        raise IntegrityError(oid, f"kind differs from the pack index ({codec.KINDS[rkind]}, index says {codec.KINDS[kind]})")
    if kind != codec.KIND_CHUNKED and raw_size != size:
        raise IntegrityError(oid, f"declared size {raw_size} differs from the pack index ({size})")
    return rcodec, raw_size


def verify_record(oid: bytes, record, kind: int, size: int, trees: bool = True, view: bool = False) -> bytes:
    """The payload of a record that is exactly what its id and index entry say, else
    IntegrityError (or, for a tree breaking checkout's rules, UnsafePathError) naming the
    object. ``trees=False`` leaves decoding trees to the caller, which does it anyway.
    ``view=True`` (a caller that only verifies): a raw payload may be a view into
    ``record``, not a copy."""
    rcodec, raw_size = check_header(oid, record, kind, size)
    payload = codec.decode_body(oid, rcodec, raw_size, record, view=view)
    check_payload(oid, kind, size, payload, trees)
    return payload


def check_payload(oid: bytes, kind: int, size: int, payload: bytes, trees: bool = True) -> None:
    if kind == codec.KIND_BLOB:  # the common case first
        if hash_bytes(payload) == oid:
            return
    if kind == codec.KIND_CHUNKED:
        total = check_manifest(oid, payload)  # without unpacking millions of entries at once
        if total != size:
            raise IntegrityError(oid, f"manifest total {total} differs from the pack index size {size}")
        return
    got = hash_bytes(payload)
    if got != oid:
        raise IntegrityError(oid, "content hash mismatch", oid, got)
    if trees and kind == codec.KIND_TREE:
        from .tree import decode_tree

        decode_tree(oid, bytes(payload))  # (a view, when the caller asked for one)


def verify_span(buf, base: int, entries: list) -> list[str | None]:
    """For records laid out in ``buf`` (which starts at pack offset ``base``), None for each
    that verifies, else the reason. Index entries are (id, offset, length, kind, size) and
    already shape-checked. Blobs, the bulk of any pull, take a lean path here; anything
    unusual goes through ``verify_record`` for the exact check and reason."""
    mv = memoryview(buf)
    unpack = codec.HEADER.unpack_from
    blob_cap = codec.MAX_SIZE[codec.KIND_BLOB]
    inflate = codec.inflate_small
    out: list[str | None] = []
    for oid, off, length, kind, size in entries:
        rec = mv[off - base : off - base + length]
        try:
            rkind, rcodec, raw = unpack(rec, 0) if len(rec) >= codec.HEADER_SIZE else (0, 0, 0)
            if rkind == kind == codec.KIND_BLOB and raw == size <= blob_cap:
                body = rec[codec.HEADER_SIZE :]
                data: bytes | memoryview | None
                if rcodec == codec.CODEC_RAW:
                    data = body if len(body) == raw else None
                else:
                    data = inflate(body, raw) if rcodec == codec.CODEC_ZSTD else None
                if data is not None and hash_bytes(data) == oid:
                    out.append(None)
                    continue
            verify_record(oid, rec, kind, size, view=True)
            out.append(None)
        except ZcasError as e:
            out.append(getattr(e, "reason", None) or str(e))
    return out

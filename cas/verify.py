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
from .errors import IntegrityError
from .oid import hash_bytes


def check_header(oid: bytes, record, kind: int, size: int) -> None:
    """The record's header agrees with its index entry (checked before decompressing)."""
    h = oid.hex()
    rkind, _, raw_size = codec.read_header(h, record)
    if rkind != kind:
        raise IntegrityError(h, f"kind differs from the pack index ({codec.KINDS[rkind]}, index says {codec.KINDS[kind]})")
    if kind != codec.KIND_CHUNKED and raw_size != size:
        raise IntegrityError(h, f"declared size {raw_size} differs from the pack index ({size})")


def verify_record(oid: bytes, record, kind: int, size: int, trees: bool = True) -> bytes:
    """The payload of a record that is exactly what its id and index entry say, else
    IntegrityError (or, for a tree breaking checkout's rules, UnsafePathError) naming the
    object. ``trees=False`` leaves decoding trees to the caller, which does it anyway."""
    check_header(oid, record, kind, size)
    _, payload = codec.decode(oid.hex(), record)
    check_payload(oid, kind, size, payload, trees)
    return payload


def check_payload(oid: bytes, kind: int, size: int, payload: bytes, trees: bool = True) -> None:
    h = oid.hex()
    if kind == codec.KIND_CHUNKED:
        from .chunking import decode_manifest

        total, _ = decode_manifest(h, payload)
        if total != size:
            raise IntegrityError(h, f"manifest total {total} differs from the pack index size {size}")
        return
    got = hash_bytes(payload)
    if got != oid:
        raise IntegrityError(h, "content hash mismatch", h, got.hex())
    if trees and kind == codec.KIND_TREE:
        from .tree import decode_tree

        decode_tree(h, payload)

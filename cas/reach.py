"""Reachability: which objects a set of roots keeps alive, and which are missing.

gc, fsck and du all need the same walk: trees name their entries, chunked manifests their
chunks, blobs nothing. Each object is visited once.
"""

from __future__ import annotations

from typing import Iterable

from . import codec
from .chunking import decode_manifest
from .errors import ObjectNotFoundError, ZcasError
from .tree import decode_tree


def walk(db, roots: Iterable[bytes], sizes: dict[bytes, int] | None = None) -> tuple[set[bytes], set[bytes]]:
    """(reachable ids, missing ids). Damaged objects count as reachable but not followed."""
    seen: set[bytes] = set()
    missing: set[bytes] = set()
    stack = list(roots)
    while stack:
        oid = stack.pop()
        if oid in seen or oid in missing:
            continue
        if not db.has(oid):
            missing.add(oid)
            continue
        seen.add(oid)
        kind = db.entry(oid).kind
        if kind == codec.KIND_BLOB:
            continue
        try:
            kind, payload = db.get(oid)
            if kind == codec.KIND_TREE:
                stack.extend(e.oid for e in decode_tree(oid.hex(), payload))
            elif kind == codec.KIND_CHUNKED:
                stack.extend(c for c, _ in decode_manifest(oid.hex(), payload)[1])
        except ObjectNotFoundError:
            missing.add(oid)
        except ZcasError:
            pass  # fsck reports it as corrupt; gc keeps it
    return seen, missing


def logical_size(db, oid: bytes, memo: dict[bytes, int]) -> int:
    """Bytes a checkout of ``oid`` writes (files and link targets, counted without dedup)."""
    if oid in memo:
        return memo[oid]
    e = db.entry(oid)
    if e.kind != codec.KIND_TREE:
        size = e.size
    else:
        _, payload = db.get(oid)
        size = sum(logical_size(db, x.oid, memo) for x in decode_tree(oid.hex(), payload))
    memo[oid] = size
    return size

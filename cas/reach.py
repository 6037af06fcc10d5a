"""Reachability: which objects a set of roots keeps alive, and which are missing.

gc, fsck and du all need the same walk: trees name their entries, chunked manifests their
chunks, blobs nothing. Each object is visited once, iteratively (folders thousands deep are
fine), and a tree reused many times is read once.
"""

from __future__ import annotations

from typing import Iterable

from . import codec
from .chunking import decode_manifest
from .errors import ObjectNotFoundError, ZcasError
from .tree import decode_tree


def walk(db, roots: Iterable[bytes], sizes: dict[bytes, int] | None = None,
         damaged: dict[bytes, str] | None = None) -> tuple[set[bytes], set[bytes]]:
    """(reachable ids, missing ids). Damaged objects count as reachable but cannot be
    followed: what lies below them is unknown. Each is recorded in ``damaged`` (id ->
    reason) when given, and a missing object named by a present one as well (gc refuses
    to collect anything while either is true)."""
    seen: set[bytes] = set()
    missing: set[bytes] = set()
    stack = [(o, None) for o in roots]
    while stack:
        oid, parent = stack.pop()
        if oid in seen or oid in missing:
            if oid in missing and parent is not None and damaged is not None:
                damaged.setdefault(oid, f"missing (named by {parent.hex()})")
            continue
        if not db.has(oid):
            missing.add(oid)
            if parent is not None and damaged is not None:
                damaged.setdefault(oid, f"missing (named by {parent.hex()})")
            continue
        seen.add(oid)
        kind = db.entry(oid).kind
        if kind == codec.KIND_BLOB or kind == codec.KIND_RECORD:
            continue
        try:
            kind, payload = db.get(oid)
            if kind == codec.KIND_TREE:
                stack.extend((e.oid, oid) for e in decode_tree(oid.hex(), payload))
            elif kind == codec.KIND_CHUNKED:
                stack.extend((c, oid) for c, _ in decode_manifest(oid.hex(), payload)[1])
        except ObjectNotFoundError as e:  # its pack vanished under us
            missing.add(oid)
            if damaged is not None:
                damaged.setdefault(oid, str(e))
        except ZcasError as e:
            if damaged is not None:
                damaged.setdefault(oid, str(e))  # fsck reports it as corrupt; gc refuses
    return seen, missing


def fold(oid: bytes, children, combine, memo: dict):
    """``memo[oid] = combine(oid)``, after the same for every id ``children(oid)`` names:
    a post-order walk of a DAG of trees, each distinct node once (however often a tree
    reuses it) and iteratively (folders thousands deep are fine). ``combine`` reads its
    children's results from ``memo``."""
    stack = [oid]
    pending: dict[bytes, list[bytes]] = {}  # nodes whose children are being folded
    while stack:
        t = stack[-1]
        if t in memo:
            stack.pop()
            continue
        if t not in pending:
            pending[t] = children(t)
            todo = [c for c in pending[t] if c not in memo]
            if todo:
                stack.extend(todo)
                continue
        memo[t] = combine(t)
        del pending[t]
        stack.pop()
    return memo[oid]


def logical_size(db, oid: bytes, memo: dict[bytes, int]) -> int:
    """Bytes a checkout of ``oid`` writes (files and link targets, counted without dedup)."""
    kids: dict[bytes, list[bytes]] = {}

    def children(t: bytes) -> list[bytes]:
        if db.entry(t).kind != codec.KIND_TREE:
            return []
        kids[t] = [x.oid for x in decode_tree(t.hex(), db.get(t)[1])]
        return kids[t]

    def combine(t: bytes) -> int:
        return sum(memo[c] for c in kids.pop(t)) if t in kids else db.entry(t).size

    return fold(oid, children, combine, memo)

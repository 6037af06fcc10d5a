"""Reachability: which objects a set of roots keeps alive, and which are missing.

The object graph has one definition, ``children``: trees name their entries, chunked
manifests their chunks, blobs and records nothing. Every walker uses it: ``walk`` (gc,
fsck, du, and ``closure`` for push), ``fold`` (checkout's totals, du's logical size) and the
fetch of named objects from a remote (``transfer.fetch_objects``, which expands what it
fetched, a pack's batch at a time). Each object is visited once, iteratively (folders
thousands deep are fine), and a tree reused many times is read once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from . import codec
from .chunking import decode_manifest
from .errors import ObjectNotFoundError, ZcasError
from .tree import decode_tree

_T = TypeVar("_T")


def children(oid: bytes, kind: int, payload: bytes) -> list[bytes]:
    """The ids object ``oid`` (of ``kind``, decoded ``payload``) names, in stored order."""
    if kind == codec.KIND_TREE:
        return [e.oid for e in decode_tree(oid, payload)]
    if kind == codec.KIND_CHUNKED:
        return [c for c, _ in decode_manifest(oid, payload)[1]]
    return []


def closure(db: Any, roots: Iterable[bytes]) -> list[bytes]:
    """The roots and everything they reach, each once; ObjectNotFoundError if any is
    missing (what would be sent must all be here)."""
    live, missing = walk(db, roots)
    if missing:
        raise ObjectNotFoundError(min(missing))
    return sorted(live)


def walk(db: Any, roots: Iterable[bytes], damaged: dict[bytes, str] | None = None) -> tuple[set[bytes], set[bytes]]:
    """(reachable ids, missing ids). Damaged objects count as reachable but cannot be
    followed: what lies below them is unknown. Each is recorded in ``damaged`` (id ->
    reason) when given, and a missing object named by a present one as well (gc refuses
    to collect anything while either is true)."""
    seen: set[bytes] = set()
    missing: set[bytes] = set()
    stack: list[tuple[bytes, bytes | None]] = [(o, None) for o in roots]
    while stack:
        oid, parent = stack.pop()
        if oid in seen or oid in missing:
            if oid in missing and parent is not None and damaged is not None:
                damaged.setdefault(oid, f"missing (named by {parent.hex()})")
            continue
        if not db.has(oid):  # (messages are an edge: ids become hex there)
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
            stack.extend((c, oid) for c in children(oid, kind, payload))
        except ObjectNotFoundError as e:  # its pack vanished under us
            missing.add(oid)
            if damaged is not None:
                damaged.setdefault(oid, str(e))
        except ZcasError as e:
            if damaged is not None:
                damaged.setdefault(oid, str(e))  # fsck reports it as corrupt; gc refuses
    return seen, missing


def fold(oid: bytes, children: Callable[[bytes], list[bytes]], combine: Callable[[bytes], _T],
         memo: dict[bytes, _T]) -> _T:
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


def logical_size(db: Any, oid: bytes, memo: dict[bytes, int]) -> int:
    """Bytes a checkout of ``oid`` writes (files and link targets, counted without dedup)."""
    kids: dict[bytes, list[bytes]] = {}

    def below(t: bytes) -> list[bytes]:
        if db.entry(t).kind != codec.KIND_TREE:  # a file's size is its index entry's
            return []
        kids[t] = children(t, *db.get(t))
        return kids[t]

    def combine(t: bytes) -> int:
        return sum(memo[c] for c in kids.pop(t)) if t in kids else db.entry(t).size

    return fold(oid, below, combine, memo)

"""Reading stored content back for people: a file's bytes, a tree's listing."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import codec
from .checkout import read_tree
from .chunking import iter_content
from .errors import ZcasError
from .tree import MODE_TREE, MODES

if TYPE_CHECKING:
    from .db import ObjectDB

_CACHED_TREES = 4096  # decoded trees kept while listing (bounds memory, not correctness)


def iter_file_bytes(db: ObjectDB, oid: bytes) -> Iterator[bytes]:
    """A file's content, verified, without holding a large file in memory."""
    kind, payload = db.get(oid)
    if kind == codec.KIND_TREE:
        raise ZcasError(f"{oid.hex()} is a tree, not a file; use 'zcas ls' or 'zcas checkout'")
    if kind == codec.KIND_CHUNKED:
        yield from iter_content(db, oid, payload)
    else:
        yield payload


def list_tree(db: ObjectDB, oid: bytes, recursive: bool = False, prefix: str = "") -> Iterator[tuple[str, bytes, int, str]]:
    """(mode, id, size, path) for each entry, streamed; size is the file's (0 for a folder,
    -1 when the object is missing).

    A generator the caller iterates: a tree that reuses subtrees can expand to far more
    paths than it has bytes, so rows are produced as they are read, in order (a folder's
    entries right after it), never collected first. Recently decoded trees are kept by id,
    so a subtree used many times is read and decoded once, and the walk is iterative.
    """
    if db.entry(oid).kind != codec.KIND_TREE:  # raised now, not on the first row
        raise ZcasError(f"{oid.hex()} is a file, not a tree; use 'zcas cat'")
    return _rows(db, oid, recursive, prefix)


def _rows(db, oid: bytes, recursive: bool, prefix: str) -> Iterator[tuple[str, bytes, int, str]]:
    cache: OrderedDict[bytes, list] = OrderedDict()

    def entries(t: bytes) -> list:
        got = cache.get(t)
        if got is None:
            got = cache[t] = read_tree(db, t)
            if len(cache) > _CACHED_TREES:
                cache.popitem(last=False)
        else:
            cache.move_to_end(t)
        return got

    stack = [(prefix, iter(entries(oid)))]
    while stack:
        base, it = stack[-1]
        e = next(it, None)
        if e is None:
            stack.pop()
            continue
        path = base + os.fsdecode(e.name)
        if e.mode == MODE_TREE:
            yield MODES[e.mode], e.oid, 0, path + "/"
            if recursive:
                stack.append((path + "/", iter(entries(e.oid))))
        else:
            yield MODES[e.mode], e.oid, db.entry(e.oid).size if db.has(e.oid) else -1, path

"""Reading stored content back for people: a file's bytes, a tree's listing."""

from __future__ import annotations

import os
from typing import Iterator

from . import codec
from .checkout import read_tree
from .chunking import iter_content
from .errors import ZcasError
from .tree import MODE_TREE, MODES


def iter_file_bytes(db, oid: bytes) -> Iterator[bytes]:
    """A file's content, verified, without holding a large file in memory."""
    kind, payload = db.get(oid)
    if kind == codec.KIND_TREE:
        raise ZcasError(f"{oid.hex()} is a tree, not a file; use 'zcas ls' or 'zcas checkout'")
    if kind == codec.KIND_CHUNKED:
        yield from iter_content(db, oid, payload)
    else:
        yield payload


def list_tree(db, oid: bytes, recursive: bool = False, prefix: str = "") -> list[tuple[str, bytes, int, str]]:
    """(mode, id, size, path) for each entry; size is the file's (0 for a folder)."""
    if db.entry(oid).kind != codec.KIND_TREE:
        raise ZcasError(f"{oid.hex()} is a file, not a tree; use 'zcas cat'")
    rows = []
    for e in read_tree(db, oid):
        path = prefix + os.fsdecode(e.name)
        size = 0 if e.mode == MODE_TREE else db.entry(e.oid).size if db.has(e.oid) else -1
        rows.append((MODES[e.mode], e.oid, size, path + ("/" if e.mode == MODE_TREE else "")))
        if recursive and e.mode == MODE_TREE:
            rows.extend(list_tree(db, e.oid, True, path + "/"))
    return rows

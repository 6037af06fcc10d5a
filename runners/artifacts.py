"""Ids of paths in the working tree: store them (inputs, outputs) or just name them.

Inputs and outputs are stored as they are hashed, so every id a run record names is in the
object store and lineage can always show it. The stat cache makes unchanged paths free.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from zcas.cas.checkout import checkout
from zcas.cas.errors import ChangedWhileReadingError, InputPathError
from zcas.cas.ingest import Ingester, path_id

if TYPE_CHECKING:
    from .core import Core


def store_paths(ctx: Core, paths: list[str], attempts: int = 5, db: Any = None) -> dict[str, bytes]:
    """Store repository-relative paths in ``db`` (default: the core's, a stack's store when it
    has one, where hits are looked for and workers read); {path: id}.

    A path replaced while it is hashed (another zcas process restoring it: restores are
    atomic renames) is hashed again, a few times, before that is an error.
    """
    out: dict[str, bytes] = {}
    for p in paths:
        for attempt in range(attempts):
            try:
                out[p] = Ingester(ctx.db if db is None else db, ctx.statcache).add(ctx.abspath(p))[0]
                break
            except ChangedWhileReadingError:
                if attempt == attempts - 1:
                    raise
                time.sleep(0.01 * (attempt + 1))
            except InputPathError as e:
                raise InputPathError(p, e.reason) from None
    return out


def current_id(ctx: Core, rel: str) -> bytes | None:
    """The id of what is at ``rel`` now, without storing anything (None if absent): status,
    why and restores ask this, and must not fill the store with folders they only name."""
    path = ctx.abspath(rel)
    if not os.path.lexists(path):
        return None
    try:
        return path_id(path, ctx.statcache)[0]
    except InputPathError as e:
        raise InputPathError(rel, e.reason) from None


def restore(ctx: Core, rel: str, oid: bytes, db: Any = None) -> bool:
    """Put object ``oid`` (from ``db``, default the core's) at ``rel`` unless it is already
    there; True if anything was written."""
    if current_id(ctx, rel) == oid:
        return False
    path = ctx.abspath(rel)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    checkout(ctx.db if db is None else db, oid, path, force=True)
    return True

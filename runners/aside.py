"""Declared outputs are moved out of the way before a command runs, and put back if it fails.

A file left at an output's path (by an earlier run, or by hand) would otherwise be recorded
as the step's result when the command does not write it, and restored by every later hit.
So, as DVC does, each existing output is first made safe in the object store — stored, and
unless a recorded run produced it, recorded in the path history, so gc keeps it and ``zcas
log PATH`` lists it — and removed; if the step fails, it is checked out again. A crash in between
loses nothing: the bytes are in the store under a recorded path version.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING

from zcas.cas.ingest import Ingester
from zcas.cas.refs import PathVersion, Refs
from zcas.cas.statcache import StatCache
from zcas.cas.tree import MODES

from .artifacts import current_id, restore

if TYPE_CHECKING:
    from .core import Core


def keep(ctx: Core, outputs: Iterable[str]) -> list[tuple[str, bytes]]:
    """Make what is at each existing path safe in the store, [(path, id)], changing nothing
    in the tree: what a run recorded is kept by lineage; anything else (a file made by hand)
    is stored in the repository's store and recorded in the path history, so gc keeps it
    and ``zcas log PATH`` lists it. Anything that writes over an output's path (setting it
    aside, or a hit restored over it) asks this first, so nothing the user made is lost."""
    found: list[tuple[str, bytes]] = []
    kept: list[PathVersion] = []
    db = ctx.repo.db  # with the path history: the user's own files stay in the repository
    cache = ctx.statcache if ctx.db is db else StatCache(None)  # a stack's cache speaks for its own store
    graph = ctx.lineage.graph
    for rel in outputs:
        path = ctx.abspath(rel)
        if not os.path.lexists(path):
            continue
        oid, mode = Ingester(db, cache).add(path)  # known files cost a stat
        if not graph.producers(oid):  # not a run's output (lineage keeps those): the user's own
            last = graph.versions(rel)
            if not last or last[-1].id != oid.hex():
                kept.append(PathVersion(rel, oid, MODES[mode], time.time()))
        found.append((rel, oid))
    if kept:
        db.flush()
        Refs(ctx.repo.zdir).record(kept)
        ctx.lineage.index_paths(kept)
    return found


def set_aside(ctx: Core, outputs: Iterable[str]) -> list[tuple[str, bytes]]:
    """Remove the declared outputs that exist, keeping each in the store; [(path, id)]."""
    aside = keep(ctx, outputs)
    for rel, _ in aside:
        path = ctx.abspath(rel)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    return aside


def put_back(ctx: Core, aside: list[tuple[str, bytes]]) -> None:
    """After a failed step: every output set aside is back as it was."""
    for rel, oid in aside:
        path = ctx.abspath(rel)
        if os.path.lexists(path) and current_id(ctx, rel) != oid:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        restore(ctx, rel, oid, ctx.repo.db)  # where set_aside kept it

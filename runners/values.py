"""Python values in the object store: store one with its materializer, load one back.

Loading needs an object database and a materializer, nothing of execution: the repository
façade, the core and a worker all load through these functions.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil
from typing import Any

from zcas.cas.checkout import checkout
from zcas.cas.chunking import store_buffer
from zcas.cas.errors import UsageError
from zcas.cas.ingest import Ingester

from . import materializers as mats


def check_loadable(tag: str, allow_pickle: bool, what: str) -> mats.Materializer:
    """The materializer for ``tag``, refusing pickle unless the caller allows it."""
    m = mats.by_name(tag)
    if m.name == "pickle" and not allow_pickle:
        raise UsageError(f"refusing to unpickle {what}: loading a pickle runs code; pass allow_pickle=True "
                         "if you trust whoever stored it (steps: @zcas.step(pickle=True))")
    return m


def load_value(db: Any, zdir: str | None, oid_hex: str, tag: str, allow_pickle: bool) -> Any:
    """The value stored as ``oid_hex`` with materializer ``tag``. A path comes back as a
    checked-out copy under ``.zcas/checkouts/`` (``zdir`` None: paths are refused)."""
    m = check_loadable(tag, allow_pickle, oid_hex[:12])
    oid = bytes.fromhex(oid_hex)
    if m is mats.PATH:
        if zdir is None:
            raise TypeError("path artifacts cannot be passed to remote runners yet; pass bytes or values")
        dest = os.path.join(zdir, "checkouts", oid_hex)
        if not os.path.lexists(dest):
            tmp = f"{dest}.{os.getpid()}.tmp"
            checkout(db, oid, tmp, force=True)
            try:
                os.replace(tmp, dest)
            except OSError:  # another process checked out the same id first: use it
                if not os.path.isdir(dest):
                    raise
                shutil.rmtree(tmp, ignore_errors=True)
        return pathlib.Path(dest)
    return m.load(db.get_bytes(oid))


def fetch_stored(db: Any, oid_hex: str, tag: str, allow_pickle: bool) -> bytes:
    """The stored bytes of a value that is not a path (read and verified), for its
    materializer to decode: an artifact keeps them and decodes a value of its own for each
    consumer.
    A pickle is refused before it is read, unless the caller allows it."""
    check_loadable(tag, allow_pickle, oid_hex[:12])
    return db.get_bytes(bytes.fromhex(oid_hex))


_IMMUTABLE = frozenset({type(None), bool, int, float, complex, str, bytes})


def immutable(value: Any, depth: int = 0) -> bool:
    """Whether nobody can change ``value`` in place (None, a number, str, bytes, a tuple of
    those): then one decoded object can go to every consumer, as no step can change what
    another one sees. Anything else (a list, a dict, an array, a frame, a user's class) is
    decoded for each one."""
    tp = type(value)
    if tp in _IMMUTABLE:
        return True
    return tp is tuple and depth < 100 and all(immutable(x, depth + 1) for x in value)


def clear_checkouts(zdir: str, dry_run: bool = False) -> int:
    """Remove the copies ``load_value`` checked out for path artifacts (and any a crash left
    half-made); the number removed. They are caches of stored trees, made again on the next
    load, so gc clears them while it holds the repository alone."""
    folder = os.path.join(zdir, "checkouts")
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    if not dry_run:
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
    return len(names)


def store_value(db: Any, statcache: Any, value: Any, allow_pickle: bool) -> tuple[str, str]:
    """(id hex, materializer tag) of ``value``, stored (a path is stored as a file or folder;
    ``statcache`` None: paths are refused, as on a worker without the client's files)."""
    oid_hex, tag, _ = store_value_kept(db, statcache, value, allow_pickle)
    return oid_hex, tag


def store_value_kept(db: Any, statcache: Any, value: Any, allow_pickle: bool) -> tuple[str, str, bytes | None]:
    """``store_value``, and the bytes stored when they are an immutable ``bytes`` object
    (None for a path, or a materializer that gave a buffer someone could still change).

    Decoding those bytes gives exactly what loading the id back would give: the
    store holds these very bytes (the id is their hash, and a read is verified against
    it), so decoding them here skips a read, a decompression and a hash, nothing else. The
    value in hand is never handed on instead: what it was returned as and what loading
    gives can differ (a dict's key order, a numpy scalar), and its owner may change it."""
    m = mats.for_value(value, allow_pickle)
    if m is mats.PATH:
        if statcache is None:
            raise TypeError("steps on remote runners cannot return paths yet; return bytes or values")
        oid = Ingester(db, statcache).add(str(value))[0]
        return oid.hex(), m.tag, None
    try:
        data = m.save(value)
    except mats.NeedsPickleError:
        if not allow_pickle:
            raise
        m = mats.by_name("pickle")  # the step opted in: a value its materializer cannot store safely
        data = m.save(value)
    oid = store_buffer(db, data)
    return oid.hex(), m.tag, data if type(data) is bytes else None


"""fsck: read and verify every object, and check that everything named is present.

Every record is decoded and hashed (on every core); chunked files are reassembled and their
whole hash checked; trees must decode under the same rules a checkout applies. Corrupt and
missing objects are failures; dangling objects (stored but unreachable from any name) are
reported, as git does, but are not damage: gc removes them.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future

import attrs

from . import codec
from .chunking import iter_content, pool
from .db import ObjectDB
from .errors import ZcasError
from .pack import PREFIX, decode_index, idx_key, name_of_idx_key
from .reach import walk

_STEP = 64  # objects per verification task


@attrs.define
class FsckReport:
    checked: int = 0
    corrupt: dict[str, str] = attrs.Factory(dict)  # id or pack -> reason
    missing: list[str] = attrs.Factory(list)
    dangling: list[str] = attrs.Factory(list)
    unindexed_packs: list[str] = attrs.Factory(list)
    absent: int = 0  # optional roots not stored here (never fetched): not damage

    @property
    def ok(self) -> bool:
        return not self.corrupt and not self.missing


def _verify(db: ObjectDB, oid: bytes) -> str | None:
    try:
        kind, payload = db.get(oid)
        if kind == codec.KIND_CHUNKED:
            for _ in iter_content(db, oid, payload):
                pass
        elif kind == codec.KIND_TREE:
            from .tree import decode_tree

            decode_tree(oid, payload)
        return None
    except ZcasError as e:
        return str(e)


def _verify_all(db: ObjectDB, oids: list[bytes]) -> list[tuple[bytes, str | None]]:
    return [(o, _verify(db, o)) for o in oids]


def fsck(db: ObjectDB, roots: Iterable[bytes], progress: Callable[[int, int], None] | None = None,
         optional_roots: Iterable[bytes] = ()) -> FsckReport:
    """Verify every object; report what ``roots`` reach but is missing. ``optional_roots``
    may be absent without that being damage (outputs of runs indexed from a remote and
    never fetched: ``absent``); what they reach below a stored object must still be there."""
    db.flush()
    rep = FsckReport()
    for key in db.backend.list(PREFIX):
        name = name_of_idx_key(key)
        if name is not None:
            try:
                decode_index(name, db.backend.get(key))
            except ZcasError as e:
                rep.corrupt[f"pack {name}"] = str(e)
        elif key.endswith(".pack") and not db.backend.exists(idx_key(key[len(PREFIX) + 5 : -5])):
            rep.unindexed_packs.append(key)
    db.reload()
    oids = list(db.index)
    total = len(oids)
    done = 0

    def count(batch: list[tuple[bytes, str | None]]) -> None:
        nonlocal done
        for oid, err in batch:
            if err:
                rep.corrupt[oid.hex()] = err
        done += len(batch)
        if progress:
            progress(done, total)

    # Chunked files reassemble on the pool themselves, so they are checked from this thread,
    # one at a time; the rest in batches on the pool, a bounded window of them in flight, so
    # progress is reported as batches finish (and memory does not grow with the store).
    large = [o for o in oids if db.entry(o).kind == codec.KIND_CHUNKED]
    rest = [o for o in oids if db.entry(o).kind != codec.KIND_CHUNKED]
    for oid in large:
        count([(oid, _verify(db, oid))])
    window: deque[Future] = deque()
    limit = 2 * (os.cpu_count() or 2)
    for i in range(0, len(rest), _STEP):
        window.append(pool().submit(_verify_all, db, rest[i : i + _STEP]))
        while len(window) > limit:
            count(window.popleft().result())
    while window:
        count(window.popleft().result())
    rep.checked = total
    roots = list(roots)
    optional = set(optional_roots) - set(roots)
    live, missing = walk(db, [*roots, *optional])
    rep.absent = len(missing & optional)
    rep.missing = sorted(o.hex() for o in missing - optional)
    rep.dangling = sorted(o.hex() for o in set(oids) - live)
    return rep


def tty_progress() -> Callable[[int, int], None] | None:
    """A bar of objects verified, on a terminal only (``progress.tty_bar``)."""
    from .progress import tty_bar

    return tty_bar("verifying objects", "objects")


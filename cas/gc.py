"""Garbage collection: repack what is reachable, drop what is not, spare what is young.

Only packs older than the grace period are touched, so an object a writer has just stored
(and may be about to reference) survives. Live objects of a touched pack are copied, still
encoded, into a new pack that is published before any old pack is deleted: at every moment
each live object is in some indexed pack. Unindexed packs and temp files left by a crash
are removed once older than an hour (a younger one may belong to a writer still at work,
whatever the grace period).

gc is conservative on damage. If an object reachable from a root is missing or cannot be
read, verified or decoded, what lies below it is unknown, so gc deletes nothing and raises
``GcRefusedError`` (``--dry-run`` still reports, with the count in ``damaged``). When an id
has copies in several packs, the copy kept is one that verifies, and every record copied
into a new pack is verified first: gc never drops the only good copy of anything, nor
spreads a bad one.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

import attrs

from .chunking import pool
from .errors import GcRefusedError, StoreError
from .pack import PREFIX, decode_index, idx_key, name_of_idx_key, pack_key
from .reach import walk

if TYPE_CHECKING:
    from .db import ObjectDB

LEFTOVER_MIN_AGE = 3600.0
_BATCH = 256


@attrs.define
class GcReport:
    objects_removed: int = 0
    bytes_removed: int = 0
    objects_moved: int = 0
    packs_removed: int = 0
    leftovers_removed: int = 0
    missing: int = 0
    damaged: int = 0  # reachable objects missing below a present one, or failing verification


def gc(db: ObjectDB, roots, grace: float, dry_run: bool = False, optional_roots: Iterable[bytes] = (),
       on_remove: Callable[[list[str]], None] | None = None) -> GcReport:
    """Collect what ``roots`` and ``optional_roots`` do not reach.

    Every root must be present (a missing one is damage: what it reached is unknown);
    ``optional_roots`` may be absent (say, outputs of runs indexed from a remote and never
    fetched), and only count in ``GcReport.missing``. ``on_remove`` is told the names of
    the packs about to go, once their live objects are safe in a new pack.
    """
    db.flush()
    db.refresh()
    now = time.time()
    roots = list(roots)
    damaged: dict[bytes, str] = {}
    live, missing = walk(db, [*roots, *optional_roots], damaged=damaged)
    for oid in roots:
        if oid in missing:
            damaged.setdefault(oid, "missing")
    old = [n for n in sorted(db.packs()) if now - db.backend.info(idx_key(n)).mtime >= grace]
    entries = {n: decode_index(n, db.backend.get(idx_key(n))) for n in old}
    # Ids with copies in several packs, one of them old: the index's copy must verify (or
    # be replaced by one that does) before the others are dropped.
    _verify(db, [o for o in _duplicates(db, entries) if o in live], damaged)
    plan = _plan(db, entries, live)
    _verify(db, [t[0] for keep in plan.values() for t in keep if t[0] not in damaged], damaged)
    plan = _plan(db, entries, live)  # verification may have chosen other copies
    rep = GcReport(missing=len(missing), damaged=len(damaged))
    for name, keep in plan.items():
        rep.objects_removed += sum(1 for t in entries[name] if t[0] not in live)
        rep.bytes_removed += sum(t[2] for t in entries[name]) - sum(t[2] for t in keep)
        rep.objects_moved += len(keep)
        rep.packs_removed += 1
    if damaged:
        if dry_run:
            return rep
        raise GcRefusedError(damaged)
    if not dry_run and plan:
        for keep in plan.values():
            for oid, _off, _len, kind, size in keep:
                db.put_record(oid, kind, size, db.read_record(oid))
        db.flush()
        if on_remove is not None:
            on_remove(sorted(plan))
        for name in plan:
            db.backend.delete(idx_key(name))
            db.backend.delete(pack_key(name))
        db.reload()
    rep.leftovers_removed = _sweep_leftovers(db, now, dry_run)
    return rep


def _plan(db, entries: dict[str, list], live: set[bytes]) -> dict[str, list]:
    """Old packs to rewrite -> the entries they keep: live ones whose indexed copy is theirs."""
    plan = {}
    for name, ents in entries.items():
        keep = [t for t in ents if t[0] in live and db.entry(t[0]).pack == name]
        if len(keep) != len(ents):
            plan[name] = keep
    return plan


def _duplicates(db, entries: dict[str, list]) -> set[bytes]:
    """Ids of the old packs that some other loaded pack holds too."""
    in_old = {t[0] for ents in entries.values() for t in ents}
    return db.duplicates() & in_old


def _verify(db, oids: list[bytes], damaged: dict[bytes, str]) -> None:
    """Verify each id (``db.verified`` falls back to another good copy and points the
    index at it); record the ones with no good copy."""

    def batch(part: list[bytes]) -> list[tuple[bytes, str]]:
        bad = []
        for oid in part:
            try:
                db.verified(oid)
            except StoreError as e:
                bad.append((oid, str(e)))
        return bad

    todo = [o for o in dict.fromkeys(oids) if o not in damaged]
    futs = [pool().submit(batch, todo[i : i + _BATCH]) for i in range(0, len(todo), _BATCH)]
    for f in futs:
        for oid, why in f.result():
            damaged.setdefault(oid, why)


def _sweep_leftovers(db, now: float, dry_run: bool) -> int:
    indexed = db.packs()
    old = []
    for key in list(db.backend.list(PREFIX)):
        if name_of_idx_key(key) is not None:
            continue
        if key.endswith(".pack") and key[len(PREFIX) + 5 : -5] in indexed:
            continue
        if now - db.backend.info(key).mtime >= LEFTOVER_MIN_AGE:
            old.append(key)
    if not dry_run:
        for key in old:
            db.backend.delete(key)
    count = len(old)
    d = db.backend.tmp_dir()
    if d is not None and os.path.isdir(d):
        for n in os.listdir(d):
            p = os.path.join(d, n)
            try:
                if now - os.stat(p).st_mtime >= LEFTOVER_MIN_AGE:
                    count += 1
                    if not dry_run:
                        os.unlink(p)
            except FileNotFoundError:
                pass
    return count

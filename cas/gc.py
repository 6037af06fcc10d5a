"""Garbage collection: repack what is reachable, drop what is not, spare what is young.

Only packs older than the grace period are touched, so an object a writer has just stored
(and may be about to reference) survives. Live objects of a touched pack are copied, still
encoded, into a new pack that is published before any old pack is deleted: at every moment
each live object is in some indexed pack. Unindexed packs and temp files left by a crash
are removed once older than an hour (a younger one may belong to a writer still at work,
whatever the grace period).
"""

from __future__ import annotations

import os
import time

import attrs

from .pack import PREFIX, decode_index, idx_key, name_of_idx_key, pack_key
from .reach import walk

LEFTOVER_MIN_AGE = 3600.0


@attrs.define
class GcReport:
    objects_removed: int = 0
    bytes_removed: int = 0
    objects_moved: int = 0
    packs_removed: int = 0
    leftovers_removed: int = 0
    missing: int = 0


def gc(db, roots, grace: float, dry_run: bool = False) -> GcReport:
    db.flush()
    db.refresh()
    now = time.time()
    live, missing = walk(db, roots)
    rep = GcReport(missing=len(missing))
    plan: dict[str, list] = {}
    for name in sorted(db.packs()):
        if now - db.backend.info(idx_key(name)).mtime < grace:
            continue
        entries = decode_index(name, db.backend.get(idx_key(name)))
        # Keep the copy the index chose; a duplicate in another pack is dropped.
        keep = [t for t in entries if t[0] in live and db.entry(t[0]).pack == name]
        if len(keep) == len(entries):
            continue
        plan[name] = keep
        rep.objects_removed += sum(1 for t in entries if t[0] not in live)
        rep.bytes_removed += sum(t[2] for t in entries) - sum(t[2] for t in keep)
        rep.objects_moved += len(keep)
        rep.packs_removed += 1
    if not dry_run and plan:
        for keep in plan.values():
            for oid, _off, _len, kind, size in keep:
                db.put_record(oid, kind, size, db.read_record(oid))
        db.flush()
        for name in plan:
            db.backend.delete(idx_key(name))
            db.backend.delete(pack_key(name))
        db.reload()
    rep.leftovers_removed = _sweep_leftovers(db, now, dry_run)
    return rep


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
    tmp = getattr(db.backend, "tmp_dir", None)
    if tmp:
        d = tmp()
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

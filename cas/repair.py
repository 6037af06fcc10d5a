"""Repair: replace corrupt or missing objects with good copies from another store.

Good copies are fetched and verified first, exactly as a pull verifies (hash, kind and
size against the other store's index, trees decode, manifests add up), and a bad copy
there is passed over for another copy that verifies. A pack holding a corrupt object is rewritten
without it (its sound records copied as they are, the good copy added) and published
before the damaged pack is deleted, so no sound object is ever unavailable.
"""

from __future__ import annotations

from .db import ObjectDB
from .errors import ZcasError
from .pack import decode_index, idx_key, pack_key
from .verify import verify_record


def _good_record(remote: ObjectDB, oid: bytes) -> tuple[int, int, bytes] | None:
    try:
        e, record, _ = remote.verified(oid)
        verify_record(oid, record, e.kind, e.size)  # trees must decode as well
    except ZcasError:
        return None
    return e.kind, e.size, record


def repair(db: ObjectDB, remote: ObjectDB, corrupt: list[bytes], missing: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """(repaired, still broken) ids."""
    wanted = list(dict.fromkeys([*corrupt, *missing]))
    good = {o: r for o in wanted if (r := _good_record(remote, o)) is not None}
    bad_set = set(corrupt)
    damaged_packs = {db.entry(o).pack for o in corrupt if db.has(o)}
    for name in sorted(damaged_packs):
        for oid, off, length, kind, size in decode_index(name, db.backend.get(idx_key(name))):
            if oid in bad_set:
                continue
            rec = db.backend.get_range(pack_key(name), off, length)
            db.put_record(oid, kind, size, rec)
    for oid, (kind, size, rec) in good.items():
        db.put_record(oid, kind, size, rec)
    db.flush()
    for name in damaged_packs:
        db.backend.delete(idx_key(name))
        db.backend.delete(pack_key(name))
    db.reload()
    fixed = [o for o in wanted if o in good]
    return fixed, [o for o in wanted if o not in good]

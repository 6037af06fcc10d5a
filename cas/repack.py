"""Repacking: many small packs consolidated into one, without ever hiding an object.

Every run flushes a pack of its own, usually a few kilobytes. Left alone, ten thousand
runs leave ten thousand packs, and every process opening the store lists and loads ten
thousand indexes. So when a flush leaves ``db.REPACK_AT`` small packs (records ending
before ``db.SMALL_PACK`` bytes), their records are copied, still encoded, into one new pack.
A consolidated pack that is still small is consolidated again with later ones, so the
number of packs stays near the size of the data over ``SMALL_PACK`` (plus fewer than
``REPACK_AT`` small ones), whatever the number of runs.

Crash safety is gc's: the new pack and its index are published (pack first, index last,
create-only, fsynced) before any old pack is removed, and an old pack's index is removed
before the pack itself. At every moment each object is in some indexed pack; a crash in
between leaves duplicates (read from the first copy that verifies, consolidated by the next
repack), never a missing object. Readers in other processes that loaded an old index find
its pack gone on their next read of it, load the indexes again and read the new pack.

Repacking decides nothing about liveness (that is gc's, under the exclusive lock): every
object of the small packs is kept. Every record is verified before it is copied, and a pack
holding a record that fails is left as it is, for fsck to report: a repack never spreads a
bad copy, nor drops the only copy of anything. Of an id held in several packs, the copy kept
is the one reads use (verified, and for a chunked file's manifest the one that reassembles).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

from .errors import ObjectNotFoundError, StoreError, ZcasError
from .pack import Entry, IndexData, PackWriter, check_entry, decode_index, idx_key, pack_key
from .verify import verify_record

if TYPE_CHECKING:
    from .db import ObjectDB


@attrs.define
class RepackReport:
    packs_removed: int = 0  # small packs replaced by the new one
    objects_moved: int = 0  # records copied into it
    new_pack: str | None = None
    kept: list[str] = attrs.Factory(list)  # small packs left alone: a record in them failed verification


def repack(db: ObjectDB, min_packs: int = 2) -> RepackReport:
    """Consolidate ``db``'s small packs into one when there are at least ``min_packs``."""
    rep = RepackReport()
    with db._lock:
        db.repacking = True
        try:
            db.flush()  # what is being written goes first, as a pack of its own
            db.refresh()  # packs other processes published count too
            chosen = {name: db.index_bytes(name) for name in db.small_packs()}  # before any reload
            if len(chosen) < max(2, min_packs):
                return rep
            _settle(db, db.duplicates(chosen))
            records, done, kept = _collect(db, chosen)
            rep.kept = kept
            if not done:
                return rep
            new = _publish(db, records)
            rep.new_pack = new
            if new is not None:
                note_sources(db.backend, new, [n for n in done if n != new])
            for name in done:
                if name == new:  # the same records made the same pack: it stays
                    continue
                db.backend.delete(idx_key(name))  # the index first: a pack without one is never read
                db.backend.delete(pack_key(name))
                rep.packs_removed += 1
            rep.objects_moved = len(records)
            db.reload()
        finally:
            db.repacking = False
    return rep


SOURCES = "repacked/"


def note_sources(backend, new: str, sources: list[str]) -> None:
    """Remember that pack ``new`` holds only objects of ``sources``: a push that sent
    those to a remote need not send ``new`` whole again (``zcas.remotes``), which would
    also bring back what a gc there had dropped. Best effort: without the note, the pack is
    sent whole, as before."""
    if sources:
        try:
            backend.put(f"{SOURCES}{new}", "".join(f"{n}\n" for n in sorted(sources)).encode())
        except ZcasError:
            pass


def sources_of(backend) -> dict[str, list[str]]:
    """pack -> the packs a repack made it from (what ``note_sources`` left)."""
    out: dict[str, list[str]] = {}
    for key in backend.list(SOURCES):
        name = key[len(SOURCES) :]
        if len(name) != 64:
            continue
        try:
            out[name] = [n for n in backend.get_bounded(key, 1 << 20).decode("ascii", "replace").split() if len(n) == 64]
        except ZcasError:
            continue
    return out


def _settle(db, dups: set[bytes]) -> None:
    """Make the copy in use of each id held in several packs one that verifies (and, for
    a manifest, one that reassembles): that is the copy a repack keeps."""
    for oid in sorted(dups):
        try:
            db.get(oid)
        except StoreError:
            pass  # no good copy anywhere: whichever copy stays, fsck reports it


def _collect(db: ObjectDB, chosen: dict[str, IndexData]) -> tuple[list[tuple[bytes, int, int, bytes]], list[str], list[str]]:
    """(records for the new pack, packs it replaces, packs left alone).

    Every id of a replaced pack ends up in the new pack, or has its copy in use in a pack
    that is not small (which no repack deletes, and gc only under the exclusive lock): so
    deleting the replaced packs can lose nothing, even when another process is repacking
    the same packs at the same time (a pack it deleted already is skipped here, and its
    ids, whose copy in use this process may still place there, are taken from another
    small pack holding them, else left to the pack that process published). Of an id held
    in several small packs, the copy in use is preferred; any copy kept is verified first,
    and an id no small pack holds a verifying copy of keeps every pack holding it."""
    small = set(chosen)
    cands: dict[bytes, list[tuple[str, tuple[bytes, int, int, bytes]]]] = {}
    readable: list[str] = []
    for name, index in chosen.items():
        try:
            data = db.backend.get(pack_key(name))  # small: read whole
        except ObjectNotFoundError:
            continue  # repacked by another process since it was listed
        readable.append(name)
        for oid, off, length, kind, size in decode_index(name, index):
            try:
                e = db.entry(oid)
            except ObjectNotFoundError:  # the index was reloaded without it: this copy is all we know
                e = Entry(name, off, length, kind, size)
            if e.pack not in small and e.pack != "" and _sound(db, oid, e):
                continue  # the copy in use is in a large pack, which stays
            rec = (oid, kind, size, data[off : off + length])
            first = e.pack == name and e.offset == off
            cands.setdefault(oid, []).insert(0 if first else len(cands.get(oid, [])), (name, rec))
    records = []
    kept: set[str] = set()
    for oid, options in cands.items():
        for name, (_, kind, size, record) in options:
            try:
                check_entry(name, oid, 16, len(record), kind, size)
                verify_record(oid, record, kind, size, trees=False)
            except ZcasError:
                continue
            records.append((oid, kind, size, record))
            break
        else:
            kept.update(name for name, _ in options)  # no good copy: fsck reports it, nothing moves
    done = [n for n in readable if n not in kept]
    return records, done, sorted(kept)


def _sound(db: ObjectDB, oid: bytes, e: Entry) -> bool:
    """Whether the copy in use outside the small packs verifies. Only ids held twice ask
    (rare): a damaged copy there must not make a repack drop the good one a rerun wrote."""
    if oid in db.damaged:
        return False
    try:
        verify_record(oid, db.read_record(oid, e), e.kind, e.size, trees=False)
    except StoreError:
        return False
    return True


def _publish(db, records: list[tuple[bytes, int, int, bytes]]) -> str | None:
    """Write the records into a new pack and publish it: pack first, index last."""
    if not records:
        return None
    w = PackWriter(db.tmp_dir)
    try:
        w.add_many(records)
        name, idx = w.finish()
        db.backend.put_file(pack_key(name), w.path)
        db.backend.put(idx_key(name), idx)
    except BaseException:
        w.abort()
        raise
    return name

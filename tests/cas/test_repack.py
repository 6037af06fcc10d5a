"""Automatic repacking: small packs consolidated, crash-safe, readers unaffected (issue 12)."""

import pytest

from zcas.cas import codec
from zcas.cas import repack as repack_mod
from zcas.cas.db import REPACK_AT, ObjectDB
from zcas.cas.fsck import fsck
from zcas.cas.local import LocalBackend
from zcas.cas.memory import MemoryBackend
from zcas.cas.pack import PREFIX, idx_key, name_of_idx_key, pack_key


def _runs(db, n, start=0):
    """``n`` flushes of a couple of objects each, as ``n`` runs would leave them."""
    ids = []
    for i in range(start, start + n):
        ids.append(db.put(codec.KIND_BLOB, b"output of run %d" % i))
        ids.append(db.put(codec.KIND_RECORD, b'{"run": %d}' % i))
        db.flush()
    return ids


def _packs(backend):
    return {n for n in (name_of_idx_key(k) for k in backend.list(PREFIX)) if n}


@pytest.fixture
def local(tmp_path):
    b = LocalBackend(str(tmp_path / "objects"))
    yield b
    b.close()


def test_flushes_past_the_threshold_are_consolidated(local):
    db = ObjectDB(local)
    ids = _runs(db, 10 * REPACK_AT)
    assert len(_packs(local)) < REPACK_AT  # never more small packs than the threshold
    assert len(list(local.list(PREFIX))) == 2 * len(_packs(local))  # no pack left without its index
    fresh = ObjectDB(local)
    assert all(fresh.get(o)[1].startswith((b"output", b'{"run"')) for o in ids)
    assert fsck(fresh, ids).ok and len(fresh) == len(ids)


def test_remote_stores_are_not_repacked_unless_asked():
    b = MemoryBackend()
    db = ObjectDB(b)
    _runs(db, REPACK_AT + 5)
    assert len(_packs(b)) == REPACK_AT + 5
    db = ObjectDB(b, auto_repack=True)
    _runs(db, 1, start=100)
    assert len(_packs(b)) == 1


def test_a_reader_with_an_old_index_keeps_working(local):
    writer = ObjectDB(local, auto_repack=False)
    ids = _runs(writer, REPACK_AT)
    reader = ObjectDB(local)
    assert reader.has(ids[0]) and len(reader.packs()) == REPACK_AT  # loaded before the repack
    writer.repack()
    assert len(_packs(local)) == 1
    for o in ids:  # every old pack is gone: the reader finds the new one
        assert reader.get(o)[0] in (codec.KIND_BLOB, codec.KIND_RECORD)


def test_a_reader_refreshing_while_indexes_vanish_keeps_working(local):
    writer = ObjectDB(local, auto_repack=False)
    _runs(writer, REPACK_AT)
    reader = ObjectDB(local)
    listed = list(local.list(PREFIX))
    writer.repack()
    real = local.list
    local.list = lambda prefix="": iter(listed)  # the listing was taken before the repack
    try:
        reader.refresh()  # the indexes it names are gone: skipped, not an error
    finally:
        local.list = real
    reader.reload()
    assert len(reader) == 2 * REPACK_AT


@pytest.mark.parametrize("crash_at", ["before_index", "before_delete", "mid_delete"])
def test_a_crash_at_any_step_loses_nothing(local, monkeypatch, crash_at):
    db = ObjectDB(local, auto_repack=False)
    ids = _runs(db, REPACK_AT)
    before = _packs(local)

    class Crash(BaseException):
        pass

    real_put, real_delete = local.put, local.delete
    deleted = []

    def put(key, data):
        if crash_at == "before_index" and key.endswith(".idx"):
            raise Crash
        return real_put(key, data)

    def delete(key):
        if crash_at == "before_delete" or (crash_at == "mid_delete" and len(deleted) == 3):
            raise Crash
        deleted.append(key)
        real_delete(key)

    monkeypatch.setattr(local, "put", put)
    monkeypatch.setattr(local, "delete", delete)
    with pytest.raises(Crash):
        db.repack()
    monkeypatch.undo()
    fresh = ObjectDB(local, auto_repack=False)
    assert all(fresh.get(o) for o in ids) and fsck(fresh, ids).ok
    if crash_at == "before_index":
        assert _packs(local) == before  # the new pack has no index: never read, gc's to remove
    # the next repack finishes the job
    fresh.repack(min_packs=2)
    assert len(_packs(local)) == 1 and all(ObjectDB(local).get(o) for o in ids)


def test_a_pack_with_a_corrupt_record_is_left_for_fsck(local):
    db = ObjectDB(local, auto_repack=False)
    ids = _runs(db, REPACK_AT)
    bad = db.entry(ids[0])
    path = local.local_path(pack_key(bad.pack))
    data = bytearray(open(path, "rb").read())
    data[bad.offset + bad.length - 1] ^= 0xFF
    local.delete(pack_key(bad.pack))
    local.put(pack_key(bad.pack), bytes(data))
    rep = repack_mod.repack(ObjectDB(local, auto_repack=False), min_packs=2)
    assert rep.kept == [bad.pack] and rep.packs_removed == REPACK_AT - 1
    assert _packs(local) == {bad.pack, rep.new_pack}
    assert fsck(ObjectDB(local), ids).corrupt  # still reported, nothing good lost
    assert all(ObjectDB(local).get(o) for o in ids[2:])


def test_the_copy_kept_of_a_duplicate_is_one_that_verifies(local):
    """An id in two small packs, the first copy corrupt: the repack keeps the good one."""
    db = ObjectDB(local, auto_repack=False)
    oid = db.put(codec.KIND_BLOB, b"shared object")
    first = db.flush()
    db2 = ObjectDB(MemoryBackend())
    db2.put(codec.KIND_BLOB, b"shared object")
    db2.put(codec.KIND_BLOB, b"something else")
    name2 = db2.flush()
    local.put(pack_key(name2), db2.backend.get(pack_key(name2)))
    local.put(idx_key(name2), db2.backend.get(idx_key(name2)))
    e = ObjectDB(local).entry(oid)
    assert e.pack == min(first, name2) or e.pack in (first, name2)
    path = local.local_path(pack_key(e.pack))
    data = bytearray(open(path, "rb").read())
    data[e.offset + e.length - 1] ^= 0xFF
    local.delete(pack_key(e.pack))
    local.put(pack_key(e.pack), bytes(data))
    _runs(ObjectDB(local, auto_repack=False), 3)
    rep = repack_mod.repack(ObjectDB(local, auto_repack=False), min_packs=2)
    assert e.pack in rep.kept or e.pack not in _packs(local)
    assert ObjectDB(local).get(oid) == (codec.KIND_BLOB, b"shared object")


def test_opening_reads_no_id_and_listing_them_is_linear(local, monkeypatch):
    """Opening a local store of N packs reads each index's magic and length, no id; looking
    a few ids up bisects the indexes (checking in full only the one an id is found in); the
    dict of every id (gc, fsck, iteration) checks each index once and takes each id once
    (loading was O(N^2) once: each pack copied the index)."""
    from zcas.cas import db as db_mod

    db = ObjectDB(local, auto_repack=False)
    ids = []
    for i in range(40):  # 40 packs of 100 ids
        ids += [db.put(codec.KIND_BLOB, b"object %d" % j) for j in range(i * 100, i * 100 + 100)]
        db.flush()
    checked = []
    real = db_mod.check_index
    monkeypatch.setattr(db_mod, "check_index", lambda name, data: checked.append(name) or real(name, data))
    fresh = ObjectDB(local, auto_repack=False)
    fresh.refresh()
    assert len(fresh.packs()) == 40 and checked == []
    assert not fresh.has(b"\1" * 32) and fresh.has(ids[1234]) and fresh.get(ids[1234])[1] == b"object 1234"
    assert checked == [fresh.entry(ids[1234]).pack] and fresh._all is None
    assert len(fresh) == 4000 and len(checked) == 40 and len(set(checked)) == 40
    merged = []
    real_merge = fresh._merge
    monkeypatch.setattr(fresh, "_merge", lambda found, num: merged.append(num) or real_merge(found, num))
    fresh.reload()
    assert len(fresh) == 4000 and sorted(merged) == list(range(40))
    many = ObjectDB(local, auto_repack=False)  # many lookups: the dict is built after a while
    assert all(many.has(oid) for oid in ids[:200]) and many._all is not None


def test_two_processes_repacking_the_same_packs_lose_nothing(local, monkeypatch):
    """A published its consolidated pack N; B loaded the small packs first, then N (its
    ids still placed in the small packs), and checked its copies; A then deleted the small
    packs, and B repacks: N's records must travel to B's pack before N is deleted."""
    writer = ObjectDB(local, auto_repack=False)
    ids = _runs(writer, REPACK_AT)
    small = set(writer.packs())
    b = ObjectDB(local, auto_repack=False)
    assert b.packs() == small
    a = ObjectDB(local, auto_repack=False)
    for oid in ids:  # A's new pack, published; the old ones not yet deleted
        e = a.entry(oid)
        a.put_record(oid, e.kind, e.size, a.read_record(oid))
    new = a.flush()
    b.refresh()
    assert new in b.packs() and b.entry(ids[0]).pack in small
    real = repack_mod._settle

    def settle_then_a_deletes(db, dups):
        real(db, dups)
        for name in small:
            local.delete(idx_key(name))
            local.delete(pack_key(name))

    monkeypatch.setattr(repack_mod, "_settle", settle_then_a_deletes)
    repack_mod.repack(b, min_packs=2)
    monkeypatch.undo()
    fresh = ObjectDB(local)
    assert all(fresh.get(o) for o in ids) and fsck(fresh, ids).ok and len(fresh) == len(ids)

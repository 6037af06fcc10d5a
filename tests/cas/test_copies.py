"""When an id has several copies, the one that verifies wins: on read, in gc, in repair."""

import pytest

from zcas.cas import codec
from zcas.cas.db import ObjectDB
from zcas.cas.errors import GcRefusedError, IntegrityError, ZcasError
from zcas.cas.gc import gc
from zcas.cas.memory import MemoryBackend
from zcas.cas.pack import idx_key, pack_key
from zcas.cas.repair import repair
from zcas.cas.tree import MODE_FILE, MODE_TREE, TreeEntry, encode_tree

from .forge import blob, corrupt, pack, publish

FIRST = "0" * 63 + "1"  # sorts before every real pack name, so its index is loaded first


def _store_with_shadow():
    """A store whose good pack holds X and Y, and a pack loaded first holding a bad X."""
    backend = MemoryBackend()
    db = ObjectDB(backend)
    x = db.put(codec.KIND_BLOB, b"the only good copy of x" * 50)
    y = db.put(codec.KIND_BLOB, b"y" * 300)
    good = db.flush()
    xid, kind, size, rec = blob(b"the only good copy of x" * 50)
    assert xid == x
    _, body, idx = pack([(x, kind, size, corrupt(rec))])
    publish(backend, FIRST, body, idx)
    return backend, x, y, good


def test_attack_corrupt_duplicate_shadows_good_copy():
    backend, x, _, good = _store_with_shadow()
    fresh = ObjectDB(backend)
    assert fresh.entry(x).pack == FIRST  # the damaged copy is the one indexed first
    assert fresh.get_bytes(x) == b"the only good copy of x" * 50
    assert fresh.entry(x).pack == good  # and the index now points at the copy that verified


def test_attack_no_good_copy_still_raises_naming_the_object():
    backend = MemoryBackend()
    xid, kind, size, rec = blob(b"lonely" * 40)
    _, body, idx = pack([(xid, kind, size, corrupt(rec))])
    publish(backend, FIRST, body, idx)
    with pytest.raises(IntegrityError) as ei:
        ObjectDB(backend).get(xid)
    assert ei.value.oid == xid.hex()


def test_attack_gc_keeps_the_copy_that_verifies():
    backend, x, y, good = _store_with_shadow()
    db = ObjectDB(backend)
    rep = gc(db, [x, y], grace=0)
    assert rep.objects_removed == 0 and rep.damaged == 0
    assert not backend.exists(pack_key(FIRST))  # the bad duplicate's pack went
    assert backend.exists(pack_key(good))  # the good pack was left alone
    fresh = ObjectDB(backend)
    assert fresh.get_bytes(x) == b"the only good copy of x" * 50
    assert fresh.get_bytes(y) == b"y" * 300


def _tree_store():
    backend = MemoryBackend()
    db = ObjectDB(backend)
    a = db.put(codec.KIND_BLOB, b"a" * 100)
    sub = db.put(codec.KIND_TREE, encode_tree([TreeEntry(b"a", MODE_FILE, a)]))
    top = db.put(codec.KIND_TREE, encode_tree([TreeEntry(b"sub", MODE_TREE, sub)]))
    junk = db.put(codec.KIND_BLOB, b"unreachable" * 10)
    db.flush()
    return backend, db, a, sub, top, junk


def _damage(backend, oid):
    """Flip the last byte of ``oid``'s record wherever it is stored."""
    db = ObjectDB(backend)
    e = db.entry(oid)
    data = bytearray(backend.get(pack_key(e.pack)))
    data[e.offset + e.length - 1] ^= 0x5A
    backend.delete(pack_key(e.pack))
    backend.put(pack_key(e.pack), bytes(data))


def _snapshot(backend):
    return {k: backend.get(k) for k in backend.list("packs/")}


@pytest.mark.parametrize("damage", ["corrupt-subtree", "missing-subtree", "corrupt-root"])
def test_attack_gc_with_damaged_tree_deletes_nothing(damage):
    """Below a damaged tree lies an unknown set of objects: gc must not collect them."""
    backend, db, a, sub, top, junk = _tree_store()
    if damage == "corrupt-subtree":
        _damage(backend, sub)
    elif damage == "corrupt-root":
        _damage(backend, top)
    else:  # the subtree's pack is lost: rebuild the store without it
        e = db.entry(sub)
        keep = [t for t in backend.list("packs/")]
        data = {k: backend.get(k) for k in keep}
        backend = MemoryBackend()
        d2 = ObjectDB(backend)
        for oid in (a, top, junk):
            ee = db.entry(oid)
            d2.put_record(oid, ee.kind, ee.size, data[pack_key(e.pack)][ee.offset : ee.offset + ee.length])
        d2.flush()
    before = _snapshot(backend)
    with pytest.raises(GcRefusedError) as ei:
        gc(ObjectDB(backend), [top], grace=0)
    msg = str(ei.value)
    assert "zcas fsck --repair" in msg and "\n" not in msg and "deleted nothing" in msg
    assert isinstance(ei.value, ZcasError)
    assert _snapshot(backend) == before
    rep = gc(ObjectDB(backend), [top], grace=0, dry_run=True)  # a dry run still reports
    assert rep.damaged >= 1
    assert _snapshot(backend) == before


def test_gc_missing_root_refuses_unless_optional():
    backend, db, a, sub, top, junk = _tree_store()
    ghost = b"\x42" * 32
    with pytest.raises(GcRefusedError, match="missing"):
        gc(ObjectDB(backend), [top, ghost], grace=0)
    assert ObjectDB(backend).has(junk)
    rep = gc(ObjectDB(backend), [top], grace=0, optional_roots=[ghost])
    assert rep.missing == 1 and rep.objects_removed == 1
    fresh = ObjectDB(backend)
    assert not fresh.has(junk) and fresh.get_bytes(a) == b"a" * 100


def test_attack_gc_refuses_to_repack_a_corrupt_live_record():
    """A live blob in a pack gc rewrites is verified first: never copied on as it is."""
    backend, db, a, sub, top, junk = _tree_store()
    _damage(backend, a)
    before = _snapshot(backend)
    with pytest.raises(GcRefusedError, match=a.hex()):
        gc(ObjectDB(backend), [top], grace=0)
    assert _snapshot(backend) == before


def test_attack_repair_passes_over_a_bad_remote_copy():
    """fsck --repair verifies what it fetches, and takes another copy when one is bad."""
    local_backend, x, _, _ = _store_with_shadow()
    remote_backend, rx, _, _ = _store_with_shadow()  # the remote: bad copy first, good later
    local = ObjectDB(local_backend)
    for k in list(local_backend.list("packs/")):
        local_backend.delete(k)  # the local store lost everything
    local.reload()
    fixed, broken = repair(local, ObjectDB(remote_backend), [], [x])
    assert fixed == [x] and broken == []
    assert ObjectDB(local_backend).get_bytes(x) == b"the only good copy of x" * 50


def test_attack_repair_never_takes_a_bad_only_copy():
    remote = MemoryBackend()
    xid, kind, size, rec = blob(b"lonely" * 40)
    _, body, idx = pack([(xid, kind, size, corrupt(rec))])
    publish(remote, FIRST, body, idx)
    local = ObjectDB(MemoryBackend())
    fixed, broken = repair(local, ObjectDB(remote), [], [xid])
    assert fixed == [] and broken == [xid]
    assert not local.has(xid)


def test_attack_unsorted_index_refused(tmp_path):
    """Other copies are found by bisecting indexes, so an unsorted one is refused."""
    from .forge import raw_index

    backend = MemoryBackend()
    a, b = blob(b"aaaa" * 30), blob(b"bbbb" * 30)
    lo, hi = sorted([a, b], key=lambda t: t[0])
    body = bytearray(b"ZCASPACK\x01\x00\x00\x00\x00\x00\x00\x00")
    ents = []
    for oid, kind, size, rec in (hi, lo):
        ents.append((oid, len(body), len(rec), kind, size))
        body += rec
    idx = raw_index(ents)
    publish(backend, FIRST, bytes(body), idx)
    warnings = []
    db = ObjectDB(backend, warn=warnings.append)  # a remote: the pack is skipped, said once
    db.refresh()
    db.refresh()
    assert not db.has(a[0]) and len(warnings) == 1 and "pack index" in warnings[0] and "not sorted" in warnings[0]
    assert idx_key(FIRST) in list(backend.list("packs/"))
    from zcas.cas.local import LocalBackend

    local = LocalBackend(str(tmp_path))  # local damage: raises, once the index is used
    publish(local, FIRST, bytes(body), idx)
    ObjectDB(local).refresh()  # opening reads only its magic and length
    with pytest.raises(IntegrityError, match="not sorted"):
        len(ObjectDB(local))  # listing the ids checks every index in full
    for oid in (a[0], b[0]):
        with pytest.raises(IntegrityError, match="not sorted"):
            ObjectDB(local).get(oid)  # and so does a lookup, before an entry is used

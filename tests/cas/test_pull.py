"""Pulling packs from an untrusted remote: every record verified before anything is kept,
no pulled copy ever beside or in front of a local one, bad objects skipped and reported."""

import os
import random
import time

import pytest

from zcas.cas import codec
from zcas.cas.chunking import encode_manifest
from zcas.cas.db import ObjectDB
from zcas.cas.errors import IntegrityError
from zcas.cas.gc import gc
from zcas.cas.local import LocalBackend
from zcas.cas.memory import MemoryBackend
from zcas.cas.oid import hash_bytes
from zcas.cas.pack import PACK_HEADER, decode_index, idx_key, pack_key
from zcas.cas.transfer import PullResult, fetch_objects, pull_packs, remote_packs
from zcas.cas.tree import MODE_FILE, TreeEntry, encode_tree

from .forge import blob, corrupt, pack, publish, raw_index

FIRST = "0" * 63 + "1"


@pytest.fixture(params=["file", "memory"])
def remote(request, tmp_path):
    """The remote's backend: object storage through obstore (streamed), or ranged reads."""
    if request.param == "file":
        from zcas.cas.objstore import ObstoreBackend

        return ObstoreBackend(f"file://{tmp_path}/remote")
    return MemoryBackend()


@pytest.fixture
def local(tmp_path):
    b = LocalBackend(str(tmp_path / "local"))
    db = ObjectDB(b)
    yield db
    db.abort()
    b.close()


def _copies(db) -> dict[bytes, int]:
    """How many indexed copies of each id the store holds."""
    out: dict[bytes, int] = {}
    for key in db.backend.list("packs/"):
        if key.endswith(".idx"):
            for t in decode_index(key[11:-4], db.backend.get(key)):
                out[t[0]] = out.get(t[0], 0) + 1
    return out


def test_pull_installs_a_clean_pack_as_it_is(remote, local):
    items = [blob(os.urandom(n)) for n in (10, 500, 70_000)]
    name, body, idx = pack(items)
    publish(remote, name, body, idx)
    res = pull_packs(remote, local, remote_packs(remote))
    assert isinstance(res, PullResult)
    assert (res.packs, res.installed, res.objects, res.rejected) == (1, 1, 3, [])
    assert local.backend.get(pack_key(name)) == body and local.backend.get(idx_key(name)) == idx
    for oid, *_ in items:
        assert ObjectDB(local.backend).get(oid)[0] == codec.KIND_BLOB
    assert os.listdir(local.tmp_dir) == []


def test_attack_pulled_pack_shadows_local_object(remote, local):
    """The remote's pack sorts first and holds a corrupt copy of an id the user has: it is
    refused, the rest of the pack is kept, and gc afterwards still has the good copy."""
    good = b"precious local data" * 100
    x = local.put(codec.KIND_BLOB, good)
    local.flush()
    xid, kind, size, rec = blob(good)
    other = blob(b"something new" * 20)
    _, body, idx = pack([(x, kind, size, corrupt(rec)), other])
    publish(remote, FIRST, body, idx)
    res = pull_packs(remote, local, [FIRST])
    assert res.installed == 0 and res.objects == 1
    [why] = [r for r in res.rejected if x.hex() in r]
    assert why.startswith(f"pack {FIRST[:12]}: object {x.hex()}: ") and "\n" not in why
    assert not local.backend.exists(pack_key(FIRST))
    assert _copies(local) == {x: 1, other[0]: 1}
    fresh = ObjectDB(local.backend)
    assert fresh.get_bytes(x) == good and fresh.get_bytes(other[0]) == b"something new" * 20
    gc(fresh, [x, other[0]], grace=0)
    assert ObjectDB(local.backend).get_bytes(x) == good


def test_attack_pulled_duplicate_of_a_good_local_object_is_not_installed(remote, local):
    """Even a sound copy of an id the user has is not installed beside it."""
    data = b"already here" * 30
    x = local.put(codec.KIND_BLOB, data)
    local.flush()
    new = blob(b"new" * 40)
    name, body, idx = pack([blob(data), new])
    publish(remote, name, body, idx)
    res = pull_packs(remote, local, [name])
    assert res.rejected == [] and res.installed == 0 and res.objects == 1
    assert _copies(local) == {x: 1, new[0]: 1}


def test_two_remote_packs_holding_one_id_leave_one_copy(remote, local):
    shared = blob(b"in both packs" * 10)
    for extra in (b"first", b"second"):
        name, body, idx = pack([shared, blob(extra * 20)])
        publish(remote, name, body, idx)
    res = pull_packs(remote, local, remote_packs(remote))
    assert res.rejected == [] and res.objects == 3
    assert set(_copies(local).values()) == {1}


def _hostile_cases():
    good = blob(b"good neighbour" * 10)
    xid, kind, size, rec = blob(b"victim payload" * 20)
    rid, _, rsize, rrec = blob(random.Random(1).randbytes(300))  # stored raw: a flip decodes fine
    big_claim = codec.HEADER.pack(codec.KIND_BLOB, codec.CODEC_RAW, 1 << 30) + b"x" * 50
    tree = encode_tree([TreeEntry(b"f", MODE_FILE, good[0])])
    bad_tree = b"ZTREE\x01" + (1).to_bytes(4, "little") + bytes([1]) + good[0] + (2).to_bytes(2, "little") + b".."
    man = encode_manifest(100, [(good[0], 100)])
    mid = hash_bytes(b"whatever the file was")
    return {
        "flipped byte": ((rid, kind, rsize, corrupt(rrec)), "content hash mismatch"),
        "flipped byte in a compressed record": ((xid, kind, size, corrupt(rec)), "cannot decompress"),
        "kind differs from index": ((xid, kind, size, rec, {"kind": codec.KIND_TREE}), "kind differs"),
        "size differs from index": ((xid, kind, size, rec, {"size": size + 1}), "differs from the pack index"),
        "entry outside the pack": ((xid, kind, size, rec, {"offset": 1 << 40}), "spans"),
        "huge length": ((xid, kind, size, rec, {"length": 0xFFFFFFFF}), "impossible record length"),
        "length shorter than a header": ((xid, kind, size, rec, {"length": 3}), "impossible record length"),
        "blob claiming 1 GiB": ((hash_bytes(b"x"), kind, 1 << 30, big_claim), "over the blob limit"),
        "unknown kind": ((xid, kind, size, rec, {"kind": 9}), "unknown kind"),
        "tree with a '..' entry": ((hash_bytes(bad_tree), codec.KIND_TREE, len(bad_tree),
                                    codec.encode(codec.KIND_TREE, bad_tree)), ".."),
        "tree whose index kind is blob": ((hash_bytes(tree), codec.KIND_TREE, len(tree), codec.encode(codec.KIND_TREE, tree),
                                           {"kind": codec.KIND_BLOB}), "kind differs"),
        "manifest total differs from index": ((mid, codec.KIND_CHUNKED, 999, codec.encode(codec.KIND_CHUNKED, man)),
                                              "differs from the pack index size"),
        "manifest lengths do not add up": ((mid, codec.KIND_CHUNKED, 100,
                                            codec.encode(codec.KIND_CHUNKED, encode_manifest(100, [(good[0], 99)]))), "add up"),
    }, good


@pytest.mark.parametrize("case", sorted(_hostile_cases()[0]))
def test_attack_hostile_record_in_pulled_pack_is_skipped(remote, local, case):
    cases, good = _hostile_cases()
    item, reason = cases[case]
    name, body, idx = pack([item, good])
    publish(remote, name, body, idx)
    res = pull_packs(remote, local, [name])
    if reason == "spans":  # an entry far outside: the whole pack is refused before download
        assert res.objects == 0 and res.bytes == len(idx)
    else:
        assert res.objects == 1 and local.has(good[0])
    assert res.installed == 0 and not local.has(item[0])
    assert len(res.rejected) == 1 and reason in res.rejected[0], res.rejected
    assert not local.backend.exists(pack_key(name))
    assert os.listdir(local.tmp_dir) == []


def test_attack_truncated_remote_pack(remote, local):
    a, b = blob(b"early" * 30), blob(os.urandom(5000))
    name, body, idx = pack([a, b])
    publish(remote, name, body[:-100], idx)
    res = pull_packs(remote, local, [name])
    assert res.objects == 1 and local.has(a[0]) and not local.has(b[0])
    assert "truncated" in res.rejected[0] and b[0].hex() in res.rejected[0]


def test_attack_index_not_named_by_its_hash(remote, local):
    """An index served under another pack's name is never installed under that name."""
    a = blob(b"fine" * 30)
    _, body, idx = pack([a])
    publish(remote, FIRST, body, idx)
    res = pull_packs(remote, local, [FIRST])
    assert res.objects == 1 and res.installed == 0 and local.has(a[0])
    assert "does not hash" in res.rejected[0]
    assert not local.backend.exists(idx_key(FIRST))


def test_attack_bad_pack_header(remote, local):
    a = blob(b"fine" * 30)
    name, body, idx = pack([a], header=b"NOTAPACK" + PACK_HEADER[8:])
    publish(remote, name, body, idx)
    res = pull_packs(remote, local, [name])
    assert res.objects == 1 and res.installed == 0 and "header" in res.rejected[0]
    for key in local.backend.list("packs/"):  # what was written is a new, sound pack
        if key.endswith(".pack"):
            assert local.backend.get(key).startswith(PACK_HEADER)


def test_attack_damaged_index_skips_the_pack(remote, local):
    a = blob(b"fine" * 30)
    name, body, idx = pack([a])
    publish(remote, name, body, idx[:-1] + bytes([idx[-1] ^ 1]))
    other = blob(b"other" * 30)
    publish(remote, *pack([other]))
    res = pull_packs(remote, local, remote_packs(remote))
    assert res.packs == 2 and res.objects == 1 and local.has(other[0]) and not local.has(a[0])
    assert any("checksum" in r for r in res.rejected)


def test_attack_missing_pack_file_skips_the_pack(remote, local):
    name, body, idx = pack([blob(b"fine" * 30)])
    remote.put(idx_key(name), idx)
    res = pull_packs(remote, local, [name])
    assert res.objects == 0 and "missing" in res.rejected[0]


def test_pull_of_many_pieces_verifies_records_across_piece_boundaries(remote, local, monkeypatch):
    from zcas.cas import pull

    monkeypatch.setattr(pull, "PIECE", 4096)  # records straddle many pieces
    items = [blob(os.urandom(n)) for n in (100, 9000, 3, 20_000, 4095, 4096, 1)]
    items.append(blob(b"compressible " * 3000))
    name, body, idx = pack(items)
    publish(remote, name, body, idx)
    res = pull_packs(remote, local, [name])
    assert res.rejected == [] and res.installed == 1 and res.objects == len(items)
    fresh = ObjectDB(local.backend)
    for oid, *_ in items:
        fresh.get(oid)


def test_attack_fetch_objects_refuses_a_corrupt_record(remote):
    """A targeted pull verifies too, and takes another remote copy when one is bad."""
    bad_only = blob(b"no good copy" * 10)
    twice = blob(b"bad then good" * 10)
    publish(remote, FIRST, *pack([(*bad_only[:3], corrupt(bad_only[3])), (*twice[:3], corrupt(twice[3]))])[1:])
    publish(remote, *pack([twice]))
    local = ObjectDB(MemoryBackend())
    rdb = ObjectDB(remote)
    assert rdb.entry(twice[0]).pack == FIRST
    assert fetch_objects(local, rdb, [twice[0]]) == 1
    assert local.get_bytes(twice[0]) == b"bad then good" * 10
    with pytest.raises(IntegrityError) as ei:
        fetch_objects(local, ObjectDB(remote), [bad_only[0]])
    assert ei.value.oid == bad_only[0].hex() and not local.has(bad_only[0])


def test_attack_remote_index_entry_with_huge_length_is_not_fetched(remote):
    """A remote ObjectDB refuses an entry of impossible shape before reading a byte."""
    xid, kind, size, rec = blob(b"x" * 100)
    publish(remote, FIRST, *pack([(xid, kind, size, rec, {"length": 0xFFFFFFF0})])[1:])
    asked = []
    real = remote.get_range
    remote.get_range = lambda key, start, length: asked.append(length) or real(key, start, length)
    with pytest.raises(IntegrityError, match="impossible record length"):
        ObjectDB(remote).get(xid)
    assert asked == []


def test_attack_remote_index_larger_than_any_zcas_writes(remote, local, monkeypatch):
    """An index over the size a pack allows is refused from its size, never held whole."""
    from zcas.cas import db as dbmod
    from zcas.cas import pull

    items = [blob(b"%d" % i * 10) for i in range(40)]  # an index of 40 * 53 bytes
    name, body, idx = pack(items)
    publish(remote, name, body, idx)
    monkeypatch.setattr(pull, "MAX_INDEX_BYTES", 1000)
    res = pull_packs(remote, local, [name])
    assert res.objects == 0 and "more than any zcas writes" in res.rejected[0]
    monkeypatch.setattr(dbmod, "MAX_INDEX_BYTES", 1000)
    warnings = []
    db = ObjectDB(remote, warn=warnings.append)  # a remote's bad index is skipped, said once
    db.refresh()
    assert not db.has(items[0][0]) and len(warnings) == 1 and "more than any zcas writes" in warnings[0]


def test_attack_remote_serving_more_indexes_than_any_store_holds(monkeypatch):
    """A remote ObjectDB stops loading indexes past a total, rather than hold them all."""
    from zcas.cas import db as dbmod
    from zcas.cas.objstore import ObstoreBackend

    remote = ObstoreBackend("memory://")
    for i in range(5):
        publish(remote, *pack([blob(b"pack %d" % i * 20)]))
    monkeypatch.setattr(dbmod, "MAX_REMOTE_INDEXES", 250)
    with pytest.raises(IntegrityError, match="exceed 250 bytes in all"):
        ObjectDB(remote).refresh()


def test_record_spanning_many_pieces_is_carried_without_recopying(remote, local, monkeypatch):
    """A record far larger than a piece grows in place (not copied again per piece)."""
    from zcas.cas import pull

    monkeypatch.setattr(pull, "PIECE", 1024)
    big = blob(random.Random(3).randbytes(3 << 20))  # 3,072 pieces
    name, body, idx = pack([blob(b"small" * 10), big, blob(b"after" * 10)])
    publish(remote, name, body, idx)
    t = time.perf_counter()
    res = pull_packs(remote, local, [name])
    assert res.rejected == [] and res.installed == 1 and res.objects == 3
    assert time.perf_counter() - t < 10


def test_attack_junk_index_key_on_a_remote_breaks_nothing_else(tmp_path):
    """One garbage ``packs/pack-0…1.idx`` on a file-backed remote: the remote's other
    packs still resolve and fetch; the junk is skipped, reported once as a pack index (not
    an "object"), and not fetched again by later refreshes."""
    from zcas.cas.objstore import ObstoreBackend

    remote = ObstoreBackend(f"file://{tmp_path}/remote")
    x = blob(b"a good object on the remote" * 10)
    name, body, idx = pack([x])
    publish(remote, name, body, idx)
    remote.put(idx_key(FIRST), b"garbage, not an index")
    warnings = []
    rdb = ObjectDB(remote, warn=warnings.append)
    assert rdb.resolve(x[0].hex()) == x[0] and rdb.resolve(x[0].hex()[:8]) == x[0]
    assert rdb.get_bytes(x[0]) == b"a good object on the remote" * 10
    assert len(warnings) == 1 and warnings[0].startswith(f"pack index {idx_key(FIRST)} skipped: not a pack index")
    assert "corrupt" not in warnings[0] and "object" not in warnings[0]
    asked = []
    real = remote.info
    remote.info = lambda key: asked.append(key) or real(key)
    rdb.refresh()
    rdb.refresh()
    assert idx_key(FIRST) not in asked and len(warnings) == 1 and rdb.bad_indexes() == {FIRST}
    b = LocalBackend(str(tmp_path / "local"))
    local = ObjectDB(b)
    assert fetch_objects(local, ObjectDB(remote), [x[0]]) == 1  # a shared-cache style fetch
    assert local.get_bytes(x[0]) == b"a good object on the remote" * 10
    b.close()


def test_remote_index_budget_keeps_the_in_memory_index_near_a_gib():
    """256 MiB of index bytes is ~5 million ids: with ~150 bytes of dict per id on top of
    its 53 index bytes, about 1 GiB in memory (not the >10 GiB 4 GiB of indexes made)."""
    from zcas.cas import db as dbmod
    from zcas.cas.pack import ENTRY

    ids = dbmod.MAX_REMOTE_INDEXES // ENTRY.size
    assert 4_000_000 < ids < 6_000_000 and ids * (ENTRY.size + 150) < 1.1 * (1 << 30)


@pytest.mark.parametrize("piece", [1, 7, 64, 1000, 4096, 1 << 20])
def test_attack_overlapping_index_entries_verify_as_over_the_whole_pack(remote, local, monkeypatch, piece):
    """Whatever the piece size, and however a hostile index overlaps its entries, each
    record gets the verdict it gets when the whole pack is checked at once: streaming
    never lets a record through on bytes it was not checked against, nor refuses a good
    one because of where the pieces fall."""
    from zcas.cas import pull
    from zcas.cas.verify import verify_span

    monkeypatch.setattr(pull, "PIECE", piece)
    rng = random.Random(piece)
    items = [blob(rng.randbytes(rng.choice([1, 50, 900, 5000]))) for _ in range(12)]
    items += [blob(b"squeeze me " * rng.choice([10, 400, 3000])) for _ in range(6)]
    rng.shuffle(items)
    name, body, idx = pack(items)
    entries = decode_index(name, idx)
    for _ in range(10):  # forged entries over other records' bytes, some spanning several
        t = rng.choice(entries)
        length = min(rng.choice([t[2], t[2] + 1, 3 * t[2]]), len(body) - t[1])
        entries.append((os.urandom(32), t[1] + rng.choice([0, 0, 1]), length, t[3], t[4]))
    entries.sort()
    idx = raw_index(entries)
    publish(remote, FIRST, body, idx)
    want = {t[0] for t, why in zip(entries, verify_span(body, 0, entries), strict=True) if why is not None}
    res = pull_packs(remote, local, [FIRST])
    got = {bytes.fromhex(r.split("object ")[1][:64]) for r in res.rejected if "object " in r}
    assert got == want and want
    assert res.objects == len({t[0] for t in items})
    for oid, *_ in items:
        assert ObjectDB(local.backend).get(oid)[0] == codec.KIND_BLOB

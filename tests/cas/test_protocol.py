"""The backend protocol, the read cache as a backend, ids and naming paths (issue 12)."""

import ast
import os
import pathlib

import pytest
from blake3 import blake3

from zcas.cas import backend as backend_mod
from zcas.cas import codec
from zcas.cas.backend import Backend, KeyInfo
from zcas.cas.cache import CachingBackend
from zcas.cas.db import ObjectDB
from zcas.cas.errors import IntegrityError, ObjectNotFoundError, StoreError, ZcasError, store_error
from zcas.cas.ingest import path_id
from zcas.cas.local import LocalBackend
from zcas.cas.memory import MemoryBackend
from zcas.cas.oid import hash_file
from zcas.cas.statcache import StatCache
from zcas.cas.tree import MODE_FILE, MODE_TREE

CAS = pathlib.Path(__file__).resolve().parents[2] / "cas"


class Minimal(Backend):
    """Only the six abstract operations: everything else comes from the protocol."""

    def __init__(self):
        self.d: dict[str, bytes] = {}
        self.range_calls = 0

    def get(self, key):
        try:
            return self.d[key]
        except KeyError:
            raise ObjectNotFoundError(key, "key") from None

    def put(self, key, data):
        if key in self.d:
            return False
        self.d[key] = bytes(data)
        return True

    def exists(self, key):
        return key in self.d

    def delete(self, key):
        self.d.pop(key, None)

    def list(self, prefix=""):
        return iter(sorted(k for k in self.d if k.startswith(prefix)))

    def info(self, key):
        return KeyInfo(len(self.get(key)), 0.0)

    def get_range(self, key, start, length):
        self.range_calls += 1
        return super().get_range(key, start, length)


def test_no_backend_is_probed_for_what_it_can_do():
    """No hasattr/getattr on a backend anywhere in cas, and no Capabilities."""
    for path in CAS.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) in ("hasattr", "getattr"):
                target = ast.unparse(node.args[0])
                assert "backend" not in target and "remote" not in target, f"{path.name}: {ast.unparse(node)}"
        assert "Capabilities" not in path.read_text(), path.name
    assert not hasattr(backend_mod, "Capabilities")


def test_an_object_db_works_over_a_backend_with_only_the_abstract_operations(tmp_path):
    b = Minimal()
    assert b.tmp_dir() is None and b.local_path("k") is None and not b.local
    db = ObjectDB(b)
    data = os.urandom(3 << 20)  # chunked: manifests and ranges
    from zcas.cas.chunking import store_buffer

    oid = store_buffer(db, data)
    db.flush()
    fresh = ObjectDB(b)
    assert fresh.get_bytes(oid) == data
    assert b.get_ranges("packs/" + next(iter(b.d))[6:], [0, 2], [2, 3])[1] == next(iter(b.d.values()))[2:5]
    assert b.get_bounded(next(iter(b.d)), 1 << 30)
    with pytest.raises(IntegrityError, match="more than any zcas writes"):
        b.get_bounded(next(iter(b.d)), 3)
    assert b"".join(bytes(p) for p in b.stream(next(iter(b.d)), 100, piece=7)) == next(iter(b.d.values()))[:100]
    f = tmp_path / "f"
    f.write_bytes(b"abc")
    assert b.put_path("x/1", str(f)) and f.exists()
    assert b.put_file("x/2", str(f)) and not f.exists() and b.get("x/2") == b"abc"


def test_store_error_lives_with_the_errors():
    import errno

    e = store_error(OSError(errno.ENOSPC, "No space left on device"), "writing a pack")
    assert isinstance(e, StoreError) and str(e) == "no space left on device while writing a pack"
    import zcas.cas.local as local_mod

    assert "def store_error" not in pathlib.Path(local_mod.__file__).read_text()


def test_errors_take_bytes_ids_and_carry_hex():
    oid = bytes(range(32))
    assert IntegrityError(oid, "bad").oid == oid.hex() and ObjectNotFoundError(oid).oid == oid.hex()
    assert IntegrityError("packs/x", "bad").oid == "packs/x"


def test_dead_code_is_gone():
    from zcas.cas import oid, pack

    assert not hasattr(oid, "Hasher") and not hasattr(oid, "to_hex")
    assert not hasattr(MemoryBackend, "set_mtime")
    import inspect

    assert "pack_size" not in inspect.signature(pack.check_entry).parameters


# -- the read cache -------------------------------------------------------------------------


def _remote_with_objects(n=20):
    remote = Minimal()
    db = ObjectDB(remote)
    ids = [db.put(codec.KIND_BLOB, b"object %d" % i) for i in range(n)]
    db.flush()
    return remote, ids


def test_caching_backend_serves_a_second_reader_from_the_cache(tmp_path):
    remote, ids = _remote_with_objects()
    cache = LocalBackend(str(tmp_path / "cache"), fsync=False)
    db = ObjectDB(CachingBackend(remote, cache))
    assert [db.get_bytes(o) for o in ids] == [b"object %d" % i for i in range(20)]
    calls = remote.range_calls
    again = ObjectDB(CachingBackend(remote, cache))
    assert [again.get_bytes(o) for o in ids] == [b"object %d" % i for i in range(20)]
    assert remote.range_calls == calls and again.backend.hits >= 20  # no request reached the remote
    assert not list(cache.list("packs/"))  # the cache is never a local pack


def test_a_damaged_cache_costs_a_request_never_an_object(tmp_path):
    remote, ids = _remote_with_objects()
    cache = LocalBackend(str(tmp_path / "cache"), fsync=False)
    ObjectDB(CachingBackend(remote, cache)).get(ids[0])
    for key in list(cache.list("cache/")):
        path = cache.local_path(key)
        data = bytearray(open(path, "rb").read())
        data[0] ^= 0xFF
        cache.delete(key)
        cache.put(key, bytes(data))
    calls = remote.range_calls
    db = ObjectDB(CachingBackend(remote, cache))
    assert db.get_bytes(ids[0]) == b"object 0"
    assert remote.range_calls == calls + 1


def test_a_cached_remote_store_reads_once_and_writes_to_the_remote(tmp_path):
    remote, ids = _remote_with_objects()
    local = LocalBackend(str(tmp_path / "objects"), fsync=False)
    db = ObjectDB(CachingBackend(remote, local), tmp_dir=str(tmp_path / "tmp"))
    assert isinstance(db.backend, CachingBackend) and db.backend.remote is remote
    assert db.get_bytes(ids[3]) == b"object 3"
    assert ObjectDB(CachingBackend(remote, local)).get_bytes(ids[3]) == b"object 3" and remote.range_calls == 1
    new = db.put(codec.KIND_BLOB, b"written through")
    db.flush()
    assert ObjectDB(remote).get_bytes(new) == b"written through"  # writes go to the remote


# -- ids of files and folders, without storing ----------------------------------------------


def test_hash_file_is_b3sum(tmp_path):
    f = tmp_path / "f"
    data = os.urandom(5 << 20)
    f.write_bytes(data)
    assert hash_file(str(f)) == blake3(data).digest()
    with pytest.raises(ZcasError, match="not a regular file"):
        hash_file(str(tmp_path))


def test_path_id_names_files_and_folders_as_add_would_without_storing(repo, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "big").write_bytes(os.urandom(2 << 20))  # chunked when stored
    os.symlink("a.txt", src / "link")
    before = set(repo.db.backend.list("packs/"))
    tree_id, mode = path_id(str(src))
    file_id, fmode = path_id(str(src / "sub" / "big"))
    assert mode == MODE_TREE and fmode == MODE_FILE
    assert set(repo.db.backend.list("packs/")) == before and repo.db._writer is None  # nothing stored
    [(stored, _, _)] = repo.add([str(src)])
    assert stored == tree_id
    assert file_id == hash_file(str(src / "sub" / "big"))


def test_path_id_reads_the_stat_cache_and_never_writes_it(repo, tmp_path):
    f = tmp_path / "f"
    f.write_text("content")
    cache = StatCache(repo.statcache_path)
    st = os.lstat(f)
    from zcas.cas.statcache import stat_key

    lie = b"\x07" * 32
    cache._old[os.fsencode(str(f))] = (*stat_key(st), lie)
    cache._racy_before = max(st.st_mtime_ns, st.st_ctime_ns) + 1
    assert path_id(str(f), cache)[0] == lie  # answered from the cache, unread
    fresh = StatCache(None)
    assert path_id(str(f), fresh)[0] == hash_file(str(f)) and not fresh.dirty

"""Contract tests every backend must pass, shipped once and reused per backend.

A backend's test module subclasses ``BackendContract`` and provides a ``backend`` fixture;
``ObjectDBContract`` runs the object database over that backend. (Imports pytest lazily, so
the package does not depend on it.)
"""

from __future__ import annotations

import threading

from . import codec
from .db import ObjectDB
from .errors import IntegrityError, ObjectNotFoundError, UsageError
from .oid import hash_bytes


class BackendContract:
    """Opaque bytes by key: get, create-only put, exists, delete, list by prefix."""

    def test_put_get_roundtrip(self, backend):
        assert backend.put("packs/a.idx", b"hello") is True
        assert backend.get("packs/a.idx") == b"hello"
        assert backend.exists("packs/a.idx")
        assert backend.info("packs/a.idx").size == 5

    def test_put_is_create_only(self, backend):
        assert backend.put("k1", b"first") is True
        assert backend.put("k1", b"second") is False
        assert backend.get("k1") == b"first"

    def test_get_range(self, backend):
        backend.put("r", bytes(range(100)))
        assert backend.get_range("r", 10, 5) == bytes(range(10, 15))

    def test_missing_key(self, backend):
        import pytest

        with pytest.raises(ObjectNotFoundError):
            backend.get("nope")
        with pytest.raises(LookupError):  # the builtin works too
            backend.get("nope")
        assert not backend.exists("nope")

    def test_delete_and_list(self, backend):
        for k in ("packs/x.pack", "packs/y.idx", "other/z"):
            backend.put(k, b"1")
        assert sorted(backend.list("packs/")) == ["packs/x.pack", "packs/y.idx"]
        backend.delete("packs/x.pack")
        assert sorted(backend.list("packs/")) == ["packs/y.idx"]
        backend.delete("packs/x.pack")  # deleting twice is harmless

    def test_put_file_consumes_the_file(self, backend, tmp_path):
        import os

        f = tmp_path / "upload"
        f.write_bytes(b"payload")
        tmp = backend.tmp_dir()
        if tmp is not None:  # the local backend links from its own temp folder (same filesystem)
            src = os.path.join(tmp, "upload")
            os.replace(f, src)
            f = src
        assert backend.put_file("packs/f.pack", str(f)) is True
        assert backend.get("packs/f.pack") == b"payload"
        assert not os.path.exists(f)

    def test_hostile_keys_refused(self, backend):
        import pytest

        for key in ("../escape", "/abs", "a/../../b", "", "A/upper", "a//b", "a/./b"):
            with pytest.raises(UsageError):
                backend.put(key, b"x")

    def test_concurrent_creates_one_winner(self, backend):
        wins = []

        def put(i):
            wins.append(backend.put("race", f"v{i}".encode()))

        threads = [threading.Thread(target=put, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert wins.count(True) == 1
        assert backend.get("race") in {f"v{i}".encode() for i in range(8)}


class ObjectDBContract:
    """The object database over a backend: ids, dedup, packs, verification."""

    def test_put_get(self, backend):
        db = ObjectDB(backend)
        oid = db.put(codec.KIND_BLOB, b"hello world" * 100)
        assert oid == hash_bytes(b"hello world" * 100)
        assert db.get(oid) == (codec.KIND_BLOB, b"hello world" * 100)
        db.flush()
        db2 = ObjectDB(backend)
        assert db2.get_bytes(oid) == b"hello world" * 100

    def test_unflushed_objects_are_invisible_to_others(self, backend):
        db = ObjectDB(backend)
        oid = db.put(codec.KIND_BLOB, b"pending")
        assert not ObjectDB(backend).has(oid)
        db.abort()
        assert not db.has(oid)
        assert list(backend.list("packs/")) == []

    def test_dedup(self, backend):
        db = ObjectDB(backend)
        a = db.put(codec.KIND_BLOB, b"same")
        b = db.put(codec.KIND_BLOB, b"same")
        db.flush()
        assert a == b and len(db) == 1

    def test_corruption_detected(self, backend):
        import pytest

        db = ObjectDB(backend)
        oid = db.put(codec.KIND_BLOB, b"x" * 10)  # small: stored raw
        name = db.flush()
        key = f"packs/pack-{name}.pack"
        data = bytearray(backend.get(key))
        data[-1] ^= 0xFF
        backend.delete(key)
        backend.put(key, bytes(data))
        fresh = ObjectDB(backend)
        with pytest.raises(IntegrityError) as ei:
            fresh.get(oid)
        assert ei.value.oid == oid.hex()

    def test_prefix_resolution(self, backend):
        import pytest

        db = ObjectDB(backend)
        ids = [db.put(codec.KIND_BLOB, str(i).encode()) for i in range(50)]
        db.flush()
        assert db.resolve(ids[0].hex()[:12]) == ids[0]
        with pytest.raises(UsageError):
            db.resolve("abc")
        with pytest.raises(UsageError):
            db.resolve("xyz1")
        with pytest.raises(ObjectNotFoundError):
            db.resolve("0" * 64)

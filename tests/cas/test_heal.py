"""A damaged object is healed by storing its content again (a rerun of the step that made it)."""

import os

import pytest

from zcas.cas import codec
from zcas.cas.db import ObjectDB
from zcas.cas.errors import IntegrityError
from zcas.cas.local import LocalBackend


def _damaged(tmp_path, data: bytes) -> tuple[str, bytes]:
    """(objects folder, id) of ``data`` stored once, then its stored record damaged."""
    root = str(tmp_path / "objects")
    db = ObjectDB(LocalBackend(root))
    oid = db.put(codec.KIND_BLOB, data)
    db.flush()
    e = db.entry(oid)
    with open(os.path.join(root, "packs", f"pack-{e.pack}.pack"), "r+b") as f:
        f.seek(e.offset + e.length - 2)
        f.write(b"\0\0")
    return root, oid


def test_storing_a_damaged_object_again_writes_a_copy_every_reader_then_uses(tmp_path):
    root, oid = _damaged(tmp_path, b"result of a step")
    db = ObjectDB(LocalBackend(root))
    with pytest.raises(IntegrityError):
        db.get_bytes(oid)
    assert not db.has(oid) and oid in db.damaged  # absent to writers: the next put writes it
    assert db.put(codec.KIND_BLOB, b"result of a step") == oid
    assert db.get_bytes(oid) == b"result of a step"  # before the flush, from the pack being written
    db.flush()
    assert db.get_bytes(oid) == b"result of a step"

    fresh = ObjectDB(LocalBackend(root))  # another process: the damaged copy first, then the good one
    assert fresh.get_bytes(oid) == b"result of a step"


def test_a_worker_told_of_the_damage_writes_the_copy_and_repacking_keeps_it(tmp_path):
    root, oid = _damaged(tmp_path, b"shared")
    client = ObjectDB(LocalBackend(root))
    with pytest.raises(IntegrityError):
        client.get_bytes(oid)
    worker = ObjectDB(LocalBackend(root))  # knows nothing of the damage until told
    assert worker.has(oid)
    worker.mark_damaged(client.damaged)
    worker.put(codec.KIND_BLOB, b"shared")
    worker.flush()
    client.refresh()
    assert client.get_bytes(oid) == b"shared"
    client.repack()  # the damaged pack stays for fsck; the good copy must survive it
    assert ObjectDB(LocalBackend(root)).get_bytes(oid) == b"shared"

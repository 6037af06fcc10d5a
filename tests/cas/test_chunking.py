"""Large files: ids equal b3sum of the bytes, cuts don't depend on read buffering, and a
new version stores only what changed."""

import os
import random

import pytest
from blake3 import blake3

from zcas.cas import chunking, codec
from zcas.cas.errors import ChangedWhileReadingError, IntegrityError


def _data(n, seed=0):
    return random.Random(seed).randbytes(n)


def _store(repo, path):
    fd = os.open(path, os.O_RDONLY)
    try:
        return chunking.store_chunked(repo.db, fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


def test_large_file_id_is_b3sum(repo, tmp_path):
    data = _data(3 << 20)
    p = tmp_path / "big.bin"
    p.write_bytes(data)
    oid = _store(repo, p)
    assert oid == blake3(data).digest()
    assert repo.db.entry(oid).kind == codec.KIND_CHUNKED
    assert repo.db.entry(oid).size == len(data)
    assert repo.db.get_bytes(oid) == data


def test_cuts_do_not_depend_on_buffer_size(repo, tmp_path, monkeypatch):
    data = _data(2 << 20, 1)
    p = tmp_path / "f"
    p.write_bytes(data)
    expected = [(c.offset, c.length) for c in chunking._cutter().cut_buf(data)]
    monkeypatch.setattr(chunking, "_READ", 300_000)  # many buffer boundaries, carry each time
    oid = _store(repo, p)
    _, manifest = repo.db.get(oid)
    _, items = chunking.decode_manifest(oid.hex(), manifest)
    assert [n for _, n in items] == [n for _, n in expected]


def test_edit_stores_only_changed_chunks(repo, tmp_path):
    data = bytearray(_data(8 << 20, 2))
    p = tmp_path / "v"
    p.write_bytes(data)
    _store(repo, p)
    repo.db.flush()
    before = sum(e.size for _, e in repo.db.iter_entries() if e.kind == codec.KIND_BLOB)
    data[4 << 20 : (4 << 20) + 1000] = _data(1000, 3)  # overwrite 1000 bytes mid-file
    data[100:100] = _data(5000, 4)  # and insert near the start
    p.write_bytes(bytes(data))
    _store(repo, p)
    repo.db.flush()
    after = sum(e.size for _, e in repo.db.iter_entries() if e.kind == codec.KIND_BLOB)
    assert after - before < 0.05 * len(data)


def test_file_growing_while_read_is_an_error(repo, tmp_path):
    p = tmp_path / "grow"
    p.write_bytes(_data(2 << 20))
    fd = os.open(p, os.O_RDONLY)
    try:
        with pytest.raises(ValueError):
            chunking.store_chunked(repo.db, fd, (1 << 20))  # the stat said smaller
    finally:
        os.close(fd)


def test_corrupt_chunk_named_on_checkout(repo, tmp_path):
    data = _data(2 << 20, 5)
    p = tmp_path / "c"
    p.write_bytes(data)
    oid = _store(repo, p)
    name = repo.db.flush()
    _, manifest = repo.db.get(oid)
    _, items = chunking.decode_manifest(oid.hex(), manifest)
    victim = items[3][0]
    e = repo.db.entry(victim)
    path = repo.backend.local_path(f"packs/pack-{name}.pack")
    with open(path, "r+b") as f:
        f.seek(e.offset + e.length - 1)
        b = f.read(1)
        f.seek(e.offset + e.length - 1)
        f.write(bytes([b[0] ^ 0x55]))
    repo.backend.close()
    out = tmp_path / "out"
    fd = os.open(out, os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(IntegrityError) as ei:
            chunking.write_chunked(repo.db, oid, manifest, fd)
    finally:
        os.close(fd)
    assert ei.value.oid == victim.hex()


def test_ingester_reports_file_changed(repo, tmp_path, monkeypatch):
    from zcas.cas import ingest

    p = tmp_path / "data.txt"
    p.write_bytes(b"x" * 5000)
    real = ingest._read_small

    def racing(path, key):
        with open(path, "ab") as f:
            f.write(b"more")
        return real(path, key)

    monkeypatch.setattr(ingest, "_read_small", racing)
    with pytest.raises(ChangedWhileReadingError):
        repo.add([str(p)])
    assert len(repo.db) == 0
    assert list(repo.backend.list("packs/")) == []

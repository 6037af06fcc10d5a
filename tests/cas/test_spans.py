"""Large files read back a span of records at a time (issue 18): ``ObjectDB.read_records``
and checkout's ``write_chunked`` give exactly what reading each record alone gives, and
every damage is still caught."""

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zcas.cas import codec
from zcas.cas.chunking import store_buffer, write_chunked
from zcas.cas.db import ObjectDB
from zcas.cas.errors import IntegrityError
from zcas.cas.local import LocalBackend
from zcas.cas.manifest import decode_manifest
from zcas.cas.memory import MemoryBackend
from zcas.cas.oid import hash_bytes


def _content(seed: int, size: int, random_share: float) -> bytes:
    """CSV-like text (compresses) with a share of random bytes (stored raw)."""
    import random

    rng = random.Random(seed)
    out = bytearray()
    while len(out) < size:
        if rng.random() < random_share:
            out += rng.randbytes(rng.randint(1, 200_000))
        else:
            out += b"".join(b"%d,%d,%s\n" % (rng.randint(0, 10**9), i, b"alpha" * rng.randint(0, 3))
                            for i in range(rng.randint(1, 5000)))
    return bytes(out[:size])


def _checkout(db: ObjectDB, oid: bytes, path) -> bytes:
    _, manifest = db.get(oid)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        write_chunked(db, oid, manifest, fd)
    finally:
        os.close(fd)
    with open(path, "rb") as f:
        return f.read()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), size=st.integers(1 << 20, 3 << 20), random_share=st.sampled_from([0.0, 0.3, 1.0]),
       pack_size=st.sampled_from([64 << 10, 1 << 20, 256 << 20]), flushed=st.booleans())
def test_read_records_gives_what_each_read_gives(tmp_path, seed, size, random_share, pack_size, flushed):
    data = _content(seed, size, random_share)
    root = tmp_path / f"o{seed}-{size}-{pack_size}-{flushed}"
    db = ObjectDB(LocalBackend(str(root)), max_pack_size=pack_size)
    oid = store_buffer(db, data)
    assert oid == hash_bytes(data)
    if flushed:
        db.flush()
    _, manifest = db.get(oid)
    _, items = decode_manifest(oid, manifest)
    pairs = [(c, db.entry(c)) for c, _ in items]
    spans = db.read_records(pairs)
    assert [bytes(r) for r in spans] == [db.read_record(c, e) for c, e in pairs]
    assert _checkout(db, oid, str(tmp_path / "out")) == data
    db.abort()


def test_a_remote_store_reads_each_record_alone(tmp_path):
    data = _content(1, 2 << 20, 0.0)

    class Remote(MemoryBackend):
        local = False
        ranges: list = []

        def get_range(self, key, start, length):
            self.ranges.append(length)
            return super().get_range(key, start, length)

    db = ObjectDB(Remote())
    oid = store_buffer(db, data)
    db.flush()
    _, manifest = db.get(oid)
    _, items = decode_manifest(oid, manifest)
    Remote.ranges.clear()
    db.read_records([(c, db.entry(c)) for c, _ in items])
    assert len(Remote.ranges) == len(items)  # a read cache keeps the exact ranges it is asked for


def _stored(tmp_path, data: bytes) -> tuple[str, bytes, list]:
    root = str(tmp_path / "objects")
    db = ObjectDB(LocalBackend(root))
    oid = store_buffer(db, data)
    db.flush()
    _, manifest = db.get(oid)
    _, items = decode_manifest(oid, manifest)
    return root, oid, [(c, db.entry(c)) for c, _ in items]


def _poke(root: str, e, at: int, raw: bytes) -> None:
    with open(os.path.join(root, "packs", f"pack-{e.pack}.pack"), "r+b") as f:
        f.seek(e.offset + at)
        f.write(raw)


@pytest.mark.parametrize("where", ["body", "header-size", "header-kind", "frame-size"])
def test_a_damaged_chunk_in_a_span_is_caught_and_named(tmp_path, where):
    data = _content(2, 2 << 20, 0.0)
    root, oid, pairs = _stored(tmp_path, data)
    coid, e = pairs[len(pairs) // 2]
    record = ObjectDB(LocalBackend(root)).read_record(coid, e)
    assert record[1] == codec.CODEC_ZSTD
    if where == "body":
        _poke(root, e, e.length - 3, bytes(b ^ 0xFF for b in record[-3:]))
    elif where == "header-size":
        _poke(root, e, 2, (e.size + 1).to_bytes(8, "little"))
    elif where == "header-kind":
        _poke(root, e, 0, bytes([codec.KIND_TREE]))
    else:  # the frame declares one byte more than the header: never inflated past it
        fcs = codec.zstandard.frame_content_size(record[codec.HEADER_SIZE :])
        assert fcs == e.size
        body = codec.zstandard.ZstdCompressor(level=1).compress(b"x" * (e.size + 1))
        _poke(root, e, codec.HEADER_SIZE, body[: e.length - codec.HEADER_SIZE])
    db = ObjectDB(LocalBackend(root))
    with pytest.raises(IntegrityError) as ei:
        _checkout(db, oid, str(tmp_path / "out"))
    assert coid.hex() in str(ei.value)


def test_a_damaged_chunk_with_a_good_copy_elsewhere_checks_out_whole(tmp_path):
    data = _content(3, 2 << 20, 0.0)
    root, oid, pairs = _stored(tmp_path, data)
    coid, e = pairs[3]
    _poke(root, e, e.length - 4, b"\0\0\0\0")
    db = ObjectDB(LocalBackend(root))
    db.put_records([(coid, codec.KIND_BLOB, e.size, codec.encode(codec.KIND_BLOB, data_of(db, pairs, coid, data)))])
    db.flush()  # another pack holds a good copy (as a pull or a rerun would bring)
    assert _checkout(ObjectDB(LocalBackend(root)), oid, str(tmp_path / "out")) == data


def data_of(db, pairs, coid, data) -> bytes:
    at = 0
    for c, e in pairs:
        if c == coid:
            return data[at : at + e.size]
        at += e.size
    raise AssertionError


def test_a_truncated_pack_is_an_integrity_error(tmp_path):
    data = _content(4, 2 << 20, 0.0)
    root, oid, pairs = _stored(tmp_path, data)
    e = pairs[-1][1]
    os.truncate(os.path.join(root, "packs", f"pack-{e.pack}.pack"), e.offset + 5)
    db = ObjectDB(LocalBackend(root))
    with pytest.raises(IntegrityError):
        _checkout(db, oid, str(tmp_path / "out"))


def test_a_manifest_whose_chunks_do_not_hash_to_the_file_is_refused(tmp_path):
    """Chunks that each verify, listed under another file's id: the in-order hash catches it."""
    data = _content(5, 2 << 20, 0.0)
    root, oid, pairs = _stored(tmp_path, data)
    db = ObjectDB(LocalBackend(root))
    _, manifest = db.get(oid)
    total, items = decode_manifest(oid, manifest)
    swapped = [items[1], items[0], *items[2:]]  # same chunks, same total, another order
    from zcas.cas.manifest import encode_manifest

    fd = os.open(tmp_path / "out", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with pytest.raises(IntegrityError, match="hash mismatch"):
            write_chunked(db, oid, encode_manifest(total, swapped), fd)
    finally:
        os.close(fd)


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1 << 20, 40 << 20), min_size=2, max_size=4), seed=st.integers(0, 2**16))
def test_large_files_of_one_add_share_read_buffers_without_leaking_bytes(tmp_path, sizes, seed):
    """Files read one after another into the same buffers (the first one larger or smaller
    than the next) each get exactly b3sum of their own bytes, and read back whole."""
    from zcas.cas.ingest import Ingester
    from zcas.cas.statcache import StatCache
    from zcas.cas.tree import decode_tree

    folder = tmp_path / f"d{seed}-{len(sizes)}-{sizes[0]}"
    folder.mkdir()
    contents = {}
    for i, size in enumerate(sizes):
        data = _content(seed + i, size, 0.2) if size < 4 << 20 else os.urandom(size)
        (folder / f"f{i}").write_bytes(data)
        contents[f"f{i}".encode()] = data
    db = ObjectDB(LocalBackend(str(tmp_path / f"o{seed}-{len(sizes)}-{sizes[0]}")))
    tree, _ = Ingester(db, StatCache(None)).add(str(folder))
    db.flush()
    _, payload = db.get(tree)
    for e in decode_tree(tree, payload):
        assert e.oid == hash_bytes(contents[e.name])
        assert _checkout(db, e.oid, str(tmp_path / "out")) == contents[e.name]


def test_a_file_that_grows_while_read_empties_the_shared_buffers(tmp_path):
    from zcas.cas.chunking import store_chunked

    path = tmp_path / "grows"
    path.write_bytes(_content(9, 3 << 20, 0.0))
    db = ObjectDB(LocalBackend(str(tmp_path / "o")))
    bufs: list = []
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ValueError):
            store_chunked(db, fd, (3 << 20) - 100, bufs)  # the file holds more than the walk saw
    finally:
        os.close(fd)
    assert bufs == []  # workers may still read them: never handed to the next file
    fd = os.open(path, os.O_RDONLY)
    try:
        assert store_chunked(db, fd, 3 << 20, bufs) == hash_bytes(path.read_bytes())
    finally:
        os.close(fd)
    assert len(bufs) == 4


def test_a_write_error_stops_every_worker_before_checkout_returns(tmp_path, monkeypatch):
    """A failed write (a full disk) propagates only once no worker can write into the file
    descriptor any more: the caller closes it, and its number may name another file next."""
    import threading
    import time

    from zcas.cas import chunking

    data = os.urandom(24 << 20)  # ~600 chunks: runs still queued when the second one fails
    root, oid, _ = _stored(tmp_path, data)
    db = ObjectDB(LocalBackend(root))
    real = chunking._pwrite_all
    calls = []
    lock = threading.Lock()

    def failing(fd, bufs, at):
        with lock:
            calls.append(at)
            n = len(calls)
        if n == 2:
            raise OSError(28, "No space left on device")
        time.sleep(0.01)
        real(fd, bufs, at)

    monkeypatch.setattr(chunking, "_pwrite_all", failing)
    with pytest.raises(OSError, match="No space"):
        _checkout(db, oid, str(tmp_path / "out"))
    seen = len(calls)
    time.sleep(0.2)
    assert len(calls) == seen  # nothing still running wrote after the error came out

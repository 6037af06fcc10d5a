"""zcas:// through fsspec and the libraries built on it: listing, reading, ranges, refusals."""

from __future__ import annotations

import os

import fsspec
import pytest

from zcas.cas import codec
from zcas.cas.errors import IntegrityError
from zcas.cas.manifest import encode_manifest
from zcas.cas.oid import hasher
from zcas.fs import ZcasFileSystem


@pytest.fixture
def fs(stored):
    return fsspec.filesystem("zcas")


def test_the_entry_point_registers_the_protocol(stored):
    assert isinstance(fsspec.filesystem("zcas"), ZcasFileSystem)
    with fsspec.open("zcas://v1/sub/deep/x.txt", "rb") as f:
        assert f.read() == b"deep\n"


def test_ls_info_find_glob(fs, stored):
    _, tree = stored
    names = fs.ls("v1", detail=False)
    assert names == sorted(names) and "v1/train.csv" in names and "v1/empty" in names
    rows = {r["name"]: r for r in fs.ls("zcas://v1/")}
    assert rows["v1/sub"]["type"] == "directory" and rows["v1/train.csv"]["type"] == "file"
    assert rows["v1/train.csv"]["size"] == os.path.getsize("data/train.csv")
    assert rows["v1/link"]["type"] == "other" and rows["v1/link"]["destination"] == "train.csv"
    assert fs.info("v1")["id"] == tree and fs.info("v1")["type"] == "directory"
    assert fs.glob("v1/part-*.parquet") == ["v1/part-0.parquet", "v1/part-1.parquet"]
    assert fs.find("v1/sub") == ["v1/sub/deep/x.txt", "v1/sub/file@2"]
    assert fs.glob(f"{tree[:10]}/**/x.txt") == [f"{tree[:10]}/sub/deep/x.txt"]
    assert fs.ls("", detail=False) == ["v1"]
    assert fs.isdir("v1/empty") and fs.ls("v1/empty") == []
    assert fs.cat_file("v1/sub/file@2") == b"not a history ref\n"  # a name, not a REF
    assert "v1/link" not in fs.find("v1") and "v1/link" in fs.ls("v1", detail=False)  # listed, not walked


def test_get_copies_a_tree_out_without_its_links(fs, stored, tmp_path):
    fs.get("v1", str(tmp_path / "out"), recursive=True)
    got = sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert got == ["part-0.parquet", "part-1.parquet", "sub/deep/x.txt", "sub/file@2", "train.csv", "v.txt"]
    assert (tmp_path / "out" / "train.csv").read_bytes() == open("data/train.csv", "rb").read()


def test_ids_prefixes_and_history_versions(fs, stored):
    repo, tree = stored
    assert fs.cat_file(f"{tree}/v.txt") == fs.cat_file(f"{tree[:8]}/v.txt") == b"two\n"
    assert fs.cat_file("data@1/v.txt") == b"one\n" and fs.cat_file("data@2/v.txt") == b"two\n"
    file_id = fs.info("v1/v.txt")["id"]
    assert fs.cat_file(file_id) == b"two\n" and fs.info(file_id)["type"] == "file"
    assert fs.ukey("data@1/v.txt") != fs.ukey("data@2/v.txt")


def test_ranges(fs, stored):
    whole = open("data/train.csv", "rb").read()
    assert fs.cat_file("v1/train.csv", 5, 25) == whole[5:25]
    assert fs.cat_file("v1/train.csv", -10) == whole[-10:]
    assert fs.cat_file("v1/train.csv", 10, 5) == b""
    with fs.open("v1/train.csv") as f:
        f.seek(100)
        assert f.read(50) == whole[100:150]
        assert f.tell() == 150


@pytest.mark.parametrize("path, err", [
    ("v9/x", FileNotFoundError), ("v1/nope", FileNotFoundError), ("v1/train.csv/x", NotADirectoryError),
    ("data@3/v.txt", FileNotFoundError), ("v1/../x", ValueError), ("v1/sub", IsADirectoryError),
    ("v1/link", ValueError), ("abcd", FileNotFoundError),
])
def test_what_names_nothing_is_refused_in_one_line(fs, path, err):
    with pytest.raises(err) as e:
        fs.cat_file(path)
    assert "\n" not in str(e.value) and "zcas://" in str(e.value)


def test_read_only(fs):
    for call in (lambda: fs.open("v1/new", "wb"), lambda: fs.pipe_file("v1/new", b"x"), lambda: fs.rm("v1/v.txt"),
                 lambda: fs.mkdir("v1/d"), lambda: fs.touch("v1/t")):
        with pytest.raises(PermissionError, match="read-only"):
            call()


def test_dataframe_libraries(fs, stored):
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow.dataset as ds

    want = pd.read_csv("data/train.csv")
    pd.testing.assert_frame_equal(pd.read_csv("zcas://v1/train.csv"), want)
    pd.testing.assert_frame_equal(pd.read_parquet("zcas://data@2/part-1.parquet"), want.iloc[500:])
    assert pl.read_parquet("zcas://v1/part-0.parquet", use_pyarrow=True).height == 500
    with fsspec.open("zcas://v1/train.csv") as f:
        assert pl.read_csv(f)["a"].sum() == want["a"].sum()
    assert ds.dataset("v1", filesystem=fs, format="parquet", exclude_invalid_files=True).count_rows() == 1000
    con = duckdb.connect()
    con.register_filesystem(fs)
    assert con.sql("select sum(a) from read_parquet('zcas://v1/part-*.parquet')").fetchall()[0][0] == want["a"].sum()
    assert con.sql("select count(*) from read_csv('zcas://v1/train.csv')").fetchall()[0][0] == 1000


def _big_file(repo, chunk: int = 64 << 10, distinct: int = 64, total: int = 1 << 30) -> tuple[bytes, list[bytes]]:
    """A 1 GiB chunked file stored through the store's own API, cheaply: ``distinct`` blobs of
    ``chunk`` bytes repeated in a pattern (a real manifest, real offsets, the whole-file id)."""
    db = repo.cas.db
    blobs = [bytes([i]) * (chunk - 7) + i.to_bytes(7, "big") for i in range(distinct)]
    ids = [db.put(codec.KIND_BLOB, b) for b in blobs]
    count = total // chunk
    h = hasher()
    for i in range(count):
        h.update(blobs[(i * 7) % distinct])
    oid = h.digest()
    db.put_manifest(oid, total, encode_manifest(total, [(ids[(i * 7) % distinct], chunk) for i in range(count)]))
    db.flush()
    repo.tag("big", oid.hex())
    return oid, blobs


def test_a_range_of_a_1gib_file_reads_only_its_chunks(fs, stored, monkeypatch):
    repo, _ = stored
    chunk = 64 << 10
    oid, blobs = _big_file(repo, chunk)
    assert fs.info("big")["size"] == 1 << 30
    fs.reader("big").verify()  # a range is served once the file is proven whole (once per process)
    calls = []
    real_get = fs.db.get  # the filesystem's own store handle: every read it makes goes through here
    monkeypatch.setattr(fs.db, "get", lambda o: calls.append(o) or real_get(o))
    start = (512 << 20) + 1000  # 1 MiB from the middle, not on a chunk boundary
    got = fs.cat_file("big", start, start + (1 << 20))
    first, last = start // chunk, (start + (1 << 20) - 1) // chunk
    want = b"".join(blobs[(i * 7) % 64] for i in range(first, last + 1))[start - first * chunk:][: 1 << 20]
    assert got == want
    chunk_reads = [o for o in calls if o != oid]
    assert len(chunk_reads) == last - first + 1 == 17  # 16 chunks' worth, straddling one more
    r = fs.reader("big")
    r.read(start, start + (1 << 20))
    assert r.chunks_read == 17 and len(r._ids) == (1 << 30) // chunk


def test_a_planted_manifest_is_caught_by_an_in_order_read(fs, stored):
    """Every chunk verifies, but they are not the file the id names: reading the file through
    refuses its last chunk, and verify_whole=True refuses it on open."""
    repo, _ = stored
    db = repo.cas.db
    a, b = b"a" * (64 << 10), b"b" * (64 << 10)
    ia, ib = db.put(codec.KIND_BLOB, a), db.put(codec.KIND_BLOB, b)
    real = a * 20
    fake = hasher()
    fake.update(real)
    oid = fake.digest()
    db.put_manifest(oid, len(real), encode_manifest(len(real), [(ia if i % 2 else ib, len(a)) for i in range(20)]))
    db.flush()
    repo.tag("planted", oid.hex())
    with fs.open("planted", block_size=100 << 10) as f, pytest.raises(IntegrityError, match="hash mismatch"):
        f.read()
    with pytest.raises(OSError, match="hash mismatch"):
        ZcasFileSystem(verify_whole=True).open("planted")


def test_a_damaged_chunk_is_an_error_naming_the_file(fs, stored):
    repo, _ = stored
    blob = os.urandom(2 << 20)
    with open("big.bin", "wb") as f:
        f.write(blob)
    art = repo.put("big.bin")
    from zcas.cas.manifest import decode_manifest

    _, items = decode_manifest(bytes.fromhex(art.id), repo.cas.db.get(bytes.fromhex(art.id))[1])
    pack_path = None
    e = repo.cas.db.entry(items[1][0])
    for root, _, files in os.walk(os.path.join(repo.root, ".zcas", "objects")):
        for name in files:
            if name == f"pack-{e.pack}.pack":
                pack_path = os.path.join(root, name)
    assert pack_path
    with open(pack_path, "r+b") as f:  # flip a byte in the middle of the second chunk's record
        f.seek(e.offset + e.length // 2)
        byte = f.read(1)
        f.seek(e.offset + e.length // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    fresh = ZcasFileSystem()
    fresh.repository.cas.db.reload()
    with pytest.raises(IntegrityError) as err:
        fresh.cat_file(art.id, 0, 1 << 20)
    assert art.id[:12] in str(err.value) or items[1][0].hex()[:12] in str(err.value)


def test_another_repository_through_storage_options(stored, tmp_path_factory, monkeypatch):
    import pandas as pd

    repo, _ = stored
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))  # not inside any repository
    df = pd.read_csv("zcas://v1/train.csv", storage_options={"repo": repo.root})
    assert len(df) == 1000
    with pytest.raises(FileNotFoundError):
        fsspec.filesystem("zcas").ls("v1")  # no repository here: one line saying so


def test_a_hostile_tree_is_refused_and_nothing_escapes(fs, stored, tmp_path):
    """A tree naming '..' (as a shared remote could serve one) is refused when read: a
    listing raises, and copying out of it writes nothing, above the target or in it."""
    import struct

    from zcas.cas.errors import UnsafePathError
    from zcas.cas.oid import hash_bytes
    from zcas.cas.tree import MAGIC, MODE_FILE

    repo, _ = stored
    db = repo.cas.db
    blob = db.put(codec.KIND_BLOB, b"escaped\n")
    payload = MAGIC + struct.pack("<I", 1) + struct.pack("<B32sH", MODE_FILE, blob, 2) + b".."
    tree = hash_bytes(payload)
    db.put_record(tree, codec.KIND_TREE, len(payload), codec.encode(codec.KIND_TREE, payload))
    db.flush()
    target = tmp_path / "out" / "inner"
    target.mkdir(parents=True)
    with pytest.raises((UnsafePathError, IntegrityError)):
        fs.ls(tree.hex())
    with pytest.raises((UnsafePathError, IntegrityError)):
        fs.get(tree.hex(), str(target), recursive=True)
    assert list((tmp_path / "out").rglob("*")) == [target] and not (tmp_path / "escaped").exists()


def _planted(repo) -> tuple[bytes, bytes, bytes]:
    """(id, real bytes, planted bytes): a chunked file's id whose stored manifest lists
    another file's chunks, of the same size (what a hostile remote's pack could hold)."""
    db = repo.cas.db
    a, b = os.urandom(64 << 10), os.urandom(64 << 10)
    db.put(codec.KIND_BLOB, a)
    ib = db.put(codec.KIND_BLOB, b)
    real, fake = a * 20, b * 20
    h = hasher()
    h.update(real)
    oid = h.digest()
    db.put(codec.KIND_CHUNKED, encode_manifest(len(fake), [(ib, len(b))] * 20), oid=oid, size=len(real))
    db.flush()
    repo.tag("planted", oid.hex())
    return oid, real, fake


@pytest.mark.parametrize("how", ["tail", "seek", "head", "part", "pyarrow-footer"])
def test_a_planted_manifest_serves_no_byte_of_a_range(fs, stored, how):
    """Every chunk verifies, but they are another file's: a range, a jump, a head is refused
    before any byte is handed out (the whole file is proven first)."""
    repo, _ = stored
    oid, real, fake = _planted(repo)
    size = len(real)
    with pytest.raises(IntegrityError, match="hash mismatch"):
        if how == "tail":
            fs.cat_file("planted", start=size - 1000)
        elif how == "seek":
            with fs.open("planted") as f:
                f.seek(size // 2)
                f.read(100)
        elif how == "head":
            fs.head("planted", 100)
        elif how == "part":
            fs.cat_file("planted", 0, 100)
        else:
            r = fs.reader("planted")
            r.read(size - 8, size)


def test_a_failed_whole_check_fails_every_later_read(fs, stored):
    """After an in-order read is refused, reading again (seek(0), read) on the same handle or
    reader raises again, never the planted bytes."""
    repo, _ = stored
    oid, real, fake = _planted(repo)
    f = fs.open("planted", block_size=100 << 10)
    with pytest.raises(IntegrityError, match="hash mismatch"):
        f.read()
    f.seek(0)
    with pytest.raises(IntegrityError, match="hash mismatch"):
        f.read()
    r = fs.reader("planted")
    with pytest.raises(IntegrityError):
        r.read(0, r.size)
    for s, e in [(0, r.size), (0, 10), (r.size - 10, r.size)]:
        with pytest.raises(IntegrityError, match="hash mismatch"):
            r.read(s, e)


def test_a_range_proves_the_file_once_per_process(fs, stored, monkeypatch):
    """A good chunked file: the first range read proves it whole (once), later readers of
    the same id read only the chunks their range covers; an in-order read is not delayed."""
    repo, _ = stored
    db = repo.cas.db
    blobs = [os.urandom(64 << 10) for _ in range(16)]
    ids = [db.put(codec.KIND_BLOB, b) for b in blobs]
    data = b"".join(blobs)
    h = hasher()
    h.update(data)
    oid = h.digest()
    db.put_manifest(oid, len(data), encode_manifest(len(data), [(i, len(b)) for i, b in zip(ids, blobs, strict=True)]))
    db.flush()
    calls: list[bytes] = []
    real_get = fs.db.get
    monkeypatch.setattr(fs.db, "get", lambda o: calls.append(o) or real_get(o))
    assert fs.cat_file(oid.hex(), 0, 1000) == data[:1000]
    assert len([c for c in calls if c != oid]) >= 16  # proven: every chunk read
    calls.clear()
    assert fs.cat_file(oid.hex(), start=-1000) == data[-1000:]
    with fs.open(oid.hex(), block_size=1000) as f:
        f.seek(5 << 16)
        assert f.read(10) == data[5 << 16 : (5 << 16) + 10]
    assert len([c for c in calls if c != oid]) <= 3

"""Sizes are checked before resources are spent: decompression bombs, lying headers, and
the byte budget around large decompressions."""

import os
import subprocess
import sys
import textwrap
import threading

import pytest
import zstandard

from zcas.cas import codec
from zcas.cas.errors import IntegrityError, UsageError
from zcas.cas.oid import hash_bytes
from zcas.cas.tree import MODE_FILE, TreeEntry, encode_tree

GIB = 1 << 30


def _zero_frame(n: int) -> bytes:
    """A zstd frame of ``n`` zero bytes (declaring its size): a few KB for a GiB."""
    cobj = zstandard.ZstdCompressor(level=1).compressobj(size=n)
    zeros = bytes(16 << 20)
    out = []
    for _ in range(n // len(zeros)):
        out.append(cobj.compress(zeros))
    out.append(cobj.flush())
    return b"".join(out)


# The child's own peak: VmHWM belongs to the process's memory map, made fresh by exec;
# ru_maxrss also keeps the peak of the (pytest) process it was forked from, on Linux.
PEAK = """
def peak_kb():
    import resource
    try:
        with open("/proc/self/status") as f:
            return next(int(l.split()[1]) for l in f if l.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
"""

BOMB_RUN = PEAK + textwrap.dedent("""
    import json, resource, sys
    from zcas.cas.repo import Repo
    from zcas.cas.checkout import checkout
    from zcas.cas.errors import IntegrityError
    r = Repo(sys.argv[1])
    try:
        checkout(r.db, bytes.fromhex(sys.argv[2]), sys.argv[3])
        err = None
    except IntegrityError as e:
        err = str(e)
    print(json.dumps({"err": err, "maxrss_kb": peak_kb()}))
""")


@pytest.mark.parametrize("index_size", ["claimed", "small"])
def test_attack_zstd_bombs_checked_out_at_once_stay_bounded(repo, tmp_path, index_size):
    """Six blobs whose headers claim 1 GiB (a few KB each on disk), checked out together by
    six writer threads: refused from the header (or the index entry) before anything is
    inflated, with an error naming the object, and the process stays small."""
    import json

    bomb = codec.HEADER.pack(codec.KIND_BLOB, codec.CODEC_ZSTD, GIB) + _zero_frame(GIB)
    assert len(bomb) < 200_000
    entries = []
    for i in range(6):
        oid = hash_bytes(b"bomb %d" % i)
        repo.db.put_record(oid, codec.KIND_BLOB, GIB if index_size == "claimed" else 1000, bomb)
        entries.append(TreeEntry(b"bomb%d" % i, MODE_FILE, oid))
    tree = repo.db.put(codec.KIND_TREE, encode_tree(entries))
    repo.db.flush()
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-c", BOMB_RUN, str(repo.root), tree.hex(), str(out)],
                       capture_output=True, text=True, check=True)
    res = json.loads(p.stdout)
    assert res["err"] is not None and any(e.oid.hex() in res["err"] for e in entries), res
    assert res["maxrss_kb"] < 200 * 1024, res  # not 6 GiB, not 1 GiB
    assert not any(n.startswith("bomb") for n in os.listdir(out))


def test_attack_header_size_differs_from_index(repo):
    """The record's declared size must equal its index entry's before decompressing."""
    data = b"honest payload " * 100
    rec = codec.encode(codec.KIND_BLOB, data)
    oid = hash_bytes(data)
    repo.db.put_record(oid, codec.KIND_BLOB, len(data) - 1, rec)
    with pytest.raises(IntegrityError, match="differs from the pack index"):
        repo.db.get(oid)


def test_attack_tree_claiming_more_than_the_tree_limit(repo):
    bomb = codec.HEADER.pack(codec.KIND_TREE, codec.CODEC_ZSTD, GIB) + _zero_frame(GIB)
    oid = hash_bytes(b"tree bomb")
    repo.db.put_record(oid, codec.KIND_TREE, GIB, bomb)
    with pytest.raises(IntegrityError) as ei:
        repo.db.get(oid)
    assert ei.value.oid == oid.hex() and "limit" in str(ei.value)


@pytest.mark.parametrize("kind,size", [(codec.KIND_BLOB, (4 << 20) + 1), (codec.KIND_TREE, (64 << 20) + 1)])
def test_writers_refuse_what_readers_would_refuse(kind, size):
    with pytest.raises(UsageError, match="exceeds the limit"):
        codec.encode(kind, memoryview(bytearray(size)))


def test_large_decompressions_share_one_byte_budget(monkeypatch):
    """Objects over the blob limit decompress inside a process-wide byte budget: eight
    threads decoding 10 MiB trees at once never hold more than the budget between them."""
    monkeypatch.setattr(codec, "budget", codec.Budget(24 << 20))
    payload = b"ZTREE\x01" + bytes(10 << 20)
    rec = codec.encode(codec.KIND_TREE, payload)
    inflight = [0, 0]
    lock = threading.Lock()
    real = codec._dctx

    class Watch:
        def decompress(self, body, max_output_size):
            with lock:
                inflight[0] += max_output_size
                inflight[1] = max(inflight[1], inflight[0])
            try:
                threading.Event().wait(0.02)
                return real().decompress(body, max_output_size=max_output_size)
            finally:
                with lock:
                    inflight[0] -= max_output_size

    monkeypatch.setattr(codec, "_dctx", lambda: Watch())
    threads = [threading.Thread(target=codec.decode, args=("t", rec)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert 0 < inflight[1] <= 24 << 20 and inflight[0] == 0
    assert codec.budget.free == 24 << 20


PULL_RUN = PEAK + textwrap.dedent("""
    import json, resource, sys
    from zcas.cas.db import ObjectDB
    from zcas.cas.local import LocalBackend
    from zcas.cas.objstore import ObstoreBackend
    from zcas.cas.pull import pull_packs
    from zcas.cas.transfer import remote_packs
    remote = ObstoreBackend("file://" + sys.argv[1])
    db = ObjectDB(LocalBackend(sys.argv[2]))
    res = pull_packs(remote, db, remote_packs(remote))
    print(json.dumps({"rejected": res.rejected, "objects": res.objects, "bytes": res.bytes,
                      "maxrss_kb": peak_kb()}))
""")


def _sparse_packs(root, kind: int, n: int, size: int, index_size: int) -> None:
    """The reviewer's remote: ``n`` packs, each one raw record of ``size`` zero bytes
    (sparse files: nothing on disk)."""
    from zcas.cas.pack import PACK_HEADER, idx_key, pack_key

    from .forge import raw_index

    for k in range(n):
        oid = hash_bytes(b"x%d-%d" % (kind, k))
        hdr = codec.HEADER.pack(kind, codec.CODEC_RAW, size)
        idx = raw_index([(oid, len(PACK_HEADER), len(hdr) + size, kind, index_size)])
        name = hash_bytes(idx).hex()
        p = os.path.join(root, pack_key(name))
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "wb") as f:
            f.write(PACK_HEADER + hdr)
            f.truncate(len(PACK_HEADER) + len(hdr) + size)
        with open(os.path.join(root, idx_key(name)), "wb") as f:
            f.write(idx)


def _pull_in_subprocess(remote, local) -> dict:
    import json

    p = subprocess.run([sys.executable, "-c", PULL_RUN, str(remote), str(local)], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_attack_pull_of_four_packs_of_one_gib_raw_records_stays_bounded(tmp_path):
    """The reviewer's remote: 4 packs, each one raw record claiming 1 GiB (6.4 GB peak
    before). A record object in a pack is at most 16 MiB (no zcas writes a larger run
    record), so each entry is refused from the index: nothing of it is fetched."""
    _sparse_packs(tmp_path / "remote", codec.KIND_RECORD, 4, GIB, GIB)
    res = _pull_in_subprocess(tmp_path / "remote", tmp_path / "local")
    assert res["objects"] == 0 and len(res["rejected"]) == 4, res
    assert all("over the record limit" in r for r in res["rejected"]), res
    assert res["maxrss_kb"] < 150 * 1024, res


def test_attack_pull_of_four_packs_of_largest_raw_manifests_carries_one_at_a_time(tmp_path):
    """4 packs each holding one raw manifest of the largest size an entry allows (256 MiB,
    spanning 32 pieces): the carried records draw on one budget, and raw records are
    verified in place, so peak memory is a few hundred MB, not 4 x 256 MiB and copies."""
    size = codec.MAX_SIZE[codec.KIND_CHUNKED]
    _sparse_packs(tmp_path / "remote", codec.KIND_CHUNKED, 4, size, 1 << 40)
    res = _pull_in_subprocess(tmp_path / "remote", tmp_path / "local")
    assert res["objects"] == 0 and len(res["rejected"]) == 4, res
    assert res["maxrss_kb"] < 500 * 1024, res


def test_record_objects_over_16_mib_are_not_written_to_a_pack(repo):
    with pytest.raises(UsageError, match="exceeds the limit of 16777216 bytes"):
        repo.db.put(codec.KIND_RECORD, bytes(codec.MAX_RECORD_OBJECT + 1))
    assert codec.MAX_SIZE[codec.KIND_RECORD] == 256 << 20  # lineage segments keep their envelope

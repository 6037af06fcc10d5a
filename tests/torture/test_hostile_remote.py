"""A hostile remote, generated: random corruptions of what a ``file://`` remote serves.

Each trial copies a sound remote, damages it one way at random (bytes of a pack, an index
re-signed with lying entries, a tree naming ``..`` or ``.zcas``, a manifest whose sizes lie,
a decompression bomb, lineage segments with broken or hostile records, a damaged tag),
then has a victim repository (with data of its own) pull, run, check out, log, fsck and gc
against it. Whatever the damage, every command ends in success or one error line (never a
traceback or an internal error), nothing is written outside the victim's folder, the
victim's own data stays intact, a run's output holds the right bytes, and a checkout never
leaves a file with wrong bytes. ``ZCAS_FUZZ_TRIALS`` sets the count (CI: the default).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import struct
import subprocess

from zcas.cas import codec
from zcas.cas.db import ObjectDB
from zcas.cas.local import LocalBackend
from zcas.cas.pack import ENTRY, IDX_MAGIC, decode_index
from zcas.cas.tree import MODE_FILE, MODE_LINK, MODE_TREE
from zcas.lineage.remote import _pack, _seg_key

from .harness import env, note, zcas_cmd

TRIALS = int(os.environ.get("ZCAS_FUZZ_TRIALS", "24"))
CMD = ["sh", "-c", "cat data/a.txt data/big.bin > out.txt"]


def z(*args, cwd):
    p = subprocess.run(zcas_cmd(*args), cwd=cwd, env=env(), capture_output=True, timeout=120)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


def _source(tmp):
    """A repository with small files, a chunked file, a folder tree, a run and a tag, pushed."""
    src = tmp / "src"
    (src / "data" / "sub").mkdir(parents=True)
    rng = random.Random(7)
    (src / "data" / "a.txt").write_text("alpha\n" * 50)
    (src / "data" / "sub" / "b.txt").write_text("beta\n")
    (src / "data" / "big.bin").write_bytes(rng.randbytes(3 << 20))
    url = f"file://{tmp / 'pristine'}"
    assert z("init", cwd=src)[0] == 0
    assert z("remote", "add", "origin", url, cwd=src)[0] == 0
    tree = z("add", "data", cwd=src)[1].split()[0].decode()
    assert z("tag", "v1", tree, cwd=src)[0] == 0
    assert z("run", "-i", "data", "-o", "out.txt", "--", *CMD, cwd=src)[0] == 0
    assert z("push", cwd=src)[0] == 0 and z("push", "v1", cwd=src)[0] == 0
    return src, tmp / "pristine"


def _files(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            if not os.path.islink(p):
                out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


# -- the corruptions ---------------------------------------------------------------------------


def _packs(remote):
    return sorted((remote / "packs").glob("pack-*.idx"))


def flip_pack_bytes(remote, rng):
    pack = rng.choice(_packs(remote)).with_suffix(".pack")
    data = bytearray(pack.read_bytes())
    for _ in range(rng.randint(1, 8)):
        data[rng.randrange(16, len(data))] ^= 1 << rng.randrange(8)
    pack.write_bytes(bytes(data))


def truncate_pack(remote, rng):
    pack = rng.choice(_packs(remote)).with_suffix(".pack")
    pack.write_bytes(pack.read_bytes()[: rng.randrange(16, pack.stat().st_size)])


def flip_index_bytes(remote, rng):
    idx = rng.choice(_packs(remote))
    data = bytearray(idx.read_bytes())
    data[rng.randrange(len(data))] ^= 0xFF
    idx.write_bytes(bytes(data))


def lying_index(remote, rng):
    """An index with a valid checksum whose entries lie about offset, length, kind or size."""
    from zcas.cas.oid import hash_bytes

    idx = rng.choice(_packs(remote))
    entries = [list(e) for e in decode_index(idx.name, idx.read_bytes())]
    e = rng.choice(entries)
    field = rng.choice([1, 2, 3, 4])
    top = 2**32 - 1 if field == 2 else 2**40  # the length is a u32; offset and size u64
    e[field] = rng.choice([0, 1, 2**31, top, e[field] + 1, max(0, e[field] - 1)])
    if field == 3:
        e[3] = rng.choice([1, 2, 3, 4, 9])
    body = IDX_MAGIC + struct.pack("<I", len(entries)) + b"".join(ENTRY.pack(*x) for x in entries)
    idx.write_bytes(body + hash_bytes(body))


def _hostile_object(remote, kind, payload, oid=None, size=None, tag=None):
    db = ObjectDB(LocalBackend(str(remote)))
    if oid is None:
        oid = db.put(kind, payload)
    else:
        db.put_record(oid, kind, len(payload) if size is None else size, codec.encode(kind, payload))
    db.flush()
    if tag:
        (remote / "refs" / "tags").mkdir(parents=True, exist_ok=True)
        (remote / "refs" / "tags" / tag).write_text(oid.hex())
    return oid


def hostile_tree(remote, rng):
    """A tree (stored under its true id, tagged v1) naming '..', '.zcas', or an escaping link."""
    from zcas.cas.tree import MAGIC

    blob = _hostile_object(remote, codec.KIND_BLOB, b"owned\n")
    name, mode, target = rng.choice([
        (b"..", MODE_FILE, blob), (b".zcas", MODE_TREE, None), (b".ZCAS", MODE_TREE, None), (b"a/b", MODE_FILE, blob),
        (b"link", MODE_LINK, _hostile_object(remote, codec.KIND_BLOB, b"/etc")),
        (b"link", MODE_LINK, _hostile_object(remote, codec.KIND_BLOB, b"../../..")),
    ])
    if target is None:
        inner = MAGIC + struct.pack("<I", 1) + struct.pack("<B32sH", MODE_FILE, blob, 6) + b"config"
        target = _hostile_object(remote, codec.KIND_TREE, inner)
    payload = MAGIC + struct.pack("<I", 1) + struct.pack("<B32sH", mode, target, len(name)) + name
    oid = _hostile_object(remote, codec.KIND_TREE, payload)
    (remote / "refs" / "tags" / "v1").write_text(oid.hex())


def lying_manifest(remote, rng):
    """A file id whose manifest's sizes lie (or whose chunks assemble to other bytes),
    reached from a tree tagged v1."""
    from zcas.cas.chunking import encode_manifest
    from zcas.cas.tree import MAGIC

    chunk = rng.randbytes(4096)
    cid = _hostile_object(remote, codec.KIND_BLOB, chunk)
    fake_id = os.urandom(32)
    total, items, size = rng.choice([
        (4096, [(cid, 4096)], 4096),  # right sizes, wrong content for the id
        (1 << 40, [(cid, 4096)], 1 << 40),  # a terabyte claimed
        (8192, [(cid, 4096)], 8192),  # chunk list shorter than the total
        (4096, [(cid, 4096)], 1 << 30),  # the index claims another size
    ])
    payload = struct.pack("<Q", total) + b"".join(struct.pack("<32sI", o, n) for o, n in items)
    _hostile_object(remote, codec.KIND_CHUNKED, payload, oid=fake_id, size=size)
    tree = MAGIC + struct.pack("<I", 1) + struct.pack("<B32sH", MODE_FILE, fake_id, 8) + b"file.bin"
    oid = _hostile_object(remote, codec.KIND_TREE, tree)
    (remote / "refs" / "tags" / "v1").write_text(oid.hex())
    assert encode_manifest  # the real encoder exists; the payload above is built by hand to lie


def zstd_bomb(remote, rng):
    """Blobs whose header claims up to 1 GiB of zeros, reached from a tree tagged v1."""
    import zstandard

    from zcas.cas.tree import MAGIC

    n = rng.choice([64 << 20, 1 << 30])
    obj = zstandard.ZstdCompressor(level=3).compressobj(size=n)  # streamed: the test itself stays small
    frame = b"".join(obj.compress(b"\0" * (1 << 24)) for _ in range(n >> 24)) + obj.flush()
    entries = []
    for i in range(4):
        oid = os.urandom(32)
        db = ObjectDB(LocalBackend(str(remote)))
        db.put_record(oid, codec.KIND_BLOB, n, codec.HEADER.pack(codec.KIND_BLOB, codec.CODEC_ZSTD, n) + frame)
        db.flush()
        entries.append(struct.pack("<B32sH", MODE_FILE, oid, 2) + f"b{i}".encode())
    oid = _hostile_object(remote, codec.KIND_TREE, MAGIC + struct.pack("<I", 4) + b"".join(entries))
    (remote / "refs" / "tags" / "v1").write_text(oid.hex())


def _segment(remote, records: list[bytes]):
    payload = _pack(records)
    key = _seg_key(payload)
    (remote / key).write_bytes(codec.encode(codec.KIND_RECORD, payload))


def hostile_records(remote, rng):
    """Lineage segments with malformed records and records that try to escape."""
    seg = next((remote / "lineage").glob("t-*"))
    _, payload = codec.decode("seg", seg.read_bytes())
    from zcas.lineage.remote import _unpack

    recs = [json.loads(r) for r in _unpack(payload)]
    run = next(r for r in recs if r.get("kind") == "command")
    oid = next(iter(run["outputs"].values()))
    bad = [
        b"not json", b'{"type":"run"}', b'{"type":"run","schema":99}', b"[" * 100000,
        json.dumps(dict(run, outputs={"../evil.txt": oid, "out.txt": oid}, started_ns=run["started_ns"] + 1)).encode(),
        json.dumps(dict(run, outputs={"out.txt": "zz" * 32}, started_ns=run["started_ns"] + 2)).encode(),
        json.dumps(dict(run, outputs={"out.txt": oid}, step="x\x1b[2J", started_ns="soon")).encode(),
        json.dumps(dict(run, cache_key="00" * 32)).encode(),
    ]
    _segment(remote, rng.sample(bad, rng.randint(1, 4)))
    if rng.random() < 0.5:  # and a segment whose framing lies
        raw = struct.pack("<Q", 1 << 62) + b"{}"
        (remote / _seg_key(raw)).write_bytes(codec.encode(codec.KIND_RECORD, raw))


def flip_segment_bytes(remote, rng):
    seg = next((remote / "lineage").glob("t-*"))
    data = bytearray(seg.read_bytes())
    data[rng.randrange(len(data))] ^= 0x55
    seg.write_bytes(bytes(data))


def damaged_tag(remote, rng):
    (remote / "refs" / "tags" / "v1").write_bytes(rng.choice([b"", b"\xff" * 70, b"zz" * 32, b"../../etc/passwd"]))


CORRUPTIONS = [flip_pack_bytes, truncate_pack, flip_index_bytes, lying_index, hostile_tree, lying_manifest,
               zstd_bomb, hostile_records, flip_segment_bytes, damaged_tag]


# -- the trial ---------------------------------------------------------------------------------


def _check(res, what, trial):
    """Success, or a refusal in one line (on stderr, or a run's ``failed: STEP (why)``)."""
    code, out, err = res
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("zcas: warning:")]
    assert "Traceback" not in err and "internal error" not in err, (trial, what, err)
    assert len(lines) <= 1, (trial, what, err)
    if code != 0:  # fsck's exit 1 is its report (on stdout); anything else says why in one line
        assert lines or b"failed: " in out or what == "fsck", (trial, what, "a failure must say why")
    return code


def test_hostile_remote_fuzz(tmp_path):
    src, pristine = _source(tmp_path)
    want = _files(src / "data")
    want_out = (src / "out.txt").read_bytes()
    seen: dict[str, int] = {}
    for trial in range(TRIALS):
        outside_before = sorted(os.listdir(tmp_path))
        rng = random.Random(trial)
        corrupt = CORRUPTIONS[trial % len(CORRUPTIONS)]
        remote = tmp_path / f"remote{trial}"
        shutil.copytree(pristine, remote)
        corrupt(remote, rng)
        v = tmp_path / f"victim{trial}"
        (v / "data").mkdir(parents=True)
        (v / "mine.txt").write_text(f"my own data {trial}\n")
        for rel, data in want.items():  # the victim holds the same files: a pulled copy must not shadow them
            os.makedirs(os.path.dirname(v / "data" / rel), exist_ok=True)
            (v / "data" / rel).write_bytes(data)
        assert z("init", cwd=v)[0] == 0
        mine = z("add", "mine.txt", "data", cwd=v)[1].split()
        mine_ids = {mine[1].decode(): mine[0].decode(), mine[3].decode(): mine[2].decode()}
        assert z("remote", "add", "origin", f"file://{remote}", cwd=v)[0] == 0
        _check(z("pull", cwd=v), "pull", trial)
        _check(z("pull", "v1", cwd=v), "pull v1", trial)
        code = _check(z("run", "-i", "data", "-o", "out.txt", "--", *CMD, cwd=v), "run", trial)
        if code == 0:
            assert (v / "out.txt").read_bytes() == want_out, (trial, corrupt.__name__)
        if _check(z("checkout", "v1", "co", cwd=v), "checkout", trial) == 0:
            got = _files(v / "co")
            assert got == want, (trial, corrupt.__name__, sorted(got))
        elif (v / "co").exists():
            for rel, data in _files(v / "co").items():  # a refused checkout leaves no wrong file
                assert want.get(rel) == data or rel.endswith(".tmp"), (trial, corrupt.__name__, rel)
        for args in (("log",), ("log", "out.txt"), ("fsck",), ("gc", "--grace", "0")):
            _check(z(*args, cwd=v), " ".join(args), trial)
        for path, oid in mine_ids.items():  # the victim's own data survives everything
            code, out, err = z("cat", oid, cwd=v) if path == "mine.txt" else z("checkout", oid, "mine-co", cwd=v)
            assert code == 0, (trial, corrupt.__name__, path, err)
            if path == "mine.txt":
                assert out == f"my own data {trial}\n".encode()
            else:
                assert _files(v / "mine-co") == want
                shutil.rmtree(v / "mine-co")
        assert sorted(os.listdir(tmp_path)) == sorted(outside_before + [remote.name, v.name]), trial
        assert not os.path.exists("/tmp/zcas-evil") and not (tmp_path / "evil.txt").exists()
        seen[corrupt.__name__] = seen.get(corrupt.__name__, 0) + 1
        shutil.rmtree(remote)
        shutil.rmtree(v)
    note("hostile remote", trials=TRIALS, kinds=len(seen))

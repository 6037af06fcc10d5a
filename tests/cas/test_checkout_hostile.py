"""Checkout of hostile trees: .zcas entries, subtree reuse, deep chains, lying manifests,
and a checkout killed at any moment."""

import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
import tracemalloc

import pytest

from zcas.cas import checkout as co
from zcas.cas import codec
from zcas.cas.checkout import checkout
from zcas.cas.chunking import encode_manifest
from zcas.cas.errors import IntegrityError, StoreError, UnsafePathError, ZcasError
from zcas.cas.oid import hash_bytes
from zcas.cas.tree import MODE_FILE, MODE_TREE, TreeEntry, encode_tree
from zcas.cas.view import list_tree


def _raw_tree(repo, entries):
    out = [b"ZTREE\x01", struct.pack("<I", len(entries))]
    for mode, name, oid in sorted(entries, key=lambda t: t[1]):
        out.append(struct.pack("<B32sH", mode, oid, len(name)) + name)
    return repo.db.put(codec.KIND_TREE, b"".join(out))


@pytest.mark.parametrize("name", [b".zcas", b".ZCAS", b".Zcas", ".zc\u200bas".encode(), ".ｚｃａｓ".encode()])
@pytest.mark.parametrize("depth", [0, 3])
def test_attack_tree_with_zcas_entry_refused(repo, tmp_path, name, depth):
    """A tree must never plant config, objects or refs in the repository it lands in."""
    cfg = repo.db.put(codec.KIND_BLOB, b"[store]\nurl = \"s3://attacker/x\"\n")
    inner = _raw_tree(repo, [(MODE_FILE, b"config.toml", cfg)])
    node = _raw_tree(repo, [(MODE_TREE, name, inner), (MODE_FILE, b"a.txt", cfg)])
    for i in range(depth):
        node = _raw_tree(repo, [(MODE_TREE, b"d%d" % i, node)])
    dest = tmp_path / "dest"
    with pytest.raises(UnsafePathError, match="zcas"):
        checkout(repo.db, node, str(dest))
    assert not dest.exists()


def _dag(repo, levels, leaf=b"leaf"):
    """A tree of ``levels`` levels, each two entries naming the same subtree: 2**levels
    files from ``levels + 1`` trees of a few dozen bytes each."""
    node = repo.db.put(codec.KIND_BLOB, leaf)
    mode = MODE_FILE
    trees = []
    for _ in range(levels):
        node = repo.db.put(codec.KIND_TREE, encode_tree([TreeEntry(b"a", mode, node), TreeEntry(b"b", mode, node)]))
        trees.append(node)
        mode = MODE_TREE
    return node, trees


def test_attack_reused_subtree_dag_lists_lazily(repo):
    top, trees = _dag(repo, 19)  # 2**19 paths
    repo.db.flush()
    stored = sum(repo.db.entry(t).length for t in trees)
    assert stored < 2000
    calls = []
    real = co.decode_tree
    co.decode_tree = lambda h, p: calls.append(h) or real(h, p)
    try:
        tracemalloc.start()
        t = time.perf_counter()
        rows = list_tree(repo.db, top, recursive=True)
        first = [next(rows) for _ in range(5000)]
        took = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        co.decode_tree = real
    assert took < 2.0 and peak < 20 << 20
    assert len(calls) == len(set(calls)) == 19  # each distinct tree decoded once
    assert first[0] == ("tree", trees[-2], 0, "a/") and first[18][3] == "a/" * 18 + "a"
    assert first[18][:3] == ("file", hash_bytes(b"leaf"), 4)


def test_attack_reused_subtree_dag_checkout_validates_each_tree_once(repo, tmp_path, monkeypatch):
    top, trees = _dag(repo, 12)
    calls = []
    real = co.decode_tree
    monkeypatch.setattr(co, "decode_tree", lambda h, p: calls.append(h) or real(h, p))
    dest = tmp_path / "out"
    assert checkout(repo.db, top, str(dest)) == 4096
    assert sorted(calls) == sorted(trees)
    assert (dest / ("a/" * 11 + "b")).read_bytes() == b"leaf"
    assert sum(len(fs) for _, _, fs in os.walk(dest)) == 4096


def test_attack_dag_expanding_past_the_limit_is_refused_before_planning(repo, tmp_path):
    top, _ = _dag(repo, 40)  # 2**40 files and 2**40 - 2 folders from 41 tiny trees
    dest = tmp_path / "out"
    t = time.perf_counter()
    with pytest.raises(ZcasError, match="expands to 2199023255550 paths"):
        checkout(repo.db, top, str(dest))
    assert time.perf_counter() - t < 1.0 and not dest.exists()


def _wide(repo, outer, inner, data=b""):
    """A tree of ``outer`` folders sharing one folder of ``inner`` files holding ``data``."""
    f = repo.db.put(codec.KIND_BLOB, data)
    sub = repo.db.put(codec.KIND_TREE, encode_tree([TreeEntry(b"f%05d" % i, MODE_FILE, f) for i in range(inner)]))
    return repo.db.put(codec.KIND_TREE, encode_tree([TreeEntry(b"d%05d" % i, MODE_TREE, sub) for i in range(outer)]))


def test_attack_wide_tree_of_empty_files_refused_before_planning(repo, tmp_path, monkeypatch):
    """The reviewer's 5.8 KB tree: 4095 folders x 4096 empty files, 16.7M paths. Refused
    from the per-tree counts, in one line, before plan() builds a single item."""
    top = _wide(repo, 4095, 4096)
    monkeypatch.setattr(co, "plan", lambda *a, **k: pytest.fail("planned"))
    dest = tmp_path / "out"
    t = time.perf_counter()
    with pytest.raises(ZcasError, match=f"tree {top.hex()} expands to 16777215 paths, more than one checkout "
                       f"writes \\({co.MAX_ENTRIES}\\)") as ei:
        checkout(repo.db, top, str(dest))
    assert time.perf_counter() - t < 2.0 and not dest.exists() and "\n" not in str(ei.value)
    assert co.MAX_ENTRIES == 1 << 22


class _Vfs:
    def __init__(self, real, blocks, inodes):
        self.f_frsize = 4096
        self.f_bavail = blocks
        self.f_files = 1 << 20
        self.f_favail = inodes


def _small_disk(monkeypatch, blocks, inodes):
    real = os.statvfs
    monkeypatch.setattr(co.os, "statvfs", lambda p: _Vfs(real(p), blocks, inodes))


def test_attack_tree_of_empty_files_needs_more_inodes_than_free(repo, tmp_path, monkeypatch):
    """Empty files take no bytes but an inode each: 64 folders x 1000 empty files on a
    disk with 10,000 inodes free is refused before planning, naming what is free."""
    top = _wide(repo, 64, 1000)
    _small_disk(monkeypatch, blocks=1 << 30, inodes=10_000)
    monkeypatch.setattr(co, "plan", lambda *a, **k: pytest.fail("planned"))
    dest = tmp_path / "out"
    with pytest.raises(StoreError,
                       match="expands to 64064 paths \\(64 folders\\).* 10000 inodes free; nothing was written") as ei:
        checkout(repo.db, top, str(dest))
    assert not dest.exists() and "\n" not in str(ei.value)


def test_attack_tree_of_one_byte_files_counts_whole_blocks(repo, tmp_path, monkeypatch):
    """1-byte files take a 4 KiB block each: 16 folders x 1000 of them need 65 MB on disk
    (not 16 KB); a disk with 40 MB free refuses before planning. Counted per tree."""
    top = _wide(repo, 16, 1000, b"x")
    _small_disk(monkeypatch, blocks=10_000, inodes=1 << 30)
    monkeypatch.setattr(co, "plan", lambda *a, **k: pytest.fail("planned"))
    dest = tmp_path / "out"
    need = 16 * (1000 * 4096 + 4096)
    with pytest.raises(StoreError, match=f"{need} bytes on disk, but .* has {10_000 * 4096} bytes") as ei:
        checkout(repo.db, top, str(dest))
    assert not dest.exists() and "\n" not in str(ei.value)


def test_tree_that_fits_is_checked_out_with_the_space_check(repo, tmp_path, monkeypatch):
    top = _wide(repo, 3, 5, b"x")
    _small_disk(monkeypatch, blocks=100, inodes=100)
    assert checkout(repo.db, top, str(tmp_path / "out")) == 15
    # again over itself on a disk now "full": nothing to write, so nothing is refused
    _small_disk(monkeypatch, blocks=0, inodes=0)
    assert checkout(repo.db, top, str(tmp_path / "out")) == 0


@pytest.fixture
def deep_tmp(tmp_path):
    """tmp_path, emptied without recursion afterwards (pytest's own cleanup recurses)."""
    yield tmp_path
    for name in os.listdir(tmp_path):
        p = os.path.join(tmp_path, name)
        if os.path.isdir(p) and not os.path.islink(p):
            co._rmtree(p)


def test_deep_folder_chain_add_checkout_ls_du(repo, deep_tmp, zcas):
    """1,500 nested folders: no walk in cas recurses (add, checkout, ls -r, du, gc, fsck)."""
    tmp_path = deep_tmp
    from zcas.cas.fsck import fsck
    from zcas.cas.gc import gc
    from zcas.cas.reach import logical_size
    from zcas.cas.usage import usage

    src = tmp_path / "src"
    deep = str(src)
    for _ in range(1501):  # os.makedirs itself recurses
        os.mkdir(deep)
        deep = os.path.join(deep, "d")
    deep = os.path.dirname(deep)
    with open(os.path.join(deep, "bottom.txt"), "w") as f:
        f.write("at the bottom\n")
    [(oid, _, kind)] = repo.add([str(src)])
    assert kind == "tree"
    rows = list(list_tree(repo.db, oid, recursive=True))
    assert len(rows) == 1501 and rows[-1][3] == "d/" * 1500 + "bottom.txt"
    assert logical_size(repo.db, oid, {}) == 14
    assert usage(repo.db, [oid]).logical_bytes == 14
    out = tmp_path / "out"
    assert checkout(repo.db, oid, str(out)) == 1
    with open(os.path.join(str(out), *["d"] * 1500, "bottom.txt")) as f:
        assert f.read() == "at the bottom\n"
    # replacing the whole chain with --force removes it without recursion too
    flat = tmp_path / "flat"
    (flat / "d").mkdir(parents=True)
    (flat / "d" / "x").write_text("x")
    os.rename(flat / "d", flat / "d2")
    os.makedirs(flat / "d")
    (flat / "d" / "x").write_text("x")
    [(foid, _, _)] = repo.add([str(flat)])
    checkout(repo.db, foid, str(out), force=True)
    assert (out / "d" / "x").read_text() == "x"
    assert fsck(repo.db, [oid, foid]).ok
    gc(repo.db, [oid, foid], grace=0)
    r = zcas("ls", "-r", oid.hex(), cwd=repo.root)
    assert r.code == 0 and r.out.count("\n") == 1501, r
    r = zcas("du", "--json", cwd=repo.root)
    assert r.code == 0, r


def test_attack_manifest_total_differs_from_index_before_anything_is_written(repo, tmp_path):
    """A manifest's claimed total must match its index entry before a file is truncated
    to either size, written or assembled."""
    chunk = repo.db.put(codec.KIND_BLOB, b"c" * 1000)
    man = encode_manifest(1000, [(chunk, 1000)])
    fid = hash_bytes(b"not really")
    repo.db.put_record(fid, codec.KIND_CHUNKED, 5 << 20, codec.encode(codec.KIND_CHUNKED, man))
    tree = repo.db.put(codec.KIND_TREE, encode_tree([TreeEntry(b"big", MODE_FILE, fid)]))
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="differs from the pack index size"):
        checkout(repo.db, tree, str(out))
    assert os.listdir(out) == []
    with pytest.raises(IntegrityError):
        from zcas.cas.view import iter_file_bytes

        list(iter_file_bytes(repo.db, fid))


KILLER = textwrap.dedent("""
    import sys
    from zcas.cas.repo import Repo
    from zcas.cas.checkout import checkout
    r = Repo(sys.argv[1])
    checkout(r.db, bytes.fromhex(sys.argv[2]), sys.argv[3], force=True)
""")


def test_attack_kill_checkout_never_leaves_wrong_bytes(repo, tmp_path):
    """kill -9 a tree checkout at random moments: every target path that exists holds
    exactly the stored bytes, and the next checkout completes and clears the temp files."""
    rnd = random.Random(7)
    src = tmp_path / "src"
    src.mkdir()
    want = {}
    for i in range(60):
        data = rnd.randbytes(rnd.choice([0, 10, 5000, 200_000]))
        want[f"f{i:02}"] = data
    for i in range(4):
        want[f"big{i}"] = rnd.randbytes(3 << 20)
    for name, data in want.items():
        (src / name).write_bytes(data)
    [(oid, _, _)] = repo.add([str(src)])
    repo.db.flush()
    out = tmp_path / "out"
    cmd = [sys.executable, "-c", KILLER, str(repo.root), oid.hex(), str(out)]
    t = time.perf_counter()
    subprocess.run(cmd, check=True)
    span = time.perf_counter() - t
    import shutil

    for trial in range(8):
        shutil.rmtree(out)
        if trial % 2:  # also over stale, wrong content: those are replaced atomically
            out.mkdir()
            for name in want:
                (out / name).write_bytes(b"stale")
        p = subprocess.Popen(cmd)
        time.sleep(rnd.uniform(0.05, span))
        p.send_signal(signal.SIGKILL)
        p.wait()
        if out.exists():
            for name in os.listdir(out):
                if name in want:
                    got = (out / name).read_bytes()
                    assert got == want[name] or got == b"stale", name
                else:
                    assert name.startswith(".") and name.endswith(".tmp"), name
        for name in os.listdir(out) if out.exists() else ():  # leftovers are swept once an hour old
            if name.endswith(".tmp"):
                os.utime(out / name, (time.time() - 7200, time.time() - 7200))
        subprocess.run(cmd, check=True)
        assert sorted(os.listdir(out)) == sorted(want)  # leftovers of the killed run are gone
        for name, data in want.items():
            assert (out / name).read_bytes() == data


def _sweep_scene(repo, tmp_path):
    """(id of a stored file "f", an empty folder to check it out into, a pid now dead)."""
    f = tmp_path / "f"
    f.write_text("content")
    [(oid, _, _)] = repo.add([str(f)])
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    return oid, out, dead.pid


def test_leftover_temp_of_a_live_process_is_left_alone(repo, tmp_path):
    oid, out, dead_pid = _sweep_scene(repo, tmp_path)
    old = time.time() - 7200
    for name, text in ((f".f.zcas-{dead_pid}.tmp", "half written"), (f".f.zcas-{os.getppid()}.tmp", "someone at work"),
                       (".other.zcas-1.tmp", "not ours: no such entry")):
        (out / name).write_text(text)
        os.utime(out / name, (old, old))
    checkout(repo.db, oid, str(out / "f"))
    assert sorted(os.listdir(out)) == sorted(["f", f".f.zcas-{os.getppid()}.tmp", ".other.zcas-1.tmp"])


def test_attack_sweep_spares_young_temp_names_of_other_hosts_and_non_files(repo, tmp_path):
    """In a folder shared across hosts or containers, a temp name's pid means nothing here:
    a live writer elsewhere (pid not running here) keeps its young temp file, and a folder
    or a link matching the pattern is never removed, however old. Only an old regular file
    of a dead pid is swept."""
    oid, out, pid = _sweep_scene(repo, tmp_path)
    old = time.time() - 7200
    (out / f".f.zcas-{pid}.tmp").write_text("a writer on another host, at work right now")
    d = out / f".f.zcas-{pid + 1000000}.tmp"
    d.mkdir()
    (d / "inside").write_text("a user's folder")
    link = out / f".f.zcas-{pid + 1000001}.tmp"
    link.symlink_to(tmp_path / "f")
    stale = out / f".f.zcas-{pid + 1000002}.tmp"
    stale.write_text("left by a killed checkout long ago")
    for p in (d, stale):
        os.utime(p, (old, old))
    os.utime(link, (old, old), follow_symlinks=False)
    checkout(repo.db, oid, str(out / "f"))
    assert sorted(os.listdir(out)) == sorted(["f", f".f.zcas-{pid}.tmp", d.name, link.name])
    assert (d / "inside").read_text() == "a user's folder" and (tmp_path / "f").read_text() == "content"


def test_attack_symlink_whose_target_is_a_large_file(repo, tmp_path):
    """A link entry naming a chunked file would make checkout assemble it in memory as a
    path: refused from the index entry before any of it is read."""
    from zcas.cas.chunking import store_buffer
    from zcas.cas.tree import MODE_LINK

    big = store_buffer(repo.db, os.urandom(2 << 20))
    tree = _raw_tree(repo, [(MODE_LINK, b"l", big)])
    with pytest.raises(UnsafePathError, match="not a path"):
        checkout(repo.db, tree, str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_attack_dedup_bomb_refused_before_filling_the_disk(repo, tmp_path):
    """A manifest naming one chunk over and over stands for a file far larger than its
    bytes: checkout compares what it would write with the free space before writing."""
    size = codec.MAX_SIZE[codec.KIND_BLOB]
    chunk = repo.db.put(codec.KIND_BLOB, bytes(size))
    free = os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize
    # twice the free space: on a shared disk others free space meanwhile, and a file that
    # fitted would be written for real
    n = 2 * free // size + 10
    man = encode_manifest(n * size, [(chunk, size)] * n)
    fid = hash_bytes(b"a file of zeros larger than this disk")
    repo.db.put_record(fid, codec.KIND_CHUNKED, n * size, codec.encode(codec.KIND_CHUNKED, man))
    tree = repo.db.put(codec.KIND_TREE, encode_tree([TreeEntry(b"zeros", MODE_FILE, fid)]))
    from zcas.cas.errors import StoreError

    for target, dest in ((tree, tmp_path / "out"), (fid, tmp_path / "one")):
        with pytest.raises(StoreError, match="free; nothing was written") as ei:
            checkout(repo.db, target, str(dest))
        assert "\n" not in str(ei.value)
    assert not (tmp_path / "one").exists() and not (tmp_path / "out").exists()  # refused before planning

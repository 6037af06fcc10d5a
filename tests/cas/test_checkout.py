"""Checkout restores trees byte for byte and never writes outside the destination, even
for hand-crafted hostile trees."""

import os
import struct

import pytest

from zcas.cas import codec
from zcas.cas.checkout import checkout
from zcas.cas.errors import ConflictError, UnsafePathError, ZcasError
from zcas.cas.tree import MODE_FILE, MODE_LINK, MODE_TREE, TreeEntry, encode_tree


def make_tree(root):
    (root / "sub" / "deep").mkdir(parents=True)
    (root / "empty").mkdir()
    (root / "a.txt").write_text("alpha\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(root / "run.sh", 0o755)
    (root / "sub" / "deep" / "b.bin").write_bytes(os.urandom(2 << 20))
    (root / "sub" / "same.txt").write_text("alpha\n")
    os.symlink("a.txt", root / "link")
    os.symlink("../a.txt", root / "sub" / "up")


def snapshot(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for d in dirs:
            out[os.path.join(rel, d)] = ("dir",)
        for f in files:
            p = os.path.join(dirpath, f)
            if os.path.islink(p):
                out[os.path.join(rel, f)] = ("link", os.readlink(p))
            else:
                out[os.path.join(rel, f)] = ("file", open(p, "rb").read(), os.stat(p).st_mode & 0o100)
    return out


def test_roundtrip(repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    [(oid, _, kind)] = repo.add([str(src)])
    assert kind == "tree"
    dest = tmp_path / "dest"
    checkout(repo.db, oid, str(dest))
    assert snapshot(dest) == snapshot(src)
    # identical files are left alone, so a second checkout writes nothing
    assert checkout(repo.db, oid, str(dest)) == 0


def test_conflict_and_force(repo, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_tree(src)
    [(oid, _, _)] = repo.add([str(src)])
    dest = tmp_path / "dest"
    checkout(repo.db, oid, str(dest))
    (dest / "a.txt").write_text("changed by the user\n")
    with pytest.raises(ConflictError):
        checkout(repo.db, oid, str(dest))
    assert (dest / "a.txt").read_text() == "changed by the user\n"
    checkout(repo.db, oid, str(dest), force=True)
    assert snapshot(dest) == snapshot(src)


def test_existing_symlinked_folder_in_dest_is_not_followed(repo, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_text("x")
    [(oid, _, _)] = repo.add([str(src)])
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "sub")
    with pytest.raises(ConflictError):
        checkout(repo.db, oid, str(dest))
    assert list(outside.iterdir()) == []
    checkout(repo.db, oid, str(dest), force=True)
    assert list(outside.iterdir()) == []
    assert (dest / "sub" / "f").read_text() == "x" and not os.path.islink(dest / "sub")


def _put_raw_tree(repo, entries):
    """A tree written byte by byte, bypassing every check encode_tree makes."""
    out = [b"ZTREE\x01", struct.pack("<I", len(entries))]
    for mode, name, oid in entries:
        out.append(struct.pack("<B32sH", mode, oid, len(name)) + name)
    return repo.db.put(codec.KIND_TREE, b"".join(out))


@pytest.mark.parametrize("name", [b"..", b"../evil", b"/tmp/evil", b".", b"", b"a\0b", b"x/../../evil"])
def test_hostile_names_write_nothing(repo, tmp_path, name):
    blob = repo.db.put(codec.KIND_BLOB, b"pwned")
    tree = _put_raw_tree(repo, [(MODE_FILE, name, blob)])
    parent = _put_raw_tree(repo, [(MODE_TREE, b"inner", tree)])
    dest = tmp_path / "box" / "dest"
    with pytest.raises(UnsafePathError):
        checkout(repo.db, parent, str(dest))
    assert not dest.exists()
    assert not (tmp_path / "box" / "evil").exists() and not (tmp_path / "evil").exists()


@pytest.mark.parametrize("target", [b"/etc/passwd", b"../../outside", b"../x"])
def test_symlink_escaping_refused(repo, tmp_path, target):
    t = repo.db.put(codec.KIND_BLOB, target)
    tree = _put_raw_tree(repo, [(MODE_LINK, b"l", t)])
    dest = tmp_path / "dest"
    with pytest.raises(UnsafePathError):
        checkout(repo.db, tree, str(dest))
    assert not dest.exists()


def test_symlink_chain_escape_caught(repo, tmp_path):
    # d/l -> ".." is fine on its own; m -> "d/l/.." resolves outside through it.
    up = repo.db.put(codec.KIND_BLOB, b"..")
    chain = repo.db.put(codec.KIND_BLOB, b"d/l/..")
    d = _put_raw_tree(repo, [(MODE_LINK, b"l", up)])
    top = _put_raw_tree(repo, [(MODE_TREE, b"d", d), (MODE_LINK, b"m", chain)])
    dest = tmp_path / "dest"
    with pytest.raises(UnsafePathError):
        checkout(repo.db, top, str(dest))
    assert not os.path.lexists(dest / "m")


def test_duplicate_names_refused(repo, tmp_path):
    blob = repo.db.put(codec.KIND_BLOB, b"x")
    tree = _put_raw_tree(repo, [(MODE_FILE, b"a", blob), (MODE_FILE, b"a", blob)])
    with pytest.raises(UnsafePathError):
        checkout(repo.db, tree, str(tmp_path / "d"))


def test_single_file_checkout(repo, tmp_path):
    p = tmp_path / "f.txt"
    p.write_text("content")
    [(oid, _, kind)] = repo.add([str(p)])
    assert kind == "file"
    out = tmp_path / "o" / "f.txt"
    checkout(repo.db, oid, str(out))
    assert out.read_text() == "content"
    out.write_text("other")
    with pytest.raises(ConflictError):
        checkout(repo.db, oid, str(out))
    checkout(repo.db, oid, str(out), force=True)
    assert out.read_text() == "content"
    with pytest.raises(ZcasError, match="is a folder"):
        checkout(repo.db, oid, str(tmp_path))


def test_encode_tree_refuses_bad_names():
    with pytest.raises(UnsafePathError):
        encode_tree([TreeEntry(b"..", MODE_FILE, b"\0" * 32)])

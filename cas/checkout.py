"""Checkout: restore a stored file or tree, byte for byte, without leaving the folder.

The whole tree is read and validated before anything is written, so a hostile tree is
refused with nothing on disk. Existing files that differ are a conflict unless ``force``;
identical ones are left alone. Nothing is written through a symlink: folders are created
only where no link stands, files are opened with O_NOFOLLOW, and every link made is checked
at the end to resolve inside the checkout.
"""

from __future__ import annotations

import os
import posixpath
import stat as st_
from typing import NamedTuple

from . import codec
from .chunking import write_chunked
from .errors import ConflictError, IntegrityError, UnsafePathError, ZcasError
from .oid import hasher
from .tree import MODE_EXEC, MODE_FILE, MODE_LINK, MODE_TREE, check_link_target, decode_tree

_BATCH = 32
_WRITERS = 6


class Item(NamedTuple):
    rel: str  # path below the checkout root, "/"-separated ("" is the root itself)
    mode: int
    oid: bytes


def read_tree(db, oid: bytes) -> list:
    kind, payload = db.get(oid)
    if kind != codec.KIND_TREE:
        raise IntegrityError(oid.hex(), "expected a tree")
    return decode_tree(oid.hex(), payload)


def plan(db, oid: bytes, rel: str = "") -> list[Item]:
    """Every entry under a tree, parents before children, links validated."""
    out: list[Item] = []
    for e in read_tree(db, oid):
        name = os.fsdecode(e.name)
        path = posixpath.join(rel, name) if rel else name
        if e.mode == MODE_LINK:
            check_link_target(rel, name, db.get_bytes(e.oid))
        out.append(Item(path, e.mode, e.oid))
        if e.mode == MODE_TREE:
            out.extend(plan(db, e.oid, path))
    return out


def _file_matches(db, path: str, lst: os.stat_result, oid: bytes, exec_bit: bool | None) -> bool:
    """Whether the file at ``path`` already holds ``oid`` (and the wanted executable bit)."""
    if not st_.S_ISREG(lst.st_mode) or lst.st_size != db.entry(oid).size:
        return False
    if exec_bit is not None and bool(lst.st_mode & 0o100) != exec_bit:
        return False
    h = hasher()
    with open(path, "rb") as f:
        while b := f.read(1 << 24):
            h.update(b)
    return h.digest() == oid


def _existing(db, root: str, item: Item, force: bool) -> str:
    """'write', 'skip' or 'replace' for an item, given what is on disk."""
    path = os.path.join(root, item.rel)
    try:
        lst = os.lstat(path)
    except FileNotFoundError:
        return "write"
    if item.mode == MODE_TREE:
        if st_.S_ISDIR(lst.st_mode):
            return "skip"
    elif item.mode == MODE_LINK:
        if st_.S_ISLNK(lst.st_mode) and os.fsencode(os.readlink(path)) == db.get_bytes(item.oid):
            return "skip"
    elif _file_matches(db, path, lst, item.oid, item.mode == MODE_EXEC):
        return "skip"
    if not force:
        raise ConflictError(path)
    return "replace"


def _remove(path: str) -> None:
    lst = os.lstat(path)
    if st_.S_ISDIR(lst.st_mode):
        import shutil

        shutil.rmtree(path)
    else:
        os.unlink(path)


def _write_file(db, path: str, item: Item) -> None:
    e = db.entry(item.oid)
    perm = 0o777 if item.mode == MODE_EXEC else 0o666
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, perm)
    try:
        if e.kind == codec.KIND_CHUNKED:
            _, manifest = db.get(item.oid)
            write_chunked(db, item.oid, manifest, fd)
        else:
            data = db.get_bytes(item.oid)
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def _write_batch(db, root: str, items: list[Item]) -> None:
    for item in items:
        _write_file(db, os.path.join(root, item.rel), item)


def checkout(db, oid: bytes, dest: str, force: bool = False) -> int:
    """Restore object ``oid`` at ``dest``; returns the number of files and links written."""
    kind = db.entry(oid).kind
    if kind != codec.KIND_TREE:
        return _checkout_file(db, oid, dest, force)
    items = plan(db, oid)
    root = os.path.abspath(dest)
    if os.path.lexists(root) and not os.path.isdir(root) or os.path.islink(root):
        if not force:
            raise ConflictError(root)
        _remove(root)
    os.makedirs(root, exist_ok=True)
    actions = [(item, _existing(db, root, item, force)) for item in items]
    written = 0
    files: list[Item] = []
    links: list[Item] = []
    for item, action in actions:
        path = os.path.join(root, item.rel)
        if action == "skip":
            continue
        if action == "replace":
            _remove(path)
        if item.mode == MODE_TREE:
            os.mkdir(path)
        elif item.mode == MODE_LINK:
            links.append(item)
        else:
            files.append(item)
    # Large files fan out over the pool themselves, so they are written from this thread;
    # a pool task waiting on tasks queued behind it could wait forever.
    large = [i for i in files if db.entry(i.oid).kind == codec.KIND_CHUNKED]
    small = [i for i in files if db.entry(i.oid).kind != codec.KIND_CHUNKED]
    # Creating files is mostly waiting on the kernel (the GIL is released), so more threads
    # than cores keep both cores busy with the Python work in between.
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="zcas-co") as ex:
        futs = [ex.submit(_write_batch, db, root, small[i : i + _BATCH]) for i in range(0, len(small), _BATCH)]
        _write_batch(db, root, large)
        for f in futs:
            f.result()
    written += len(files)
    for item in links:
        os.symlink(os.fsdecode(db.get_bytes(item.oid)), os.path.join(root, item.rel))
    written += len(links)
    _check_links(root, links)
    return written


def _checkout_file(db, oid: bytes, dest: str, force: bool) -> int:
    """A single file goes to a temp file beside ``dest``, then is renamed into place."""
    path = os.path.abspath(dest)
    if os.path.isdir(path) and not os.path.islink(path):
        raise ZcasError(f"destination {dest} is a folder; give a file path to restore a file into")
    if os.path.lexists(path):
        if _file_matches(db, path, os.lstat(path), oid, None):
            return 0
        if not force:
            raise ConflictError(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.zcas-{os.getpid()}.tmp")
    _write_file(db, tmp, Item("", MODE_FILE, oid))
    os.replace(tmp, path)
    return 1


def _check_links(root: str, links: list[Item]) -> None:
    """Links were checked lexically; a chain of links can still escape, so resolve each."""
    real_root = os.path.realpath(root)
    bad = []
    for item in links:
        path = os.path.join(root, item.rel)
        target = os.path.realpath(path)
        if target != real_root and not target.startswith(real_root + os.sep):
            bad.append(item.rel)
    for rel in bad:
        os.unlink(os.path.join(root, rel))
    if bad:
        raise UnsafePathError(bad[0], "symlink resolves outside the checkout (removed)")

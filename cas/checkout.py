"""Checkout: restore a stored file or tree, byte for byte, without leaving the folder.

The whole tree is read and validated before anything is written, so a hostile tree is
refused with nothing on disk: names that would escape, links that lead outside, and any
spelling of ``.zcas`` (a tree must never write into a repository's store). Each distinct
subtree is read and validated once, however often a tree reuses it, so a small tree that
expands to many paths costs what it writes, and one expanding past ``MAX_ENTRIES`` is
refused before anything is planned. Existing files that differ are a conflict unless
``force``; identical ones are left alone. Nothing is written through a symlink: folders
are created only where no link stands, files are opened with O_NOFOLLOW, and every link
made is checked at the end to resolve inside the checkout.

Every file is written under a temporary name beside its target (``.NAME.zcas-PID.tmp``),
verified, and only then renamed into place, so a checkout killed at any moment leaves each
target path either as it was or holding exactly the stored bytes. Temp files left by a
killed checkout (their process gone) are removed by the next checkout of that folder.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat as st_
from typing import NamedTuple

from . import codec
from .chunking import write_chunked
from .errors import (
    ConflictError,
    IntegrityError,
    StoreError,
    UnsafePathError,
    ZcasError,
)
from .oid import hash_bytes, hasher
from .tree import (
    MODE_EXEC,
    MODE_FILE,
    MODE_LINK,
    MODE_TREE,
    check_link_target,
    decode_tree,
    is_reserved_name,
)

_BATCH = 32
_WRITERS = 6
MAX_ENTRIES = 1 << 24  # paths one checkout plans; a tree expanding further is refused
LINK_MAX = 4096  # PATH_MAX: no symlink target is longer
_TMP_RE = re.compile(r"\.(.+)\.zcas-(\d+)\.tmp|\.zcas-(\d+)-([0-9a-f]{16})\.tmp")
_NAME_MAX = 255


class Item(NamedTuple):
    rel: str  # path below the checkout root, "/"-separated ("" is the root itself)
    mode: int
    oid: bytes


def read_tree(db, oid: bytes) -> list:
    kind, payload = db.get(oid)
    if kind != codec.KIND_TREE:
        raise IntegrityError(oid.hex(), "expected a tree")
    return decode_tree(oid.hex(), payload)


class Trees:
    """Decoded, validated trees by id: each distinct tree is read and checked once."""

    def __init__(self, db):
        self.db = db
        self._seen: dict[bytes, list] = {}

    def entries(self, oid: bytes) -> list:
        got = self._seen.get(oid)
        if got is None:
            got = read_tree(self.db, oid)
            for e in got:
                if is_reserved_name(e.name):
                    raise UnsafePathError(os.fsdecode(e.name), "a tree may not hold a .zcas entry (a repository's store)")
            self._seen[oid] = got
        return got

    def expanded(self, oid: bytes) -> int:
        """How many paths a checkout of tree ``oid`` would plan, counted per distinct tree
        (iteratively: folders thousands deep are fine)."""
        counts: dict[bytes, int] = {}
        stack = [oid]
        while stack:
            t = stack[-1]
            if t in counts:
                stack.pop()
                continue
            subs = [e.oid for e in self.entries(t) if e.mode == MODE_TREE and e.oid not in counts]
            if subs:
                stack.extend(subs)
                continue
            stack.pop()
            counts[t] = sum(1 + (counts[e.oid] if e.mode == MODE_TREE else 0) for e in self.entries(t))
        return counts[oid]


def plan(db, oid: bytes, rel: str = "") -> list[Item]:
    """Every entry under a tree, parents before children, links validated."""
    trees = Trees(db)
    n = trees.expanded(oid)
    if n > MAX_ENTRIES:
        raise ZcasError(f"tree {oid.hex()} expands to {n} paths, more than one checkout writes ({MAX_ENTRIES})")
    targets: dict[bytes, bytes] = {}
    out: list[Item] = []
    stack = [(rel, iter(trees.entries(oid)))]
    while stack:
        prefix, it = stack[-1]
        e = next(it, None)
        if e is None:
            stack.pop()
            continue
        name = os.fsdecode(e.name)
        path = posixpath.join(prefix, name) if prefix else name
        if e.mode == MODE_LINK:
            target = targets.get(e.oid)
            if target is None:
                target = targets[e.oid] = _link_target(db, e.oid, path)
            check_link_target(prefix, name, target)
        out.append(Item(path, e.mode, e.oid))
        if e.mode == MODE_TREE:
            stack.append((path, iter(trees.entries(e.oid))))
    return out


def _link_target(db, oid: bytes, path: str) -> bytes:
    """A link's target: a small blob (never a large file assembled in memory)."""
    e = db.entry(oid)
    if e.kind != codec.KIND_BLOB or e.size > LINK_MAX:
        raise UnsafePathError(path, f"symlink target is a {codec.KINDS[e.kind]} of {e.size} bytes, not a path")
    return db.get_bytes(oid)


def _file_matches(db, path: str, lst: os.stat_result, oid: bytes, exec_bit: bool | None) -> bool:
    """Whether the file at ``path`` already holds ``oid`` (and the wanted executable bit)."""
    if not st_.S_ISREG(lst.st_mode) or lst.st_size != db.entry(oid).size:
        return False
    if exec_bit is not None and bool(lst.st_mode & 0o100) != exec_bit:
        return False
    try:  # it may have become a FIFO or a link since the lstat: never block, never follow
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError:
        return False
    h = hasher()
    with open(fd, "rb") as f:
        if not st_.S_ISREG(os.fstat(fd).st_mode):
            return False
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
        if st_.S_ISLNK(lst.st_mode) and os.fsencode(os.readlink(path)) == _link_target(db, item.oid, item.rel):
            return "skip"
    elif _file_matches(db, path, lst, item.oid, item.mode == MODE_EXEC):
        return "skip"
    if not force:
        raise ConflictError(path)
    return "replace"


def makedirs(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)`` without recursion (it recurses per level)."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for p in reversed(missing):
        try:
            os.mkdir(p)
        except FileExistsError:
            if not os.path.isdir(p):
                raise


def _rmtree(path: str) -> None:
    """Remove a folder and everything in it, iteratively (no recursion limit), never
    following a symlink."""
    stack = [path]
    while stack:
        d = stack[-1]
        subdirs = []
        with os.scandir(d) as it:
            for de in it:
                if de.is_dir(follow_symlinks=False):
                    subdirs.append(de.path)
                else:
                    os.unlink(de.path)
        if subdirs:
            stack.extend(subdirs)
        else:
            os.rmdir(d)
            stack.pop()


def _remove(path: str) -> None:
    lst = os.lstat(path)
    if st_.S_ISDIR(lst.st_mode):
        _rmtree(path)
    else:
        os.unlink(path)


def tmp_name(path: str) -> str:
    """The temporary name this process writes ``path`` under, in the same folder."""
    cut = path.rfind("/") + 1
    name = path[cut:]
    if len(name) > 50 and len(os.fsencode(name)) > _NAME_MAX - 30:
        return f"{path[:cut]}.zcas-{os.getpid()}-{hash_bytes(os.fsencode(name)).hex()[:16]}.tmp"
    return f"{path[:cut]}.{name}.zcas-{os.getpid()}.tmp"


def _write_file(db, path: str, item: Item) -> None:
    """Write ``item`` under a temp name, verified, then rename it onto ``path``."""
    e = db.entry(item.oid)
    perm = 0o777 if item.mode == MODE_EXEC else 0o666
    tmp = tmp_name(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
    try:
        fd = os.open(tmp, flags, perm)
    except FileExistsError:  # left by a killed process that had our pid
        os.unlink(tmp)
        fd = os.open(tmp, flags, perm)
    try:
        if e.kind == codec.KIND_CHUNKED:
            _, manifest = db.get(item.oid)
            write_chunked(db, item.oid, manifest, fd)  # hashes what it wrote
        else:
            data = db.get_bytes(item.oid)  # verified against the id
            view = memoryview(data)
            while view:
                n = os.write(fd, view)
                view = view[n:]
    except BaseException:
        os.close(fd)
        os.unlink(tmp)
        raise
    os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _write_batch(db, root: str, items: list[Item]) -> None:
    for item in items:
        _write_file(db, os.path.join(root, item.rel), item)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _sweep(folder: str, names: set[str]) -> None:
    """Remove temp files a killed checkout left for these names in ``folder``."""
    hashed = None
    try:
        it = os.scandir(folder)
    except OSError:
        return
    with it:
        for de in it:
            if not de.name.endswith(".tmp"):
                continue
            m = _TMP_RE.fullmatch(de.name)
            if m is None:
                continue
            if m.group(1) is not None:
                mine, pid = m.group(1) in names, int(m.group(2))
            else:
                if hashed is None:
                    hashed = {hash_bytes(os.fsencode(n)).hex()[:16] for n in names}
                mine, pid = m.group(4) in hashed, int(m.group(3))
            if mine and not _alive(pid) and de.is_file(follow_symlinks=False):
                try:
                    os.unlink(de.path)
                except FileNotFoundError:
                    pass


def _sweep_all(root: str, items: list[Item]) -> None:
    by_dir: dict[str, set[str]] = {}
    for item in items:
        if item.mode in (MODE_FILE, MODE_EXEC):
            parent, name = posixpath.split(item.rel)
            by_dir.setdefault(parent, set()).add(name)
    for parent, names in by_dir.items():
        _sweep(os.path.join(root, parent), names)


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
    makedirs(root)
    actions = [(item, _existing(db, root, item, force)) for item in items]
    _check_space(root, sum(db.entry(i.oid).size for i, a in actions if a != "skip" and i.mode in (MODE_FILE, MODE_EXEC)))
    written = 0
    files: list[Item] = []
    links: list[Item] = []
    for item, action in actions:
        path = os.path.join(root, item.rel)
        if action == "skip":
            continue
        if action == "replace" and (item.mode in (MODE_TREE, MODE_LINK) or os.path.isdir(path)):
            _remove(path)  # a file replaces a file by rename, atomically
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
    _sweep_all(root, items)
    return written


def _checkout_file(db, oid: bytes, dest: str, force: bool) -> int:
    """A single file goes to a temp file beside ``dest``, then is renamed into place."""
    path = os.path.abspath(dest)
    if os.path.isdir(path) and not os.path.islink(path):
        raise ZcasError(f"destination {dest} is a folder; give a file path to restore a file into")
    parent = os.path.dirname(path)
    if os.path.lexists(path):
        if _file_matches(db, path, os.lstat(path), oid, None):
            _sweep(parent, {os.path.basename(path)})
            return 0
        if not force:
            raise ConflictError(path)
    makedirs(parent)
    _check_space(parent, db.entry(oid).size)
    _write_file(db, path, Item("", MODE_FILE, oid))
    _sweep(parent, {os.path.basename(path)})
    return 1


def _check_space(folder: str, need: int) -> None:
    """Refuse, before writing, a checkout the filesystem has no room for: a few KB of
    manifests and trees can name terabytes (one chunk listed a million times)."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if need > free:
        raise StoreError(errno.ENOSPC, f"checkout needs {need} bytes but {folder} has {free} free; nothing was written")


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

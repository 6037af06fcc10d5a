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
killed checkout (their process gone from this machine, and untouched for an hour) are
removed by a later checkout of that folder.
"""

from __future__ import annotations

import errno
import os
import posixpath
import re
import stat as st_
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from . import codec
from .chunking import write_chunked
from .errors import (
    ConflictError,
    IntegrityError,
    StoreError,
    UnsafePathError,
    ZcasError,
)
from .oid import hash_bytes, hash_fd
from .reach import fold
from .tree import (
    MODE_EXEC,
    MODE_FILE,
    MODE_LINK,
    MODE_TREE,
    check_link_target,
    decode_tree,
    is_reserved_name,
)

if TYPE_CHECKING:
    from .db import ObjectDB

_BATCH = 32
_WRITERS = 6
MAX_ENTRIES = 1 << 22  # paths one checkout plans (~600 MB planned); a tree expanding further is refused
LINK_MAX = 4096  # PATH_MAX: no symlink target is longer
_TMP_RE = re.compile(r"\.(.+)\.zcas-(\d+)\.tmp|\.zcas-(\d+)-([0-9a-f]{16})\.tmp")
_NAME_MAX = 255
SWEEP_MIN_AGE = 3600.0  # seconds a leftover temp file must be untouched before it is swept


class Item(NamedTuple):
    rel: str  # path below the checkout root, "/"-separated ("" is the root itself)
    mode: int
    oid: bytes


def read_tree(db: ObjectDB, oid: bytes) -> list:
    kind, payload = db.get(oid)
    if kind != codec.KIND_TREE:
        raise IntegrityError(oid, "expected a tree")
    return decode_tree(oid, payload)


class Trees:
    """Decoded, validated trees by id: each distinct tree is read and checked once."""

    def __init__(self, db):
        self.db = db
        self._seen: dict[bytes, list] = {}
        self._totals: dict[int, dict[bytes, Totals]] = {}

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
        return self.totals(oid, 1).paths

    def totals(self, oid: bytes, block: int) -> Totals:
        """What a checkout of tree ``oid`` would create, counted once per distinct tree
        (however often a tree reuses it) and iteratively, from the index entries of its
        files (nothing but trees is read): paths, folders, and bytes on disk with each file
        rounded up to whole ``block``-byte blocks (an empty file takes none, a 1-byte file
        one) and each folder taking one block."""
        memo = self._totals.setdefault(block, {})

        def children(t: bytes) -> list[bytes]:
            return [e.oid for e in self.entries(t) if e.mode == MODE_TREE]

        def combine(t: bytes) -> Totals:
            paths = folders = size = 0
            for e in self.entries(t):
                paths += 1
                if e.mode == MODE_TREE:
                    sub = memo[e.oid]
                    paths += sub.paths
                    folders += 1 + sub.folders
                    size += block + sub.disk
                elif e.mode != MODE_LINK:
                    n = self.db.entry(e.oid).size
                    size += -(-n // block) * block
            return Totals(paths, folders, size)

        return fold(oid, children, combine, memo)


class Totals(NamedTuple):
    paths: int  # files, links and folders below the tree
    folders: int
    disk: int  # bytes on disk: files rounded up to whole blocks, one block per folder


def check_expansion(trees: Trees, oid: bytes) -> None:
    """Refuse a tree expanding to more paths than one checkout plans (one line)."""
    n = trees.expanded(oid)
    if n > MAX_ENTRIES:
        raise ZcasError(f"tree {oid.hex()} expands to {n} paths, more than one checkout writes ({MAX_ENTRIES}); "
                        "nothing was written")


def plan(db: ObjectDB, oid: bytes, rel: str = "", trees: Trees | None = None) -> list[Item]:
    """Every entry under a tree, parents before children, links validated."""
    trees = trees or Trees(db)
    check_expansion(trees, oid)
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
    try:
        return st_.S_ISREG(os.fstat(fd).st_mode) and hash_fd(fd) == oid
    finally:
        os.close(fd)


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


def _actions(db, root: str, items: list[Item], force: bool) -> list[tuple[Item, str]]:
    """(item, 'write' | 'skip' | 'replace') for each item, parents first. Below a folder
    this checkout creates (absent, or replacing a file or link that stands in its place)
    nothing exists yet, so what is on disk there is not looked at: through a file it cannot
    be, and through a replaced link it would be another folder's."""
    fresh: set[str] = set()
    out = []
    for item in items:
        if posixpath.dirname(item.rel) in fresh:
            action = "write"
        else:
            action = _existing(db, root, item, force)
        if item.mode == MODE_TREE and action != "skip":
            fresh.add(item.rel)
        out.append((item, action))
    return out


def makedirs(path: str) -> None:
    """``os.makedirs(path, exist_ok=True)`` without recursion (it recurses per level); a
    file standing where a folder must be is a one-line ZcasError naming it."""
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
                raise ZcasError(f"cannot create folder {p}: a file stands there") from None
        except NotADirectoryError:
            raise ZcasError(f"cannot create folder {p}: a file stands in its path") from None


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
    """Remove temp files a killed checkout left for these names in ``folder``.

    The pid in a temp name only says something about this machine: in a folder shared
    across hosts or containers another writer's pid means nothing here. So a temp file is
    removed only when its pid is not running here *and* it is a regular file (not a folder,
    not a link) last modified more than ``SWEEP_MIN_AGE`` ago: a live writer touches its
    temp file all along, and a user's own file that merely matches the pattern survives
    unless it is both old and named after a file this checkout writes."""
    hashed = None
    now = time.time()
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
            if not mine or _alive(pid):
                continue
            try:  # a regular file (never a folder or a link), untouched for an hour
                lst = os.lstat(de.path)
            except FileNotFoundError:
                continue
            if not st_.S_ISREG(lst.st_mode) or now - lst.st_mtime < SWEEP_MIN_AGE:
                continue
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


def checkout(db: ObjectDB, oid: bytes, dest: str, force: bool = False,
             progress: Callable[[int, int], None] | None = None) -> int:
    """Restore object ``oid`` at ``dest``; returns the number of files and links written.
    ``progress(done, total)`` hears of files written as batches finish."""
    kind = db.entry(oid).kind
    if kind != codec.KIND_TREE:
        return _checkout_file(db, oid, dest, force)
    root = os.path.abspath(dest)
    trees = Trees(db)
    check_expansion(trees, oid)  # before anything is planned: paths, then disk and inodes
    st = _statvfs(root)
    fresh = not os.path.isdir(root) or os.path.islink(root) or not os.listdir(root)
    if st is not None:
        t = trees.totals(oid, st.f_frsize or 4096)
        try:
            _check_space(root, t.disk, t.paths + 1, st, f"tree {oid.hex()} expands to {t.paths} paths "
                         f"({t.folders} folders), {t.disk} bytes on disk")
        except StoreError:
            if fresh:
                raise
            # Files already in place are left alone: judged again below, on what is written.
    items = plan(db, oid, trees=trees)
    if os.path.lexists(root) and not os.path.isdir(root) or os.path.islink(root):
        if not force:
            raise ConflictError(root)
        _remove(root)
    makedirs(root)
    actions = _actions(db, root, items, force)
    if not fresh and st is not None:
        block = st.f_frsize or 4096
        todo = [i for i, a in actions if a != "skip"]
        disk = sum(block if i.mode == MODE_TREE else -(-db.entry(i.oid).size // block) * block
                   for i in todo if i.mode != MODE_LINK)
        _check_space(root, disk, len(todo), _statvfs(root),
                     f"checkout of tree {oid.hex()} writes {len(todo)} paths, {disk} bytes on disk")
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

    done = 0

    def tell(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, len(files))

    with ThreadPoolExecutor(max_workers=_WRITERS, thread_name_prefix="zcas-co") as ex:
        futs = [ex.submit(_write_batch, db, root, small[i : i + _BATCH]) for i in range(0, len(small), _BATCH)]
        for item in large:
            _write_batch(db, root, [item])
            tell(1)
        for f, at in zip(futs, range(0, len(small), _BATCH), strict=True):
            f.result()
            tell(len(small[at : at + _BATCH]))
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
    st = _statvfs(parent)
    if st is not None:
        block = st.f_frsize or 4096
        disk = -(-db.entry(oid).size // block) * block
        _check_space(parent, disk, 1, st, f"file {oid.hex()} takes {disk} bytes on disk")
    makedirs(parent)
    _write_file(db, path, Item("", MODE_FILE, oid))
    _sweep(parent, {os.path.basename(path)})
    return 1


def _statvfs(path: str):
    """statvfs of the nearest existing folder at or above ``path`` (None if unknown)."""
    while True:
        try:
            return os.statvfs(path)
        except FileNotFoundError:
            parent = os.path.dirname(path)
            if parent == path:
                return None
            path = parent
        except OSError:
            return None


def _check_space(folder: str, disk: int, inodes: int, st, what: str) -> None:
    """Refuse, before writing, a checkout the filesystem has no room for: a few KB of
    manifests and trees can name terabytes (one chunk listed a million times), or millions
    of empty files (each an inode). ``disk`` is counted in whole blocks; ``inodes`` is the
    number of files, links and folders to create. One line naming what and what is free."""
    if st is None:
        return
    free = st.f_bavail * st.f_frsize
    favail = st.f_favail
    if disk > free or (st.f_files and inodes > favail):  # f_files 0: no inode limit (btrfs, ...)
        raise StoreError(errno.ENOSPC, f"{what}, but {folder} has {free} bytes and {favail} inodes free; "
                         "nothing was written")


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

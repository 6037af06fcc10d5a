"""``zcas://REF/PATH`` as an fsspec filesystem, so pandas, polars, pyarrow and DuckDB read
stored data without a checkout.

Read-only: a stored object never changes, and a write would have to choose which tag or
history path it versions, which is what ``zcas add`` and ``zcas tag`` already say
explicitly. Every byte comes through ``FileReader`` or a tree read, both verified against
ids; names come from stored trees (validated on decode: no ``..``, no ``/``), and
``location.parse`` refuses ``.`` and ``..``, so no path climbs out of its REF. Symlinks
are listed (type ``other``, with their target) but not followed.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
from collections import OrderedDict
from typing import Any

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from zcas.cas import codec
from zcas.cas.checkout import read_tree
from zcas.cas.errors import ObjectNotFoundError, UsageError, ZcasError
from zcas.cas.refs import TagNotFoundError
from zcas.cas.tree import MODE_LINK, MODE_TREE, TreeEntry

from .location import PROTOCOL, Location, parse, strip, unparse
from .reader import FileReader

_repos: dict[str, Any] = {}
_repos_lock = threading.Lock()
_TREES = 1024  # decoded trees kept per filesystem (immutable by id, so never stale)


def _repository(path: str | None) -> Any:
    """One Repository per root for the process: opening one lists its packs, which every
    ``pd.read_csv`` would otherwise pay again."""
    from zcas.cas.repo import find_root
    from zcas.repository import Repository

    root = os.path.realpath(path if path and os.path.isdir(os.path.join(path, ".zcas")) else find_root(path))
    with _repos_lock:
        repo = _repos.get(root)
        if repo is None:
            repo = _repos[root] = Repository(root)
        return repo


class ZcasFileSystem(AbstractFileSystem):
    """Read stored trees and files by tag, id or path-history version (docs/ecosystem.md).

    ``repo``: the repository's folder (default: the one the current folder is in).
    ``verify_whole``: check a chunked file's whole hash when it is opened, before any
    byte is returned (costs a full read; without it, every chunk is verified against its
    id, an in-order read checks the whole at its end, and a range or a jump proves the
    whole file first, once per process for an id: see ``reader.py``)."""

    protocol = PROTOCOL
    root_marker = ""
    cachable = False  # the repository depends on the current folder; Repository objects are shared instead

    def __init__(self, repo: str | os.PathLike[str] | None = None, verify_whole: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.repository = _repository(None if repo is None else os.fspath(repo))
        self.verify_whole = verify_whole
        self._trees: OrderedDict[bytes, list[TreeEntry]] = OrderedDict()
        self._trees_lock = threading.Lock()

    @property
    def db(self) -> Any:
        return self.repository.cas.db

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return strip(os.fspath(path))

    def unstrip_protocol(self, name: str) -> str:
        return f"{PROTOCOL}://{strip(name)}"

    # -- resolving ------------------------------------------------------------------------

    def _ref(self, loc: Location, text: str) -> bytes:
        """The object a REF names; FileNotFoundError when it names nothing."""
        try:
            if loc.version is None:
                return self.repository.cas.resolve(loc.ref)
            versions = self.repository.lineage.history(loc.ref)
        except (TagNotFoundError, ObjectNotFoundError):
            raise FileNotFoundError(f"zcas://{text}: no tag or stored id {loc.ref!r}") from None
        except UsageError as e:  # a malformed prefix, an ambiguous one
            raise ValueError(f"zcas://{text}: {e}") from None
        if loc.version > len(versions):
            raise FileNotFoundError(f"zcas://{text}: {loc.ref!r} has {len(versions)} recorded version(s), not {loc.version}")
        return bytes.fromhex(versions[loc.version - 1].id)

    def _tree(self, oid: bytes) -> list[TreeEntry]:
        with self._trees_lock:
            got = self._trees.get(oid)
            if got is not None:
                self._trees.move_to_end(oid)
                return got
        got = read_tree(self.db, oid)  # verified: hashed, and decoded under checkout's rules
        with self._trees_lock:
            self._trees[oid] = got
            while len(self._trees) > _TREES:
                self._trees.popitem(last=False)
        return got

    def _kind(self, oid: bytes) -> int:
        return self.db.entry(oid).kind

    def _walk_to(self, path: str) -> tuple[Location, bytes, int]:
        """(location, id, tree mode) of what ``path`` names: REF, then one stored tree
        entry per name (MODE_TREE or a file/link mode; a REF's own mode comes from its kind)."""
        text = strip(path)
        loc = parse(text)
        oid = self._ref(loc, text)
        mode = MODE_TREE if self._kind(oid) == codec.KIND_TREE else 1
        for i, name in enumerate(loc.parts):
            if mode != MODE_TREE:
                raise NotADirectoryError(f"zcas://{text}: {'/'.join(loc.parts[:i]) or loc.ref} is not a folder")
            want = os.fsencode(name)
            for e in self._tree(oid):
                if e.name == want:
                    oid, mode = e.oid, e.mode
                    break
            else:
                raise FileNotFoundError(f"zcas://{text}: no such file or folder")
        return loc, oid, mode

    def _row(self, name: str, e_oid: bytes, mode: int) -> dict[str, Any]:
        if mode == MODE_TREE:
            return {"name": name, "size": 0, "type": "directory", "id": e_oid.hex()}
        if mode == MODE_LINK:
            target = self.db.get_bytes(e_oid)
            return {"name": name, "size": len(target), "type": "other", "id": e_oid.hex(),
                    "destination": os.fsdecode(target), "islink": True}
        return {"name": name, "size": self.db.entry(e_oid).size, "type": "file", "id": e_oid.hex(),
                "executable": mode == 2}

    # -- fsspec's reading API ---------------------------------------------------------------

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        text = strip(path)
        if not text:
            rows = [self._row(name, oid, MODE_TREE if self._kind(oid) == codec.KIND_TREE else 1)
                    for name, oid in self.repository.cas.refs.tags().items()]
        else:
            loc, oid, mode = self._walk_to(text)
            if mode != MODE_TREE:
                rows = [self._row(unparse(loc), oid, mode)]
            else:
                rows = [self._row(unparse(Location(loc.ref, loc.version, "/".join([*loc.parts, os.fsdecode(e.name)]))),
                                  e.oid, e.mode) for e in self._tree(oid)]
        return rows if detail else [r["name"] for r in rows]

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        text = strip(path)
        if not text:
            return {"name": "", "size": 0, "type": "directory"}
        loc, oid, mode = self._walk_to(text)
        return self._row(unparse(loc), oid, mode)

    def find(self, path: str, maxdepth: int | None = None, withdirs: bool = False, detail: bool = False,
             **kwargs: Any) -> Any:
        """fsspec's find, without symlinks: they have no bytes of their own to copy or read
        (``ls`` and ``info`` still show them, with their target; ``zcas checkout`` restores them)."""
        found = super().find(path, maxdepth=maxdepth, withdirs=withdirs, detail=True, **kwargs)
        found = {k: v for k, v in found.items() if v.get("type") != "other"}
        return found if detail else sorted(found)

    def exists(self, path: str, **kwargs: Any) -> bool:
        try:
            self.info(path)
        except (FileNotFoundError, NotADirectoryError, ValueError):
            return False
        return True

    def ukey(self, path: str) -> str:
        """The content id: what a caching layer should key on (it changes exactly when the bytes do)."""
        return str(self.info(path)["id"])

    def modified(self, path: str) -> dt.datetime:
        """When what the REF names last changed (DuckDB caches by path and this time): a
        tag's last move, a history version's time; an id's content never changes (the epoch)."""
        text = strip(path)
        loc, _, _ = self._walk_to(text)
        if loc.version is not None:
            ns = self.repository.lineage.history(loc.ref)[loc.version - 1].time_ns
            return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC)
        try:
            st = os.stat(os.path.join(self.repository.cas.refs.tags_dir, loc.ref))
        except (FileNotFoundError, NotADirectoryError):
            return dt.datetime.fromtimestamp(0, dt.UTC)
        return dt.datetime.fromtimestamp(st.st_mtime, dt.UTC)

    created = modified

    def checksum(self, path: str) -> int:
        return int(self.ukey(path)[:16], 16)

    def reader(self, path: str) -> FileReader:
        """A verified ranged reader of the file ``path`` names."""
        text = strip(path)
        _, oid, mode = self._walk_to(text)
        if mode == MODE_TREE:
            raise IsADirectoryError(f"zcas://{text} is a folder")
        if mode == MODE_LINK:
            raise ValueError(f"zcas://{text} is a symlink; zcas:// does not follow links (read its target's path)")
        try:
            return FileReader(self.db, oid, verify_whole=self.verify_whole)
        except ZcasError as e:
            raise OSError(f"zcas://{text}: {e}") from e

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any) -> bytes:
        r = self.reader(path)
        s, e = _span(r.size, start, end)
        if e - s < r.size:
            r.verify()  # part of a file: tied to its id only by a proof of the whole
        return r.read(s, e)

    def head(self, path: str, size: int = 1024) -> bytes:
        return self.cat_file(path, 0, size)

    def _open(self, path: str, mode: str = "rb", block_size: Any = None, autocommit: bool = True,
              cache_options: Any = None, **kwargs: Any) -> ZcasFile:
        if mode != "rb":
            raise PermissionError(f"zcas:// is read-only (mode {mode!r}); store data with 'zcas add' or Repository.put")
        return ZcasFile(self, path, mode, block_size=block_size or "default", cache_options=cache_options, **kwargs)

    # -- writes: refused in one line ---------------------------------------------------------

    def _read_only(self, *args: Any, **kwargs: Any) -> Any:
        raise PermissionError("zcas:// is read-only; store data with 'zcas add' or Repository.put")

    mkdir = makedirs = rmdir = _rm = rm = rm_file = pipe_file = put_file = cp_file = mv = touch = _read_only


def _span(size: int, start: int | None, end: int | None) -> tuple[int, int]:
    """fsspec's range convention: None for the ends, negatives counted from the end."""
    s = 0 if start is None else (start + size if start < 0 else start)
    e = size if end is None else (end + size if end < 0 else end)
    return max(0, s), min(size, max(0, e))


class ZcasFile(AbstractBufferedFile):
    """A stored file opened for reading: fsspec's buffering over a verified ranged reader."""

    def __init__(self, fs: ZcasFileSystem, path: str, mode: str = "rb", **kwargs: Any) -> None:
        self.reader = fs.reader(path)
        info = fs.info(path)
        super().__init__(fs, path, mode, size=self.reader.size, **{k: v for k, v in kwargs.items() if k != "size"})
        self.details = info

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.reader.read(start, end)

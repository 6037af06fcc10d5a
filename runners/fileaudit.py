"""Which files a Python step opens while it runs, seen through the interpreter's audit hook.

A step that reads ``config.yaml`` by itself depends on it as surely as on an argument, and
a key that ignores it hands back a stale result when it changes. The interpreter raises an
``open`` audit event for every ``open()``, ``os.open()`` and ``pathlib`` read, from Python
and from C extensions that open through Python, so zcas sees them without the user
declaring anything.

An audit hook cannot be removed and runs on every event of the process, so there is one,
installed on first use, and it returns at once unless a step is being recorded. Opens are
attributed to the step recording in the opening thread, or, from a thread with none, to
the one step recording in the process if there is exactly one (a step's own helper
threads). Only paths inside the repository count, and not the store, version control,
bytecode caches or Python sources (code is the fingerprint's, and an import opens them).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyi", ".so", ".pyd")
_SKIP_DIRS = frozenset({".zcas", ".git", "__pycache__", "site-packages", "dist-packages"})
_LISTINGS = frozenset({"os.listdir", "os.scandir"})  # glob, os.walk and pathlib list folders through these
_LISTED = "<listed>"  # the mode of a folder listed, not a file opened

_local = threading.local()
_active: list[Recorder] = []
_lock = threading.Lock()
_installed = False


class Recorder:
    """The repository-relative paths one step opened for reading and for writing.

    The hook only adds what it is told (and the working directory it applies to) to a set;
    paths are worked out once, for each distinct one, when ``reads`` or ``writes`` is
    first asked: a step opening 10,000 files pays microseconds per open, not a path
    normalisation each."""

    def __init__(self, root: str):
        root = os.path.abspath(root)
        self.prefixes = tuple({root.rstrip(os.sep) + os.sep, os.path.realpath(root).rstrip(os.sep) + os.sep})
        self.raw: set[tuple[object, object, object, str]] = set()  # distinct (path, mode, flags, cwd)
        self.cwd = os.getcwd()
        self._sorted: tuple[set[str], set[str]] | None = None

    @property
    def reads(self) -> set[str]:
        return self._sort()[0]

    @property
    def writes(self) -> set[str]:
        return self._sort()[1]

    def _sort(self) -> tuple[set[str], set[str]]:
        if self._sorted is None:
            reads: set[str] = set()
            writes: set[str] = set()
            bases: dict[str, str | None] = {}
            fast = os.sep == "/"
            for path, mode, flags, cwd in self.raw:
                # One loop, no calls in the common case (a plain relative path in a folder
                # of the repository): this runs once per file a step opens.
                if fast and path.__class__ is str and path[:1] not in ("/", ".", "") and "/." not in path \
                        and "//" not in path:
                    if cwd not in bases:
                        bases[cwd] = self._rel(os.path.normpath(cwd) + os.sep)
                    base = bases[cwd]
                    if base is None:
                        continue
                    rel = base + path
                else:
                    slow = self._classify(path, cwd)
                    if slow is None:
                        continue
                    rel = slow
                if not rel and mode is not _LISTED:
                    continue
                if mode is _LISTED:
                    rel = rel.rstrip("/") + "/" if rel else "./"  # its listing: DIR/ (see implicit.py)
                elif rel.endswith(_CODE_SUFFIXES):
                    continue
                if (rel[:1] == "." or "/." in rel or "__pycache__" in rel or "-packages" in rel) \
                        and not _SKIP_DIRS.isdisjoint(rel.split("/")):
                    continue
                if mode.__class__ is str:
                    write = "w" in mode or "a" in mode or "x" in mode or "+" in mode
                else:
                    write = flags.__class__ is int and bool(flags & _WRITE_FLAGS)
                (writes if write else reads).add(rel)
            self._sorted = (reads, writes)
        return self._sorted

    def _classify(self, path: object, cwd: str) -> str | None:
        """The repository-relative path of an open that is not a plain relative one."""
        if isinstance(path, int):
            return None  # an open file descriptor: its path was seen when it was opened
        try:
            p = os.fsdecode(path)  # type: ignore[arg-type]
            return self._rel(os.path.normpath(os.path.join(cwd, p)))
        except (TypeError, ValueError):  # a path that is not one (an object, NUL): no file
            return None

    def _rel(self, p: str) -> str | None:
        if p + os.sep in self.prefixes:
            return ""  # the repository's folder itself (listed)
        for pre in self.prefixes:
            if p.startswith(pre):
                return p[len(pre):].replace(os.sep, "/")
        return None


def _recorder() -> Recorder | None:
    rec = getattr(_local, "rec", None)
    if rec is None and len(_active) == 1:
        return _active[0]
    return rec


def _hook(event: str, args: tuple) -> None:
    if event == "open":
        if not _active:
            return
        rec = getattr(_local, "rec", None)
        if rec is None:
            if len(_active) != 1:
                return
            rec = _active[0]
        if len(args) >= 3:
            path = args[0]
            # Hashable as it came (str, bytes, an fd); anything else as its text, looked at later.
            # A set: a file opened a million times is kept once.
            rec.raw.add((path if isinstance(path, (str, bytes, int)) else repr(path), args[1], args[2], rec.cwd))
    elif event in _LISTINGS and _active:
        rec = _recorder()
        path = args[0] if args and args[0] is not None else "."
        if rec is None or isinstance(path, int):
            return
        if "importlib" in sys._getframe(1).f_code.co_filename:
            return  # the import system filling its caches (or importlib.metadata scanning sys.path)
        rec.raw.add((path if isinstance(path, (str, bytes)) else repr(path), _LISTED, 0, rec.cwd))
    elif event == "sqlite3.connect" and _active:
        rec = _recorder()
        path = args[0] if args else None
        if rec is not None and isinstance(path, (str, bytes, os.PathLike)):
            p = os.fsdecode(path)
            if p.startswith("file:"):  # a URI (uri=True): its path, without the query
                p = p[5:].partition("?")[0]
            rec.raw.add((p, "r", 0, rec.cwd))  # a database read: its file's content is an input
    elif event == "os.chdir" and _active:
        for rec in list(_active):  # the new directory applies to opens from here on
            try:
                rec.cwd = os.path.abspath(os.fsdecode(args[0]))
            except Exception:  # noqa: BLE001 - an audit hook must never fail the call it watches
                pass


def _install() -> None:
    global _installed
    with _lock:
        if not _installed:
            sys.addaudithook(_hook)
            _installed = True


@contextmanager
def recording(root: str) -> Iterator[Recorder]:
    """Record what this thread (and, while it is the only one recording, its helpers) opens
    under ``root`` until the block ends."""
    _install()
    rec = Recorder(root)
    prev = getattr(_local, "rec", None)
    _local.rec = rec
    with _lock:
        _active.append(rec)
    try:
        yield rec
    finally:
        with _lock:
            _active.remove(rec)
        _local.rec = prev

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
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from operator import itemgetter

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
_CODE_SUFFIXES = (".py", ".pyc", ".pyo", ".pyi", ".so", ".pyd")
_SKIP_DIRS = frozenset({".zcas", ".git", "__pycache__", "site-packages", "dist-packages"})
_LISTINGS = frozenset({"os.listdir", "os.scandir"})  # glob, os.walk and pathlib list folders through these
_LISTED = "<listed>"  # the mode of a folder listed, not a file opened
_FOLD = 16384  # events kept as they came before they are folded into the distinct ones
_FIRST, _MODE, _FLAGS = itemgetter(0), itemgetter(1), itemgetter(2)
_NOWHERE = "<no working directory>"  # os.getcwd failed (the folder was removed): relative opens name no file
# In the paths of many events joined with NUL: a "." or "//" segment, a trailing slash, and
# a code file's name (each found by one search over them all).
_ODD_NEXT = re.compile("/[./\0]")
_CODE = re.compile(r"\.(?:py[cdio]?|so)(?:\0|$)")

_local = threading.local()
_active: list[Recorder] = []
_sole: Recorder | None = None  # the one recorder active, when exactly one is
_lock = threading.Lock()
_installed = False


class Recorder:
    """The repository-relative paths one step opened for reading and for writing.

    The hook appends each event's arguments as they came (a tuple it does not make) to a
    list per working directory (``opened``: the one in use), and every ``_FOLD`` events
    those are folded into a set of the distinct ones, so a step opening a file a million
    times holds one entry. An append, not a set insertion, per open: between two opens the
    open itself has pushed a set's table out of the processor's caches (an insertion then
    cost 0.45 us, an append 0.05 us), while folding many at once finds them in the caches.
    Paths are worked out once, for each distinct one, when ``reads`` or ``writes`` is first
    asked, in bulk where they are plain (``_bulk``)."""

    def __init__(self, root: str):
        root = os.path.abspath(root)
        self.prefixes = tuple({root.rstrip(os.sep) + os.sep, os.path.realpath(root).rstrip(os.sep) + os.sep})
        self.cwd = os.getcwd()
        self.lock = threading.Lock()  # one fold at a time
        # working directory -> (distinct events folded, events appended since)
        self.by_cwd: dict[str, tuple[set[tuple], list[tuple]]] = {}
        # The list of the working directory in use; None after a chdir event, until the
        # next event asks the system where the process now is (``settle``).
        self.opened: list[tuple] | None = self._at(self.cwd)
        self._sorted: tuple[set[str], set[str]] | None = None

    def _at(self, cwd: str) -> list[tuple]:
        seen = self.by_cwd.get(cwd)
        if seen is None:
            seen = self.by_cwd[cwd] = (set(), [])
        return seen[1]

    def chdir(self, cwd: str) -> None:
        """Opens from here on are relative to ``cwd``."""
        self.cwd = cwd
        self.opened = self._at(cwd)

    def moved(self) -> None:
        """The process may have changed folder: the next event reads where it is.

        The ``os.chdir`` audit event comes before the call, which may then fail (the
        folder is missing), and ``os.fchdir`` raises it with a file descriptor, not a path:
        taking the event's argument as the new folder sent later relative opens to the
        wrong path, and the file really read was never an input (a stale hit when it
        changed). One ``os.getcwd`` at the next open, once the call is over, is right
        whatever the call was and however it ended."""
        self.opened = None

    def settle(self) -> list[tuple]:
        """The list of the folder the process is in now (after ``moved``)."""
        try:
            cwd = os.getcwd()
        except Exception:  # noqa: BLE001 - removed meanwhile: relative opens there name no file of ours
            cwd = _NOWHERE
        self.cwd = cwd
        opened = self.opened = self._at(cwd)
        return opened

    def add(self, args: tuple) -> None:
        opened = self.opened
        if opened is None:
            opened = self.settle()
        opened.append(args)
        if len(opened) > _FOLD:
            self.fold(wait=False)

    def fold(self, wait: bool = True) -> None:
        """Move the events appended so far into the sets of distinct ones. A list keeps
        what other threads append meanwhile (and an old directory's list is kept too, for a
        thread that appends to it after a chdir): only what was folded is removed.

        The hook folds with ``wait`` False: if the lock is taken, it leaves the events for
        a later fold. The thread holding it may be this very one (a signal handler, or the
        ``repr`` of an odd event, that opens a file while it folds), and waiting for itself
        would hang the step for ever."""
        if not self.lock.acquire(blocking=wait):
            return
        try:
            for seen, buf in list(self.by_cwd.values()):
                n = len(buf)
                if n:
                    head = buf[:n]
                    try:
                        seen.update(head)
                    except Exception:  # noqa: BLE001 - something unhashable (a C extension's own object)
                        for args in head:
                            try:
                                seen.add(args)
                            except Exception:  # noqa: BLE001 - kept as text; the hook calls this: never raise
                                try:
                                    seen.add(tuple(map(_plain, args)))
                                except Exception:  # noqa: BLE001
                                    pass
                    del buf[:n]
        finally:
            self.lock.release()

    @property
    def raw(self) -> set[tuple]:
        """Every distinct (path, mode, flags, working directory) seen."""
        self.fold()
        return {(*a, cwd) for cwd, (seen, _) in self.by_cwd.items() for a in seen}

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
            with self.lock:  # what was folded, and what came since as it came (doubles cost no more than their text)
                every = [(cwd, list(seen) + buf if seen else buf[:]) for cwd, (seen, buf) in self.by_cwd.items()]
            for cwd, opened in every:
                groups = _by_kind(opened)
                if groups is None:  # events of another shape: each on its own
                    self._each(cwd, opened, reads, writes)
                    continue
                for (mode, flags), paths in groups.items():
                    rels = None if mode is _LISTED else self._bulk(cwd, paths)
                    if rels is not None:
                        (writes if _writes(mode, flags) else reads).update(rels)
                    else:
                        self._each(cwd, ((p, mode, flags) for p in paths), reads, writes)
            self._sorted = (reads, writes)
        return self._sorted

    def _bulk(self, cwd: str, paths: list) -> list[str] | None:
        """The repository-relative paths of files opened at ``paths`` when every one is a
        plain path of a file that counts (relative, or absolute under the root; no ``.``
        segment, ``//``, trailing slash, NUL, code file or skipped folder), worked out with
        a few passes over them all in C and no Python loop; None when any one is not (then
        ``_each`` sorts them one by one). What a step usually opens takes this way."""
        if os.sep != "/" or set(map(type, paths)) != {str}:
            return None
        n = len(paths)
        j = "\0".join(paths)
        if j.count("\0") != n - 1:
            return None  # a NUL inside a path: not one to split on
        try:
            firsts = set(map(_FIRST, paths))
        except IndexError:  # an empty path
            return None
        if "/" in firsts:
            if len(firsts) != 1:
                return None
            for pre in self.prefixes:
                if j.startswith(pre) and j.count("\0" + pre) == n - 1:
                    j = j[len(pre):].replace("\0" + pre, "\0")
                    break
            else:
                return None  # not all under one spelling of the root
            rels = j.split("\0")
            try:
                if not {".", "/"}.isdisjoint(map(_FIRST, rels)):
                    return None  # a dot, or a doubled slash, right under the root
            except IndexError:  # the root's own folder
                return None
        else:
            base = self._rel(os.path.normpath(cwd) + os.sep)  # "", or "sub/" when the step moved there
            if base is None or "." in firsts or _odd(base):
                return None
            if base:
                j = base + j.replace("\0", "\0" + base)
                rels = j.split("\0")
            else:
                rels = paths
        if j.endswith("/") or _ODD_NEXT.search(j) or "__pycache__" in j or "-packages" in j or _CODE.search(j):
            return None
        return rels

    def _each(self, cwd: str, events: Iterable[tuple], reads: set[str], writes: set[str]) -> None:
        """Sort events one by one: any shape (more or fewer arguments), any path. No calls for
        a plain one; the rest are normalised against ``cwd``."""
        base = self._rel(os.path.normpath(cwd) + os.sep) if os.sep == "/" else None  # None: no fast path
        prefixes = self.prefixes if os.sep == "/" else ()
        written: dict[object, bool] = {}  # mode (or flags) -> whether it writes
        for args in events:
            try:
                path, mode, flags = args
            except ValueError:
                if len(args) < 3:
                    continue
                path, mode, flags = args[:3]
            rel: str | None = None
            if path.__class__ is str and path and "/." not in path and "//" not in path and path[-1] != "/":
                first = path[0]
                if first == "/":
                    for pre in prefixes:
                        if path.startswith(pre):
                            rel = path[len(pre):]
                            break
                    else:
                        if prefixes and path + "/" not in prefixes:
                            continue  # outside the repository
                elif first != "." and base is not None:
                    rel = base + path
                elif first != "." and prefixes:
                    continue  # relative to a folder outside the repository
            if rel is None:
                rel = self._classify(path, cwd)
                if rel is None:
                    continue
            if mode is _LISTED:
                rel = rel.rstrip("/") + "/" if rel else "./"  # its listing: DIR/ (see implicit.py)
            elif not rel or rel.endswith(_CODE_SUFFIXES):
                continue
            if _odd(rel) and not _SKIP_DIRS.isdisjoint(rel.split("/")):
                continue
            key = mode if mode.__class__ is str else (flags,)
            try:
                write = written.get(key)
                if write is None:
                    write = written[key] = _writes(mode, flags)
            except TypeError:  # flags that cannot be a key (an event a C extension raised): no memo
                write = _writes(mode, flags)
            (writes if write else reads).add(rel)

    def _classify(self, path: object, cwd: str) -> str | None:
        """The repository-relative path of an open that is not a plain one."""
        if isinstance(path, int):
            return None  # an open file descriptor: its path was seen when it was opened
        try:
            if not isinstance(path, (str, bytes)):
                path = repr(path)  # not a path the interpreter made: taken as its text
            p = os.fsdecode(path)
            return self._rel(os.path.normpath(os.path.join(cwd, p)))
        except Exception:  # noqa: BLE001 - not a path (NUL), or a repr that fails: no file
            return None

    def _rel(self, p: str) -> str | None:
        if p + os.sep in self.prefixes:
            return ""  # the repository's folder itself (listed)
        for pre in self.prefixes:
            if p.startswith(pre):
                return p[len(pre):].replace(os.sep, "/")
        return None


def _by_kind(opened: list[tuple]) -> dict[tuple[object, object], list] | None:
    """The paths of ``opened`` by (mode, flags), the usual events' shape (more arguments
    are ignored, as ``_each`` does); None if an event has fewer, or a mode or flags that
    cannot be a key. One kind (the usual case) takes no Python loop."""
    if not opened:
        return {}
    try:
        modes, flags = set(map(_MODE, opened)), set(map(_FLAGS, opened))
    except (IndexError, TypeError):  # too few arguments, or one that is not hashable
        return None
    if len(modes) == 1 and len(flags) == 1:
        return {(modes.pop(), flags.pop()): list(map(_FIRST, opened))}
    groups: dict[tuple[object, object], list] = {}
    for args in opened:
        groups.setdefault((args[1], args[2]), []).append(args[0])
    return groups


def _odd(rel: str) -> bool:
    """Whether a path may hold a folder zcas skips (cheap tests before the exact one)."""
    return rel[:1] == "." or "/." in rel or "__pycache__" in rel or "-packages" in rel


def _writes(mode: object, flags: object) -> bool:
    if mode.__class__ is str:
        return "w" in mode or "a" in mode or "x" in mode or "+" in mode
    return flags.__class__ is int and bool(flags & _WRITE_FLAGS)


def _plain(x: object) -> object:
    return x if x is None or isinstance(x, (str, bytes, int)) else repr(x)


def _recorder() -> Recorder | None:
    rec = getattr(_local, "rec", None)
    if rec is None and len(_active) == 1:
        return _active[0]
    return rec


def _hook(event: str, args: tuple) -> None:
    if event == "open":
        # With one step recording (the usual case) every open is its own, whatever the
        # thread: a thread's own recorder, when it has one, can only be that one.
        rec = _sole
        if rec is None:
            if not _active:
                return
            rec = getattr(_local, "rec", None)
            if rec is None:
                return
        opened = rec.opened
        if opened is None:  # after a chdir: where the process is now
            opened = rec.settle()
        opened.append(args)  # the event's own tuple: nothing made, nothing hashed
        if len(opened) > _FOLD:
            rec.fold(wait=False)
    elif event in _LISTINGS and _active:
        rec = _recorder()
        path = args[0] if args and args[0] is not None else "."
        if rec is None or isinstance(path, int):
            return
        if "importlib" in sys._getframe(1).f_code.co_filename:
            return  # the import system filling its caches (or importlib.metadata scanning sys.path)
        try:
            rec.add((_plain(path), _LISTED, 0))
        except Exception:  # noqa: BLE001 - a repr that fails: the hook must never fail the call it watches
            pass
    elif event == "sqlite3.connect" and _active:
        rec = _recorder()
        path = args[0] if args else None
        if rec is not None and isinstance(path, (str, bytes, os.PathLike)):
            try:
                p = os.fsdecode(path)
            except Exception:  # noqa: BLE001 - a path-like that is none: sqlite3 says so itself
                return
            if p.startswith("file:"):  # a URI (uri=True): its path, without the query
                p = p[5:].partition("?")[0]
            rec.add((p, "r", 0))  # a database read: its file's content is an input
    elif event == "os.chdir" and _active:  # os.chdir and os.fchdir, before the call
        for rec in list(_active):
            rec.moved()


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
        _set_sole()
    try:
        yield rec
    finally:
        with _lock:
            _active.remove(rec)
            _set_sole()
        _local.rec = prev


def _set_sole() -> None:
    global _sole
    _sole = _active[0] if len(_active) == 1 else None

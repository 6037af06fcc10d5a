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

_local = threading.local()
_active: list[Recorder] = []
_lock = threading.Lock()
_installed = False


class Recorder:
    """The repository-relative paths one step opened for reading and for writing."""

    def __init__(self, root: str):
        root = os.path.abspath(root)
        self.prefixes = tuple({root.rstrip(os.sep) + os.sep, os.path.realpath(root).rstrip(os.sep) + os.sep})
        self.reads: set[str] = set()
        self.writes: set[str] = set()

    def saw(self, path: object, mode: object, flags: object) -> None:
        if isinstance(path, int):
            return  # an open file descriptor: its path was seen when it was opened
        p = os.fsdecode(path)  # type: ignore[arg-type]
        if not os.path.isabs(p):
            p = os.path.join(os.getcwd(), p)
        p = os.path.normpath(p)
        for pre in self.prefixes:
            if p.startswith(pre):
                rel = p[len(pre):]
                break
        else:
            return
        if os.sep != "/":
            rel = rel.replace(os.sep, "/")
        if rel.endswith(_CODE_SUFFIXES) or not _SKIP_DIRS.isdisjoint(rel.split("/")):
            return
        if isinstance(mode, str):
            write = any(c in mode for c in "wax+")
        else:
            write = isinstance(flags, int) and bool(flags & _WRITE_FLAGS)
        (self.writes if write else self.reads).add(rel)


def _hook(event: str, args: tuple) -> None:
    if event != "open" or not _active:
        return
    rec = getattr(_local, "rec", None)
    if rec is None:
        if len(_active) != 1:
            return
        rec = _active[0]
    try:
        rec.saw(*args[:3])
    except Exception:  # noqa: BLE001 - an error here would fail the user's open(): never
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

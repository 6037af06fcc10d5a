"""A run's stdout and stderr: shown as they come and kept, byte for byte, as objects.

A command's two streams are read from pipes by one thread each and written both where
they would have gone (the terminal, or stderr under ``--json``) and to a file of their own,
so a log is never held in memory whole; the files are then stored like any file (chunked
when large) and named in the run record. A Python step's writes to ``sys.stdout`` and
``sys.stderr`` are teed the same way, from the thread executing the step only, so steps
running side by side on threads keep their logs apart.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any

from zcas.cas.db import ObjectDB
from zcas.cas.ingest import Ingester
from zcas.cas.statcache import StatCache

_PIECE = 1 << 16


class Logs:
    """Two spill files of one run's output, stored (and removed) by ``store``."""

    def __init__(self, tmp_dir: str | None = None):
        self.tmp_dir = tmp_dir
        self.files: dict[str, IO[bytes]] = {}  # opened on a stream's first write: most steps print nothing
        self.lock = threading.Lock()

    def write(self, stream: str, data: bytes) -> None:
        with self.lock:
            f = self.files.get(stream)
            if f is None:
                f = self.files[stream] = tempfile.NamedTemporaryFile(prefix=f"zcas-{stream}-", dir=self.tmp_dir,
                                                                     delete=False)
            f.write(data)

    def store(self, db: ObjectDB) -> dict[str, str]:
        """stream -> id of each stream that printed anything; the spill files removed."""
        out: dict[str, str] = {}
        try:
            ing = Ingester(db, StatCache(None))
            for name, f in sorted(self.files.items()):
                f.close()
                if os.path.getsize(f.name):
                    out[name] = ing.add(f.name)[0].hex()
        finally:
            self.discard()
        return out

    def discard(self) -> None:
        for f in self.files.values():
            f.close()
            try:
                os.unlink(f.name)
            except FileNotFoundError:
                pass


def _pump(src: IO[bytes], stream: str, logs: Logs, live: int | None) -> None:
    fd = src.fileno()
    while True:
        data = os.read(fd, _PIECE)
        if not data:
            break
        logs.write(stream, data)
        if live is not None:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(live, view):]
            except OSError:
                live = None  # the terminal went away: keep the log, stop showing it
    src.close()


def _fd(where: Any, default: int) -> int | None:
    if where is None:
        return default
    if isinstance(where, int):
        return where
    try:
        return int(where.fileno())
    except (AttributeError, OSError, ValueError):
        return None


def run_captured(argv: list[str], cwd: str, env: dict[str, str], stdout: Any, logs: Logs) -> tuple[int, str]:
    """(exit code, one-line reason) of a command whose output is shown and kept in ``logs``:
    its stdout goes live to ``stdout`` (None: this process's stdout), its stderr to ours.
    Python children write unbuffered (``PYTHONUNBUFFERED``, unless set), so a pipe shows
    their lines as a terminal would."""
    env = {"PYTHONUNBUFFERED": "1", **env}
    try:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        return 127, f"command not found: {argv[0]}"
    except PermissionError:
        return 126, f"permission denied: {argv[0]}"
    assert proc.stdout is not None and proc.stderr is not None
    pumps = [threading.Thread(target=_pump, args=(proc.stdout, "stdout", logs, _fd(stdout, 1)), daemon=True),
             threading.Thread(target=_pump, args=(proc.stderr, "stderr", logs, _fd(None, 2)), daemon=True)]
    for t in pumps:
        t.start()
    try:
        code = proc.wait()
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        for t in pumps:
            t.join()
    return code, f"exit {code}"


# -- Python steps ---------------------------------------------------------------------------


class _Tee:
    """Stands in for sys.stdout (or stderr): writes from a thread executing a step also go
    to that step's log; everything goes on to the stream it replaced."""

    def __init__(self, stream: str, under: Any):
        self.stream, self.under = stream, under

    def write(self, text: str) -> int:
        logs = _active.get(threading.get_ident())
        if logs is not None:
            enc = getattr(self.under, "encoding", None) or "utf-8"
            logs.write(self.stream, text.encode(enc, "backslashreplace"))
        return self.under.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.under, name)


_active: dict[int, Logs] = {}
_install = threading.Lock()


@contextmanager
def teeing(logs: Logs) -> Iterator[Logs]:
    """What this thread prints through sys.stdout and sys.stderr while in the context also
    goes to ``logs`` (output of subprocesses a step starts is not seen: it writes to the file
    descriptors, not through Python)."""
    me = threading.get_ident()
    with _install:
        if not _active:
            sys.stdout = _Tee("stdout", sys.stdout)
            sys.stderr = _Tee("stderr", sys.stderr)
        _active[me] = logs
    try:
        yield logs
    finally:
        with _install:
            _active.pop(me, None)
            if not _active:
                for name in ("stdout", "stderr"):
                    cur = getattr(sys, name)
                    if isinstance(cur, _Tee):  # someone else replaced it since: leave theirs
                        setattr(sys, name, cur.under)

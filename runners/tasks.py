"""What runs on a worker (another thread, process or dask worker): one step, start to end.

A task opens the stack's object store itself (the repository's path, which workers share,
or an object-store URL), loads its inputs, runs, stores its outputs and publishes them
before returning their ids (a worker sharing nothing with the client but the store runs
scratch.py's tasks, around these). It never touches lineage: the client records the run.
A task lost with its worker leaves at most unreferenced objects, which are harmless
(content addressed, create-only) and which gc removes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from typing import Any

from zcas.cas.backend import Backend
from zcas.cas.db import ObjectDB
from zcas.cas.ingest import Ingester
from zcas.cas.local import LocalBackend
from zcas.cas.objstore import ObstoreBackend
from zcas.cas.pack import PREFIX, PackWriter, name_of_idx_key
from zcas.cas.statcache import StatCache

from . import workercache
from .capture import Logs, run_captured, teeing
from .fileaudit import Recorder, recording
from .implicit import ids_of, warn_writes
from .metrics import MetricsError, collecting, series_of
from .metrics import from_result as metrics_of
from .metrics import read_files as read_metrics
from .values import load_value, store_value

_lock = threading.Lock()


RELIST_AFTER = 2.0  # seconds: a task starting later than this after the last listing lists the store again


class TaskDB(ObjectDB):
    """The ObjectDB a process's tasks share: one index (loaded once, not per task: a store's
    listing and indexes grow with it, and a worker would pay for them on every step), and
    a pack writer of each thread's own (a task runs on one thread). One task's store
    failure (its flush aborts its pack) or ``abort`` drops only its own pending objects,
    never another's finished outputs, and no task takes another's unpublished objects as
    stored. ``begin`` readies it for a task: the packs it publishes are named
    (``published``: the client loads those indexes alone, ``ObjectDB.adopt_packs``), and
    the store is listed again if the last listing is older than ``RELIST_AFTER``, the
    index reloaded when a pack it knew has gone (``gc --remote`` removed unreferenced
    objects between runs: they are written again, not taken as present). Objects removed
    under a running fan-out are caught by the client, which checks every id a task returns
    (the step fails in one line; its rerun lists again)."""

    def __init__(self, backend: Backend, tmp_dir: str | None = None):
        self._mine = threading.local()
        super().__init__(backend, tmp_dir=tmp_dir)
        self._listed = 0.0

    @property
    def _writer(self) -> PackWriter | None:
        return getattr(self._mine, "writer", None)

    @_writer.setter
    def _writer(self, w: PackWriter | None) -> None:
        self._mine.writer = w

    @property
    def published(self) -> list[str]:
        """Packs this thread's task published (since ``begin``)."""
        got = getattr(self._mine, "published", None)
        if got is None:
            got = self._mine.published = []
        return got

    def flush(self) -> str | None:
        name = super().flush()
        if name is not None:
            self.published.append(name)
        return name

    def begin(self) -> TaskDB:
        self.abort()  # what a task of this thread left unpublished (it raised) is not this one's
        self._mine.published = []
        with self._lock:
            if time.monotonic() - self._listed < RELIST_AFTER:
                return self
            listed = {n for n in map(name_of_idx_key, self.backend.list(PREFIX)) if n is not None}
            self._listed = time.monotonic()
            if self._loaded and set(self._names) - listed:
                self.reload()
            elif self._loaded:
                self.adopt_packs(sorted(listed - set(self._names)))
        return self


_stores: dict[tuple[tuple[str, Any], ...], TaskDB] = {}


def open_store(spec: dict[str, Any]) -> TaskDB:
    """The ObjectDB a spec names, opened once per process (a worker's behind its cache),
    ready for a new task (``TaskDB.begin``)."""
    key = tuple(sorted(spec.items()))
    with _lock:
        db = _stores.get(key)
        if db is None:
            if spec.get("url"):
                remote = ObstoreBackend(spec["url"], spec.get("endpoint"), spec.get("region"), spec.get("allow_http"))
                if spec.get("worker"):  # shares nothing with the client: reads cached on its own disk
                    db = TaskDB(*workercache.open_backend(remote))
                else:
                    db = TaskDB(remote, spec.get("tmp"))
            else:
                db = TaskDB(LocalBackend(spec["objects"]))
            _stores[key] = db
    return db.begin()


class ArtifactRef(tuple):
    """(id, materializer, allow_pickle) of an input, as shipped to a worker."""


def python_task(spec: dict[str, Any], fn: Any, args: list[Any], kwargs: dict[str, Any], allow_pickle: bool,
                multiple: bool, damaged: list[bytes], root: str | None = None, name: str = "",
                zdir: str | None = None, paths: bool = False) -> tuple[Any, ...]:
    """Call a Python step; the fields of a ``core.Done`` (outputs named as a step's are).
    ``damaged``: ids the client found damaged, written afresh if the step makes them again.
    ``root``: the repository, where files the step reads count as its implicit inputs
    (None: nothing recorded). ``zdir``: where path inputs are checked out (None: refused).
    ``paths``: a returned path is stored (the step ran in a folder of its own), not refused."""
    db = open_store(spec)
    db.mark_damaged(damaged)

    def load(v: Any) -> Any:
        if isinstance(v, ArtifactRef):
            oid, tag, may_unpickle = v
            return load_value(db, zdir, oid, tag, may_unpickle)
        return v

    call_args = [load(a) for a in args]
    call_kwargs = {k: load(v) for k, v in kwargs.items()}
    started = time.time_ns()
    logs = Logs(spec.get("tmp"))
    try:
        with recording(root) if root else contextlib.nullcontext() as seen, teeing(logs), collecting() as logged:
            result = fn(*call_args, **call_kwargs)
        reported = metrics_of(fn, result, logged)
    finally:
        log = logs.store(db)
    ended = time.time_ns()
    multi = multiple and isinstance(result, tuple)
    values = list(result) if multi else [result]
    names = [f"output.{i}" for i in range(len(values))] if multi else ["output"]
    outputs: dict[str, str] = {}
    tags: dict[str, str] = {}
    for name, v in zip(names, values, strict=True):
        outputs[name], tags[name] = store_value(db, StatCache(None) if paths else None, v, allow_pickle)
    db.flush()  # published before the client records a run naming these ids
    found = files_found(seen, root, None, name, values) if root and seen is not None else {}
    found.update(metrics=reported, series=series_of(logged), log=log, packs=db.published)
    return 0, "", outputs, tags, started, ended, multi, None, found


def files_found(seen: Recorder, root: str, statcache: StatCache | None, name: str, values: list[Any]) -> dict[str, Any]:
    """The record fields of what a step read and wrote (``Done.found``): each file read
    with its id, and a warning for each file written that the step does not return."""
    declared = []
    for v in values:
        if isinstance(v, os.PathLike):
            p = os.path.abspath(os.fspath(v))
            if p.startswith(os.path.abspath(root) + os.sep):
                declared.append(os.path.relpath(p, root).replace(os.sep, "/"))
    warn_writes(name, seen.writes, declared)
    return {"implicit_inputs": ids_of(root, seen.reads, seen.writes, statcache)}


def run_argv(argv: list[str], cwd: str, env: dict[str, str], stdout: Any = None) -> tuple[int, str]:
    """(exit code, one-line reason) of a command, wherever it runs: 127 when it is not
    found, 126 when it cannot be executed, as a shell says."""
    try:
        code = subprocess.run(argv, cwd=cwd, env=env, stdout=stdout).returncode
    except FileNotFoundError:
        return 127, f"command not found: {argv[0]}"
    except PermissionError:
        return 126, f"permission denied: {argv[0]}"
    return code, f"exit {code}"


def not_produced(root: str, outputs: list[str]) -> str | None:
    """Why a command that exited 0 still failed: a declared output it did not write."""
    missing = [o for o in outputs if not os.path.lexists(os.path.join(root, o))]
    return f"declared output {missing[0]} was not produced" if missing else None


def command_task(spec: dict[str, Any], root: str, argv: list[str], cwd: str, env: dict[str, str], outputs: list[str],
                 damaged: list[bytes], metrics: tuple[str, ...] = ()) -> tuple[Any, ...]:
    """Run a command in the shared repository folder and store its outputs and its captured
    output; a ``core.Done``'s fields (its log and metrics in ``found``)."""
    db = open_store(spec)
    db.mark_damaged(damaged)
    started = time.time_ns()
    logs = Logs(spec.get("tmp"))
    try:
        code, err = run_captured(argv, os.path.join(root, cwd) if cwd else root, env, None, logs)
    finally:
        log = logs.store(db)
    ended = time.time_ns()
    code, err, found = check_command(root, code, err, outputs, metrics, log)
    if code != 0:
        db.flush()
        return code, err, {}, {}, started, ended, False, None, {**found, "packs": db.published}
    ing = Ingester(db, StatCache(None))
    ids = {o: ing.add(os.path.join(root, o))[0].hex() for o in outputs}
    db.flush()
    return 0, "", ids, {}, started, ended, False, None, {**found, "packs": db.published}


def check_command(root: str, code: int, err: str, outputs: list[str], metrics: tuple[str, ...],
                  log: dict[str, str]) -> tuple[int, str, dict[str, Any]]:
    """(code, reason, record fields) of a finished command: a declared output not written or
    a metrics file that does not read fails it (one line naming the file and key), and a
    failed run keeps only its log, never metrics half read."""
    found: dict[str, Any] = {"log": log}
    if code == 0:
        why = not_produced(root, outputs)
        if why:
            return 1, why, found
        try:
            found["metrics"] = read_metrics(root, metrics)
        except MetricsError as e:
            return 1, str(e), found
    return code, err, found

"""What runs on a worker (another thread, process or dask worker): one step, start to end.

A task opens the stack's object store itself (the repository's path, which workers share,
or an object-store URL), loads its inputs, runs, stores its outputs and publishes them
before returning their ids. It never touches lineage: the client records the run. A task
lost with its worker leaves at most unreferenced objects, which are harmless (content
addressed, create-only) and which gc removes.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time

_stores: dict = {}
_lock = threading.Lock()


def open_store(spec: dict):
    """The ObjectDB a spec names, opened once per worker process."""
    key = tuple(sorted(spec.items()))
    with _lock:
        db = _stores.get(key)
        if db is None:
            from zcas.cas.db import ObjectDB
            from zcas.cas.local import LocalBackend

            if spec.get("url"):
                from zcas.cas.objstore import ObstoreBackend

                backend = ObstoreBackend(spec["url"], spec.get("endpoint"), spec.get("region"), spec.get("allow_http"))
                db = ObjectDB(backend, tmp_dir=spec.get("tmp"))
            else:
                db = ObjectDB(LocalBackend(spec["objects"]))
            _stores[key] = db
    return db


class ArtifactRef(tuple):
    """(id, materializer, allow_pickle) of an input, as shipped to a worker."""


def python_task(spec: dict, fn, args: list, kwargs: dict, allow_pickle: bool, multiple: bool):
    from zcas.cas.chunking import store_buffer

    from . import materializers as mats

    db = open_store(spec)

    def load(v):
        if isinstance(v, ArtifactRef):
            from .step import check_loadable

            oid, tag, allow_pickle = v
            m = check_loadable(tag, allow_pickle, oid[:12])
            if m is mats.PATH:
                raise TypeError("path artifacts cannot be passed to remote runners yet; pass bytes or values")
            return m.load(db.get_bytes(bytes.fromhex(oid)))
        return v

    call_args = [load(a) for a in args]
    call_kwargs = {k: load(v) for k, v in kwargs.items()}
    started = time.time_ns()
    result = fn(*call_args, **call_kwargs)
    ended = time.time_ns()
    values = list(result) if multiple and isinstance(result, tuple) else [result]
    outs = []
    for v in values:
        m = mats.for_value(v, allow_pickle)
        if m is mats.PATH:
            raise TypeError("steps on remote runners cannot return paths yet; return bytes or values")
        outs.append((store_buffer(db, m.save(v)).hex(), m.tag))
    db.flush()  # published before the client records a run naming these ids
    return outs, multiple and isinstance(result, tuple), started, ended


def command_task(spec: dict, root: str, argv: list[str], cwd: str, env: dict, outputs: list[str]):
    """Run a command in the shared repository folder and store its outputs."""
    from zcas.cas.ingest import Ingester
    from zcas.cas.statcache import StatCache

    db = open_store(spec)
    started = time.time_ns()
    try:
        code = subprocess.run(argv, cwd=os.path.join(root, cwd) if cwd else root, env=env).returncode
        err = f"exit {code}"
    except FileNotFoundError:
        code, err = 127, f"command not found: {argv[0]}"
    ended = time.time_ns()
    if code != 0:
        return code, err, {}, started, ended
    missing = [o for o in outputs if not os.path.lexists(os.path.join(root, o))]
    if missing:
        return 1, f"declared output {missing[0]} was not produced", {}, started, ended
    ing = Ingester(db, StatCache(None))
    ids = {o: ing.add(os.path.join(root, o))[0].hex() for o in outputs}
    db.flush()
    return 0, "", ids, started, ended

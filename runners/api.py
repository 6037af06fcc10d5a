"""The repository from Python: versioning data, and querying past runs.

``zcas.Repository()`` finds the repository as the CLI does (or takes a path); every method
is a few lines over zcas.cas and zcas.lineage.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib

from zcas.cas.errors import UsageError


_defaults: dict[str, "Repository"] = {}


def default_repository() -> "Repository":
    """The repository of the current folder, opened once per process for steps to share."""
    from zcas.cas.repo import find_root

    root = find_root()
    repo = _defaults.get(root)
    if repo is None:
        repo = _defaults[root] = Repository(root)
    return repo


class Repository:
    def __init__(self, path: str | os.PathLike | None = None):
        from zcas.cas.repo import Repo, find_root

        self.cas = Repo(find_root(str(path)) if path is not None and not os.path.isdir(os.path.join(str(path), ".zcas")) else (str(path) if path is not None else find_root()))
        self._lineage = None
        self._runtimes: dict = {}

    @classmethod
    def init(cls, path: str | os.PathLike = ".") -> "Repository":
        from zcas.cas.repo import init

        init(str(path))
        return cls(path)

    @property
    def root(self) -> str:
        return self.cas.root

    @property
    def lineage(self):
        if self._lineage is None:
            from zcas.lineage.store import Lineage

            self._lineage = Lineage(self.cas)
        return self._lineage

    def config(self):
        from .config import Config

        return Config(self.cas.zdir)

    def runtime(self, stack: str | None = None):
        """(object db, executor or None, task spec) for a stack (default: the active one)."""
        from . import executors, stacks

        cfg = self.config()
        st = stacks.active(cfg, stack)
        key = (st, cfg.get("run.jobs"))
        cached = self._runtimes.get(key)
        if cached is None:
            if st.store:
                from zcas.cas.db import ObjectDB
                from zcas.cas.objstore import ObstoreBackend

                remote = cfg.section("remote").get(st.store, {})  # a remote's name, or a URL
                url = remote.get("url", st.store)
                backend = ObstoreBackend(url, remote.get("endpoint"), remote.get("region"), remote.get("allow_http"))
                tmp = os.path.join(self.cas.zdir, "objects", "tmp")
                db = ObjectDB(backend, tmp_dir=tmp, cache=self.cas.db)
                spec = {"url": url, "tmp": tmp, **{k: v for k, v in remote.items() if k != "url"}}
            else:
                db = self.cas.db
                spec = {"objects": os.path.join(self.cas.zdir, "objects")}
            cached = self._runtimes[key] = (db, executors.make(st.runner, st.scheduler, cfg.get("run.jobs")), spec)
        return cached

    def close(self) -> None:
        for db, ex, _ in self._runtimes.values():
            if ex is not None:
                ex.close()
            if db is not self.cas.db:
                db.flush()
        self._runtimes.clear()
        if self._lineage is not None:
            self._lineage.close()
        self.cas.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- data versioning -----------------------------------------------------------------

    def put(self, x, *, pickle: bool = False):
        """Store a path (file or folder, its version recorded), bytes, or a Python value.

        Returns an Artifact: ``.id`` is the content id, ``.load()`` gives the value back
        (a path comes back as a checked-out copy).
        """
        from .step import Artifact, Session

        if isinstance(x, (str, pathlib.PurePath)) and not isinstance(x, bytes):
            p = str(x)
            if not os.path.lexists(p):
                raise UsageError(f"cannot put {p}: no such file or folder (to store the string itself, pass it inside a list or as bytes)")
            from zcas.cas.locks import RepoLock

            with RepoLock(self.cas.zdir).shared():
                [(oid, _, _)] = self.cas.add([p])
            self.lineage.index_paths(self.cas.refs.last_recorded)
            return Artifact(oid.hex(), "path@1", Session(self))
        with Session(self) as s:
            a = s.store(x, pickle)
            from zcas.lineage.records import Run

            s.record(Run(step="zcas.put", kind="python", status="ran", outputs={"value": a.id},
                         materializers={"value": a.materializer}, started_ns=s.started, ended_ns=s.started,
                         host=s.host, user=s.user, zcas_version=s.version), now=True)
        return a

    def get(self, ref: str, *, allow_pickle: bool = False):
        """The value of an id, prefix or tag: as it was put (value, bytes) or a checked-out path.

        A pickled value is refused unless ``allow_pickle=True``: unpickling runs code, so it
        is for values you trust (a shared remote's records may name pickle for anything).
        """
        return self.artifact(ref, allow_pickle=allow_pickle).load()

    def artifact(self, ref: str, *, allow_pickle: bool = False):
        from .step import Artifact, Session

        oid = self.cas.resolve(str(ref))
        tag = None
        for rid in self.lineage.graph.producers(oid):
            rec = self.lineage.run_dict(rid) or {}
            for name, o in rec.get("outputs", {}).items():
                if o == oid.hex():
                    tag = rec.get("materializers", {}).get(name)
            if tag:
                break
        if tag is None:
            from zcas.cas import codec

            tag = "bytes@1" if self.cas.db.entry(oid).kind in (codec.KIND_BLOB, codec.KIND_CHUNKED) else "path@1"
        return Artifact(oid.hex(), tag, Session(self), allow_pickle=allow_pickle)

    def checkout(self, ref: str, dest: str | os.PathLike, force: bool = False) -> int:
        from zcas.cas.checkout import checkout

        return checkout(self.cas.db, self.cas.resolve(str(ref)), str(dest), force=force)

    def tag(self, name: str, ref: str, force: bool = False) -> None:
        from zcas.cas.refs import check_tag_name

        self.lineage.set_tag(check_tag_name(name), self.cas.resolve(str(ref)), force=force)

    def history(self, path: str | os.PathLike) -> list:
        """Every recorded version of a path, oldest first (PathVersion records)."""
        return self.lineage.history(self.cas.rel(str(path)))

    # -- the past ------------------------------------------------------------------------

    def runs(self, step: str | None = None, *, pipeline: str | None = None, status: str | None = None,
             limit: int | None = None, since: dt.datetime | None = None) -> list["RunView"]:
        """Runs newest first; ``pipeline=NAME`` gives that pipeline's runs (with ``.steps``)."""
        since_ns = int(since.timestamp() * 1e9) if since else 0
        if pipeline is not None:
            found = [(rid, r) for rid, r in self.lineage.runs(step=pipeline, status=status, since_ns=since_ns)
                     if r["kind"] == "pipeline"][:limit]
        else:
            found = self.lineage.runs(step=step, status=status, since_ns=since_ns, limit=limit)
        return [RunView(self, rid.hex(), r) for rid, r in found]

    def run(self, ref: str) -> "RunView":
        from zcas.cas.oid import check_prefix

        p = check_prefix(ref)
        found = self.lineage.graph.find_prefix(p) if len(p) < 64 else [bytes.fromhex(p)]
        found = [f for f in found if self.lineage.graph.has_run(f)]
        if len(found) != 1:
            raise UsageError(f"{ref!r} names {'no' if not found else 'more than one'} run")
        return RunView(self, found[0].hex(), self.lineage.run_dict(found[0]))

    def lineage_of(self, ref) -> "LineageView":
        oid = bytes.fromhex(ref.id) if hasattr(ref, "id") and not isinstance(ref, RunView) else None
        if isinstance(ref, RunView):
            return LineageView(self, bytes.fromhex(ref.id), True)
        if oid is None:
            oid = self.cas.resolve(str(ref))
        return LineageView(self, oid, self.lineage.graph.has_run(oid))


class RunView:
    """One recorded run, for reading: step, status, timing, params, inputs and outputs."""

    def __init__(self, repo: Repository, rid: str, rec: dict):
        self.repository = repo
        self.id = rid
        self.record = rec

    def __repr__(self) -> str:
        return f"<run {self.id[:12]} {self.step} {self.status} {self.duration:.3f}s>"

    step = property(lambda self: self.record["step"])
    kind = property(lambda self: self.record["kind"])
    status = property(lambda self: self.record["status"])
    cached = property(lambda self: self.record["status"] == "cached")
    params = property(lambda self: dict(self.record.get("params", {})))
    duration = property(lambda self: max(0, self.record["ended_ns"] - self.record["started_ns"]) / 1e9)
    started = property(lambda self: dt.datetime.fromtimestamp(self.record["started_ns"] / 1e9))

    def _arts(self, field: str, allow_pickle: bool = False) -> dict:
        from .step import Artifact, Session

        mats = self.record.get("materializers", {})
        s = Session(self.repository)
        return {n: Artifact(o, mats.get(n, "bytes@1"), s, allow_pickle=allow_pickle) for n, o in self.record.get(field, {}).items()}

    @property
    def outputs(self) -> dict:
        return self._arts("outputs")

    @property
    def inputs(self) -> dict:
        return self._arts("inputs")

    def load(self, *, allow_pickle: bool = False):
        """The step's result: one value, or a tuple for a step that returned several.

        A pickled result is refused unless ``allow_pickle=True`` (unpickling runs code)."""
        outs = self._arts("outputs", allow_pickle)
        if "output" in outs:
            return outs["output"].load()
        if not outs:
            raise UsageError(f"run {self.id[:12]} has no outputs")
        return tuple(outs[k].load() for k in sorted(outs, key=lambda k: int(k.split(".")[-1]) if "." in k else 0))

    @property
    def steps(self) -> dict:
        return {n: self.repository.run(r) for n, r in self.record.get("steps", {}).items()}


class LineageView:
    def __init__(self, repo: Repository, oid: bytes, is_run: bool):
        self.repository, self.oid, self.is_run = repo, oid, is_run

    def _runs(self, g) -> list[RunView]:
        return sorted((RunView(self.repository, rid, r) for rid, r in g.runs.items()), key=lambda v: -v.record["started_ns"])

    def ancestors(self, depth: int | None = None) -> list[RunView]:
        from zcas.lineage.walk import ancestors

        return self._runs(ancestors(self.repository.lineage, self.oid, depth or (1 << 30), self.is_run))

    def descendants(self, depth: int | None = None) -> list[RunView]:
        from zcas.lineage.walk import descendants

        return self._runs(descendants(self.repository.lineage, self.oid, depth or (1 << 30), self.is_run))

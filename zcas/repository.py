"""The repository from Python: versioning data, and querying past runs.

``zcas.Repository()`` finds the repository as the CLI does (or takes a path); every method
is a few lines over zcas.cas and zcas.lineage.
"""

from __future__ import annotations

import datetime as dt
import os
import pathlib
import socket
import time
from typing import TYPE_CHECKING, Any, Protocol

from zcas import stacks
from zcas._version import __version__
from zcas.cas import codec
from zcas.cas.cache import CachingBackend
from zcas.cas.checkout import checkout
from zcas.cas.db import ObjectDB
from zcas.cas.errors import UsageError
from zcas.cas.local import LocalBackend
from zcas.cas.locks import RepoLock
from zcas.cas.objstore import ObstoreBackend
from zcas.cas.oid import check_prefix
from zcas.cas.refs import check_tag_name
from zcas.cas.repo import Repo, find_root
from zcas.cas.repo import init as init_repo
from zcas.cas.statcache import StatCache
from zcas.lineage.records import PathVersion, Run
from zcas.lineage.store import Lineage
from zcas.lineage.walk import Subgraph, ancestors, descendants
from zcas.runners import executors
from zcas.runners.core import Core, user_name
from zcas.runners.executors import Executor
from zcas.runners.python import Artifact
from zcas.runners.values import fetch_stored, load_value, store_value_kept

from .config import Config

if TYPE_CHECKING:
    from .remotes import Remote

_defaults: dict[str, Repository] = {}


class HasId(Protocol):
    """A run or an artifact: anything with a hex ``id`` (RunView, Artifact, PipelineRun)."""

    @property
    def id(self) -> str: ...


def default_repository() -> Repository:
    """The repository of the current folder, opened once per process for steps to share."""
    root = find_root()
    repo = _defaults.get(root)
    if repo is None:
        repo = _defaults[root] = Repository(root)
    return repo


class Repository:
    """The one façade over a repository: its objects, lineage, configuration, remotes and
    stacks. Nothing here starts a pool or a cluster: a runner's executor is started by the
    core when a step first executes (``core()``), and loading a value needs only the store."""

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        if path is None:
            root = find_root()
        elif os.path.isdir(os.path.join(str(path), ".zcas")):
            root = str(path)
        else:
            root = find_root(str(path))
        self.cas = Repo(root)
        self._lineage: Lineage | None = None
        self._config: Config | None = None
        self._stores: dict[str, tuple[Any, dict[str, Any]]] = {}  # stack name -> (object db, task spec)
        self._executors: dict[tuple[str, int], Executor | None] = {}

    @classmethod
    def init(cls, path: str | os.PathLike[str] = ".") -> Repository:
        init_repo(str(path))
        return cls(path)

    @property
    def root(self) -> str:
        return self.cas.root

    @property
    def lineage(self) -> Lineage:
        if self._lineage is None:
            self._lineage = Lineage(self.cas)
        return self._lineage

    def reindex(self) -> dict[str, int]:
        """Rebuild the lineage index from the object store and refs alone; what it found."""
        if self._lineage is not None:
            self._lineage.close()
        self._lineage = Lineage(self.cas, rebuild=True)
        return dict(self._lineage.last_reindex)

    def config(self) -> Config:
        """The layered configuration (defaults, user file, repository, ZCAS_* variables), read once."""
        if self._config is None:
            self._config = Config(self.cas.zdir)
        return self._config

    def read_lock(self) -> Any:
        """The repository's shared lock (gc takes it exclusive): held while runs are recorded."""
        return RepoLock(self.cas.zdir).shared()

    def stack(self, name: str | None = None) -> stacks.Stack:
        return stacks.active(self.config(), name)

    def store(self, stack: str | None = None) -> tuple[Any, dict[str, Any]]:
        """(object db, how a worker opens it) of a stack (default: the active one)."""
        st = self.stack(stack)
        found = self._stores.get(st.name)
        if found is None:
            if st.store:
                remote = self.config().section("remote").get(st.store, {})  # a remote's name, or a URL
                url = remote.get("url", st.store)
                backend = ObstoreBackend(url, remote.get("endpoint"), remote.get("region"), remote.get("allow_http"))
                objects = os.path.join(self.cas.zdir, "objects")
                tmp = os.path.join(objects, "tmp")
                # Reads kept in a local cache; no fsync there: every read of it is checked.
                db = ObjectDB(CachingBackend(backend, LocalBackend(objects, fsync=False)), tmp_dir=tmp)
                found = (db, {"url": url, "tmp": tmp, **{k: v for k, v in remote.items() if k != "url"}})
            else:
                found = (self.cas.db, {"objects": os.path.join(self.cas.zdir, "objects")})
            self._stores[st.name] = found
        return found

    def executor(self, stack: str | None = None) -> Executor | None:
        """A stack's executor (None: steps execute in the calling thread), started now."""
        st = self.stack(stack)
        jobs = int(self.config().get("run.jobs"))
        key = (st.name, jobs)
        if key not in self._executors:
            self._executors[key] = executors.make(st.runner, st.scheduler, jobs)
        return self._executors[key]

    def remote_for(self, stack: str | None = None) -> Remote | None:
        """The remote a stack's runs ask on a local miss: the stack's ``remote``, else the
        default one (origin, or the only one); None if there is none."""
        from .remotes import open_default  # ~3 ms (-X importtime) no run without a remote needs

        return open_default(self.cas, self.lineage, self.stack(stack).remote, self.config())

    def core(self, stack: str | None = None, *, out: Any = None, verify: bool | None = None,
             remote_cache: bool | None = None, cmd_stdout: Any = None, pipeline: str | None = None) -> Core:
        """The execution core for runs on a stack: settings not given come from the config
        (``run.verify``, ``run.remote_cache``); the executor and remote open on first need."""
        cfg = self.config()
        db, spec = self.store(stack)
        if remote_cache is None:
            remote_cache = bool(cfg.get("run.remote_cache", True)) and not os.environ.get("ZCAS_NO_REMOTE_CACHE")
        name = self.stack(stack).name
        return Core(self.cas, self.lineage, db=db, executor=lambda: self.executor(name),
                    remote=(lambda: self.remote_for(name)) if remote_cache else None,
                    verify=bool(cfg.get("run.verify", False)) if verify is None else verify, out=out,
                    cmd_stdout=cmd_stdout, task_spec=spec, pipeline=pipeline)

    def close(self) -> None:
        for ex in self._executors.values():
            if ex is not None:
                ex.close()
        self._executors.clear()
        for db, _ in self._stores.values():
            if db is not self.cas.db:
                db.flush()
        self._stores.clear()
        if self._lineage is not None:
            self._lineage.close()
        self.cas.close()

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- data versioning -----------------------------------------------------------------

    def load(self, a: Artifact) -> Any:
        """An artifact's value, from the active stack's store (what ``Artifact.load`` calls)."""
        return load_value(self.store()[0], self.cas.zdir, a.id, a.materializer, a.allow_pickle)

    def fetch(self, a: Artifact) -> bytes:
        """An artifact's stored bytes, verified (``Artifact.load`` decodes a value from them)."""
        return fetch_stored(self.store()[0], a.id, a.materializer, a.allow_pickle)

    def put(self, x: Any, *, pickle: bool = False) -> Artifact:
        """Store a path (file or folder, its version recorded), bytes, or a Python value.

        Returns an Artifact: ``.id`` is the content id, ``.load()`` gives the value back
        (a path comes back as a checked-out copy).
        """
        if isinstance(x, (str, pathlib.PurePath)):
            p = str(x)
            if not os.path.lexists(p):
                raise UsageError(f"cannot put {p}: no such file or folder "
                                 "(to store the string itself, pass it inside a list or as bytes)")
            with RepoLock(self.cas.zdir).shared():
                [(oid, _, _)] = self.cas.add([p])
            self.lineage.index_paths(self.cas.refs.last_recorded)
            return Artifact(oid.hex(), "path@1", self)
        db = self.store()[0]
        now = time.time_ns()
        with RepoLock(self.cas.zdir).shared():
            # a path was handled above: a value needs no stat cache (not read from disk)
            oid_hex, tag, kept = store_value_kept(db, StatCache(None), x, pickle)
            if db is not self.cas.db:
                db.flush()  # on the stack's store before a record names it
            self.lineage.record_run(Run(step="zcas.put", kind="python", status="ran", outputs={"value": oid_hex},
                                        materializers={"value": tag}, started_ns=now, ended_ns=now,
                                        host=socket.gethostname(), user=user_name(), zcas_version=__version__))
        # Loads decode the stored bytes, never hand back ``x``: a step given this artifact must
        # get what its key names (x's owner may change it; a dict's keys come back sorted).
        return Artifact(oid_hex, tag, self, allow_pickle=pickle, data=kept)

    def get(self, ref: str, *, allow_pickle: bool = False) -> Any:
        """The value of an id, prefix or tag: as it was put (value, bytes) or a checked-out path.

        A pickled value is refused unless ``allow_pickle=True``: unpickling runs code, so it
        is for values you trust (a shared remote's records may name pickle for anything).
        """
        return self.artifact(ref, allow_pickle=allow_pickle).load()

    def artifact(self, ref: str, *, allow_pickle: bool = False) -> Artifact:
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
            tag = "bytes@1" if self.cas.db.entry(oid).kind in (codec.KIND_BLOB, codec.KIND_CHUNKED) else "path@1"
        return Artifact(oid.hex(), tag, self, allow_pickle=allow_pickle)

    def checkout(self, ref: str, dest: str | os.PathLike[str], force: bool = False) -> int:
        return checkout(self.cas.db, self.cas.resolve(str(ref)), str(dest), force=force)

    def tag(self, name: str, ref: str, force: bool = False) -> None:
        self.lineage.set_tag(check_tag_name(name), self.cas.resolve(str(ref)), force=force)

    def history(self, path: str | os.PathLike[str]) -> list[PathVersion]:
        """Every recorded version of a path, oldest first (PathVersion records)."""
        return self.lineage.history(self.cas.rel(str(path)))

    # -- the past ------------------------------------------------------------------------

    def runs(self, step: str | None = None, *, pipeline: str | None = None, status: str | None = None,
             limit: int | None = None, since: dt.datetime | None = None) -> Runs:
        """Runs newest first; ``pipeline=NAME`` gives that pipeline's runs (with ``.steps``)."""
        since_ns = int(since.timestamp() * 1e9) if since else 0
        if pipeline is not None:
            found = [(rid, r) for rid, r in self.lineage.runs(step=pipeline, status=status, since_ns=since_ns)
                     if r["kind"] == "pipeline"][:limit]
        else:
            found = self.lineage.runs(step=step, status=status, since_ns=since_ns, limit=limit)
        return Runs(RunView(self, rid.hex(), r) for rid, r in found)

    def compare(self, a: str, b: str, every: bool = False) -> dict[str, Any]:
        """Two experiments compared: ``{"a", "b", "params": [{"name", "old", "new"}],
        "metrics": [{"name", "old", "new", "change", "percent"}]}``. ``a`` and ``b`` are run
        ids or prefixes, tags, step or pipeline names (the newest run), ``HEAD`` or ``REF~N``
        (as ``zcas metrics diff`` takes them); ``every`` lists unchanged ones too."""
        from .experiments import compare

        return compare(self, a, b, every)

    def run(self, ref: str) -> RunView:
        p = check_prefix(ref)
        found = self.lineage.graph.find_prefix(p) if len(p) < 64 else [bytes.fromhex(p)]
        found = [f for f in found if self.lineage.graph.has_run(f)]
        rec = self.lineage.run_dict(found[0]) if len(found) == 1 else None
        if rec is None:
            raise UsageError(f"{ref!r} names {'more than one' if len(found) > 1 else 'no'} run")
        return RunView(self, found[0].hex(), rec)

    def explain(self, step: Any) -> list[dict[str, Any]]:
        """Everything the cache key of ``step`` covers, one dict per item (``kind``, ``name``,
        ``value``, ``file``, ``line``): each definition its code reaches, constant, package
        version and what cannot be resolved; the params, inputs and files read of its last
        executed run. ``step`` is a ``@zcas.step`` (its code as it is now) or a step's name."""
        from .covers import of_step

        return of_step(self.lineage, self.cas.db, self.root, step)

    def lineage_of(self, ref: HasId | str) -> LineageView:
        """The lineage of a run, an artifact, or an id (or prefix) or tag: its ancestors and descendants."""
        if isinstance(ref, RunView):
            return LineageView(self, bytes.fromhex(ref.id), True)
        rid = getattr(ref, "id", None)
        oid = bytes.fromhex(rid) if isinstance(rid, str) else self.cas.resolve(str(ref))
        return LineageView(self, oid, self.lineage.graph.has_run(oid))


class Runs(list["RunView"]):
    """Runs, newest first, as a list; ``to_pandas()`` makes them a table."""

    def to_pandas(self) -> Any:
        """One row per run: id, step, status, started, duration, then a column per param and
        per metric (flattened: ``train.lr``; a metric sharing a param's name is
        ``metrics.NAME``). Needs pandas."""
        from zcas.lineage.experiments import of_run

        from .experiments import to_pandas

        df = to_pandas([of_run(r.id, r.record) for r in self])
        df.insert(4, "duration", [r.duration for r in self])
        return df.rename(columns={"name": "step"})


class RunView:
    """One recorded run, for reading: step, status, timing, params, inputs and outputs."""

    def __init__(self, repo: Repository, rid: str, rec: dict[str, Any]) -> None:
        self.repository = repo
        self.id = rid
        self.record = rec

    def __repr__(self) -> str:
        return f"<run {self.id[:12]} {self.step} {self.status} {self.duration:.3f}s>"

    @property
    def step(self) -> str:
        return str(self.record["step"])

    @property
    def kind(self) -> str:
        return str(self.record["kind"])

    @property
    def status(self) -> str:
        return str(self.record["status"])

    @property
    def cached(self) -> bool:
        return bool(self.record["status"] == "cached")

    @property
    def params(self) -> dict[str, Any]:
        return dict(self.record.get("params", {}))

    @property
    def duration(self) -> float:
        return float(max(0, self.record["ended_ns"] - self.record["started_ns"]) / 1e9)

    @property
    def metrics(self) -> dict[str, int | float]:
        """Flattened name -> number (a pipeline run: its steps' metrics together)."""
        return dict(self.record.get("metrics", {}))

    @property
    def log(self) -> dict[str, str]:
        """Stream ("stdout", "stderr") -> id of what the run printed (a hit: its source's)."""
        from .experiments import log_of

        return log_of(self.repository.lineage, self.id, self.record)

    @property
    def started(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self.record["started_ns"] / 1e9)

    def _arts(self, field: str, allow_pickle: bool = False) -> dict[str, Artifact]:
        mats = self.record.get("materializers", {})
        return {n: Artifact(o, mats.get(n, "bytes@1"), self.repository, allow_pickle=allow_pickle)
                for n, o in self.record.get(field, {}).items()}

    @property
    def outputs(self) -> dict[str, Artifact]:
        return self._arts("outputs")

    @property
    def inputs(self) -> dict[str, Artifact]:
        return self._arts("inputs")

    def load(self, *, allow_pickle: bool = False) -> Any:
        """The step's result: one value, or a tuple for a step that returned several.

        A pickled result is refused unless ``allow_pickle=True`` (unpickling runs code)."""
        outs = self._arts("outputs", allow_pickle)
        if "output" in outs:
            return outs["output"].load()
        if not outs:
            raise UsageError(f"run {self.id[:12]} has no outputs")
        return tuple(outs[k].load() for k in sorted(outs, key=lambda k: int(k.split(".")[-1]) if "." in k else 0))

    @property
    def steps(self) -> dict[str, RunView]:
        return {n: self.repository.run(r) for n, r in self.record.get("steps", {}).items()}


class LineageView:
    """The runs upstream (``ancestors``) or downstream (``descendants``) of a run or an artifact."""

    def __init__(self, repo: Repository, oid: bytes, is_run: bool) -> None:
        self.repository, self.oid, self.is_run = repo, oid, is_run

    def _runs(self, g: Subgraph) -> list[RunView]:
        return sorted((RunView(self.repository, rid, r) for rid, r in g.runs.items()), key=lambda v: -v.record["started_ns"])

    def ancestors(self, depth: int | None = None) -> list[RunView]:
        return self._runs(ancestors(self.repository.lineage, self.oid, depth or (1 << 30), self.is_run))

    def descendants(self, depth: int | None = None) -> list[RunView]:
        return self._runs(descendants(self.repository.lineage, self.oid, depth or (1 << 30), self.is_run))

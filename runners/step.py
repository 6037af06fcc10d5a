"""Python steps and pipelines: ``@zcas.step`` and ``@zcas.pipeline``.

Inside a pipeline, calling a step computes its key at once (identity, code fingerprint,
canonical params, input artifact ids, declared environment, materializer versions) and
either finds it in the lineage cache, returning handles to the stored outputs without
loading them, or runs it, storing and recording what it returned. Outside a pipeline a
step call does the same and returns the value itself.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import time

from zcas.cas.errors import UsageError, ZcasError

from . import materializers as mats

KEY_SCHEMA = "zcas-pykey-1"
_session: contextvars.ContextVar = contextvars.ContextVar("zcas_session", default=None)


class Artifact:
    """A value in the store: its id and materializer; ``load()`` fetches it (once).

    An artifact a runner is still computing waits for it when its id or value is needed.
    """

    __slots__ = ("_id", "_mat", "_value", "_session", "_pending", "_index", "allow_pickle")
    _MISSING = object()

    def __init__(self, oid: str | None, materializer: str | None, session=None, value=_MISSING, pending=None, index=None,
                 allow_pickle: bool = False):
        self._id = oid
        self._mat = materializer
        self._session = session
        self._value = value
        self._pending = pending
        self._index = index
        # Loading a pickle runs code: only for values of a step that opted in (pickle=True)
        # or a caller who asked (allow_pickle=True), never because a record names pickle.
        self.allow_pickle = allow_pickle

    def _wait(self) -> None:
        if self._id is None:
            outs, multi = self._pending.wait()
            if self._index is None and multi:
                raise UsageError(f"step {self._pending.step.name} returned {len(outs)} outputs: unpack them (a, b = step(...))")
            self._id, self._mat = outs[self._index or 0]

    @property
    def id(self) -> str:
        self._wait()
        return self._id

    @property
    def materializer(self) -> str:
        self._wait()
        return self._mat

    def __iter__(self):
        """Unpack the outputs of a step that returned a tuple (waiting for it if needed)."""
        if self._pending is None or self._index is not None:
            raise TypeError("a single artifact cannot be unpacked")
        outs, multi = self._pending.wait()
        if not multi:
            raise TypeError(f"step {self._pending.step.name} returned one output, not a tuple")
        return iter([Artifact(o, m, self._session, pending=self._pending, index=i, allow_pickle=self.allow_pickle)
                     for i, (o, m) in enumerate(outs)])

    def __repr__(self) -> str:
        return f"Artifact({self.id[:12]}, {self.materializer})"

    def __str__(self) -> str:
        return self.id

    def __eq__(self, other) -> bool:
        return isinstance(other, Artifact) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def load(self):
        if self._value is Artifact._MISSING:
            self._value = self._session.load(self)
        return self._value


def _output_names(rec_outputs: dict) -> list[str]:
    if "output" in rec_outputs:
        return ["output"]
    return sorted(rec_outputs, key=lambda n: int(n.split(".")[1]))


def _well_formed_outputs(names) -> bool:
    """A Python step's outputs are ``output`` alone, or ``output.0`` ... ``output.N-1``."""
    names = set(names)
    return names == {"output"} or (bool(names) and names == {f"output.{i}" for i in range(len(names))})


def check_loadable(tag: str, allow_pickle: bool, what: str) -> "mats.Materializer":
    """The materializer for ``tag``, refusing pickle unless the caller allows it."""
    m = mats.by_name(tag)
    if m.name == "pickle" and not allow_pickle:
        raise UsageError(f"refusing to unpickle {what}: loading a pickle runs code; pass allow_pickle=True "
                         "if you trust whoever stored it (steps: @zcas.step(pickle=True))")
    return m


class Session:
    """One pipeline call (or one standalone step call): where runs are stored and recorded."""

    say = None  # set by the CLI: a callable that prints one status line per step

    remote_cache = os.environ.get("ZCAS_NO_REMOTE_CACHE", "") == ""  # the CLI's --no-remote-cache sets it off

    def __init__(self, repo=None, pipeline: str | None = None, stack: str | None = None):
        from zcas.cas.statcache import StatCache

        from .api import Repository, default_repository

        if isinstance(repo, Repository):
            self.repository = repo
        else:
            self.repository = default_repository() if repo is None else Repository(repo)
        self.repo = self.repository.cas
        self.lineage = self.repository.lineage
        self.db, self.executor, self.spec = self.repository.runtime(stack)
        self.inflight: list = []
        self.statcache = StatCache(self.repo.statcache_path)
        self.pipeline = pipeline
        self.id = os.urandom(16).hex()
        self.pending: list = []
        self._remote = None
        self.steps: dict[str, str] = {}
        self.started = time.time_ns()
        import getpass
        import socket

        from zcas._version import __version__

        self.host = socket.gethostname()
        try:
            self.user = getpass.getuser()
        except Exception:  # noqa: BLE001
            self.user = str(os.getuid())
        self.version = __version__

    def __enter__(self):
        from zcas.cas.locks import RepoLock

        self._lock = RepoLock(self.repo.zdir).shared()  # gc waits until this call is recorded
        self._token = _session.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _session.reset(self._token)
        try:
            if exc[0] is None:
                self.wait_all()
        finally:
            try:
                self.flush()
                self.statcache.save()
            finally:
                self._lock.release()

    def wait_all(self) -> None:
        """Every step handed to a runner has finished and is recorded (or raised)."""
        while self.inflight:
            self.inflight.pop(0).wait()

    # -- loading -----------------------------------------------------------------------------

    def load(self, a: Artifact):
        oid = bytes.fromhex(a.id)
        m = check_loadable(a.materializer, a.allow_pickle, a.id[:12])
        if m is mats.PATH:
            dest = os.path.join(self.repo.zdir, "checkouts", a.id)
            if not os.path.lexists(dest):
                from zcas.cas.checkout import checkout

                tmp = f"{dest}.{os.getpid()}.tmp"
                checkout(self.db, oid, tmp, force=True)
                try:
                    os.replace(tmp, dest)
                except OSError:  # another process checked out the same id first: use it
                    if not os.path.isdir(dest):
                        raise
                    import shutil

                    shutil.rmtree(tmp, ignore_errors=True)
            import pathlib

            return pathlib.Path(dest)
        return m.load(self.db.get_bytes(oid))

    def store(self, value, allow_pickle: bool) -> Artifact:
        m = mats.for_value(value, allow_pickle)
        if m is mats.PATH:
            from zcas.cas.ingest import Ingester

            oid = Ingester(self.db, self.statcache).add(str(value))[0]
        else:
            from zcas.cas.chunking import store_buffer

            oid = store_buffer(self.db, m.save(value))
        return Artifact(oid.hex(), m.tag, self, value, allow_pickle=allow_pickle)

    # -- recording ---------------------------------------------------------------------------

    def record(self, run, now: bool) -> str:
        from zcas.cas.oid import hash_bytes
        from zcas.lineage import serde

        if now:
            return self.lineage.record_run(run).hex()
        self.pending.append(run)
        return hash_bytes(serde.encode(run)).hex()

    def flush(self) -> None:
        runs, self.pending = self.pending, []
        if runs:
            self.lineage.record_runs(runs)
        else:
            self.db.flush()
        if self.db is not self.repo.db:
            self.db.flush()

    def note_step(self, name: str, rid: str) -> None:
        key, n = name, 1
        while key in self.steps:
            n += 1
            key = f"{name}#{n}"
        self.steps[key] = rid

    # -- calling a step ------------------------------------------------------------------

    def call(self, step: "Step", args: tuple, kwargs: dict):
        from zcas.lineage.canonical import check, dumps
        from zcas.lineage.records import Run

        from .keys import env_digests, key_of

        bound = step.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        comps = {"schema": KEY_SCHEMA, "step": step.name, "code": step.code_id()}
        inputs: dict[str, str] = {}
        params: dict = {}
        used_mats: dict[str, str] = {}
        for pname, value in bound.arguments.items():
            kind = step.signature.parameters[pname].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:  # *args: each element on its own
                items = [(f"{pname}.{i}", v) for i, v in enumerate(value)]
            elif kind is inspect.Parameter.VAR_KEYWORD:
                items = [(f"{pname}.{k}", v) for k, v in value.items()]
            else:
                items = [(pname, value)]
            for name, v in items:
                if isinstance(v, Artifact):
                    inputs[name] = v.id
                    used_mats[name] = v.materializer
                    comps[f"input:{name}"] = v.id
                    comps[f"inmat:{name}"] = v.materializer
                    continue
                if _has_artifact(v):
                    raise UsageError(f"step {step.name}: pass artifacts as arguments of their own, not inside {type(v).__name__}s (argument {name!r})")
                check(v, f"step {step.name}: parameter {name!r}")
                params[name] = v
                comps[f"param:{name}"] = dumps(v).decode()
        env = env_digests(step.env)  # digests only: a secret passed in the environment is never stored
        for k, v in env.items():
            comps[f"env:{k}"] = dumps(v).decode()
        key = key_of(comps)
        common = dict(step=step.name, kind="python", cache_key=key.hex(), key_components=comps, inputs=inputs,
                      params=params, env=env, code=comps["code"], host=self.host, user=self.user,
                      zcas_version=self.version, session=self.id)
        if step.cache:
            hit = self._lookup(key, step)
            if hit is not None:
                rid, rec = hit
                started = time.time_ns()
                outs = {n: Artifact(o, rec["materializers"][n], self, allow_pickle=step.pickle) for n, o in rec["outputs"].items()}
                run = Run(status="cached", outputs=rec["outputs"], materializers={**used_mats, **{n: rec["materializers"][n] for n in outs}},
                          started_ns=started, ended_ns=time.time_ns(), cached_from=rid.hex(), **common)
                self.note_step(step.name, self.record(run, now=False))
                if Session.say:
                    Session.say(f"cached: {step.name} (run {rid.hex()[:12]})")
                return _shape([outs[n] for n in _output_names(rec["outputs"])], len(outs) > 1 or "output" not in outs)
        from .execute import KeyLock

        lock = KeyLock(self, key)
        lock.acquire(lambda: None)
        try:
            if step.cache:
                hit = self._lookup(key, step)
                if hit is not None:  # another process ran it while we waited
                    lock.release()
                    return self.call(step, args, kwargs)
            mats.check_return_type(step.fn, step.pickle)  # before the work, not after it
            if self.executor is not None:
                return self._submit(step, bound, common, used_mats)
            return self._execute(step, bound, common, used_mats)
        finally:
            lock.release()

    def _submit(self, step: "Step", bound, common: dict, used_mats: dict):
        from .tasks import ArtifactRef, python_task

        args, kwargs = _call_args(step, bound, lambda x: ArtifactRef((x.id, x.materializer, x.allow_pickle)) if isinstance(x, Artifact) else x)
        fut = self.executor.submit(python_task, self.spec, StepRef.of(step), args, kwargs, step.pickle, step.multiple_outputs)
        pending = PendingCall(self, step, fut, common, used_mats, time.time_ns())
        self.inflight.append(pending)
        return Artifact(None, None, self, pending=pending, allow_pickle=step.pickle)

    def remote(self):
        """The default remote, asked on a local miss (opened on first need)."""
        if not Session.remote_cache:
            return None
        if self._remote is None:
            from .remote import open_default

            try:
                self._remote = open_default(self.repo, self.lineage) or False
            except ZcasError as e:
                import sys

                print(f"zcas: warning: remote cache off: {e}", file=sys.stderr)
                self._remote = False
        return self._remote or None

    def _lookup(self, key: bytes, step: "Step"):
        from .remote import cached_run

        return cached_run(self.lineage, key, lambda rec: self._outputs_usable(rec) is not None, self.remote,
                          valid=lambda rec: _fits(rec, step))

    def _outputs_usable(self, rec: dict):
        db = self.db
        for oid in rec["outputs"].values():
            if not db.has(bytes.fromhex(oid)):
                try:
                    db.entry(bytes.fromhex(oid))  # published by another process since?
                except ZcasError:
                    return None
        return rec

    def _execute(self, step: "Step", bound, common: dict, used_mats: dict):
        from zcas.lineage.records import Run

        call_args, call_kwargs = _call_args(step, bound, lambda x: x.load() if isinstance(x, Artifact) else x)
        started = time.time_ns()
        try:
            result = step.fn(*call_args, **call_kwargs)
        except BaseException:
            run = Run(status="failed", started_ns=started, ended_ns=time.time_ns(), exit_status=1,
                      materializers=dict(used_mats), **common)
            self.note_step(step.name, self.record(run, now=True))
            if Session.say:
                Session.say(f"failed: {step.name}")
            raise
        ended = time.time_ns()
        multi = isinstance(result, tuple) and step.multiple_outputs
        values = list(result) if multi else [result]
        names = [f"output.{i}" for i in range(len(values))] if multi else ["output"]
        arts = [v if isinstance(v, Artifact) else self.store(v, step.pickle) for v in values]
        outputs = {n: a.id for n, a in zip(names, arts)}
        if self.db is not self.repo.db:
            self.db.flush()  # outputs published on the stack's store before a record names them
        run = Run(status="ran", outputs=outputs, materializers={**used_mats, **{n: a.materializer for n, a in zip(names, arts)}},
                  started_ns=started, ended_ns=ended, **common)
        rid = self.record(run, now=True)
        self.note_step(step.name, rid)
        if Session.say:
            Session.say(f"ran: {step.name} ({(ended - started) / 1e9:.3f}s, run {rid[:12]})")
        return _shape(arts, multi)


def _fits(rec: dict, step: "Step") -> bool:
    """Whether a cached record can stand for a call of ``step``: well-formed output names,
    each with a materializer this process has at the version stored, and no pickle unless
    the step opted in. Anything else is not a hit: the step reruns."""
    outs, tags = rec.get("outputs"), rec.get("materializers")
    if not isinstance(outs, dict) or not isinstance(tags, dict) or not _well_formed_outputs(outs):
        return False
    for name in outs:
        tag = tags.get(name)
        if not isinstance(tag, str):
            return False
        try:
            m = check_loadable(tag, step.pickle, name)
        except UsageError:
            return False
        if m.tag != tag:
            return False  # stored by another version of its materializer
    return True


class PendingCall:
    """A step a runner is executing; ``wait()`` records its run (once) and gives its outputs."""

    def __init__(self, session, step, future, common: dict, used_mats: dict, submitted: int):
        self.session, self.step, self.future = session, step, future
        self.common, self.used_mats, self.submitted = common, used_mats, submitted
        self.done: tuple | None = None
        self.error: BaseException | None = None

    def wait(self):
        from zcas.lineage.records import Run

        if self.done is not None:
            return self.done
        if self.error is not None:
            raise self.error
        s = self.session
        try:
            outs, multi, started, ended = self.future.result()
        except BaseException as e:
            run = Run(status="failed", started_ns=self.submitted, ended_ns=time.time_ns(), exit_status=1,
                      materializers=dict(self.used_mats), **self.common)
            s.note_step(self.step.name, s.record(run, now=True))
            if Session.say:
                Session.say(f"failed: {self.step.name}")
            self.error = e
            raise
        names = [f"output.{i}" for i in range(len(outs))] if multi else ["output"]
        s.db.refresh()  # the worker published them
        run = Run(status="ran", outputs={n: o for n, (o, _) in zip(names, outs)},
                  materializers={**self.used_mats, **{n: m for n, (_, m) in zip(names, outs)}},
                  started_ns=started, ended_ns=ended, **self.common)
        rid = s.record(run, now=True)
        s.note_step(self.step.name, rid)
        if Session.say:
            Session.say(f"ran: {self.step.name} ({(ended - started) / 1e9:.3f}s, run {rid[:12]}, on {s.executor.name})")
        self.done = (outs, multi)
        return self.done


class StepRef(tuple):
    """(module, qualname, file) of a step: how a worker in another process finds its code."""

    @classmethod
    def of(cls, step) -> "StepRef | object":
        mod = step.fn.__module__
        import sys

        f = getattr(sys.modules.get(mod), "__file__", None)
        if "<locals>" in step.fn.__qualname__:
            return step.fn  # not importable by name: only threads can run it
        return cls((mod, step.fn.__qualname__, f))

    def __call__(self, *args, **kwargs):
        import importlib
        import importlib.util
        import sys

        mod_name, qual, path = self
        mod = sys.modules.get(mod_name)
        if mod is None:
            try:
                mod = importlib.import_module(mod_name)
            except ImportError:
                if not path:
                    raise
                spec = importlib.util.spec_from_file_location(mod_name, path)
                mod = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = mod
                spec.loader.exec_module(mod)
        obj = mod
        for part in qual.split("."):
            obj = getattr(obj, part)
        return (obj.fn if getattr(obj, "is_zcas_step", False) else obj)(*args, **kwargs)


def _call_args(step: "Step", bound, convert) -> tuple[list, dict]:
    """The positional and keyword arguments to call the step's function with, each value
    (and each element of *args and **kwargs) passed through ``convert``."""
    args: list = []
    kwargs: dict = {}
    for pname, value in bound.arguments.items():
        kind = step.signature.parameters[pname].kind
        if kind is inspect.Parameter.VAR_POSITIONAL:
            args.extend(convert(x) for x in value)
        elif kind is inspect.Parameter.VAR_KEYWORD:
            kwargs.update({k: convert(x) for k, x in value.items()})
        elif kind is inspect.Parameter.KEYWORD_ONLY:
            kwargs[pname] = convert(value)
        else:
            args.append(convert(value))
    return args, kwargs


def _shape(arts: list[Artifact], multi: bool):
    return tuple(arts) if multi else arts[0]


def _has_artifact(v, depth: int = 0) -> bool:
    if isinstance(v, Artifact):
        return True
    if depth < 5 and isinstance(v, (list, tuple, set, frozenset)):
        return any(_has_artifact(x, depth + 1) for x in v)
    if depth < 5 and isinstance(v, dict):
        return any(_has_artifact(x, depth + 1) for x in v.values())
    return False


def default_name(fn) -> str:
    """``module.qualname``; for a script run as ``python flow.py`` the module is the file's
    name (``flow``), not ``__main__``, so the same steps have the same names — and share the
    cache — whether the file runs as a script or as ``zcas run flow.py:main``."""
    mod = fn.__module__
    if mod == "__main__":
        path = getattr(inspect.getmodule(fn), "__file__", None)
        if path:
            mod = os.path.splitext(os.path.basename(path))[0]
    return f"{mod}.{fn.__qualname__}"


class Step:
    """A function whose results are cached by content. Made by ``@zcas.step``."""

    is_zcas_step = True

    def __init__(self, fn, name=None, version=None, cache=True, env=(), pickle=False, multiple_outputs=True):
        if not callable(fn):
            raise UsageError("@zcas.step decorates a function")
        self.fn = fn
        self.name = name or default_name(fn)
        self.version = version
        self.cache = cache
        self.env = tuple(env)
        self.pickle = pickle
        self.multiple_outputs = multiple_outputs
        self.signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<zcas step {self.name}>"

    def code_id(self) -> str:
        if self.version is not None:
            return f"version:{self.version}"
        from .fingerprint import fingerprint

        return fingerprint(self.fn)

    def __call__(self, *args, **kwargs):
        s = _session.get()
        if s is not None:
            return s.call(self, args, kwargs)
        with Session() as s:
            out = s.call(self, args, kwargs)
        return tuple(a.load() for a in out) if isinstance(out, tuple) else out.load()


class PipelineRun:
    """What a pipeline call returns: its record id, its steps' runs, and its output."""

    def __init__(self, repository, rid: str, output, steps: dict[str, str], duration: float):
        self.repository = repository
        self.id = rid
        self.output = output
        self.step_ids = steps
        self.duration = duration

    @property
    def steps(self):
        return {n: self.repository.run(r) for n, r in self.step_ids.items()}

    def load(self):
        """The pipeline's return value with every artifact in it loaded."""
        return _load_all(self.output)

    def __repr__(self) -> str:
        return f"<zcas pipeline run {self.id[:12]}: {len(self.step_ids)} steps, {self.duration:.3f}s>"


def _load_all(v):
    if isinstance(v, Artifact):
        return v.load()
    if isinstance(v, tuple):
        return tuple(_load_all(x) for x in v)
    if isinstance(v, list):
        return [_load_all(x) for x in v]
    if isinstance(v, dict):
        return {k: _load_all(x) for k, x in v.items()}
    return v


class Pipeline:
    """A function that calls steps; calling it runs them, reusing every cached result."""

    def __init__(self, fn, name=None):
        self.fn = fn
        self.name = name or default_name(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<zcas pipeline {self.name}>"

    def __call__(self, *args, repo=None, stack=None, **kwargs) -> PipelineRun:
        from zcas.lineage.records import Run

        if _session.get() is not None:
            return self.fn(*args, **kwargs)  # a pipeline inside a pipeline: one session
        status, out = "failed", None
        with Session(repo, pipeline=self.name, stack=stack) as s:
            try:
                out = self.fn(*args, **kwargs)
                s.wait_all()
                status = "ran"
            finally:
                ended = time.time_ns()
                run = Run(step=self.name, kind="pipeline", status=status, started_ns=s.started, ended_ns=ended,
                          host=s.host, user=s.user, zcas_version=s.version, session=s.id, steps=dict(s.steps),
                          exit_status=0 if status == "ran" else 1)
                s.pending.append(run)
                s.flush()
                from zcas.cas.oid import hash_bytes
                from zcas.lineage import serde

                rid = hash_bytes(serde.encode(run)).hex()
        return PipelineRun(s.repository, rid, out, s.steps, (ended - s.started) / 1e9)


def step(fn=None, *, name=None, version=None, cache=True, env=(), pickle=False, multiple_outputs=True):
    """Make a function a cached step: ``@zcas.step`` or ``@zcas.step(name=..., version=...)``.

    name: the step's identity (default: module.qualname). version: replaces the code
    fingerprint (bump it yourself). cache=False: always run (still recorded). env: names of
    environment variables whose values are part of the key. pickle=True: store results no
    materializer handles with pickle. multiple_outputs=False: a returned tuple is one value.
    """
    def deco(f):
        return Step(f, name=name, version=version, cache=cache, env=env, pickle=pickle, multiple_outputs=multiple_outputs)

    return deco(fn) if fn is not None else deco


def pipeline(fn=None, *, name=None):
    """Make a function a pipeline: ``@zcas.pipeline`` or ``@zcas.pipeline(name=...)``."""
    def deco(f):
        return Pipeline(f, name=name)

    return deco(fn) if fn is not None else deco

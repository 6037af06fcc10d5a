"""``@zcas.step`` and ``@zcas.pipeline``: Python functions whose results are cached by content.

Inside a pipeline, calling a step computes its key at once and either finds it in the cache,
returning handles to the stored outputs without loading them, or runs it, storing and
recording what it returned (zcas.runners.core does both, for every kind of step). Outside a
pipeline a step call does the same and returns the value itself.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import os
import shlex
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, overload

from zcas.cas import codec
from zcas.cas.errors import UsageError, ZcasError
from zcas.lineage.canonical import check
from zcas.lineage.records import Run
from zcas.runners import python as pystep
from zcas.runners import spec as spec_mod
from zcas.runners.core import Core
from zcas.runners.fingerprint import fingerprint
from zcas.runners.python import Artifact, default_name

from .repository import Repository, RunView, default_repository

_core: contextvars.ContextVar[Core | None] = contextvars.ContextVar("zcas_core", default=None)
# A processes runner's worker is forked from the thread running the pipeline: a step called
# inside a step there must not use the parent's core (its lineage handle and locks are the
# parent's), so the child starts with none and opens its own.
os.register_at_fork(after_in_child=lambda: _core.set(None))


def _status_out() -> Any:
    """Where a Python program's step lines go: stderr when it is a terminal (people see what
    ran and what was cached), nowhere otherwise (a script's output stays its own)."""
    return sys.stderr if sys.stderr.isatty() else None


class Step:
    """A function whose results are cached by content. Made by ``@zcas.step``."""

    is_zcas_step = True

    def __init__(self, fn: Callable[..., Any], name: str | None = None, version: str | None = None, cache: bool = True,
                 env: tuple[str, ...] | list[str] = (), pickle: bool = False, multiple_outputs: bool = True):
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
        return fingerprint(self.fn)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        core = _core.get()
        if core is not None:
            return pystep.call(core, self, args, kwargs)
        with session(default_repository()) as core:
            out = pystep.call(core, self, args, kwargs)
        return tuple(a.load() for a in out) if isinstance(out, tuple) else out.load()


class session:
    """One pipeline call (or one standalone step call) on a repository: the core its steps
    share, recorded and closed at the end (after every step a runner executes is recorded)."""

    def __init__(self, repo: Repository, pipeline: str | None = None, stack: str | None = None, out: Any = "auto",
                 **options: Any):
        self.repo, self.pipeline, self.stack, self.options = repo, pipeline, stack, options
        self.out = _status_out() if out == "auto" else out

    def __enter__(self) -> Core:
        self._lock = self.repo.read_lock()  # gc waits until this call is recorded
        try:
            self.core = self.repo.core(self.stack, out=self.out, pipeline=self.pipeline, **self.options)
        except BaseException:
            self._lock.release()
            raise
        self._token = _core.set(self.core)
        return self.core

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        _core.reset(self._token)
        try:
            if exc_type is None:
                self.core.wait_all()
            else:
                self.core.settle()
        finally:
            try:
                self.core.close()
            finally:
                self._lock.release()


class PipelineRun:
    """What a pipeline call returns: its record id, its steps' runs, and its output."""

    def __init__(self, repository: Repository, rid: str, output: Any, steps: dict[str, str], duration: float):
        self.repository = repository
        self.id = rid
        self.output = output
        self.step_ids = steps
        self.duration = duration

    @property
    def steps(self) -> dict[str, RunView]:
        return {n: self.repository.run(r) for n, r in self.step_ids.items()}

    def load(self) -> Any:
        """The pipeline's return value with every artifact in it loaded."""
        return _load_all(self.output)

    def __repr__(self) -> str:
        return f"<zcas pipeline run {self.id[:12]}: {len(self.step_ids)} steps, {self.duration:.3f}s>"


def _load_all(v: Any) -> Any:
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

    def __init__(self, fn: Callable[..., Any], name: str | None = None):
        self.fn = fn
        self.name = name or default_name(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<zcas pipeline {self.name}>"

    def __call__(self, *args: Any, repo: Repository | str | os.PathLike[str] | None = None, stack: str | None = None,
                 **kwargs: Any) -> Any:
        if _core.get() is not None:
            return self.fn(*args, **kwargs)  # a pipeline inside a pipeline: one session
        repository = repo if isinstance(repo, Repository) else default_repository() if repo is None else Repository(repo)
        return self.run_in(repository, args, kwargs, stack)

    def run_in(self, repository: Repository, args: tuple, kwargs: dict, stack: str | None = None,
               out: Any = "auto", **options: Any) -> PipelineRun:
        """Run the pipeline on ``repository``; ``options`` are the core's (verify, remote_cache)."""
        status, output = "failed", None
        with session(repository, pipeline=self.name, stack=stack, out=out, **options) as core:
            try:
                output = self.fn(*args, **kwargs)
                core.wait_all()
                status = "ran"
            finally:
                if status != "ran":
                    core.settle()  # steps still on a runner are recorded, and named by this record
                ended = time.time_ns()
                run = Run(step=self.name, kind="pipeline", status=status, started_ns=core.started, ended_ns=ended,
                          host=core.host, user=core.user, zcas_version=core.version, session=core.id,
                          steps=dict(core.steps), params=_params(kwargs), exit_status=0 if status == "ran" else 1,
                          metrics=dict(sorted(core.metrics.items())))  # its steps' metrics, one row in exp show
                rid = core.record(run, now=False)
        return PipelineRun(repository, rid, output, core.steps, (ended - core.started) / 1e9)


def _params(kwargs: dict) -> dict[str, Any]:
    """The keyword arguments of a pipeline call that are plain values: its params, recorded."""
    out = {}
    for k, v in kwargs.items():
        try:
            check(v, k)
        except Exception:  # noqa: BLE001 - not a plain value (an artifact, an object): not a param
            continue
        out[k] = v
    return out


class StepFailedError(ZcasError):
    """A command step inside a Python pipeline failed (exited non-zero, or wrote no output)."""


def command(cmd: str | Sequence[str], *, inputs: Sequence[str] = (), outputs: Sequence[str] = (),
            params: dict[str, Any] | None = None, env: Sequence[str] = (), name: str | None = None,
            cwd: str = "", metrics: Sequence[str] = ()) -> dict[str, Artifact]:
    """Run a command as a cached step, from Python: inside a pipeline it is one of its steps
    (same core, same cache, same runner as ``zcas run``), alone it runs at once.

    cmd: shell code (a string, run with ``sh -c``) or an argument list (no shell). inputs and
    outputs: repository-relative paths it reads and writes. params: values for ``{key}`` in
    the command and ``$ZCAS_PARAM_KEY``. env: variables whose values are part of the key.
    metrics: files it writes holding its metrics (outputs, also read into the record).
    Returns {output path: Artifact}: a file loads as bytes, a folder as a checked-out path.
    Raises StepFailedError if the command fails.
    """
    table = {"cmd": cmd if isinstance(cmd, str) else list(cmd), "inputs": list(inputs), "outputs": list(outputs),
             "params": dict(params or {}), "env": list(env), "cwd": cwd, "metrics": list(metrics)}
    label = name or (cmd if isinstance(cmd, str) else shlex.join(cmd))
    spec = spec_mod.from_table(label, table, f"command {label!r}", check_name=name is not None)
    core = _core.get()
    if core is not None:
        return _command(core, spec)
    with session(default_repository()) as core:
        return _command(core, spec)


def _command(core: Core, spec: spec_mod.StepSpec) -> dict[str, Artifact]:
    from zcas.runners.command import run_command  # the command machinery only for pipelines that use it

    r = run_command(core, spec)
    if r.status == "failed":
        raise StepFailedError(f"step {spec.name} failed: {r.reason}")
    loader = pystep.CoreLoader(core)
    out = {}
    for path, oid in r.outputs.items():
        kind = core.db.entry(bytes.fromhex(oid)).kind
        out[path] = Artifact(oid, "path@1" if kind == codec.KIND_TREE else "bytes@1", loader)
    return out


@overload
def step(fn: Callable[..., Any]) -> Step: ...
@overload
def step(*, name: str | None = None, version: str | None = None, cache: bool = True, env: tuple[str, ...] | list[str] = (),
         pickle: bool = False, multiple_outputs: bool = True) -> Callable[[Callable[..., Any]], Step]: ...


def step(fn: Callable[..., Any] | None = None, *, name: str | None = None, version: str | None = None, cache: bool = True,
         env: tuple[str, ...] | list[str] = (), pickle: bool = False, multiple_outputs: bool = True) -> Any:
    """Make a function a cached step: ``@zcas.step`` or ``@zcas.step(name=..., version=...)``.

    name: the step's identity (default: module.qualname). version: replaces the code
    fingerprint (bump it yourself). cache=False: always run (still recorded). env: names of
    environment variables whose values are part of the key. pickle=True: store results no
    materializer handles with pickle. multiple_outputs=False: a returned tuple is one value.
    """
    def deco(f: Callable[..., Any]) -> Step:
        return Step(f, name=name, version=version, cache=cache, env=env, pickle=pickle, multiple_outputs=multiple_outputs)

    return deco(fn) if fn is not None else deco


@overload
def pipeline(fn: Callable[..., Any]) -> Pipeline: ...
@overload
def pipeline(*, name: str | None = None) -> Callable[[Callable[..., Any]], Pipeline]: ...


def pipeline(fn: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Make a function a pipeline: ``@zcas.pipeline`` or ``@zcas.pipeline(name=...)``."""
    def deco(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(f, name=name)

    return deco(fn) if fn is not None else deco

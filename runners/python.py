"""Python steps: a function called with artifacts and params, its return values its outputs.

How a Python call is planned (identity, code fingerprint, canonical params, input artifact
ids and materializers, declared environment), executed (in this thread, or on a runner as a
task) and its outputs captured (each returned value stored with its materializer);
everything else is the core's (core.py). What a call gives back are ``Artifact`` handles:
ids and materializers, loaded only when asked.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from zcas.cas.errors import UsageError
from zcas.lineage.canonical import check, dumps

from . import codemanifest, fileaudit, implicit, instore, sourcedigest
from . import materializers as mats
from .capture import Logs, teeing
from .core import Core, Done, Pending, Plan
from .fingerprint import manifest
from .keys import env_digests, key_of
from .metrics import collecting, series_of
from .metrics import from_result as metrics_of
from .scratch import store_python_task
from .tasks import ArtifactRef, files_found, python_task
from .values import check_loadable, fetch_stored, immutable, load_value, store_value_kept

KEY_SCHEMA = "zcas-pykey-1"


class StepDef(Protocol):
    """What the core needs of a Python step's definition (``zcas.steps.Step`` is one)."""

    fn: Callable[..., Any]
    name: str
    cache: bool
    env: tuple[str, ...]
    pickle: bool
    multiple_outputs: bool
    signature: inspect.Signature

    def code_id(self) -> str: ...


class Loader(Protocol):
    """Whatever can load an artifact's value: the core, or the repository façade."""

    def load(self, a: Artifact) -> Any:
        """The value (a path: checked out)."""

    def fetch(self, a: Artifact) -> bytes:
        """The stored bytes of a value that is not a path, read and verified."""


class Artifact:
    """A value in the store: its id and materializer; ``load()`` gives the value.

    An artifact a runner is still computing waits for it when its id or value is needed.
    One this process just stored keeps the stored bytes and decodes those (``data``): the
    value a step returned is never handed on as it is, since what it returned and what
    loading gives can differ (a dict's key order, a numpy scalar, an array's layout, class
    or write flag, a Path to the working tree rather than to the stored copy, an object
    the step still holds and changes), and a step downstream must see on its first run
    what it sees on every later one.

    Each ``load()`` decodes a value of its own from the stored bytes (read once, then
    kept): one artifact goes to every step it is passed to, and a step that changed its
    input in place (``xs.append``, ``a += 1``) changed it for the other steps and for the
    caller, whose results were then cached under the id of a value they never had. Only
    a value nobody can change (a number, str, bytes, a tuple of those) or a checked-out
    path is decoded once and shared.
    """

    __slots__ = ("_id", "_mat", "_value", "_data", "_loader", "_pending", "_index", "allow_pickle")
    _MISSING = object()

    def __init__(self, oid: str | None, materializer: str | None, loader: Loader | None = None,
                 pending: Pending | None = None, index: int | None = None, allow_pickle: bool = False,
                 data: bytes | None = None):
        self._id = oid
        self._data = data  # the stored bytes: just stored by this process, or read once
        self._mat = materializer
        self._loader = loader
        self._value: Any = Artifact._MISSING  # a value every load can share (immutable, or a path)
        self._pending = pending
        self._index = index
        # Loading a pickle runs code: only for values of a step that opted in (pickle=True)
        # or a caller who asked (allow_pickle=True), never because a record names pickle.
        self.allow_pickle = allow_pickle

    def _wait(self) -> None:
        if self._id is None:
            assert self._pending is not None
            out = self._pending.wait()
            if self._index is None and isinstance(out, tuple):
                raise UsageError(f"step {self._pending.plan.name} returned {len(out)} outputs: unpack them (a, b = step(...))")
            one = out[self._index or 0] if isinstance(out, tuple) else out
            self._id, self._mat = one._id, one._mat

    @property
    def id(self) -> str:
        self._wait()
        assert self._id is not None
        return self._id

    @property
    def materializer(self) -> str:
        self._wait()
        assert self._mat is not None
        return self._mat

    def __iter__(self) -> Iterator[Artifact]:
        """Unpack the outputs of a step that returned a tuple (waiting for it if needed)."""
        if self._pending is None or self._index is not None:
            raise TypeError("a single artifact cannot be unpacked")
        out = self._pending.wait()
        if not isinstance(out, tuple):
            raise TypeError(f"step {self._pending.plan.name} returned one output, not a tuple")
        return iter(out)

    def __repr__(self) -> str:
        return f"Artifact({self.id[:12]}, {self.materializer})"

    def __str__(self) -> str:
        return self.id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Artifact) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def load(self) -> Any:
        """The value, decoded afresh for each call unless nobody can change it (a path
        comes back as a checked-out copy, the same for every call)."""
        if self._value is not Artifact._MISSING:
            return self._value
        m = check_loadable(self.materializer, self.allow_pickle, self.id[:12])  # pickle: only with the opt-in
        data = self._data
        if data is None:
            assert self._loader is not None
            if m is mats.PATH:
                self._value = self._loader.load(self)
                return self._value
            data = self._data = self._loader.fetch(self)
        value = m.load(data)
        if immutable(value):
            self._value, self._data = value, None
        return value


class CoreLoader:
    """Loads artifacts from a core's object store (a stack's store, when it has one)."""

    def __init__(self, core: Core):
        self.core = core

    def load(self, a: Artifact) -> Any:
        return load_value(self.core.db, self.core.repo.zdir, a.id, a.materializer, a.allow_pickle)

    def fetch(self, a: Artifact) -> bytes:
        return fetch_stored(self.core.db, a.id, a.materializer, a.allow_pickle)


def lookup_run(lineage: Any, rid_hex: str) -> dict | None:
    try:
        return lineage.run_dict(bytes.fromhex(rid_hex))
    except ValueError:
        return None


def _output_names(rec_outputs: dict) -> list[str]:
    if "output" in rec_outputs:
        return ["output"]
    return sorted(rec_outputs, key=lambda n: int(n.split(".")[1]))


def well_formed_outputs(names: Any) -> bool:
    """A Python step's outputs are ``output`` alone, or ``output.0`` ... ``output.N-1``."""
    names = set(names)
    return names == {"output"} or (bool(names) and names == {f"output.{i}" for i in range(len(names))})


def _fits(rec: dict, step: StepDef) -> bool:
    """Whether a cached record can stand for a call of ``step``: well-formed output names,
    each with a materializer this process has at the version stored, and no pickle unless
    the step opted in. Anything else is not a hit: the step reruns."""
    outs, tags = rec.get("outputs"), rec.get("materializers")
    if not isinstance(outs, dict) or not isinstance(tags, dict) or not well_formed_outputs(outs):
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


class PythonCall:
    """One call of a Python step: the Python kind of step (see core.StepKind)."""

    kind = "python"

    def __init__(self, step: StepDef, bound: inspect.BoundArguments, loader: CoreLoader):
        self.step, self.bound, self.loader = step, bound, loader
        self._kept: dict[str, bytes | None] = {}  # the bytes this process stored: decoded, not read back

    def plan(self) -> Plan:
        step = self.step
        sourcedigest.use_folder(os.path.join(self.loader.core.repo.zdir, "defs"))
        comps = {"schema": KEY_SCHEMA, "step": step.name, "code": step.code_id()}
        inputs: dict[str, str] = {}
        params: dict[str, Any] = {}
        used_mats: dict[str, str] = {}
        for pname, value in self.bound.arguments.items():
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
                    raise UsageError(f"step {step.name}: pass artifacts as arguments of their own, not inside "
                                     f"{type(v).__name__}s (argument {name!r})")
                check(v, f"step {step.name}: parameter {name!r}")
                params[name] = v
                comps[f"param:{name}"] = dumps(v).decode()
        env = env_digests(step.env)  # digests only: a secret passed in the environment is never stored
        for k, d in env.items():
            comps[f"env:{k}"] = dumps(d).decode()
        fields: dict[str, Any] = {"inputs": inputs, "params": params, "env": env, "code": comps["code"]}
        core = self.loader.core
        if not comps["code"].startswith("version:"):
            manifest_id = codemanifest.store(core.repo.db, manifest(step.fn), core.repo.root)
            if manifest_id is not None:
                fields["code_manifest"] = manifest_id
        if step.cache:
            comps = self._with_reads(core, comps)
        return Plan(step.name, key_of(comps), comps, fields, used_mats, cache=step.cache)

    def _with_reads(self, core: Core, comps: dict[str, str]) -> dict[str, str]:
        """The key's components with the files the step is expected to read (implicit.py)."""
        lineage = core.lineage

        def lookup(key: bytes) -> dict | None:
            rid = lineage.graph.cache_get(key)
            return None if rid is None else lineage.run_dict(rid)

        here = implicit.known(core.repo.zdir, self.step.name)  # what it read when it last ran here
        bare = lookup(key_of(comps))
        if bare is not None and not bare.get("implicit_inputs") and not here:
            return comps  # the usual case: the last run under this key read no file
        seen = []  # newest knowledge first: the step's last run, then the run under the bare key
        last = lineage.graph.last_run(self.step.name)
        rec = None if last is None else lineage.run_dict(last)
        if rec is not None and isinstance(rec.get("cached_from"), str):
            rec = lookup_run(lineage, rec["cached_from"])
        if rec is not None:
            seen.append(rec)
        if bare is not None:
            seen.append(bare)
        if not here and not any(r.get("implicit_inputs") for r in seen):
            return comps
        return implicit.predict(comps, here, seen, core.repo.root, core.statcache, lookup, self.valid)

    def valid(self, rec: dict) -> bool:
        if not _fits(rec, self.step):
            return False
        core = self.loader.core
        return not rec.get("implicit_inputs") or implicit.matches(core.repo.root, rec["implicit_inputs"], core.statcache)

    def hit(self, core: Core, plan: Plan, rid: bytes, rec: dict) -> tuple[dict[str, str], dict[str, str], Callable[[str], Any]]:
        names = _output_names(rec["outputs"])
        outs = {n: rec["outputs"][n] for n in names}
        tags = {n: rec["materializers"][n] for n in names}
        arts = [Artifact(outs[n], tags[n], self.loader, allow_pickle=self.step.pickle) for n in names]
        shaped = _shape(arts, len(names) > 1 or "output" not in outs)
        return outs, tags, lambda new: shaped

    def before(self, core: Core, plan: Plan) -> None:
        mats.check_return_type(self.step.fn, self.step.pickle)  # before the work, not after it

    def undo(self, core: Core, token: Any) -> None:
        pass

    def here(self, core: Core, plan: Plan) -> Done:
        step = self.step
        # Each argument a value of its own (Artifact.load): the step may change it in place.
        call_args, call_kwargs = _call_args(step, self.bound, lambda x: x.load() if isinstance(x, Artifact) else x)
        started = time.time_ns()
        logs = Logs()
        try:
            with fileaudit.recording(core.repo.root) as seen, teeing(logs), collecting() as logged:
                result = step.fn(*call_args, **call_kwargs)
            reported = metrics_of(step.fn, result, logged)
        except BaseException as e:  # noqa: BLE001 - recorded as failed, then raised to the caller
            return Done(1, f"{type(e).__name__}", {}, {}, started, time.time_ns(), exc=e, found={"log": logs.store(core.db)})
        ended = time.time_ns()
        log = logs.store(core.db)
        multi = isinstance(result, tuple) and step.multiple_outputs
        values = list(result) if multi else [result]
        names = [f"output.{i}" for i in range(len(values))] if multi else ["output"]
        outputs: dict[str, str] = {}
        tags: dict[str, str] = {}
        for n, v in zip(names, values, strict=True):
            if isinstance(v, Artifact):  # a step may return an input as it is
                outputs[n], tags[n] = v.id, v.materializer
            else:
                outputs[n], tags[n], self._kept[n] = store_value_kept(core.db, core.statcache, v, step.pickle)
        statcache = core.statcache if seen.reads - seen.writes else None  # loaded only when needed
        found = {**files_found(seen, core.repo.root, statcache, step.name, values), "metrics": reported,
                 "series": series_of(logged), "log": log}
        return Done(0, "", outputs, tags, started, ended, multi, found=found)

    def task(self, core: Core, plan: Plan) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        step = self.step

        def ref(x: Any) -> Any:
            return ArtifactRef((x.id, x.materializer, x.allow_pickle)) if isinstance(x, Artifact) else x

        args, kwargs = _call_args(step, self.bound, ref)
        if instore.through_store(core):  # a worker sharing only the store: no path of ours goes with it
            core.db.flush()
            return store_python_task, (instore.worker_spec(core), instore.portable_ref(step, StepRef.of(step)), args,
                                       kwargs, step.pickle, step.multiple_outputs, sorted(core.db.damaged), step.name,
                                       plan.components["code"])
        return python_task, (core.task_spec, StepRef.of(step), args, kwargs, step.pickle, step.multiple_outputs,
                             sorted(core.db.damaged), core.repo.root, step.name)

    def result(self, core: Core, plan: Plan, done: Done, rid: str) -> Any:
        if done.code != 0:
            raise done.exc if done.exc is not None else UsageError(f"step {plan.name} failed: {done.error}")
        found = (done.found or {}).get("implicit_inputs")
        if self.step.cache and isinstance(found, dict) and (found or implicit.known(core.repo.zdir, plan.name)):
            implicit.remember(core.repo.zdir, plan.name, found)  # ran here: what the next run may be keyed by
        arts = [Artifact(o, done.materializers[n], self.loader, allow_pickle=self.step.pickle, data=self._kept.get(n))
                for n, o in done.outputs.items()]
        return _shape(arts, done.multi)


def call(core: Core, step: StepDef, args: tuple, kwargs: dict) -> Any:
    """Call a Python step through the core: artifacts (or one), at once or pending on a runner."""
    bound = step.signature.bind(*args, **kwargs)
    bound.apply_defaults()
    c = PythonCall(step, bound, CoreLoader(core))
    out = core.run(c, c.plan())
    if isinstance(out, Pending):
        return Artifact(None, None, c.loader, pending=out, allow_pickle=step.pickle)
    return out


class StepRef(tuple):
    """(module, qualname, file) of a step: how a worker in another process finds its code."""

    @classmethod
    def of(cls, step: StepDef) -> Any:
        mod = step.fn.__module__
        f = getattr(sys.modules.get(mod), "__file__", None)
        if "<locals>" in step.fn.__qualname__:
            return step.fn  # not importable by name: only threads can run it
        return cls((mod, step.fn.__qualname__, f))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        mod_name, qual, path = self
        mod = sys.modules.get(mod_name)
        if mod is None:
            try:
                mod = importlib.import_module(mod_name)
            except ImportError:
                if not path:
                    raise
                spec = importlib.util.spec_from_file_location(mod_name, path)
                if spec is None or spec.loader is None:
                    raise
                mod = importlib.util.module_from_spec(spec)
                sys.modules[mod_name] = mod
                spec.loader.exec_module(mod)
        obj: Any = mod
        for part in qual.split("."):
            obj = getattr(obj, part)
        return (obj.fn if getattr(obj, "is_zcas_step", False) else obj)(*args, **kwargs)


def _call_args(step: StepDef, bound: inspect.BoundArguments, convert: Callable[[Any], Any]) -> tuple[list, dict]:
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


def _shape(arts: list[Artifact], multi: bool) -> Artifact | tuple[Artifact, ...]:
    return tuple(arts) if multi else arts[0]


def _has_artifact(v: Any, depth: int = 0) -> bool:
    if isinstance(v, Artifact):
        return True
    if depth < 5 and isinstance(v, (list, tuple, set, frozenset)):
        return any(_has_artifact(x, depth + 1) for x in v)
    if depth < 5 and isinstance(v, dict):
        return any(_has_artifact(x, depth + 1) for x in v.values())
    return False


def default_name(fn: Callable[..., Any]) -> str:
    """``module.qualname``; for a script run as ``python flow.py`` the module is the file's
    name (``flow``), not ``__main__``, so the same steps have the same names — and share the
    cache — whether the file runs as a script or as ``zcas run flow.py:main``."""
    mod = fn.__module__
    if mod == "__main__":
        path = getattr(inspect.getmodule(fn), "__file__", None)
        if path:
            mod = os.path.splitext(os.path.basename(path))[0]
    return f"{mod}.{fn.__qualname__}"



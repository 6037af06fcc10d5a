"""Pipelines from ``zcas.toml``: steps, their paths, and the graph their paths make.

Everything is checked before anything runs: unknown keys and wrong types name the file,
step and key; a cycle, two steps writing one output, an unknown step or a path leaving the
repository is an error naming what is wrong.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import tomllib
from collections.abc import Iterable, Iterator
from typing import Any

import attrs

from zcas.cas.errors import UsageError, ZcasError
from zcas.lineage.canonical import check

FILE = "zcas.toml"
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_STEP_KEYS = {"cmd", "inputs", "outputs", "metrics", "params", "env", "cwd"}
SHELL = ("sh", "-c")  # how a string ``cmd`` runs
# {name} in a command is the value of param ``name``. Not ``${NAME}`` (the shell's) nor a
# word in doubled braces (``{{.Id}}``, templates of other tools), which stay as written.
PLACEHOLDER = re.compile(r"(?<![$\{])\{([A-Za-z_][A-Za-z0-9_]*)\}(?!\})")


def check_placeholders(where: str, cmd: tuple[str, ...], params: dict[str, Any]) -> None:
    """A ``{name}`` naming no param is a mistake (a typo, a param removed), never text to pass
    on as it is: refused before anything runs."""
    for word in cmd:
        for m in PLACEHOLDER.finditer(word):
            if m.group(1) not in params:
                known = ", ".join(sorted(params)) or "none"
                raise SpecError(f"{where}: {{{m.group(1)}}} in the command names no param (params: {known}); "
                                f"for literal braces write them with a space inside, as in {{ {m.group(1)} }}")


def apply_overrides(steps: dict[str, StepSpec], overrides: list[str]) -> dict[str, StepSpec]:
    """``STEP.KEY=VALUE`` (that step's param) or ``KEY=VALUE`` (every step that has the
    param) for one run; a value is read as JSON when it parses (``200``, ``true``,
    ``[1, 2]``), else kept as a string. A step or param that does not exist is refused."""
    out = dict(steps)
    for text in overrides:
        target, sep, raw = text.partition("=")
        if not sep or not target:
            raise SpecError(f"invalid param {text!r}: use STEP.KEY=VALUE (or KEY=VALUE for every step that has KEY)")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw
        step, dot, key = target.rpartition(".")
        if dot and step in out:
            names = [step]
        elif dot and not any(target in s.params for s in out.values()):
            raise SpecError(f"-p {text}: no step named {step!r} in {FILE} (steps: {', '.join(sorted(out)) or 'none'})")
        else:
            key = target
            names = [n for n, s in out.items() if key in s.params]
        for name in names:
            s = out[name]
            if key not in s.params:
                raise SpecError(f"-p {text}: step {name!r} has no param {key!r} "
                                f"(its params: {', '.join(sorted(s.params)) or 'none'})")
            check(value, f"-p {text}")
            out[name] = attrs.evolve(s, params={**s.params, key: value})
        if not names:
            raise SpecError(f"-p {text}: no step in {FILE} has a param {key!r}")
    return out


class SpecError(ZcasError):
    exit_code = 2


@attrs.frozen
class StepSpec:
    name: str
    cmd: tuple[str, ...]
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    params: dict[str, Any] = attrs.Factory(dict)
    env: tuple[str, ...] = ()
    cwd: str = ""  # relative to the repository root
    # files the command writes holding its metrics (also among ``outputs``: restored on a hit)
    metrics: tuple[str, ...] = ()


def with_metrics(outputs: tuple[str, ...], metrics: tuple[str, ...]) -> tuple[str, ...]:
    """A step's outputs with its metrics files among them: a metrics file is an output (its
    content is kept and restored on a hit) that is also read into the record."""
    return (*outputs, *(m for m in metrics if m not in outputs))


def norm_path(path: str, where: str) -> str:
    """A repository-relative path in / form, refusing absolute paths and escapes."""
    if not path or "\0" in path:
        raise SpecError(f"{where}: empty or invalid path {path!r}")
    if os.path.isabs(path):
        raise SpecError(f"{where}: path {path!r} must be relative to the repository root")
    p = posixpath.normpath(path.replace(os.sep, "/"))
    if p == ".." or p.startswith("../"):
        raise SpecError(f"{where}: path {path!r} leaves the repository")
    return p


def _inside(child: str, parent: str) -> bool:
    return parent == "." or child == parent or child.startswith(parent + "/")


def check_step_paths(where: str, inputs: Iterable[str], outputs: Iterable[str]) -> None:
    """Refuse outputs a run could not safely clear and restore: the repository root, the
    store itself, or a path that is (or holds, or lies in) one of the step's inputs."""
    inputs = list(inputs)
    for o in outputs:
        if o == ".":
            raise SpecError(f"{where}: output {o!r} is the repository root (it holds .zcas); "
                            "name the files or folders the step writes")
        if ".zcas" in o.lower().split("/"):
            raise SpecError(f"{where}: output {o!r} lies inside .zcas, the repository's own store")
        for i in inputs:
            if _inside(o, i) or _inside(i, o):
                raise SpecError(f"{where}: output {o!r} overlaps input {i!r}; a step must not write what it reads")


def _strs(v: Any, where: str) -> tuple[str, ...]:
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise SpecError(f"{where} must be a list of strings")
    return tuple(v)


def load(root: str) -> dict[str, StepSpec]:
    """The steps of ``ROOT/zcas.toml`` (empty if there is none), each validated.

    Cycles and clashing outputs are found by ``graph``, which every caller runs before
    anything executes."""
    path = os.path.join(root, FILE)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{FILE}: {e}") from None
    unknown = set(doc) - {"steps"}
    if unknown:
        raise SpecError(f"{FILE}: unknown top-level key {sorted(unknown)[0]!r} (expected [steps.NAME] tables)")
    steps = doc.get("steps", {})
    if not isinstance(steps, dict):
        raise SpecError(f"{FILE}: 'steps' must be a table of [steps.NAME] tables")
    return {name: _step(name, body) for name, body in steps.items()}


def _step(name: str, body: Any) -> StepSpec:
    return from_table(name, body, f"{FILE}: step {name!r}")


def from_table(name: str, body: Any, where: str, check_name: bool = True) -> StepSpec:
    """A command step from its table (as in zcas.toml), every field checked; ``where``
    prefixes each error."""
    if check_name and not _NAME_RE.fullmatch(name):
        raise SpecError(f"{where}: invalid step name (letters, digits, '_', '.', '-')")
    if not isinstance(body, dict):
        raise SpecError(f"{where} must be a table")
    extra = set(body) - _STEP_KEYS
    if extra:
        raise SpecError(f"{where}: unknown key {sorted(extra)[0]!r} (allowed: {', '.join(sorted(_STEP_KEYS))})")
    cmd = body.get("cmd")
    if isinstance(cmd, str):  # a string is shell code, as in make, DVC and CI files
        if not cmd.strip():
            raise SpecError(f"{where}: 'cmd' is empty")
        argv = (*SHELL, cmd)
    elif isinstance(cmd, list) and all(isinstance(x, str) for x in cmd):  # a list runs with no shell
        argv = tuple(cmd)
    else:
        raise SpecError(f"{where}: 'cmd' must be a string or a list of strings")
    if not argv:
        raise SpecError(f"{where}: 'cmd' is empty")
    params = body.get("params", {})
    if not isinstance(params, dict):
        raise SpecError(f"{where}: 'params' must be a table")
    for k, v in params.items():
        if hasattr(v, "isoformat"):
            raise SpecError(f"{where}: param {k!r}: dates and times are not supported; use a string")
        check(v, f"{where}: param {k!r}")
    env = _strs(body.get("env", []), f"{where}: 'env'")
    cwd = body.get("cwd", "")
    if not isinstance(cwd, str):
        raise SpecError(f"{where}: 'cwd' must be a string")
    inputs = tuple(norm_path(p, f"{where}: inputs") for p in _strs(body.get("inputs", []), f"{where}: 'inputs'"))
    outputs = tuple(norm_path(p, f"{where}: outputs") for p in _strs(body.get("outputs", []), f"{where}: 'outputs'"))
    metrics = tuple(norm_path(p, f"{where}: metrics") for p in _strs(body.get("metrics", []), f"{where}: 'metrics'"))
    outputs = with_metrics(outputs, metrics)
    check_step_paths(where, inputs, outputs)
    check_placeholders(where, argv, params)
    return StepSpec(
        name=name,
        cmd=argv,
        inputs=inputs,
        outputs=outputs,
        params=dict(params),
        env=env,
        cwd="" if cwd in ("", ".") else norm_path(cwd, f"{where}: cwd"),
        metrics=metrics,
    )


def parents(path: str) -> Iterator[str]:
    """The path itself, then each folder above it."""
    while path:
        yield path
        path = posixpath.dirname(path)


def graph(steps: dict[str, StepSpec]) -> dict[str, set[str]]:
    """step -> the steps it needs (whose outputs are, contain or lie in its inputs).

    Refuses cycles and two steps writing one path. Linear in the number of paths.
    """
    owner: dict[str, str] = {}
    below: dict[str, set[str]] = {}  # folder -> steps writing something inside it
    for s in steps.values():
        for o in s.outputs:
            if o in owner and owner[o] != s.name:
                raise SpecError(f"{FILE}: steps {owner[o]!r} and {s.name!r} both write {o!r}")
            owner[o] = s.name
            for parent in parents(posixpath.dirname(o)):
                below.setdefault(parent, set()).add(s.name)
    deps: dict[str, set[str]] = {name: set() for name in steps}
    for s in steps.values():
        for i in s.inputs:
            found = {owner[p] for p in parents(i) if p in owner} | below.get(i, set())
            deps[s.name].update(found - {s.name})
    _check_acyclic(deps)
    return deps


def _check_acyclic(deps: dict[str, set[str]]) -> None:
    state: dict[str, int] = {}

    def visit(n: str, trail: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cycle = trail[trail.index(n):] + [n]
            raise SpecError(f"{FILE}: dependency cycle: {' -> '.join(cycle)}")
        state[n] = 1
        for d in sorted(deps[n]):
            visit(d, trail + [n])
        state[n] = 2

    for n in sorted(deps):
        visit(n, [])


def select(steps: dict[str, StepSpec], wanted: list[str], deps: dict[str, set[str]] | None = None) -> list[str]:
    """The wanted steps and everything they need, in an order that respects dependencies."""
    deps = graph(steps) if deps is None else deps
    for w in wanted:
        if w not in steps:
            known = ", ".join(sorted(steps)) or "none"
            raise UsageError(f"unknown step {w!r} (steps in {FILE}: {known})")
    order: list[str] = []
    seen: set[str] = set()

    def visit(n: str) -> None:
        if n in seen:
            return
        seen.add(n)
        for d in sorted(deps[n]):
            visit(d)
        order.append(n)

    for w in wanted or sorted(steps):
        visit(w)
    return order

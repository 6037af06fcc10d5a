"""``zcas run FILE.py:NAME``: load a Python pipeline from a file and call it here."""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import sys
from typing import Any

import click

from zcas.cas.errors import UsageError

from .repository import Repository
from .steps import Pipeline, Step, session


def _load(target: str) -> Any:
    path, _, name = target.rpartition(":")
    if not os.path.isfile(path):
        raise UsageError(f"no such Python file: {path}")
    mod_name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(mod_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(mod_name, module)
    sys.path.insert(0, os.path.dirname(os.path.abspath(path)))
    spec.loader.exec_module(module)
    obj: Any = module
    for part in name.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{path} has no {name!r}")
        obj = getattr(obj, part)
    return obj


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _check_params(obj: Pipeline | Step, kwargs: dict[str, Any]) -> None:
    """Params the pipeline (or step) does not take are a usage error naming them, checked
    before anything runs (not a TypeError from deep inside the call)."""
    sig = inspect.signature(obj.fn)
    try:
        sig.bind(**kwargs)
    except TypeError as e:
        names = [n for n, p in sig.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        raise UsageError(f"{obj.name}: {e} (its params: {', '.join(names) or 'none'})") from None


def run_python(repo: Repository, target: str, extra: list[str], params: tuple[str, ...], as_json: bool,
               remote_cache: bool | None = None, verify: bool | None = None, stack: str | None = None) -> int:
    params_l = list(params)
    it = iter(extra)
    for a in it:  # options may follow the target: zcas run file.py:main --param n=3
        if a in ("-p", "--param"):
            params_l.append(next(it, ""))
        elif a.startswith("--param="):
            params_l.append(a[len("--param="):])
        else:
            raise click.UsageError(f"unexpected argument after {target}: {a} (give params as -p KEY=VALUE)")
    kwargs: dict[str, Any] = {}
    for p in params_l:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise click.UsageError(f"invalid param {p!r}: use KEY=VALUE")
        kwargs[k] = _value(v)
    obj = _load(target)
    out = sys.stderr if as_json else sys.stdout
    if isinstance(obj, (Pipeline, Step)):
        _check_params(obj, kwargs)
    if isinstance(obj, Pipeline):
        run = obj.run_in(repo, (), kwargs, stack, out=out, remote_cache=remote_cache, verify=verify)
        steps = dict(run.step_ids)
        if as_json:
            click.echo(json.dumps({"pipeline": run.id, "duration": run.duration, "steps": steps}, indent=2, sort_keys=True))
        else:
            print(f"pipeline {obj.name}: {len(steps)} steps in {run.duration:.3f}s (run {run.id[:12]})", file=out)
    elif isinstance(obj, Step):
        with session(repo, stack=stack, out=out, remote_cache=remote_cache, verify=verify):
            obj(**kwargs)
    else:
        raise UsageError(f"{target} is not a zcas pipeline or step (decorate it with @zcas.pipeline)")
    return 0

"""Running: run, status, why."""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from .base import Ctx, cli, emit_json, json_option, pass_ctx

if TYPE_CHECKING:
    from zcas.runners.core import Core
    from zcas.runners.spec import StepSpec

# The runners (spec, command, scheduler), zcas.pyrun and zcas.why are imported inside the
# commands: they pull in lmdb, zstandard, blake3 and attrs (~75 ms, measured), which
# `zcas --help` (~65 ms in all) never needs (see zcas/cli/__init__.py).

_PY_TARGET = re.compile(r".+\.py:[A-Za-z_][A-Za-z0-9_.]*")


def _core(c: Ctx, verify: bool | None, as_json: bool, remote_cache: bool | None = None, stack: str | None = None) -> Core:
    """The execution core for this command (a stack with a store of its own keeps objects there)."""
    core = c.repository.core(stack, out=sys.stderr if as_json else sys.stdout, verify=verify,
                             remote_cache=remote_cache, cmd_stdout=sys.stderr.fileno() if as_json else None)
    c.on_close(core.close)
    return core


def _one_off(c: Ctx, argv: list[str], inputs: Sequence[str], outputs: Sequence[str], params: Sequence[str],
             env: Sequence[str], name: str | None, cwd: str | None, metrics: Sequence[str] = ()) -> StepSpec:
    import shlex

    from zcas.runners.spec import StepSpec, check_placeholders, check_step_paths, norm_path, with_metrics

    ps: dict[str, Any] = {}
    for p in params:
        k, sep, v = p.partition("=")
        if not sep or not k:
            raise click.UsageError(f"invalid param {p!r}: use KEY=VALUE")
        ps[k] = v
    rel_cwd = "" if not cwd else norm_path(os.path.relpath(os.path.abspath(cwd), c.repo.root), "--cwd")
    base = c.repo.root if not rel_cwd else os.path.join(c.repo.root, rel_cwd)

    def rel(p: str) -> str:
        return norm_path(os.path.relpath(os.path.join(base, p), c.repo.root), "path")

    ins, mets = tuple(rel(p) for p in inputs), tuple(rel(p) for p in metrics)
    outs = with_metrics(tuple(rel(p) for p in outputs), mets)
    check_step_paths("zcas run", ins, outs)
    if ps:  # with no params nothing is substituted: braces typed at a shell stay as typed
        check_placeholders("zcas run", tuple(argv), ps)
    return StepSpec(
        name=name or shlex.join(argv), cmd=tuple(argv), inputs=ins, outputs=outs, params=ps, env=tuple(env), cwd=rel_cwd,
        metrics=mets,
    )


class _KeepsArgs(click.Command):
    """Notes the arguments as typed: whether a "--" was there decides command mode, and
    click drops it."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["zcas.args"] = list(args)
        return super().parse_args(ctx, args)


@cli.command(cls=_KeepsArgs, context_settings={"ignore_unknown_options": False, "allow_interspersed_args": False})
@click.option("-i", "--input", "inputs", multiple=True, metavar="PATH", help="A file or folder the command reads.")
@click.option("-o", "--output", "outputs", multiple=True, metavar="PATH", help="A file or folder the command writes.")
@click.option("-m", "--metrics", "metrics", multiple=True, metavar="FILE",
              help="A file the command writes holding its metrics (JSON, YAML, TOML, CSV): an output, read into the record.")
@click.option("-p", "--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A command's parameter ($ZCAS_PARAM_KEY and {key} in it); for zcas.toml steps, STEP.KEY=VALUE "
                   "(or KEY=VALUE, every step with KEY) overrides a param for this run.")
@click.option("-e", "--env", "env", multiple=True, metavar="VAR", help="An environment variable whose value is part of the key.")
@click.option("--name", help="The step's name (default: the command line).")
@click.option("--cwd", type=click.Path(file_okay=False), help="Run the command here (default: the repository root).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Steps run at once (default: run.jobs, the number of cores).")
@click.option("--verify", is_flag=True, help="On a hit, read and verify every output, not only small ones.")
@click.option("--no-remote-cache", is_flag=True, help="On a local miss, do not ask the default remote for a hit.")
@click.option("--stack", metavar="NAME", help="Run on this stack (default: the active one; see zcas stack).")
@click.option("--no-checkout", is_flag=True,
              help="Leave outputs in the stack's store: neither executed steps nor hits write into the working tree "
                   "(a stack with a store URL and the dask runner only; see docs/distributed.md).")
@json_option("Print a JSON summary on stdout (status lines and command output go to stderr).")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@pass_ctx
def run(c: Ctx, inputs: tuple[str, ...], outputs: tuple[str, ...], metrics: tuple[str, ...], params: tuple[str, ...],
        env: tuple[str, ...],
        name: str | None, cwd: str | None, jobs: int | None, verify: bool, no_remote_cache: bool, stack: str | None,
        no_checkout: bool, as_json: bool, args: tuple[str, ...]) -> None:
    """Run a command or the pipeline, reusing every result that is already cached.

    \b
    zcas run [-i PATH]... [-o PATH]... [-m FILE]... [-p KEY=VALUE]... [-e VAR]... -- CMD [ARGS]...
    zcas run                  every step of zcas.toml
    zcas run STEP...          those steps and the steps they need
    zcas run -p STEP.KEY=VALUE [STEP]...   with a param overridden for this run
    zcas run FILE.py:NAME [-p KEY=VALUE]...   a Python pipeline (or step)

    With a zcas.toml present, a word that is not a step is refused (a typo must not run as a
    command): put a command after --.

    The cache key covers the command, the content of every input (and of any argument
    naming a file in the repository), params, declared environment values, outputs and
    working directory. On a hit the outputs are restored and nothing runs.

    On a stack with a store URL and the dask runner, every step runs on a worker in a
    scratch folder of its own, with its inputs fetched from the store; outputs come into
    the working tree as steps finish, unless --no-checkout.
    """
    import contextlib

    from zcas.runners.instore import no_checkout as leaving_outputs

    if no_checkout:
        from zcas.stacks import check_no_checkout

        check_no_checkout(c.repository.stack(stack))
    with leaving_outputs() if no_checkout else contextlib.nullcontext():
        _run(c, inputs, outputs, metrics, params, env, name, cwd, jobs, verify, no_remote_cache, stack, as_json, args)


def _run(c: Ctx, inputs: tuple[str, ...], outputs: tuple[str, ...], metrics: tuple[str, ...], params: tuple[str, ...],
         env: tuple[str, ...], name: str | None, cwd: str | None, jobs: int | None, verify: bool, no_remote_cache: bool,
         stack: str | None, as_json: bool, args: tuple[str, ...]) -> None:
    raw = click.get_current_context().meta["zcas.args"]
    remote_cache = False if no_remote_cache else None  # None: as configured (run.remote_cache)
    verify_opt = True if verify else None  # None: as configured (run.verify)
    if args and "--" not in raw and not (inputs or outputs or metrics or env or name or cwd) and _PY_TARGET.fullmatch(args[0]):
        from zcas.pyrun import run_python  # a Python pipeline needs none of the command machinery below

        sys.exit(run_python(c.repository, args[0], list(args[1:]), params, as_json, remote_cache, verify_opt, stack))
    from zcas.runners import spec as spec_mod
    from zcas.runners.command import run_command
    from zcas.runners.scheduler import run_all

    if jobs is None:
        jobs = int(c.config.get("run.jobs"))
    ctx = _core(c, verify_opt, as_json, remote_cache, stack)
    steps = spec_mod.load(c.repo.root)
    one_off = bool(inputs or outputs or metrics or env or name or cwd)  # options only a command takes
    # -p is a command's param after "--" (or with no zcas.toml), else a step param's override
    command_mode = "--" in raw or one_off or (params and not steps) or (args and args[0] not in steps)
    unknown = [a for a in args if a not in steps]
    if steps and unknown and "--" not in raw and not one_off:
        _no_such_step(steps, unknown[0])
    if command_mode:
        if not args:
            raise click.UsageError("no command given: zcas run [OPTIONS] -- CMD [ARGS]...")
        s = _one_off(c, list(args), inputs, outputs, params, env, name, cwd, metrics)
        steps, order = {s.name: s}, [s.name]
        deps: dict[str, set[str]] = {s.name: set()}
    else:
        if not steps:
            raise click.UsageError(f"no {spec_mod.FILE} in {c.repo.root}: give a command after --, or declare steps")
        steps = spec_mod.apply_overrides(steps, list(params))
        deps = spec_mod.graph(steps)
        order = spec_mod.select(steps, list(args), deps)
    from zcas.runners.lookahead import LookAhead

    ahead = LookAhead(ctx, steps, order)
    ctx.on_remote.append(ahead.start)
    ctx.on_outputs.append(ahead.ran)
    try:
        results = run_all(order, deps, lambda n: run_command(ctx, steps[n]), jobs, ctx.say)
    finally:
        ahead.stop()
        ctx.close()
    if as_json:
        emit_json([r.as_dict() for r in results])
    failed = [r for r in results if r.status == "failed"]
    if failed:
        sys.exit(failed[0].exit_status or 1)


def _no_such_step(steps: dict[str, StepSpec], word: str) -> None:
    """With a pipeline file present, a word that is no step is a typo, not a command to run."""
    import difflib

    from zcas.cas.errors import UsageError
    from zcas.cas.safetext import printable

    close = difflib.get_close_matches(word, list(steps), n=3, cutoff=0.6)
    hint = f" (did you mean {' or '.join(close)}?)" if close else f" (steps: {', '.join(sorted(steps))})"
    raise UsageError(f"no step named {printable(word)!r} in zcas.toml{hint}; to run a command, put it after --: "
                     f"zcas run -- {printable(word)} ...")


@cli.command()
@click.argument("steps", nargs=-1)
@json_option()
@pass_ctx
def status(c: Ctx, steps: tuple[str, ...], as_json: bool) -> None:
    """Show each pipeline step as fresh or stale, and why."""
    from zcas.cas.safetext import printable
    from zcas.why import status_of

    rows = status_of(_core(c, False, as_json), list(steps))
    if as_json:
        emit_json(rows)
        return
    for r in rows:
        reasons = "; ".join(x.strip() for x in r["reasons"])
        click.echo(printable(f"{r['status']:<6} {r['name']}" + (f"  ({reasons})" if reasons else "")))


@cli.command()
@click.argument("target")
@click.option("--explain", "explain", is_flag=True,
              help="List everything the step's key covers: definitions (file, line), constants, packages, inputs, files read.")
@json_option()
@pass_ctx
def why(c: Ctx, target: str, explain: bool, as_json: bool) -> None:
    """Say why a step (or the step writing PATH) would run: what changed since its last run."""
    from zcas.cas.safetext import printable
    from zcas.why import covers_target, explain_target

    if explain:
        from zcas.covers import render

        res = covers_target(_core(c, False, as_json), target)
        if as_json:
            emit_json(res)
            return
        run = f", run {res['run'][:12]}" if res.get("run") else ""
        click.echo(printable(f"{res['name']}: {res['kind']} step, key {(res['key'] or '?')[:12]}{run}; it covers:"))
        for line in render(res["covers"]):
            click.echo(f"  {printable(line)}")
        return
    res = explain_target(_core(c, False, as_json), target)
    if as_json:
        emit_json(res)
        return
    click.echo(printable(f"{res['name']}: {res['status']}"))
    for line in res["reasons"]:
        click.echo(f"  {printable(line)}")

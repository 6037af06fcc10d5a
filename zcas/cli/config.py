"""Configuration and stacks: config list/get, stack register/list/set/show/delete."""

from __future__ import annotations

import sys

import click

from .base import Ctx, cli, emit_json, json_option, pass_ctx

# zcas.stacks is imported inside the stack commands: it pulls in attrs, zstandard and blake3
# (~30 ms, measured), which `zcas --help` (~65 ms in all) never needs.


@cli.group()
def config() -> None:
    """Read the layered configuration (defaults, user file, repository, ZCAS_* variables)."""


@config.command("list")
@click.option("--show-origin", is_flag=True, help="Say where each value came from.")
@json_option()
@pass_ctx
def config_list(c: Ctx, show_origin: bool, as_json: bool) -> None:
    """Every setting in effect, as key=value."""
    cfg = c.config
    if as_json:
        emit_json({k: {"value": v, "origin": cfg.origin(k)} for k, v in cfg.items()})
        return
    for k, v in cfg.items():
        shown = str(v).lower() if isinstance(v, bool) else v
        click.echo(f"{cfg.origin(k)}\t{k}={shown}" if show_origin else f"{k}={shown}")


@config.command("get")
@click.argument("key")
@pass_ctx
def config_get(c: Ctx, key: str) -> None:
    """One setting's value (exit 1 if it is not set)."""
    v = c.config.get(key)
    if v is None:
        sys.exit(1)
    click.echo(str(v).lower() if isinstance(v, bool) else v)


@cli.group()
def stack() -> None:
    """Stacks: named ways to run (artifact store, runner, scheduler)."""


@stack.command("register")
@click.argument("name")
@click.option("--store", metavar="URL",
              help="Artifact store: s3://, gs://, az://, memory://, a path, or a remote's name (default: the repository's own).")
@click.option("--runner", type=click.Choice(["local", "threads", "processes", "dask"]), default="local", show_default=True,
              help="Where steps run.")
@click.option("--scheduler", metavar="ADDRESS",
              help="Dask scheduler address, e.g. tcp://127.0.0.1:8786 (default: start a local cluster).")
@click.option("--remote", metavar="NAME", help="The remote asked on cache misses.")
@click.option("-f", "--force", is_flag=True, help="Replace an existing stack of that name.")
@pass_ctx
def stack_register(c: Ctx, name: str, store: str | None, runner: str, scheduler: str | None, remote: str | None,
                   force: bool) -> None:
    """Register a stack in this repository's configuration."""
    from zcas.stacks import Stack, register

    register(c.repo, Stack(name, store, runner, scheduler, remote), force=force)


@stack.command("list")
@json_option()
@pass_ctx
def stack_list(c: Ctx, as_json: bool) -> None:
    """List stacks; the active one is marked with *."""
    from zcas.stacks import active, all_stacks

    cur = active(c.config).name
    stacks = all_stacks(c.config)
    if as_json:
        emit_json({n: dict(s.as_dict(), active=n == cur) for n, s in stacks.items()})
        return
    for n, s in stacks.items():
        click.echo(f"{'*' if n == cur else ' '} {n}\tstore={s.store or '(repository)'} runner={s.runner}"
                   + (f" scheduler={s.scheduler}" if s.scheduler else "") + (f" remote={s.remote}" if s.remote else ""))


@stack.command("set")
@click.argument("name")
@pass_ctx
def stack_set(c: Ctx, name: str) -> None:
    """Make NAME the active stack of this repository."""
    from zcas.stacks import set_active

    set_active(c.repo, c.config, name)


@stack.command("show")
@click.argument("name", required=False)
@json_option()
@pass_ctx
def stack_show(c: Ctx, name: str | None, as_json: bool) -> None:
    """Show the active stack (or NAME): store, runner, scheduler, remote."""
    from zcas.stacks import active

    s = active(c.config, name)
    if as_json:
        emit_json(dict(s.as_dict(), origin=c.config.origin("stack.active")))
        return
    click.echo(f"stack      {s.name}" + ("" if name else f"  (active; from {c.config.origin('stack.active')})"))
    click.echo(f"store      {s.store or 'the repository (' + c.repo.zdir + '/objects)'}")
    click.echo("metadata   the repository's lineage (LMDB)")
    where = f" at {s.scheduler}" if s.scheduler else " (local cluster)" if s.runner == "dask" else ""
    click.echo(f"runner     {s.runner}{where}")
    if s.remote:
        click.echo(f"remote     {s.remote}")


@stack.command("delete")
@click.argument("name")
@pass_ctx
def stack_delete(c: Ctx, name: str) -> None:
    """Delete a stack (the default stack is built in)."""
    from zcas.stacks import delete

    delete(c.repo, c.config, name)

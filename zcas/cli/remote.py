"""Remote commands: remote add/list/remove, push, pull."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from .base import Ctx, cli, emit_json, json_option, pass_ctx

if TYPE_CHECKING:
    from zcas.remotes import RemoteSpec

# zcas.remotes and zcas.cas.transfer are imported inside the commands: they pull in attrs,
# zstandard and blake3 (~40 ms, measured), which `zcas --help` (~65 ms in all) never needs
# (see zcas/cli/__init__.py).


@cli.group()
def remote() -> None:
    """Manage remotes: object stores to push to, pull from and share a cache through."""


@remote.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--endpoint", help="Endpoint URL (S3-compatible servers, e.g. http://127.0.0.1:9000).")
@click.option("--region", help="Region (S3).")
@click.option("--allow-http", is_flag=True, default=None, help="Allow plain HTTP (local test servers).")
@click.option("--instance-credentials", is_flag=True, default=None,
              help="Use the machine's own cloud credentials (its metadata service), e.g. on a VM with a role.")
@pass_ctx
def remote_add(c: Ctx, name: str, url: str, endpoint: str | None, region: str | None, allow_http: bool | None,
               instance_credentials: bool | None) -> None:
    """Add a remote: URL is s3://BUCKET/PREFIX, gs://..., az://..., memory:// or a path.

    Credentials are never stored: they come from the environment (AWS_ACCESS_KEY_ID,
    AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_ALLOW_HTTP, AWS_REGION, ...); without them
    zcas says "no credentials for remote NAME" instead of asking a metadata service, unless
    --instance-credentials says the machine's own role is meant.
    """
    from zcas.remotes import RemoteSpec, add_remote

    add_remote(c.repo, RemoteSpec(name, url, endpoint, region, allow_http, instance_credentials))


@remote.command("modify")
@click.argument("name")
@click.option("--url", help="A new URL (s3://BUCKET/PREFIX, gs://..., az://..., memory:// or a path).")
@click.option("--endpoint", help="A new endpoint URL.")
@click.option("--region", help="A new region.")
@click.option("--allow-http/--no-allow-http", default=None, help="Allow plain HTTP, or no longer.")
@click.option("--instance-credentials/--no-instance-credentials", default=None,
              help="Use the machine's own cloud credentials, or no longer.")
@pass_ctx
def remote_modify(c: Ctx, name: str, url: str | None, endpoint: str | None, region: str | None, allow_http: bool | None,
                  instance_credentials: bool | None) -> None:
    """Change a remote's settings; those not given stay as they are (checked as by add)."""
    from zcas.remotes import modify_remote

    modify_remote(c.repo, name, url=url, endpoint=endpoint, region=region, allow_http=allow_http,
                  instance_credentials=instance_credentials)


@remote.command("list")
@json_option()
@pass_ctx
def remote_list(c: Ctx, as_json: bool) -> None:
    """List remotes and their settings."""
    from zcas.remotes import remotes

    rs = remotes(c.repo)
    if as_json:
        emit_json({n: r.settings() for n, r in rs.items()})
        return
    for n, r in rs.items():
        extra = "".join(f"  {k}={v}" for k, v in r.settings().items() if k != "url")
        click.echo(f"{n}\t{r.url}{extra}")


@remote.command("remove")
@click.argument("name")
@pass_ctx
def remote_remove(c: Ctx, name: str) -> None:
    """Forget a remote (nothing on it is deleted)."""
    from zcas.remotes import remove_remote

    remove_remote(c.repo, name)


def _split(c: Ctx, args: tuple[str, ...]) -> tuple[RemoteSpec, list[str]]:
    from zcas.remotes import pick, remotes

    names = remotes(c.repo)
    if args and args[0] in names:
        return pick(c.repo, args[0]), list(args[1:])
    return pick(c.repo, None), list(args)


@cli.command()
@click.argument("args", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Everything (the default when no TAG or ID is given).")
@click.option("-f", "--force", is_flag=True, help="Move a tag that already names another id on the remote.")
@json_option()
@pass_ctx
def push(c: Ctx, args: tuple[str, ...], everything: bool, force: bool, as_json: bool) -> None:
    """Send objects and run records the remote lacks: zcas push [NAME] [TAG|ID...|--all].

    Without TAG or ID, every local pack the remote lacks is sent as it is (10,000 small
    files are a handful of requests). Tags named are pushed too; a tag that already names
    another id on the remote is refused unless --force. An interrupted push is resumed by
    running it again.
    """
    from zcas.cas.transfer import tty_progress
    from zcas.remotes import Remote

    spec, targets = _split(c, args)
    r = Remote(c.repo, c.lineage, spec)
    tags = {t: oid for t in targets if (oid := c.repo.refs.get_tag(t)) is not None}
    ids = None if everything or not targets else [c.repo.resolve(t) for t in targets]
    res = r.push(ids, tags, tty_progress("pushing"), force=force, refs=ids is None)
    if as_json:
        emit_json(dict(res, remote=spec.name))
    else:
        click.echo(f"pushed to {spec.name}: {res['packs']} packs ({res['bytes']} bytes), {res['objects']} objects, "
                   f"{res['runs']} run records, {res['tags']} tags, {res['history']} path versions")


@cli.command()
@click.argument("args", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Everything (the default when no TAG or ID is given).")
@click.option("--full", is_flag=True,
              help="List every lineage and history segment on the remote, not only those since the last pull.")
@json_option()
@pass_ctx
def pull(c: Ctx, args: tuple[str, ...], everything: bool, full: bool, as_json: bool) -> None:
    """Fetch objects and run records from a remote: zcas pull [NAME] [TAG|ID...|--all].

    Run records are always indexed (so `zcas log` shows the remote's runs); with TAG or ID
    only those objects and what they reach are fetched, verified on arrival. Lineage and
    history segments are listed from where the last pull stopped; --full lists them all.
    """
    from zcas.cas.transfer import tty_progress
    from zcas.remotes import Remote

    spec, targets = _split(c, args)
    r = Remote(c.repo, c.lineage, spec)
    res = r.pull(None if everything or not targets else targets, tty_progress("pulling"), full=full)
    from zcas.cas.errors import ZcasError

    for t in [] if everything else targets:  # a tag pulled by name is set here too
        try:
            oid = r.resolve(t)
        except ZcasError:
            continue
        if c.repo.refs.get_tag(t) is None and t != oid.hex()[: len(t)]:
            c.lineage.set_tag(t, oid)
    if as_json:
        emit_json(dict(res, remote=spec.name))
    else:
        click.echo(f"pulled from {spec.name}: {res['packs']} packs ({res['bytes']} bytes), {res['objects']} objects, "
                   f"{res['runs']} new run records, {res['tags']} tags, {res['history']} path versions"
                   + (f", {res['rejected']} objects refused (see warnings)" if res["rejected"] else ""))

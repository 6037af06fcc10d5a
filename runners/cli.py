"""The ``zcas`` command: thin click commands over the library.

Every command is a few lines calling zcas.cas (and later lineage and runners). Errors are
turned into one line and an exit code in one place, ``main``: 1 for a failure, 2 for bad
usage, never a traceback (set ZCAS_DEBUG=1 to see one).
"""

from __future__ import annotations

import json
import os
import sys

import click

from zcas._version import __version__


class Ctx:
    """Opens the repository on first use, so ``init`` and ``--help`` never need one."""

    def __init__(self) -> None:
        self._repo = None

    @property
    def repo(self):
        if self._repo is None:
            from zcas.cas.repo import Repo

            self._repo = Repo.find()
        return self._repo

    def close(self) -> None:
        if self._repo is not None:
            self._repo.close()


pass_ctx = click.make_pass_decorator(Ctx)


def _emit_json(obj) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="zcas", message="%(prog)s %(version)s")
@click.option("-C", "directory", metavar="DIR", type=click.Path(file_okay=False), help="Run as if started in DIR (like git -C).")
@click.pass_context
def cli(ctx: click.Context, directory: str | None) -> None:
    """zcas: content-addressed caching and versioning for data and ML work.

    The repository is the nearest folder above the current one holding .zcas/, or the one
    named by the ZCAS_DIR environment variable.
    """
    if directory:
        try:
            os.chdir(directory)
        except OSError as e:
            raise click.UsageError(f"cannot change to {directory}: {e.strerror}") from None
    ctx.obj = Ctx()
    ctx.call_on_close(ctx.obj.close)


@cli.command()
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False))
def init(directory: str) -> None:
    """Create a repository (.zcas/) in DIRECTORY (default: here)."""
    from zcas.cas.repo import init as do_init

    zdir, created = do_init(directory)
    click.echo(f"{'Initialized empty' if created else 'Reinitialized existing'} zcas repository in {zdir}")


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_ctx
def add(c: Ctx, paths: tuple[str, ...], as_json: bool) -> None:
    """Store files or folders and record this version of each PATH.

    Prints "<id>  <path>" per path. Unchanged files are recognised by their stat and not
    read again.
    """
    out = c.repo.add(list(paths))
    if as_json:
        _emit_json([{"id": oid.hex(), "path": p, "kind": kind} for oid, p, kind in out])
    else:
        for oid, p, _ in out:
            click.echo(f"{oid.hex()}  {p}")


@cli.command()
@click.argument("ref")
@pass_ctx
def cat(c: Ctx, ref: str) -> None:
    """Write a stored file's bytes to standard output."""
    from zcas.cas.view import iter_file_bytes

    out = sys.stdout.buffer
    for block in iter_file_bytes(c.repo.db, c.repo.resolve(ref)):
        out.write(block)
    out.flush()


@cli.command()
@click.argument("ref")
@click.option("-r", "--recursive", is_flag=True, help="List every entry below the tree.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_ctx
def ls(c: Ctx, ref: str, recursive: bool, as_json: bool) -> None:
    """List a stored tree: mode, id, size and name of each entry."""
    from zcas.cas.view import list_tree

    rows = list_tree(c.repo.db, c.repo.resolve(ref), recursive)
    if as_json:
        _emit_json([{"mode": m, "id": o.hex(), "size": s, "path": p} for m, o, s, p in rows])
        return
    for mode, oid, size, path in rows:
        click.echo(f"{mode:4}  {oid.hex()}  {size:>12}  {path}")


@cli.command()
@click.argument("ref")
@click.argument("dest", type=click.Path())
@click.option("-f", "--force", is_flag=True, help="Overwrite files whose content differs.")
@pass_ctx
def checkout(c: Ctx, ref: str, dest: str, force: bool) -> None:
    """Restore a stored file or tree (by id or tag) at DEST, byte for byte.

    Existing identical files are left alone; changed ones are refused unless --force.
    """
    from zcas.cas.checkout import checkout as do_checkout

    n = do_checkout(c.repo.db, c.repo.resolve(ref), dest, force=force)
    click.echo(f"restored {n} file{'s' if n != 1 else ''} into {dest}", err=True)


@cli.command()
@click.argument("name")
@click.argument("ref", required=False)
@click.option("-f", "--force", is_flag=True, help="Move an existing tag.")
@click.option("-d", "--delete", is_flag=True, help="Delete the tag NAME.")
@pass_ctx
def tag(c: Ctx, name: str, ref: str | None, force: bool, delete: bool) -> None:
    """Name an object: NAME then works wherever an id does."""
    if delete:
        c.repo.refs.delete_tag(name)
        return
    if ref is None:
        raise click.UsageError("missing argument ID (the object to tag)")
    from zcas.cas.refs import check_tag_name

    c.repo.refs.set_tag(check_tag_name(name), c.repo.resolve(ref), force=force)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_ctx
def tags(c: Ctx, as_json: bool) -> None:
    """List tags and the ids they name."""
    t = c.repo.refs.tags()
    if as_json:
        _emit_json({k: v.hex() for k, v in t.items()})
        return
    for name, oid in t.items():
        click.echo(f"{oid.hex()}  {name}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_ctx
def fsck(c: Ctx, as_json: bool) -> None:
    """Verify every stored object; exit 1 if any is corrupt or missing.

    Dangling objects (stored but named by nothing) are listed but are not an error.
    """
    from zcas.cas.fsck import fsck as do_fsck, tty_progress

    rep = do_fsck(c.repo.db, c.repo.roots(), progress=tty_progress)
    if as_json:
        _emit_json(
            {"checked": rep.checked, "corrupt": rep.corrupt, "missing": rep.missing,
             "dangling": rep.dangling, "unindexed_packs": rep.unindexed_packs, "ok": rep.ok}
        )
    else:
        for oid, why in sorted(rep.corrupt.items()):
            click.echo(f"corrupt {oid}: {why}")
        for oid in rep.missing:
            click.echo(f"missing {oid}")
        for oid in rep.dangling:
            click.echo(f"dangling {oid}")
        for key in rep.unindexed_packs:
            click.echo(f"unindexed {key} (left by an interrupted write; gc removes it)")
        click.echo(
            f"checked {rep.checked} objects: {len(rep.corrupt)} corrupt, {len(rep.missing)} missing, "
            f"{len(rep.dangling)} dangling"
        )
    if not rep.ok:
        sys.exit(1)


@cli.command()
@click.option("-n", "--dry-run", is_flag=True, help="Report what would be deleted; delete nothing.")
@click.option("--grace", default="14d", show_default=True, metavar="DURATION",
              help="Never delete objects younger than this (e.g. 14d, 12h, 0).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_ctx
def gc(c: Ctx, dry_run: bool, grace: str, as_json: bool) -> None:
    """Delete objects that no tag or recorded path version reaches."""
    from zcas.cas.gc import gc as do_gc
    from zcas.cas.statcache import StatCache

    from .durations import human_bytes, parse_duration

    rep = do_gc(c.repo.db, c.repo.roots(), parse_duration(grace), dry_run=dry_run)
    if not dry_run and rep.objects_removed:
        StatCache.clear(c.repo.statcache_path)
    if as_json:
        import attrs

        _emit_json(dict(attrs.asdict(rep), dry_run=dry_run))
        return
    verb = "would remove" if dry_run else "removed"
    click.echo(
        f"{verb} {rep.objects_removed} objects ({human_bytes(rep.bytes_removed)}) from {rep.packs_removed} packs, "
        f"{rep.leftovers_removed} leftover files; {rep.objects_moved} live objects repacked"
    )


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@pass_ctx
def du(c: Ctx, as_json: bool) -> None:
    """Show logical and stored size, and the dedup and compression ratios."""
    from zcas.cas.usage import usage

    from .durations import human_bytes

    u = usage(c.repo.db, [v.oid for v in c.repo.refs.history()])
    if as_json:
        _emit_json(u.as_dict())
        return
    click.echo(f"versions recorded   {u.versions}")
    click.echo(f"logical size        {human_bytes(u.logical_bytes)}  ({u.logical_bytes} bytes)")
    click.echo(f"unique content      {human_bytes(u.unique_bytes)}  ({u.unique_bytes} bytes)")
    click.echo(f"stored on disk      {human_bytes(u.stored_bytes)}  ({u.stored_bytes} bytes)")
    click.echo(f"dedup ratio         {u.dedup_ratio:.2f}x")
    click.echo(f"compression ratio   {u.compression_ratio:.2f}x")
    click.echo(f"objects             {u.objects}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, mapping every error to one line and an exit code."""
    debug = bool(os.environ.get("ZCAS_DEBUG"))
    try:
        cli.main(args=argv, prog_name="zcas", standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("zcas: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("zcas: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.stderr.close()
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - the one place errors become exit codes
        if debug:
            raise
        from zcas.cas.errors import ZcasError

        if isinstance(e, ZcasError):
            click.echo(f"zcas: error: {e}", err=True)
            sys.exit(e.exit_code)
        if isinstance(e, OSError):
            where = f": {e.filename}" if e.filename else ""
            click.echo(f"zcas: error: {e.strerror or e}{where}", err=True)
            sys.exit(1)
        click.echo(f"zcas: internal error: {type(e).__name__}: {e} (set ZCAS_DEBUG=1 for details)", err=True)
        sys.exit(1)

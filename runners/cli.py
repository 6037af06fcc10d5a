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
    """Opens the repository (and its lineage) on first use: ``init`` and ``--help`` need
    neither, and most commands need only the object store."""

    def __init__(self) -> None:
        self._repo = None
        self._lineage = None
        self._config = None
        self._closers: list = []

    @property
    def config(self):
        """The layered configuration (defaults, user file, repository, ZCAS_* variables)."""
        if self._config is None:
            from .config import Config

            self._config = Config(self.repo.zdir)
        return self._config

    def on_close(self, fn) -> None:
        self._closers.append(fn)

    exclusive = False  # gc sets it: it must run alone

    @property
    def repo(self):
        """The repository, opened with its lock held (shared; exclusive for gc)."""
        if self._repo is None:
            from zcas.cas.locks import RepoLock
            from zcas.cas.repo import Repo

            repo = Repo.find()
            lock = RepoLock(repo.zdir)
            lock.exclusive() if self.exclusive else lock.shared()
            self._lock = lock
            self._repo = repo
        return self._repo

    @property
    def lineage(self):
        if self._lineage is None:
            from zcas.lineage.store import Lineage

            self._lineage = Lineage(self.repo)
        return self._lineage

    def roots(self) -> tuple[list[bytes], list[bytes]]:
        """(required, optional) roots for gc and fsck. Tags, path history and run records
        must be here; what runs name may never have been fetched (runs indexed from a
        remote), so those may be absent without that being damage."""
        return self.repo.roots() + list(self.lineage.graph.all_run_ids()), self.lineage.roots()

    def close(self) -> None:
        try:
            for fn in reversed(self._closers):
                fn()
            if self._lineage is not None:
                self._lineage.close()
            if self._repo is not None:
                self._repo.close()
        finally:
            if self._repo is not None:
                self._lock.release()  # last: everything written is published and named


pass_ctx = click.make_pass_decorator(Ctx)
RAW_ARGS: list[str] = []  # the arguments as typed: `zcas run` needs to know whether "--" was


def emit_json(obj) -> None:
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
@click.option("--store", metavar="URL", help="Keep objects in object storage (s3://, gs://, az://, memory://), with a local read cache.")
@click.option("--endpoint", help="Endpoint URL for --store (S3-compatible servers).")
@click.option("--region", help="Region for --store (S3).")
@click.option("--allow-http", is_flag=True, default=None, help="Allow plain HTTP for --store (local test servers).")
def init(directory: str, store, endpoint, region, allow_http) -> None:
    """Create a repository (.zcas/) in DIRECTORY (default: here)."""
    from zcas.cas.repo import init as do_init

    spec = {"url": store, "endpoint": endpoint, "region": region, "allow_http": allow_http} if store else None
    zdir, created = do_init(directory, spec)
    click.echo(f"{'Initialized empty' if created else 'Reinitialized existing'} zcas repository in {zdir}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, mapping every error to one line and an exit code."""
    debug = bool(os.environ.get("ZCAS_DEBUG"))
    RAW_ARGS[:] = sys.argv[1:] if argv is None else list(argv)
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
        from zcas.cas.safetext import printable  # messages may quote names from a remote

        if isinstance(e, ZcasError):
            click.echo(f"zcas: error: {printable(e)}", err=True)
            sys.exit(e.exit_code)
        if isinstance(e, OSError):
            where = f": {e.filename}" if e.filename else ""
            click.echo(f"zcas: error: {printable(e.strerror or e)}{printable(where)}", err=True)
            sys.exit(1)
        click.echo(f"zcas: internal error: {type(e).__name__}: {printable(e)} (set ZCAS_DEBUG=1 for details)", err=True)
        sys.exit(1)


# The commands live in modules of their own; importing them registers them on ``cli``.
from . import cli_config, cli_data, cli_log, cli_remote, cli_run  # noqa: E402, F401

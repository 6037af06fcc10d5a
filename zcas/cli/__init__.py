"""The ``zcas`` command: thin click commands over the library (zcas.repository and below).

One module per command group (run, data, log, remote, config), each registering on the one
group in base.py. Errors are turned into one line and an exit code in one place, ``main``:
1 for a failure, 2 for bad usage, never a traceback (set ZCAS_DEBUG=1 to see one).
"""

from __future__ import annotations

import os
import sys

import click

from . import config, data, exp, log, remote, run, ui  # noqa: F401 - importing them registers their commands
from .base import cli

# Library imports stay inside the functions, here and in every command module: `zcas --help`
# imports all of these modules, and the library (zcas.repository and below: lmdb, zstandard,
# blake3, attrs) would add ~80 ms to its ~65 ms (measured); even its light modules (errors,
# safetext, locks, durations) and shlex and difflib add ~3 ms together, measured.

__all__ = ["cli", "main"]


@cli.command()
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False))
@click.option("--store", metavar="URL",
              help="Keep objects in object storage (s3://, gs://, az://, memory://), with a local read cache.")
@click.option("--endpoint", help="Endpoint URL for --store (S3-compatible servers).")
@click.option("--region", help="Region for --store (S3).")
@click.option("--allow-http", is_flag=True, default=None, help="Allow plain HTTP for --store (local test servers).")
def init(directory: str, store: str | None, endpoint: str | None, region: str | None, allow_http: bool | None) -> None:
    """Create a repository (.zcas/) in DIRECTORY (default: here)."""
    from zcas.cas.repo import init as do_init

    spec = {"url": store, "endpoint": endpoint, "region": region, "allow_http": allow_http} if store else None
    zdir, created = do_init(directory, spec)
    click.echo(f"{'Initialized empty' if created else 'Reinitialized existing'} zcas repository in {zdir}")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, mapping every error to one line and an exit code."""
    debug = bool(os.environ.get("ZCAS_DEBUG"))
    if "_ZCAS_COMPLETE" in os.environ:  # the shell asks for completions (docs/ecosystem.md#shell-completion)
        from .complete import install

        install(cli)
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

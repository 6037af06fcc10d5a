"""``zcas ui``: serve the read-only web view (zcas.ui; the ``ui`` extra)."""

from __future__ import annotations

import click

from .base import cli

# Nothing of zcas.ui, Starlette or uvicorn is imported until the command runs: `zcas --help`
# stays as fast as before, and without the extra only this command fails, in one line.


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port to listen on (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs a token (one is generated if not given).")
@click.option("--remote", "remote_name", metavar="NAME",
              help="Serve a team view of remote NAME: its run records (refreshed as teammates push) and objects, read-only.")
@click.option("--token", metavar="TOKEN", envvar="ZCAS_UI_TOKEN",
              help="Require this token on every request (also $ZCAS_UI_TOKEN; at least 16 characters).")
@click.option("--open", "open_browser", is_flag=True, help="Open the view in a web browser.")
def ui(port: int, host: str, remote_name: str | None, token: str | None, open_browser: bool) -> None:
    """Serve a read-only web view of runs, artifacts, lineage and experiments.

    The repository is opened without its lock (a view that runs for days must not hold off
    gc); everything it shows is read through the lineage index and the verified object store.
    """
    from zcas.ui.serve import check_installed

    check_installed()  # before opening anything: the one-line answer to a missing extra
    from zcas.repository import Repository
    from zcas.ui.serve import serve

    with Repository() as repository:
        serve(repository, host=host, port=port, remote=remote_name, token=token, open_browser=open_browser,
              say=lambda line: click.echo(line, err=True))

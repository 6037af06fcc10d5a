"""What every command shares: the click group, the repository context, ``--json``."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from zcas._version import __version__

if TYPE_CHECKING:
    from zcas.cas.locks import RepoLock
    from zcas.cas.refs import Forgotten
    from zcas.cas.repo import Repo
    from zcas.config import Config
    from zcas.lineage.store import Lineage
    from zcas.repository import Repository


class Ctx:
    """The repository façade, opened on first use with its lock held (shared; exclusive for
    gc): ``init`` and ``--help`` need no repository, most commands only its object store."""

    exclusive = False  # gc sets it: it must run alone

    def __init__(self) -> None:
        self._repository: Repository | None = None
        self._reader: Reader | None = None
        self._lock: RepoLock | None = None
        self._closers: list[Callable[[], None]] = []

    def _locked_root(self) -> str:
        from zcas.cas.locks import RepoLock
        from zcas.cas.repo import find_root

        root = find_root()
        if self._lock is None:
            lock = RepoLock(os.path.join(root, ".zcas"))
            lock.exclusive() if self.exclusive else lock.shared()
            self._lock = lock
        return root

    @property
    def repository(self) -> Repository:
        if self._repository is None:
            # Imported here, not at the top: the library pulls in lmdb, zstandard, blake3 and
            # attrs, ~70 ms (measured) on top of the ~65 ms of `zcas --help` and `zcas init`.
            from zcas.repository import Repository

            self._repository = Repository(self._locked_root())
        return self._repository

    @property
    def reader(self) -> Reader | Repository:
        """The object store and lineage alone, for commands that only read records (exp show,
        plot): opened without the façade, whose imports (the runners, stacks, remotes) cost
        ~30 ms more (measured). The façade itself if a command already opened it."""
        if self._repository is not None:
            return self._repository
        if self._reader is None:
            self._reader = Reader(self._locked_root())
        return self._reader

    @property
    def repo(self) -> Repo:
        return self.repository.cas

    @property
    def lineage(self) -> Lineage:
        return self.repository.lineage

    @property
    def config(self) -> Config:
        """The layered configuration (defaults, user file, repository, ZCAS_* variables)."""
        return self.repository.config()

    def on_close(self, fn: Callable[[], None]) -> None:
        self._closers.append(fn)

    def roots(self, forgotten: Forgotten | None = None) -> tuple[list[bytes], list[bytes]]:
        """(required, optional) roots for gc and fsck. Tags, path history and run records
        must be here; what runs name may never have been fetched (runs indexed from a
        remote), so those may be absent without that being damage. Nothing forgotten is a
        root: ``forgotten`` (default: what the refs record) is what to count as forgotten,
        so ``gc --dry-run`` with retention rules sees the roots the rules would leave."""
        f = self.lineage.graph.forgotten if forgotten is None else forgotten
        runs = [rid for rid in self.lineage.graph.all_run_ids() if rid not in f.runs]
        return self.repo.roots(f) + runs, self.lineage.roots(f)

    def close(self) -> None:
        try:
            for fn in reversed(self._closers):
                fn()
            if self._repository is not None:
                self._repository.close()
            if self._reader is not None:
                self._reader.close()
        finally:
            if self._lock is not None:
                self._lock.release()  # last: everything written is published and named


class Reader:
    """What a reading command needs of a repository: ``root``, ``cas``, ``lineage``."""

    def __init__(self, root: str) -> None:
        from zcas.cas.repo import Repo
        from zcas.lineage.store import Lineage

        self.root = root
        self.cas = Repo(root)
        try:
            self.lineage = Lineage(self.cas)
        except BaseException:
            self.cas.close()
            raise

    def close(self) -> None:
        self.lineage.close()
        self.cas.close()


pass_ctx = click.make_pass_decorator(Ctx)


def emit_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


F = TypeVar("F", bound=Callable[..., Any])


def json_option(help: str = "Print JSON instead of text.") -> Callable[[F], F]:
    """The one ``--json`` option every command with machine-readable output shares."""
    return click.option("--json", "as_json", is_flag=True, help=help)


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

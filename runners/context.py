"""What every step of one ``zcas run`` shares: the repository, lineage, stat cache, options."""

from __future__ import annotations

import getpass
import os
import socket
import sys
import threading

import attrs

from zcas._version import __version__


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


@attrs.define
class RunContext:
    repo: object  # zcas.cas.repo.Repo
    lineage: object  # zcas.lineage.store.Lineage
    statcache: object  # zcas.cas.statcache.StatCache
    verify: bool = False
    out: object = sys.stdout  # where status lines go (stderr under --json)
    cmd_stdout: object = None  # where commands' stdout goes (None: inherit)
    host: str = attrs.Factory(socket.gethostname)
    user: str = attrs.Factory(_user)
    version: str = __version__
    lock: threading.Lock = attrs.Factory(threading.Lock)

    pending: list = attrs.Factory(list)  # cache-hit runs, recorded together at the end
    remote_cache: bool = True  # on a local miss, ask the default remote (if one is set)
    executor: object = None  # a runner's executor (None: run here)
    spec: dict = attrs.Factory(dict)  # how a task opens the stack's store
    _remote: object = None

    def remote(self):
        """The remote to ask on a cache miss, opened on first need (None: none, or off)."""
        if not self.remote_cache:
            return None
        with self.lock:
            if self._remote is None:
                from zcas.cas.errors import ZcasError

                from .remote import open_default

                try:
                    self._remote = open_default(self.repo, self.lineage) or False
                except ZcasError as e:
                    print(f"zcas: warning: remote cache off: {e}", file=sys.stderr)
                    self._remote = False
            return self._remote or None

    def record(self, run, now: bool) -> bytes:
        """Record a run: at once (others may wait on its key), or batched with the rest."""
        if now:
            return self.lineage.record_run(run)
        from zcas.lineage import serde
        from zcas.cas.oid import hash_bytes

        with self.lock:
            self.pending.append(run)
        return hash_bytes(serde.encode(run))

    def flush(self) -> None:
        with self.lock:
            runs, self.pending = self.pending, []
        if runs:
            self.lineage.record_runs(runs)

    def say(self, line: str) -> None:
        with self.lock:
            print(line, file=self.out, flush=True)

    def abspath(self, rel: str) -> str:
        return os.path.join(self.repo.root, rel) if rel else self.repo.root

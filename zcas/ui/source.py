"""Where the view reads from: this repository, or a remote's lineage and objects.

A team view served from a remote shows what teammates pushed, writing only their run
records here: they are stored in a local pack and taken into the lineage index (as ``zcas
log --remote`` does, under the repository's shared lock, and again at most every
``refresh_s`` seconds). Data objects missing here are read from the remote (every read
verified against its id, as any read is) and never kept.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from zcas.cas import codec
from zcas.cas.errors import ObjectNotFoundError, UsageError, ZcasError
from zcas.cas.oid import check_prefix
from zcas.cas.view import iter_file_bytes, list_tree

if TYPE_CHECKING:
    from zcas.cas.db import ObjectDB
    from zcas.lineage.records import PathVersion
    from zcas.lineage.store import Lineage
    from zcas.remotes import Remote
    from zcas.repository import Repository

KINDS = {codec.KIND_BLOB: "file", codec.KIND_CHUNKED: "file", codec.KIND_TREE: "folder", codec.KIND_RECORD: "record"}


class Source:
    """The repository (and, with ``remote``, a remote) as the view reads it."""

    def __init__(self, repository: Repository, remote: str | None = None, refresh_s: float = 10.0) -> None:
        self.repository = repository
        self.remote_name = remote
        self.refresh_s = refresh_s
        self.lock = threading.RLock()  # LMDB cursors and the object index are read one request at a time
        self._remote: Remote | None = None
        self._synced_at = 0.0
        self._local_at = time.monotonic()
        self._remote_tags: dict[str, bytes] | None = None
        self._remote_history: list[PathVersion] | None = None
        self._paths_by_id: dict[bytes, set[str]] = {}  # the path index read once, by id (see paths_of)
        self._paths_at = -1  # the index's last write when it was read
        if remote is not None:
            self.refresh(force=True)  # a bad name or unreachable remote fails at start, in one line

    @property
    def lineage(self) -> Lineage:
        return self.repository.lineage

    @property
    def db(self) -> ObjectDB:
        return self.repository.cas.db

    # -- the remote ------------------------------------------------------------------------

    def refresh(self, force: bool = False) -> int:
        """Take in run records pushed to the remote since the last look (a LIST request or
        two), at most every ``refresh_s`` seconds; how many runs were new."""
        if self.remote_name is None:
            return 0
        now = time.monotonic()
        if not force and now - self._synced_at < self.refresh_s:
            return 0
        from zcas.cas.locks import RepoLock
        from zcas.remotes import Remote, pick

        repo = self.repository.cas
        self._remote = Remote(repo, self.lineage, pick(repo, self.remote_name, self.repository.config()))
        self._synced_at = now
        self._remote_tags = self._remote_history = None
        # the view runs unlocked (for days: it must not hold off gc), but taking records in
        # writes them to a local pack and the index, as a command does: under the shared lock
        with RepoLock(repo.zdir).shared():
            return self._remote.sync_lineage()

    def _db_for(self, oid: bytes) -> ObjectDB:
        if not self.db.has(oid):
            self._refresh_local()
        if self.db.has(oid) or self._remote is None:
            return self.db
        return self._remote.db

    def _refresh_local(self) -> None:
        """Runs recorded since the view started may name objects in packs it has not seen:
        look at the pack list again (at most every 2 s: a miss may be a pulled run's output)."""
        now = time.monotonic()
        if now - self._local_at > 2.0:
            self._local_at = now
            self.db.refresh()

    # -- objects ---------------------------------------------------------------------------

    def resolve(self, text: str) -> bytes:
        """An id, a unique prefix of one, or a tag: checked as the CLI checks them (never a path)."""
        tags = self.tags()
        if text in tags:
            return tags[text]
        prefix = check_prefix(text)
        if len(prefix) == 64:
            return bytes.fromhex(prefix)
        found = self.lineage.graph.find_prefix(prefix)
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise UsageError(f"id prefix {prefix} is ambiguous: use more characters")
        try:
            return self.db.resolve(prefix)
        except ObjectNotFoundError:
            if self._remote is None:
                raise
            return self._remote.db.resolve(prefix)

    def where(self, oid: bytes) -> str:
        """"here", "remote" (readable from the remote) or "absent" (a pulled run's output
        never fetched here)."""
        if self._db_for(oid).has(oid) and self.db.has(oid):
            return "here"
        if self._remote is not None and self._remote.db.has(oid):
            return "remote"
        return "absent"

    def entry(self, oid: bytes) -> tuple[str, int] | None:
        """(kind, size) of a stored object; None when it is in neither store."""
        db = self._db_for(oid)
        if not db.has(oid):
            return None
        e = db.entry(oid)
        return KINDS.get(e.kind, "object"), int(e.size)

    def head(self, oid: bytes, limit: int) -> bytes:
        """Up to ``limit`` first bytes of a file, verified: a chunked file's first chunks only
        once the whole file is proven (``ObjectDB.prove``, once per process for an id), since
        its manifest could list another file's chunks."""
        db = self._db_for(oid)
        if db.entry(oid).kind == codec.KIND_CHUNKED:
            db.prove(oid)
        out = bytearray()
        for block in self.read(oid):
            out += block[: limit - len(out)]
            if len(out) >= limit:
                break
        return bytes(out)

    def read(self, oid: bytes) -> Iterator[bytes]:
        """A file's exact bytes, verified as they are read."""
        return iter_file_bytes(self._db_for(oid), oid)

    def tree(self, oid: bytes) -> list[dict[str, Any]]:
        rows = []
        for mode, eid, size, path in list_tree(self._db_for(oid), oid):
            rows.append({"mode": mode, "id": eid.hex(), "size": size, "name": path})
        return rows

    # -- refs ------------------------------------------------------------------------------

    def tags(self) -> dict[str, bytes]:
        """Tags of this repository, and the remote's where a name is not taken here."""
        tags = dict(self.repository.cas.refs.tags())
        if self._remote is not None:
            if self._remote_tags is None:
                self._remote_tags = self._read_remote_tags()
            for name, oid in self._remote_tags.items():
                tags.setdefault(name, oid)
        return tags

    def _read_remote_tags(self) -> dict[str, bytes]:
        assert self._remote is not None
        out: dict[str, bytes] = {}
        for key in self._remote.backend.list("refs/tags/"):
            name = key[len("refs/tags/"):]
            try:
                oid = self._remote.remote_tag(name)
            except ZcasError:
                continue  # a damaged or badly named tag on the remote names nothing here
            if oid is not None:
                out[name] = oid
        return out

    def history(self, path: str) -> list[PathVersion]:
        """Versions of a path (a key into the index, never opened as a file), oldest first."""
        found = list(self.lineage.history(path))
        if self._remote is not None:
            have = {(v.id, v.time_ns) for v in found}
            found += [v for v in self._pulled_history() if v.path == path and (v.id, v.time_ns) not in have]
            found.sort(key=lambda v: v.time_ns)
        return found

    def paths_of(self, oid: bytes) -> set[str]:
        """Paths with a recorded version that held ``oid``. The path index is keyed by path,
        so it is read whole once, and again only after the lineage index was written to
        (not once per artifact page: 100,000 runs index 100,000 path versions)."""
        graph = self.lineage.graph
        at = graph.env.info()["last_txnid"]
        if at != self._paths_at:
            by_id: dict[bytes, set[str]] = {}
            for p, o in graph.all_paths():
                by_id.setdefault(o, set()).add(p)
            self._paths_by_id, self._paths_at = by_id, at
        return set(self._paths_by_id.get(oid, ()))

    def path_names(self) -> list[str]:
        names = set(self.lineage.graph.all_path_names())
        if self._remote is not None:
            names.update(v.path for v in self._pulled_history())
        return sorted(names)

    def _pulled_history(self) -> list[PathVersion]:
        if self._remote_history is None:
            from zcas.lineage.records import RecordError, from_history_line
            from zcas.refsync import remote_history

            lines = []
            for line in remote_history(self._remote)[1] if self._remote is not None else []:
                try:
                    lines.append(from_history_line(line))
                except RecordError:
                    continue
            self._remote_history = lines
        return self._remote_history


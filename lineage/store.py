"""The repository with lineage: the object store below, the LMDB graph beside it.

Run records are objects in the store (their id is the run id) and the refs files hold tags
and path history: that is the record of truth. The LMDB graph is an index over them, which
``reindex`` rebuilds from those alone; if it is missing it is rebuilt on open.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from zcas.cas import codec
from zcas.cas.errors import ZcasError
from zcas.cas.repo import Repo

from .graph import EXPS_MARK, EXPS_MARK_V2, Graph

if TYPE_CHECKING:
    from zcas.cas.refs import Forgotten
    from zcas.cas.refs import PathVersion as HistoryLine

    from .records import PathVersion, Run

# The index is complete and every run in it passed strict validation. v1 indexes were built
# by a zcas that validated remote records less strictly: opening one rebuilds it.
_MARK = b"indexed-v2"
_LISTED = {"step": str, "kind": str, "status": str, "inputs": dict, "outputs": dict, "started_ns": int, "ended_ns": int}


class Lineage:
    def __init__(self, repo: Repo, rebuild: bool = False) -> None:
        self.repo = repo
        path = os.path.join(repo.zdir, "lineage")
        if rebuild:  # a damaged LMDB may not even open: start from nothing
            import shutil

            shutil.rmtree(path, ignore_errors=True)
        fresh = not os.path.exists(os.path.join(path, "data.mdb"))
        self.graph = Graph(path)
        self.graph.forgotten = repo.refs.forgotten()
        self.last_reindex: dict[str, int] = {}
        self._adopted: list[tuple[bytes, dict[str, Any], bytes]] = []
        if fresh or not self._marked():
            self._rebuild_once()
        self.graph.fill_exps()  # an index from before the exps database: its rows, once

    def close(self) -> None:
        self.graph.close()

    def _marked(self) -> bool:
        return self.graph.read(lambda t: t.get(_MARK, db=self.graph.dbs["meta"])) is not None

    def _rebuild_once(self) -> None:
        """Rebuild an index that is not complete, unless another process has just done so.

        Processes that open a new repository at once all find the index missing; without
        this lock a late one would clear the index after an early one had rebuilt it and
        indexed runs of its own (runs a rebuild from an older view of the store misses)."""
        import fcntl

        fd = os.open(os.path.join(self.repo.zdir, "lineage.lock"), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if not self._marked():
                self.repo.db.refresh()  # every record stored until now
                self.reindex()
        finally:
            os.close(fd)  # releases the lock

    # -- recording -------------------------------------------------------------------------

    def record_runs(self, runs: list[Run]) -> list[bytes]:
        """Store run records durably as objects, then index them (in one transaction),
        with the records adopted since the last call (``adopt``)."""
        from . import serde

        datas = [serde.encode(r) for r in runs]
        db = self.repo.db
        ids = [db.put(codec.KIND_RECORD, d) for d in datas]
        adopted, self._adopted = self._adopted, []
        for rid, _, data in adopted:
            db.put(codec.KIND_RECORD, data, oid=rid)
        db.flush()
        self.index_runs([*adopted, *((rid, serde.unstructure(r), d) for rid, r, d in zip(ids, runs, datas, strict=True))])
        return ids

    def adopt(self, rid: bytes, rec: dict[str, Any], data: bytes) -> None:
        """Index a checked run record from elsewhere (a remote's action cache hit) with the
        next ``record_runs``: the hit's own record comes then too, so both go in one flush
        and one transaction rather than one each per hit."""
        self._adopted.append((rid, rec, data))

    def record_run(self, run: Run) -> bytes:
        return self.record_runs([run])[0]

    def index_runs(self, items: list[tuple[bytes, dict[str, Any], bytes]]) -> None:
        """Index runs already stored (run id, unstructured record, record bytes), with the
        paths of command runs in path history as what they hold (``path_kind``)."""
        self.graph.put_runs(items, self.path_kind)

    def path_kind(self, oid: bytes) -> str:
        """What a path that held ``oid`` was, as path history names it: "tree" for a folder,
        else "file". A record names only ids, and the object's kind tells a folder from a
        file, not a symlink from a file (its target is stored as a blob), so a symlink a
        command wrote is a "file" here. An object not in this store (a run pulled from a
        remote, its outputs not fetched) is a "file" too, until ``reindex``."""
        db = self.repo.db
        if not db.has(oid):
            return "file"
        try:
            kind = db.entry(oid).kind
        except ZcasError:
            return "file"
        return "tree" if kind == codec.KIND_TREE else "file"

    def index_paths(self, versions: Iterable[HistoryLine]) -> int:
        """Index path versions that the object store's history file has recorded; a version
        that cannot be indexed (a damaged line: a time out of range, a path that is not text)
        is skipped. Returns how many were indexed."""
        from .records import RecordError, from_history_line

        items = []
        for v in versions:
            try:
                items.append(from_history_line(v))
            except RecordError:
                continue
        return self.graph.put_paths(items)

    def set_tag(self, name: str, oid: bytes, force: bool = False) -> None:
        self.repo.refs.set_tag(name, oid, force=force)
        self.graph.set_tag(name, oid)

    def delete_tag(self, name: str) -> None:
        self.repo.refs.delete_tag(name)
        self.graph.set_tag(name, None)

    # -- reading ---------------------------------------------------------------------------

    def run(self, rid: bytes) -> Run:
        """The run record ``rid``, from the index or the object store."""
        from . import serde
        from .records import Run

        data = self.graph.run_bytes(rid)
        if data is None:
            data = self.repo.db.get(rid)[1]
        rec = serde.decode(data)
        if not isinstance(rec, Run):
            raise serde.RecordError(f"{rid.hex()} is not a run record")
        return rec

    def run_dict(self, rid: bytes) -> dict[str, Any] | None:
        """A run as a plain dict (no cattrs: the fast path for listing and walking).

        Every run in the index passed strict validation when it was indexed; should one not
        even parse, or lack a field listing needs, it is None (as if absent), never an error.
        """
        import json

        data = self.graph.run_bytes(rid)
        if data is None:
            return None
        try:
            d = json.loads(data)
        except (ValueError, RecursionError):
            return None
        if not isinstance(d, dict) or any(type(d.get(k)) is not t for k, t in _LISTED.items()):
            return None
        return d

    def runs(self, step: str | None = None, status: str | None = None, since_ns: int = 0,
             limit: int | None = None) -> list[tuple[bytes, dict[str, Any]]]:
        """(run id, record) newest first, filtered; stops reading once ``limit`` is reached.
        The runs of one ``step`` are read from their own index (the exps database), so a
        step's runs cost the same among a million runs of other steps as among none."""
        out = []
        ids = self.graph.step_run_ids_newest(step, since_ns) if step else self.graph.run_ids_newest(since_ns)
        for rid in ids:
            r = self.run_dict(rid)
            if r is None or (step and r["step"] != step) or (status and r["status"] != status):
                continue
            out.append((rid, r))
            if limit and len(out) >= limit:
                break
        return out

    def history(self, path: str) -> list[PathVersion]:
        """Every recorded version of ``path``, oldest first."""
        return self.graph.versions(path)

    def roots(self, forgotten: Forgotten | None = None) -> list[bytes]:
        """Objects lineage keeps alive: every run record and every artifact it names, and
        the path versions pulled from remotes; none that ``forgotten`` names (default: what
        the refs record as forgotten, which the index already leaves out).

        The path versions the index holds are the local history (the object store's own
        roots), those pulled from remotes, and the inputs and outputs of runs: the runs and
        the pulled files are read here, so that a version forgotten only in ``forgotten``
        (what ``gc --dry-run`` would forget) counts as gone."""
        f = self.graph.forgotten if forgotten is None else forgotten
        from .records import artifact_ids

        out = []
        for rid in self.graph.all_run_ids():
            if rid in f.runs:
                continue
            out.append(rid)
            d = self.run_dict(rid)
            if d:
                out.extend(artifact_ids(d))
        out.extend(v.oid for v in self._pulled_history() if not f.line(v))
        return out

    # -- forgetting ------------------------------------------------------------------------

    def forget(self, runs: list[bytes], versions: list[tuple[str, bytes, int, int]]) -> None:
        """Forget runs and path-version spans (path, id, first_ns, last_ns): recorded in the
        refs first (durable, all or nothing), then the index is rebuilt without them.

        The index's completion mark goes before the refs are written: a crash after that
        leaves an index that the next open rebuilds (without what is forgotten). The caller
        holds the repository lock exclusively (a rebuild must not race other writers)."""
        if not runs and not versions:
            return
        self.graph.write(lambda t: t.delete(_MARK, db=self.graph.dbs["meta"]))
        self.repo.refs.forget(runs, versions)
        self.reindex()

    # -- rebuilding ------------------------------------------------------------------------

    def _pulled_history(self) -> list[HistoryLine]:
        """Path versions pulled from remotes (kept apart from the local history file)."""
        import glob

        from zcas.cas.refs import Refs

        out: list[HistoryLine] = []
        for path in sorted(glob.glob(os.path.join(self.repo.zdir, "remotes", "*", "history.jsonl"))):
            r = Refs(self.repo.zdir)
            r.history_path = path
            out.extend(r.history())
        return out

    def reindex(self) -> dict[str, int]:
        """Rebuild the graph from run objects, the history file and tags alone."""
        from . import serde
        from .records import Run

        db = self.repo.db
        self.graph.forgotten = self.repo.refs.forgotten()
        self.graph.clear()
        batch = []
        runs = bad = 0
        for oid, e in db.iter_entries():
            if e.kind != codec.KIND_RECORD or oid in self.graph.forgotten.runs:
                continue
            try:
                _, data = db.get(oid)
                rec = serde.decode(data)
            except Exception:  # noqa: BLE001 - a damaged record is counted, fsck names it
                bad += 1
                continue
            if isinstance(rec, Run):
                batch.append((oid, serde.unstructure(rec), data))
                runs += 1
            if len(batch) >= 2000:
                self.index_runs(batch)
                batch = []
        self.index_runs(batch)
        versions = list(self.repo.refs.history()) + self._pulled_history()
        paths = self.index_paths(versions)
        tags = self._tags()
        for name, oid in tags.items():
            self.graph.set_tag(name, oid)
        self.graph.write(self._mark_complete)
        self.last_reindex = {"runs": runs, "paths": paths, "tags": len(tags), "damaged": bad}
        return self.last_reindex

    def _mark_complete(self, txn: Any) -> None:
        txn.put(_MARK, b"1", db=self.graph.dbs["meta"])
        txn.put(EXPS_MARK, b"1", db=self.graph.dbs["meta"])  # each run indexed brought its row
        txn.delete(EXPS_MARK_V2, db=self.graph.dbs["meta"])

    def _tags(self) -> dict[str, bytes]:
        """Every readable tag: a damaged tag file is left out (the refs report it when used)."""
        refs = self.repo.refs
        try:
            return refs.tags()
        except ZcasError:
            pass
        out: dict[str, bytes] = {}
        try:
            names = sorted(os.listdir(refs.tags_dir))
        except OSError:
            return out
        for name in names:
            try:
                oid = refs.get_tag(name)
            except (ZcasError, OSError):
                continue
            if oid is not None and not name.endswith(".lock"):
                out[name] = oid
        return out

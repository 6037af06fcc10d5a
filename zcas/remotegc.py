"""gc over a remote: retention rules and collection on a store a team shares.

Under the remote's lock, held alone (``cas.storelock``; every push holds it shared, so no
push runs meanwhile):

1. read everything on the remote that names objects: tags, run records (lineage
   segments) and path-history lines, each validated as a pull validates it. A segment
   that does not read, a record of a newer zcas or a tag that is not an id stops gc before
   it changes anything: what they name is unknown;
2. apply the retention rules, as local gc does, to those runs and versions (tags keep
   what they name);
3. rewrite lineage and history: the kept records and lines in as few segments as hold
   them, new segments first, then the old ones deleted;
4. collect objects as local gc does (``cas.gc``): only packs older than the grace period
   are touched, live objects are verified and copied into a new pack before an old one
   goes, and anything reachable that is missing or damaged stops it. The names of the
   packs removed are left on the remote (``cas.collected``) so that pushers do not send
   those packs whole again.

The grace period is a second guard: a push by an older zcas, which takes no lock, writes
packs younger than any sane grace period, and gc leaves those alone.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import attrs

from zcas.cas import collected
from zcas.cas.errors import ZcasError
from zcas.cas.gc import GcReport, gc
from zcas.cas.objstore import RemoteError
from zcas.cas.refs import Forgotten
from zcas.cas.storelock import StoreLock
from zcas.cas.transfer import JOBS
from zcas.lineage import actions
from zcas.lineage.records import artifact_ids
from zcas.lineage.remote import SegmentError
from zcas.lineage.retention import Rules, RunRef, VersionRef, runs_not_kept, versions_not_kept, versions_of

from . import packlog
from .refsync import remote_history, rewrite_history

if TYPE_CHECKING:
    from .remotes import Remote


@attrs.define
class RemoteGcReport:
    objects: GcReport
    versions: list[VersionRef]
    runs: list[RunRef]
    segments_removed: int = 0
    records_skipped: int = 0  # malformed run records on the remote, dropped by the rewrite
    actions_removed: int = 0  # action cache entries of forgotten runs (or that do not read)


def gc_remote(remote: Remote, rules: Rules, grace: float, dry_run: bool = False) -> RemoteGcReport:
    if dry_run:  # reads only: no lock, so it never stands in a push's way
        return _collect(remote, rules, grace, True)
    with StoreLock(remote.backend, "gc", exclusive=True, where=f"remote {remote.spec.name}") as lock:
        return _collect(remote, rules, grace, False, lock.check)


def _tags(remote: Remote) -> dict[str, bytes]:
    out = {}
    for key in remote.backend.list("refs/tags/"):
        name = key[len("refs/tags/") :]
        oid = remote.remote_tag(name)  # a tag that is not an id raises: gc stops
        if oid is not None:
            out[name] = oid
    return out


def _collect(remote: Remote, rules: Rules, grace: float, dry_run: bool,
             held: Callable[[], None] = lambda: None) -> RemoteGcReport:
    """``held()`` raises unless the remote's lock is surely still ours: asked before
    anything is deleted."""
    try:
        tags = _tags(remote)
        seg_keys, records, skipped = remote.lineage.records()
        hist_keys, lines = remote_history(remote)
    except (SegmentError, ZcasError) as e:
        raise ZcasError(f"gc of remote {remote.spec.name} changed nothing: {e}") from None
    runs = [(rid, d) for rid, (_, d) in records.items()]
    tagged = set(tags.values())
    versions = versions_not_kept(versions_of(lines), rules, tagged) if rules.active() else []
    gone_runs = runs_not_kept(runs, rules, tagged) if rules.active() else []
    forgotten = Forgotten()
    for v in versions:
        forgotten.add_version(*v.span())
    for r in gone_runs:
        forgotten.add_run(bytes.fromhex(r.run))
    kept_records = {rid: data for rid, (data, _) in records.items() if rid not in forgotten.runs}
    kept_lines = [v for v in lines if not forgotten.line(v)]
    optional = [v.oid for v in kept_lines]
    for rid, d in runs:
        if rid not in forgotten.runs:
            optional.append(rid)
            optional.extend(artifact_ids(d))
    rep = RemoteGcReport(GcReport(), versions, gone_runs, records_skipped=skipped)
    if not dry_run:
        held()
        if len(seg_keys) > 1 or len(kept_records) != len(records) or skipped:
            rep.segments_removed += remote.lineage.compact(seg_keys, kept_records)
        if len(hist_keys) > 1 or len(kept_lines) != len(lines):
            rep.segments_removed += rewrite_history(remote, hist_keys, kept_lines)
    entries = _tidy_actions(remote, kept_records, rep, dry_run)  # before their objects can go
    notes = collected.collected(remote.backend)
    removed: set[str] = set()

    def on_remove(names: list[str]) -> None:
        held()
        removed.update(names)
        collected.note(remote.backend, names, notes)

    before = remote.db.packs()
    rep.objects = gc(remote.db, list(tagged), grace, dry_run=dry_run, optional_roots=optional, on_remove=on_remove)
    if not dry_run:
        now = remote.db.packs()
        rep.segments_removed += packlog.fold(remote.backend, now)
        packlog.note(remote.backend, now - before)  # the packs live objects moved into
        _write_actions(remote, {rid: records[rid] for rid in kept_records}, entries, removed)
    return rep


def _tidy_actions(remote: Remote, keep: dict[bytes, bytes], rep: RemoteGcReport, dry_run: bool) -> dict[str, set[str]]:
    """Delete the action cache entries that do not hold a kept run (or do not read); the
    others by key, with the packs their hints name."""
    def read(key: str) -> tuple[str, set[str] | None]:
        try:
            data = actions.get(remote.backend, key)
            if data is None:
                return key, None
            found = actions.decode_all(key, data)
        except RemoteError:
            raise
        except ZcasError:  # too large, or not an entry for this key: it goes
            return key, None
        if found.run_id not in keep:
            return key, None
        then = [t for t in found.then if t[1] in keep]
        if len(then) < len(found.then) and not dry_run:  # it carries runs forgotten now: without them
            remote.backend.delete(actions.entry_key(key))
            actions.put(remote.backend, key, found.raw, found.where,
                        [actions.Then(k, raw, where) for k, _, _, raw, where in then])
        return key, {e.pack for e in found.where.values()} | {e.pack for t in then for e in t[4].values()}

    entries: dict[str, set[str]] = {}
    with ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="zcas-ac") as ex:
        for key, packs in ex.map(read, actions.keys(remote.backend)):
            if packs is not None:
                entries[key] = packs
                continue
            rep.actions_removed += 1
            if not dry_run:
                remote.backend.delete(actions.entry_key(key))
    return entries


def _write_actions(remote: Remote, keep: dict[bytes, tuple[bytes, dict]], entries: dict[str, set[str]],
                   removed: set[str]) -> None:
    """An entry for each kept run's key that has none, and fresh hints for entries that
    pointed into packs gc removed (each is a few GETs saved on every hit)."""
    for data, d in keep.values():
        key = d.get("cache_key")
        if not key or d.get("status") not in ("ran", "cached"):
            continue
        if key in entries and not entries[key] & removed:
            continue
        outputs = artifact_ids({"outputs": d.get("outputs")})
        if not all(remote.db.has(o) for o in outputs):
            continue  # (pushed with named objects only: a lookup would find nothing to fetch)
        then: list[actions.Then] = []
        if key in entries:
            then = _carried(remote, key, keep)
            remote.backend.delete(actions.entry_key(key))
        where = actions.locate(remote.db, outputs)
        if actions.put(remote.backend, key, data, where, then):
            entries[key] = set()


def _carried(remote: Remote, key: str, keep: dict[bytes, tuple[bytes, dict]]) -> list[actions.Then]:
    """The entries ``key``'s entry carries, of kept runs, with fresh hints (an entry
    rewritten for its own hints keeps what makes a chain of hits one GET)."""
    try:
        data = actions.get(remote.backend, key)
        found = actions.decode_all(key, data) if data is not None else None
    except RemoteError:
        raise
    except ZcasError:
        return []
    out = []
    for k, rid, rec, raw, _ in found.then if found is not None else ():
        if rid in keep:
            outs = artifact_ids({"outputs": rec.get("outputs")})
            out.append(actions.Then(k, raw, actions.locate(remote.db, outs)))
    return out

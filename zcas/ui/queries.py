"""What the web view shows, as plain data: every page and every ``/api/`` answer is one of
these functions, so scripts get exactly what the pages show and the web layer stays thin.

Records are shown through ``public_record`` and environment variables by name only (set or
unset): a digest of a value is no business of a reader. Listing stops reading the index as
soon as a page is full, so the first page costs the same on 100 or 100,000 runs.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator
from itertools import islice
from typing import TYPE_CHECKING, Any

from zcas.cas.errors import UsageError, ZcasError
from zcas.lineage.graph import flat
from zcas.lineage.redact import public_record

from . import preview as pv

if TYPE_CHECKING:
    from .source import Source

PER_PAGE = 50
MAX_PER_PAGE = 500
MAX_PAGE = 1_000_000  # pages past this are refused (400), not skipped to
SCAN = 20_000  # records a filtered listing or a "previous run" search reads at most
RELATED = 200  # runs an artifact's page lists as its producers, and as its users (with how many there are)
STATUSES = ("ran", "cached", "failed")


class NotFoundError(ZcasError, LookupError):
    """An id that names no run or object here (HTTP 404)."""


def _when(text: str | None, field: str) -> int:
    """ns since the epoch from an ISO date or time (``2026-11-27``, ``2026-11-27T10:00``),
    a duration back from now (``2h``, ``7d``), or an integer of nanoseconds. A date or
    duration past either end of what 64 bits of ns hold (1970 to 2262) means that end; an
    integer out of that range, or a date no clock here converts, is a UsageError."""
    if not text:
        return 0
    t = text.strip()
    if t.isdigit() and len(t) > 12:
        if len(t) > 19 or int(t) >= 2**63:
            raise UsageError(f"{field}: {t!r:.40} is out of range (ns since 1970, below 2**63)")
        return int(t)
    try:
        ns = _ns(t, field)
    except UsageError:
        raise
    except (OverflowError, ValueError, OSError):  # a date Python holds but no clock here does
        raise UsageError(f"{field}: {t!r:.40} is out of range (a time from 1970 to 2262)") from None
    return min(max(ns, 1), 2**63 - 1)  # 1, not 0: an until before 1970 still filters (0 is no bound)


def _ns(t: str, field: str) -> int:
    try:
        d = dt.datetime.fromisoformat(t)
    except ValueError:
        d = None
    if d is not None:
        if d.tzinfo is None:
            d = d.astimezone()
        return int(d.timestamp() * 1e9)
    from zcas.runners.durations import parse_duration

    try:
        return int((time.time() - parse_duration(t)) * 1e9)
    except UsageError:
        raise UsageError(f"{field}: expected a date (2026-11-27), a time (2026-11-27T10:00) or a duration (2h, 7d), "
                         f"got {t!r:.40}") from None


def summary(rid: str, r: dict[str, Any]) -> dict[str, Any]:
    """One row of the runs table."""
    return {"id": rid, "step": r["step"], "kind": r["kind"], "status": r["status"], "started_ns": r["started_ns"],
            "duration_s": max(0, r["ended_ns"] - r["started_ns"]) / 1e9, "host": r.get("host", ""),
            "user": r.get("user", ""), "exit_status": r.get("exit_status", 0), "session": r.get("session"),
            "cached_from": r.get("cached_from")}


def _newest(src: Source, step: str | None = None, since_ns: int = 0,
            before: bytes | None = None) -> Iterator[tuple[bytes, dict[str, Any] | None]]:
    """(run id, record or None) newest first (``before``: from the run recorded before that
    time key, started_ns big-endian + run id); with ``step``, a record whose bytes do not
    hold the step's name is skipped without being parsed (None), which makes looking for a
    rare step among 100,000 runs a scan of bytes rather than of JSON. A name JSON would
    escape is never skipped that way: such records are parsed and compared."""
    graph, lin = src.lineage.graph, src.lineage
    plain = step is not None and step.isascii() and step.isprintable() and '"' not in step and "\\" not in step
    needle = step.encode() if plain and step else None
    if needle is None and before is None:
        for rid in graph.run_ids_newest(since_ns):
            r = lin.run_dict(rid)
            yield rid, (r if r is not None and (step is None or r["step"] == step) else None)
        return
    with graph.env.begin() as txn:  # one read transaction for the whole scan, as run_ids_newest reads
        cur, runs_db = txn.cursor(graph.dbs["time"]), graph.dbs["runs"]
        if before is None:
            more = cur.last()
        elif cur.set_range(before):  # at the first key from ``before`` on: the one before it is next
            more = cur.prev()
        else:  # every run was recorded before it
            more = cur.last()
        while more:
            key = cur.key()
            if int.from_bytes(key[:8], "big") < since_ns:
                return
            rid = bytes(key[8:])
            data = txn.get(rid, db=runs_db)
            r = lin.run_dict(rid) if data is not None and (needle is None or needle in data) else None
            yield rid, (r if r is not None and (step is None or r["step"] == step) else None)
            more = cur.prev()


def steps(src: Source, scan: int = 2_000) -> dict[str, list[str]]:
    """Step and pipeline names among the newest ``scan`` runs (for the filters' choices)."""
    found: dict[str, set[str]] = {"steps": set(), "pipelines": set()}
    for rid in islice(src.lineage.graph.run_ids_newest(), scan):
        r = src.lineage.run_dict(rid)
        if r is not None:
            found["pipelines" if r["kind"] == "pipeline" else "steps"].add(r["step"])
    return {k: sorted(v) for k, v in found.items()}


def runs(src: Source, step: str | None = None, pipeline: str | None = None, status: str | None = None,
         since: str | None = None, until: str | None = None, page: int = 1, per_page: int = PER_PAGE) -> dict[str, Any]:
    """A page of runs, newest first, filtered; ``more``: whether a next page exists."""
    if status and status not in STATUSES:
        raise UsageError(f"status: expected one of {', '.join(STATUSES)}, got {status!r:.40}")
    if not 1 <= page <= MAX_PAGE or not 1 <= per_page <= MAX_PER_PAGE:
        raise UsageError(f"page must be between 1 and {MAX_PAGE} and per_page between 1 and {MAX_PER_PAGE}")
    src.refresh()
    lo, hi = _when(since, "since"), _when(until, "until")
    sessions = _sessions(src, pipeline) if pipeline else None
    lin = src.lineage
    skip, want = (page - 1) * per_page, per_page + 1
    filtered = bool(step or status or hi or sessions is not None)
    if not filtered:  # skip to the page without reading the records before it
        found: Iterator[tuple[bytes, dict[str, Any] | None]] = ((rid, lin.run_dict(rid))
                                                                 for rid in islice(lin.graph.run_ids_newest(lo), skip, None))
        skip = 0
    else:
        found = _newest(src, step, lo, before=(hi + 1).to_bytes(8, "big") if hi else None)  # from `until` back
    out, read = [], 0
    for rid, r in found:
        read += 1
        if filtered and read > SCAN + skip and not step:
            break
        if r is None or (status and r["status"] != status):
            continue
        if hi and r["started_ns"] > hi:
            continue
        if sessions is not None and r.get("session") not in sessions:
            continue
        if skip:
            skip -= 1
            continue
        out.append(summary(rid.hex(), r))
        if len(out) >= want:
            break
    newest = next(lin.graph.run_ids_newest(), None)
    return {"runs": out[:per_page], "page": page, "per_page": per_page, "more": len(out) > per_page,
            "latest": newest.hex() if newest else None}


def _sessions(src: Source, pipeline: str) -> set[str]:
    """The sessions (pipeline calls) of a pipeline's recorded runs: their steps' runs name them."""
    return {r["session"] for _, r in islice(_newest(src, pipeline), SCAN * 5)
            if r is not None and r["kind"] == "pipeline" and isinstance(r.get("session"), str)}


def _record(src: Source, text: str) -> tuple[str, dict[str, Any]]:
    oid = src.resolve(text)
    rec = src.lineage.run_dict(oid)
    if rec is None:
        raise NotFoundError(f"no run {text!r:.80} here")
    return oid.hex(), rec


def run(src: Source, text: str) -> dict[str, Any]:
    """Everything about one run: what its key covers, inputs and outputs (with whether each
    is stored), the command, metrics and log when recorded, and why it ran."""
    rid, rec = _record(src, text)
    pub = public_record(rec)
    env = {k: "unset" if v in (None, "unset") else "set" for k, v in (pub.get("env") or {}).items()}
    comps = {k: ("set" if v != "null" else "unset") if k.startswith("env:") else v
             for k, v in (pub.get("key_components") or {}).items()}
    out = summary(rid, rec)
    out.update({
        "cache_key": rec.get("cache_key") or None, "key_components": comps, "params": rec.get("params") or {},
        "env": env, "code": rec.get("code"), "code_manifest": rec.get("code_manifest"), "cmd": rec.get("cmd"),
        "cwd": rec.get("cwd", ""), "zcas_version": rec.get("zcas_version", ""),
        "inputs": _files(src, rec.get("inputs")), "outputs": _files(src, rec.get("outputs")),
        "implicit_inputs": _files(src, rec.get("implicit_inputs")), "materializers": rec.get("materializers") or {},
        "steps": _steps_of(src, rec.get("steps")), "why": why(src, rid, rec),
    })
    metrics = rec.get("metrics")
    if isinstance(metrics, dict) and metrics:
        out["metrics"] = metrics
    log = _log(src, rec.get("log"))
    if log:
        out["log"] = log
    return out


def _files(src: Source, named: object) -> list[dict[str, Any]]:
    if not isinstance(named, dict):
        return []
    return [{"name": n, "id": o, "where": src.where(bytes.fromhex(o))} for n, o in sorted(named.items())
            if isinstance(o, str) and len(o) == 64]


def _steps_of(src: Source, named: object) -> list[dict[str, Any]]:
    out = []
    for name, o in sorted((named or {}).items()) if isinstance(named, dict) else []:
        r = src.lineage.run_dict(bytes.fromhex(o)) if isinstance(o, str) and len(o) == 64 else None
        out.append({"name": name, "id": o, "status": r["status"] if r else None})
    return out


def _log(src: Source, log: object, limit: int = pv.HEAD) -> list[dict[str, Any]]:
    """A run's captured output: a stream name -> object id map (or one id), each stream's
    head as text (issue 15 records them; older records have none)."""
    named = {"log": log} if isinstance(log, str) else log if isinstance(log, dict) else {}
    out = []
    for name, o in sorted(named.items()):
        if not (isinstance(o, str) and len(o) == 64):
            continue
        oid = bytes.fromhex(o)
        item: dict[str, Any] = {"name": name, "id": o, "where": src.where(oid)}
        found = src.entry(oid)
        if found is not None and found[0] == "file":
            data = src.head(oid, limit)
            item.update(text=data.decode("utf-8", "replace"), truncated=found[1] > limit)
        out.append(item)
    return out


def why(src: Source, rid: str, rec: dict[str, Any]) -> dict[str, Any]:
    """Why this run executed: its key against the previous run of its step with another key
    (zcas why's comparison); a cache hit names the run it restored."""
    if rec["status"] == "cached":
        return {"kind": "cached", "from": rec.get("cached_from"), "lines": []}
    if rec["kind"] == "pipeline":
        return {"kind": "pipeline", "lines": []}
    prev = _previous(src, rid, rec)
    if prev is None:
        return {"kind": "first", "lines": [f"no earlier run of this step under another key (among the {SCAN:,} "
                                           "runs recorded before it)"]}
    from zcas import why as whymod

    ctx = src.repository.core(out=None, remote_cache=False)
    try:
        lines = whymod.compare_runs(ctx, prev[1], rec)
    except ZcasError as e:  # a manifest that does not read: still say what the keys say
        lines = [f"(code details unavailable: {e})"]
    return {"kind": "rerun", "previous": prev[0], "lines": lines or ["the key components are the same"]}


def _previous(src: Source, rid: str, rec: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """The latest earlier run of the same step recorded under another cache key."""
    key, step, started = rec.get("cache_key"), rec["step"], rec["started_ns"]
    here = started.to_bytes(8, "big") + bytes.fromhex(rid)
    for n, (other, r) in enumerate(_newest(src, step, before=here)):
        if n > SCAN:  # among the 20,000 runs recorded before it: a run page stays quick on any history
            return None
        if r is None or r["started_ns"] >= started or other.hex() == rid:
            continue
        src_rec = r
        if r["status"] == "cached" and isinstance(r.get("cached_from"), str):
            src_rec = src.lineage.run_dict(bytes.fromhex(r["cached_from"])) or r
        if src_rec.get("cache_key") != key:
            return other.hex(), src_rec  # a hit stands for the run it restored: that one knows its key
    return None


def artifact(src: Source, text: str, name: str = "") -> dict[str, Any]:
    """One object: kind, size, where it is, who made and used it, its paths' histories,
    its tags and a preview. ``name`` (a file's name in the folder it was listed from) only
    hints at its type for the preview: it is never opened."""
    oid = src.resolve(text)
    h = oid.hex()
    lin = src.lineage
    if lin.graph.has_run(oid):
        raise NotFoundError(f"{h[:12]} is a run, not an artifact: see /runs/{h}")
    found = src.entry(oid)
    produced_ids, used_ids = lin.graph.producers(oid), lin.graph.consumers(oid)
    if found is None and not produced_ids and not used_ids:
        raise NotFoundError(f"no object {text!r:.80} here")
    produced, used = _related(src, produced_ids), _related(src, used_ids)
    names = _names(h, produced, used) | src.paths_of(oid)  # added by hand too
    kind, size = found if found else (None, None)
    out: dict[str, Any] = {
        "id": h, "kind": kind, "size": size, "where": src.where(oid),
        "produced_by": _newest_first(produced), "produced_by_count": len(produced_ids),
        "produced_by_more": len(produced_ids) > RELATED,
        "used_by": _newest_first(used), "used_by_count": len(used_ids), "used_by_more": len(used_ids) > RELATED,
        "tags": sorted(n for n, t in src.tags().items() if t == oid), "names": sorted(names),
    }
    out["history"] = [{"path": p, "versions": [_version(v) for v in reversed(vs)]}
                      for p in sorted(names)[:20] if (vs := src.history(p))]  # each path's index read once
    if kind == "file" and size is not None:
        hints = sorted(names) + ([name[:200]] if name else [])
        out["preview"] = pv.preview(hints, size, lambda n: src.head(oid, n), lambda: src.head(oid, size))
    elif kind == "folder":
        out["entries"] = src.tree(oid)[:1000]
    return out


def _related(src: Source, rids: list[bytes]) -> list[tuple[str, dict[str, Any] | None]]:
    """(id, record) of the first ``RELATED`` of these runs (an input shared by 100,000 runs
    costs its page 200 records, not 100,000)."""
    return [(r.hex(), src.lineage.run_dict(r)) for r in rids[:RELATED]]


def _newest_first(group: list[tuple[str, dict[str, Any] | None]]) -> list[dict[str, Any]]:
    return sorted((summary(r, d) for r, d in group if d), key=lambda x: -x["started_ns"])


def _names(h: str, produced: list[tuple[str, dict[str, Any] | None]],
           used: list[tuple[str, dict[str, Any] | None]]) -> set[str]:
    """The paths (or value names) runs wrote or read an object as."""
    names: set[str] = set()
    for field, group in (("outputs", produced), ("inputs", used)):
        for _, r in group:
            names.update(n for n, o in (r or {}).get(field, {}).items() if o == h)
    return names


def names_of(src: Source, oid: bytes) -> list[str]:
    lin = src.lineage
    produced = _related(src, lin.graph.producers(oid))
    used = _related(src, lin.graph.consumers(oid))
    return sorted(_names(oid.hex(), produced, used))


def _version(v: Any) -> dict[str, Any]:
    return {"id": v.id, "time_ns": v.time_ns, "kind": v.kind, "run": v.run}


def tree(src: Source, text: str) -> dict[str, Any]:
    oid = src.resolve(text)
    found = src.entry(oid)
    if found is None or found[0] != "folder":
        raise NotFoundError(f"{text!r:.80} is no stored folder here")
    return {"id": oid.hex(), "entries": src.tree(oid)}


def experiments(src: Source, step: str, limit: int = 200, failed: bool = True) -> dict[str, Any]:
    """Runs of one step (or pipeline) side by side: params and metrics as columns, and the
    columns whose value differs between runs."""
    if not step:
        raise UsageError("step: name a step or a pipeline")
    if not 1 <= limit <= 5_000:
        raise UsageError("limit must be between 1 and 5000")
    src.refresh()
    rows: list[dict[str, Any]] = []
    for rid, r in _newest(src, step):
        if r is None or (not failed and r["status"] == "failed"):
            continue
        if len(rows) >= limit:
            break
        found = r.get("metrics")
        metrics: dict[str, Any] = found if isinstance(found, dict) else {}
        rows.append(dict(summary(rid.hex(), r), params=flat(r.get("params") or {}), metrics=flat(metrics)))
    if not rows:
        raise NotFoundError(f"no runs of a step or pipeline named {step!r:.80}")
    cols = {f: sorted({k for row in rows for k in row[f]}) for f in ("params", "metrics")}
    changed = {f: [c for c in cols[f] if len({json.dumps(row[f].get(c), sort_keys=True) for row in rows}) > 1]
               for f in ("params", "metrics")}
    return {"step": step, "rows": rows, "params": cols["params"], "metrics": cols["metrics"], "changed": changed}


def data(src: Source, q: str = "", limit: int = 500) -> dict[str, Any]:
    """Tags, and the paths with recorded versions (those containing ``q``), each with its
    newest version."""
    tags = [{"name": n, "id": o.hex(), "kind": (src.entry(o) or ("absent", 0))[0]}
            for n, o in sorted(src.tags().items())]
    names = [p for p in src.path_names() if q in p]
    paths = []
    for p in names[:limit]:
        hist = src.history(p)
        if hist:
            paths.append({"path": p, "versions": len(hist), "latest": _version(hist[-1])})
    return {"tags": tags, "paths": paths, "more": len(names) > limit}


def history(src: Source, path: str) -> dict[str, Any]:
    if not path:
        raise UsageError("path: name a path with recorded versions")
    found = src.history(path)
    if not found:
        raise NotFoundError(f"no recorded versions of {path!r:.200}")
    return {"path": path, "versions": [dict(_version(v), number=n) for n, v in reversed(list(enumerate(found, 1)))]}

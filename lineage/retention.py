"""Retention: which recorded path versions and runs a set of keep rules lets go.

Nothing here deletes anything: it lists what to forget (``Lineage.forget`` records it, and
``gc`` then collects what nothing else keeps). The rules, any of which keeps an item:

- ``keep_last`` N: for each path, its N newest versions; for each step, its N newest
  successful runs (ran or cached), and its failed runs newer than the newest successful one;
- ``keep_within`` D (nanoseconds): for each path, the versions recorded within D of its
  newest version; for each step, the runs started within D of its newest run (as restic's
  ``--keep-within``: a path or step untouched for a year keeps its last burst, not nothing);
- tags, always: a version whose id a tag names, a run a tag names, and a run one of whose
  outputs a tag names. ``keep_tagged`` alone (no other rule) keeps only those.

A kept run also keeps the run it restored its outputs from (``cached_from``) and, for a
pipeline run, the runs of its steps: a hit is only as good as the record it came from.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import attrs

from zcas.cas.refs import PathVersion

if TYPE_CHECKING:
    from .store import Lineage


@attrs.define(frozen=True)
class VersionRef:
    """A version of a path, numbered as ``zcas log PATH --versions`` numbers it (1 is the
    oldest recorded), with the span of records it groups."""

    path: str
    number: int
    id: str
    time_ns: int
    last_ns: int
    kind: str
    run: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.path, "number": self.number, "id": self.id, "time_ns": self.time_ns,
                "kind": self.kind, "run": self.run}

    def span(self) -> tuple[str, bytes, int, int]:
        return self.path, bytes.fromhex(self.id), self.time_ns, self.last_ns


@attrs.define(frozen=True)
class RunRef:
    run: str
    step: str
    status: str
    started_ns: int

    def as_dict(self) -> dict[str, Any]:
        return {"run": self.run, "step": self.step, "status": self.status, "started_ns": self.started_ns}


@attrs.define(frozen=True)
class Rules:
    keep_last: int | None = None
    keep_within_ns: int | None = None
    keep_tagged: bool = False

    def active(self) -> bool:
        return self.keep_last is not None or self.keep_within_ns is not None or self.keep_tagged


def path_versions(lineage: Lineage, path: str) -> list[VersionRef]:
    """Every version of ``path`` still recorded, oldest first, numbered from 1."""
    return [VersionRef(path, i, v.id, v.time_ns, last, v.kind, v.run)
            for i, (v, last) in enumerate(lineage.graph.version_spans(path), 1)]


def all_runs(lineage: Lineage) -> list[tuple[bytes, dict[str, Any]]]:
    """Every indexed run that reads as one (run id, record), oldest first."""
    out = []
    for rid in lineage.graph.all_run_ids():
        d = lineage.run_dict(rid)
        if d is not None:
            out.append((rid, d))
    out.sort(key=lambda t: (t[1]["started_ns"], t[0]))
    return out


def plan(lineage: Lineage, rules: Rules, tagged: Iterable[bytes]) -> tuple[list[VersionRef], list[RunRef]]:
    """The path versions and runs ``rules`` do not keep (nothing if no rule is given)."""
    if not rules.active():
        return [], []
    tags = set(tagged)
    by_path = {path: path_versions(lineage, path) for path in lineage.graph.all_path_names()}
    return versions_not_kept(by_path, rules, tags), runs_not_kept(all_runs(lineage), rules, tags)


def versions_of(lines: Iterable[PathVersion]) -> dict[str, list[VersionRef]]:
    """History lines (as ``history.jsonl`` holds them, in any order) grouped into numbered
    versions per path, as the index groups them: a run of lines holding one id is one
    version. For history that was never indexed here (a remote's)."""
    by_path: dict[str, list[PathVersion]] = {}
    for v in lines:
        by_path.setdefault(v.path, []).append(v)
    out: dict[str, list[VersionRef]] = {}
    for path, vs in by_path.items():
        vs.sort(key=lambda v: v.time)
        refs: list[VersionRef] = []
        for v in vs:
            t = int(v.time * 1e9)
            if refs and refs[-1].id == v.oid.hex():
                refs[-1] = attrs.evolve(refs[-1], last_ns=t)
            else:
                refs.append(VersionRef(path, len(refs) + 1, v.oid.hex(), t, t, v.kind, None))
        out[path] = refs
    return out


def _keeps(rules: Rules, from_newest: int, age_ns: int) -> bool:
    """Does keep-last or keep-within keep the item ``from_newest`` places from the newest
    (0: the newest), recorded ``age_ns`` before the newest?"""
    if rules.keep_last is not None and from_newest < rules.keep_last:
        return True
    return rules.keep_within_ns is not None and age_ns <= rules.keep_within_ns


def versions_not_kept(by_path: dict[str, list[VersionRef]], rules: Rules, tags: set[bytes]) -> list[VersionRef]:
    out = []
    for versions in by_path.values():
        if not versions:
            continue
        newest = versions[-1].time_ns
        for i, v in enumerate(versions):
            if bytes.fromhex(v.id) in tags or _keeps(rules, len(versions) - 1 - i, newest - v.time_ns):
                continue
            out.append(v)
    return out


def runs_not_kept(runs: list[tuple[bytes, dict[str, Any]]], rules: Rules, tags: set[bytes]) -> list[RunRef]:
    """Of ``runs`` ((id, record)), those no rule keeps."""
    runs = sorted(runs, key=lambda t: (t[1]["started_ns"], t[0]))
    by_step: dict[str, list[tuple[bytes, dict[str, Any]]]] = {}
    for rid, d in runs:
        by_step.setdefault(d["step"], []).append((rid, d))
    kept: set[bytes] = set()
    for items in by_step.values():
        newest = items[-1][1]["started_ns"]
        ok = [rid for rid, d in items if d["status"] != "failed"]
        rank = {rid: len(ok) - 1 - i for i, rid in enumerate(ok)}  # 0: the newest successful
        last_ok = max((d["started_ns"] for _, d in items if d["status"] != "failed"), default=-1)
        for rid, d in items:
            age = newest - d["started_ns"]
            if rid in rank:
                keep = _keeps(rules, rank[rid], age)
            else:  # failed: kept by keep-last while newer than every success
                keep = (rules.keep_last is not None and rules.keep_last > 0 and d["started_ns"] > last_ok) \
                    or _keeps(attrs.evolve(rules, keep_last=None), 0, age)
            if keep or rid in tags or any(_oid(x) in tags for x in d["outputs"].values()):
                kept.add(rid)
    # what a kept run stands on: the run a hit restored from, a pipeline's step runs
    known = {rid for rid, _ in runs}
    records = dict(runs)
    todo = list(kept)
    while todo:
        rec = records.get(todo.pop())
        if rec is None:
            continue
        for ref in [rec.get("cached_from"), *(rec.get("steps") or {}).values()]:
            rid = _oid(ref)
            if rid in known and rid not in kept:
                kept.add(rid)
                todo.append(rid)
    return [RunRef(rid.hex(), d["step"], d["status"], d["started_ns"]) for rid, d in runs if rid not in kept]


def _oid(x: object) -> bytes:
    try:
        return bytes.fromhex(x) if isinstance(x, str) and len(x) == 64 else b""
    except ValueError:
        return b""

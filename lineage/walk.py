"""Walking the graph: where an artifact came from, and what was made from it.

Each walk visits every run and artifact it reports once, reading only their own index
entries, so it costs time in proportion to its answer, not to the size of the graph. Walks
are breadth-first with an explicit queue and one visited set (no recursion): a chain of any
depth, a cycle (which a hostile remote can write: runs are only records) or a huge fan-out
ends, bounded by ``depth`` and by what the index holds.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from .store import Lineage


@attrs.define
class Subgraph:
    """The part of the graph a query reached: runs, artifacts and the edges between them."""

    root: str  # hex id the walk started from
    runs: dict[str, dict] = attrs.Factory(dict)  # run id -> record (as a dict)
    artifacts: dict[str, set[str]] = attrs.Factory(dict)  # id -> names (paths) seen for it
    edges: list[tuple[str, str, str]] = attrs.Factory(list)  # (from, to, "input"|"output")
    depth_of: dict[str, int] = attrs.Factory(dict)  # run id -> distance from the root

    def as_dict(self) -> dict:
        return {
            "root": self.root,
            "runs": [dict(r, id=rid, depth=self.depth_of.get(rid, 0)) for rid, r in self.runs.items()],
            "artifacts": [{"id": a, "paths": sorted(p)} for a, p in self.artifacts.items()],
            "edges": [{"from": f, "to": t, "kind": k} for f, t, k in self.edges],
        }


def _note(g: Subgraph, oid: str, name: str | None) -> None:
    names = g.artifacts.setdefault(oid, set())
    if name:
        names.add(name)


def _walk(lin: Lineage, start: bytes, depth: int, is_run: bool, up: bool) -> Subgraph:
    """Breadth-first from an artifact (or a run): up through producers' inputs, or down
    through consumers' outputs, each run and artifact visited once."""
    g = Subgraph(start.hex())
    follow, other = ("inputs", "outputs") if up else ("outputs", "inputs")
    runs_of = lin.graph.producers if up else lin.graph.consumers
    todo: deque[tuple[bytes | None, list[bytes], int]] = deque()
    seen: set[bytes] = set()
    if is_run:
        todo.append((None, [start], 0))
    else:
        _note(g, start.hex(), None)
        seen.add(start)
        todo.append((start, runs_of(start), 0))
    while todo:
        art, runs, d = todo.popleft()
        for rid in runs:
            h = rid.hex()
            if art is not None:
                g.edges.append((h, art.hex(), "output") if up else (art.hex(), h, "input"))
            if rid in seen:
                continue
            seen.add(rid)
            rec = lin.run_dict(rid)
            if rec is None:
                continue
            g.runs[h] = rec
            g.depth_of[h] = d + 1
            for name, oid in rec[other].items():
                _note(g, oid, name)
            for name, oid in rec[follow].items():
                try:
                    b = bytes.fromhex(oid)
                except (TypeError, ValueError):
                    continue  # not an id (the index holds validated records: never expected)
                _note(g, oid, name)
                g.edges.append((oid, h, "input") if up else (h, oid, "output"))
                if d + 1 < depth and b not in seen:
                    seen.add(b)
                    todo.append((b, runs_of(b), d + 1))
    return g


def ancestors(lin: Lineage, start: bytes, depth: int = 1 << 30, is_run: bool = False) -> Subgraph:
    """Where ``start`` came from: the runs that made it, their inputs, and so on up."""
    return _walk(lin, start, depth, is_run, up=True)


def descendants(lin: Lineage, start: bytes, depth: int = 1 << 30, is_run: bool = False) -> Subgraph:
    """What was made from ``start``: the runs that used it, their outputs, and so on down."""
    return _walk(lin, start, depth, is_run, up=False)


def diff(a: dict, b: dict) -> list[tuple[str, object, object]]:
    """What differs between two runs' key components: (component, in a, in b)."""
    out: list[tuple[str, object, object]] = []
    for field in ("cmd", "code", "cwd"):
        if a.get(field) != b.get(field):
            out.append((field, a.get(field), b.get(field)))
    for field in ("params", "env", "inputs", "outputs"):
        da, db = a.get(field) or {}, b.get(field) or {}
        for k in sorted(set(da) | set(db)):
            if da.get(k) != db.get(k):
                out.append((f"{field}.{k}", da.get(k), db.get(k)))
    return out

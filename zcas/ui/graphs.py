"""The lineage page's graph: runs and artifacts as nodes, inputs and outputs as edges.

The walk is breadth-first from the node asked for, up through producers and down through
consumers, like ``zcas.lineage.walk``'s, with one difference: it stops as soon as the graph
holds ``MAX_NODES`` nodes (an input shared by 100,000 runs is not walked whole to draw
5,000 of them), and what it kept is connected, nearest first. Each run brings all its
inputs and outputs, with their edges.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from zcas.cas.errors import UsageError

from .queries import NotFoundError

if TYPE_CHECKING:
    from .source import Source

MAX_NODES = 5_000


def lineage(src: Source, text: str, depth: int = 3, direction: str = "both") -> dict[str, Any]:
    """The graph around a run or an artifact: runs and artifacts as nodes, input and output
    edges, ``depth`` runs up and/or down; a pipeline run's own steps are drawn as its DAG."""
    if direction not in ("up", "down", "both"):
        raise UsageError(f"direction: expected up, down or both, got {direction!r:.20}")
    if not 1 <= depth <= 100:
        raise UsageError("depth must be between 1 and 100")
    oid = src.resolve(text)
    lin = src.lineage
    is_run = lin.graph.has_run(oid)
    rec = lin.run_dict(oid) if is_run else None
    if rec is not None and rec["kind"] == "pipeline":
        return dag(src, oid.hex(), rec)
    if not is_run and src.entry(oid) is None and not lin.graph.producers(oid) and not lin.graph.consumers(oid):
        raise NotFoundError(f"no run or object {text!r:.80} here")
    runs_: dict[str, dict[str, Any]] = {}
    arts: dict[str, set[str]] = {}
    edges: set[tuple[str, str, str]] = set()
    cut = False
    if direction != "down":
        cut = _walk(lin, oid, depth, is_run, True, MAX_NODES // 2 if direction == "both" else MAX_NODES,
                    runs_, arts, edges)
    if direction != "up":
        cut = _walk(lin, oid, depth, is_run, False, MAX_NODES, runs_, arts, edges) or cut
    g = _graph(oid.hex(), runs_, arts, edges)
    g["truncated"] = g["truncated"] or cut
    return g


def _walk(lin: Any, start: bytes, depth: int, is_run: bool, up: bool, cap: int, runs_: dict[str, dict[str, Any]],
          arts: dict[str, set[str]], edges: set[tuple[str, str, str]]) -> bool:
    """Breadth-first from ``start`` (``depth`` runs away at most), adding runs, artifacts and
    edges until the graph holds ``cap`` nodes; whether it stopped there."""
    follow = "inputs" if up else "outputs"
    runs_of = lin.graph.producers if up else lin.graph.consumers
    seen = {start}
    todo: deque[tuple[list[bytes], int]] = deque()
    if is_run:
        todo.append(([start], 0))
    else:
        arts.setdefault(start.hex(), set())
        todo.append((runs_of(start), 0))
    visited: set[bytes] = set()  # runs this walk expanded (the other direction's may be in runs_ already)
    while todo:
        rids, d = todo.popleft()
        for rid in rids:
            if rid in visited:
                continue
            visited.add(rid)
            h = rid.hex()
            rec = runs_.get(h)
            if rec is None:
                if len(runs_) + len(arts) >= cap:
                    return True
                rec = lin.run_dict(rid)
                if rec is None:
                    continue
                runs_[h] = rec
            for field in ("inputs", "outputs"):
                for name, o in rec.get(field, {}).items():
                    if o not in arts:
                        if len(runs_) + len(arts) >= cap:
                            return True
                        arts[o] = set()
                    arts[o].add(name)
                    edges.add((o, h, "input") if field == "inputs" else (h, o, "output"))
                    if field != follow or d + 1 >= depth:
                        continue
                    try:
                        b = bytes.fromhex(o)
                    except (TypeError, ValueError):
                        continue  # not an id (the index holds validated records: never expected)
                    if b not in seen:
                        seen.add(b)
                        todo.append((runs_of(b), d + 1))
    return False


def _graph(root: str, runs_: dict[str, dict[str, Any]], arts: dict[str, set[str]],
           edges: set[tuple[str, str, str]]) -> dict[str, Any]:
    nodes = [{"id": rid, "type": "run", "label": r["step"], "status": r["status"], "started_ns": r["started_ns"]}
             for rid, r in runs_.items()]
    nodes += [{"id": a, "type": "artifact", "label": ", ".join(sorted(n)) or a[:12]} for a, n in arts.items()]
    truncated = len(nodes) > MAX_NODES
    if truncated:  # keep the root and what is nearest in the listing
        nodes = sorted(nodes, key=lambda n: n["id"] != root)[:MAX_NODES]
    keep = {n["id"] for n in nodes}
    es = [{"from": f, "to": t, "kind": k} for f, t, k in sorted(edges) if f in keep and t in keep]
    return {"root": root, "nodes": nodes, "edges": es, "truncated": truncated}


def dag(src: Source, rid: str, rec: dict[str, Any]) -> dict[str, Any]:
    """A pipeline run's steps and the artifacts passed between them, each step coloured by
    whether it ran, was a cache hit or failed."""
    runs_: dict[str, dict[str, Any]] = {}
    for o in (rec.get("steps") or {}).values():
        r = src.lineage.run_dict(bytes.fromhex(o)) if isinstance(o, str) and len(o) == 64 else None
        if r is not None:
            runs_[o] = r
    arts: dict[str, set[str]] = {}
    edges: set[tuple[str, str, str]] = set()
    for srid, r in runs_.items():
        for field, kind in (("inputs", "input"), ("outputs", "output")):
            for name, o in r.get(field, {}).items():
                arts.setdefault(o, set()).add(name)
                edges.add((o, srid, kind) if kind == "input" else (srid, o, kind))
    g = _graph(rid, runs_, arts, edges)
    g["pipeline"] = {"id": rid, "step": rec["step"], "status": rec["status"]}
    return g

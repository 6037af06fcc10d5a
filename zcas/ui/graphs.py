"""The lineage page's graph: runs and artifacts as nodes, inputs and outputs as edges.

The walk is lineage's own (``zcas.lineage.walk``, as ``zcas log`` walks); this only joins
the upward and downward walks, names the nodes for drawing, and cuts a graph too large to
draw (``MAX_NODES``), keeping the node asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zcas.cas.errors import UsageError

from .queries import NotFoundError

if TYPE_CHECKING:
    from .source import Source

MAX_NODES = 5_000


def lineage(src: Source, text: str, depth: int = 3, direction: str = "both") -> dict[str, Any]:
    """The graph around a run or an artifact: runs and artifacts as nodes, input and output
    edges, ``depth`` runs up and/or down; a pipeline run's own steps are drawn as its DAG."""
    from zcas.lineage.walk import ancestors, descendants

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
    parts = ([ancestors(lin, oid, depth, is_run)] if direction != "down" else []) + \
            ([descendants(lin, oid, depth, is_run)] if direction != "up" else [])
    runs_: dict[str, dict[str, Any]] = {}
    arts: dict[str, set[str]] = {}
    edges: set[tuple[str, str, str]] = set()
    for g in parts:
        runs_.update(g.runs)
        for a, names in g.artifacts.items():
            arts.setdefault(a, set()).update(names)
        edges.update(g.edges)
    return _graph(oid.hex(), runs_, arts, edges)


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

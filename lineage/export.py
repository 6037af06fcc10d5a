"""Lineage for people and other tools: a terminal tree, Graphviz dot, Mermaid, OpenLineage."""

from __future__ import annotations

import datetime as dt
import json
import uuid

from zcas._version import __version__

from .walk import Subgraph

PRODUCER = f"https://pypi.org/project/zcas/{__version__}"
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
VERSION_FACET_SCHEMA = "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json"


def short(h: str) -> str:
    return h[:12]


def when(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")


def iso(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).isoformat().replace("+00:00", "Z")


def run_line(rid: str, r: dict) -> str:
    """The one-line form of a run used by ``zcas log``."""
    dur = max(0, r["ended_ns"] - r["started_ns"]) / 1e9
    return f"{short(rid)}  {when(r['started_ns'])}  {r['status']:<6}  {dur:8.3f}s  {r['step']}"


def _label(g: Subgraph, oid: str) -> str:
    names = sorted(g.artifacts.get(oid, ()))
    return f"{names[0]} ({short(oid)})" if names else short(oid)


def tree(g: Subgraph, upstream: bool = True) -> list[str]:
    """An indented drawing of the walk; a node met again is named, not redrawn."""
    lines: list[str] = []
    runs_by_output: dict[str, list[str]] = {}
    runs_by_input: dict[str, list[str]] = {}
    for f, t, k in g.edges:
        if k == "output":
            runs_by_output.setdefault(t, []).append(f)
        else:
            runs_by_input.setdefault(f, []).append(t)
    shown: set[str] = set()

    def art(oid: str, prefix: str, last: bool, top: bool) -> None:
        branch = "" if top else ("└── " if last else "├── ")
        runs = runs_by_output.get(oid, []) if upstream else runs_by_input.get(oid, [])
        runs = list(dict.fromkeys(r for r in runs if r in g.runs))
        note = "" if runs or not upstream else "  (source: no run produced it)"
        lines.append(f"{prefix}{branch}{_label(g, oid)}{note}")
        child = prefix + ("" if top else ("    " if last else "│   "))
        for i, rid in enumerate(runs):
            run(rid, child, i == len(runs) - 1)

    def run(rid: str, prefix: str, last: bool) -> None:
        r = g.runs[rid]
        branch = "└── " if last else "├── "
        head = f"{prefix}{branch}run {short(rid)} {r['step']} [{r['status']}] {when(r['started_ns'])}"
        if rid in shown:
            lines.append(head + " (shown above)")
            return
        shown.add(rid)
        lines.append(head)
        child = prefix + ("    " if last else "│   ")
        nxt = r["inputs"] if upstream else r["outputs"]
        items = [o for o in nxt.values() if o in g.artifacts]
        reached = {f for f, t, k in g.edges if t == rid} if upstream else {t for f, t, k in g.edges if f == rid}
        items = [o for o in dict.fromkeys(items) if o in reached]
        for i, oid in enumerate(items):
            art(oid, child, i == len(items) - 1, False)

    art(g.root, "", True, True) if g.root in g.artifacts else run(g.root, "", True)
    return lines


def dot(g: Subgraph) -> str:
    out = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for oid in g.artifacts:
        out.append(f'  "a{oid}" [shape=note, label={json.dumps(_label(g, oid))}];')
    for rid, r in g.runs.items():
        out.append(f'  "r{rid}" [shape=box, style=rounded, label={json.dumps(r["step"] + chr(10) + short(rid))}];')
    for f, t, k in dict.fromkeys(g.edges):
        a, b = (f"a{f}", f"r{t}") if k == "input" else (f"r{f}", f"a{t}")
        out.append(f'  "{a}" -> "{b}";')
    out.append("}")
    return "\n".join(out)


def mermaid(g: Subgraph) -> str:
    out = ["flowchart LR"]
    for oid in g.artifacts:
        out.append(f'  a{oid[:16]}["{_label(g, oid)}"]')
    for rid, r in g.runs.items():
        out.append(f'  r{rid[:16]}("{r["step"]} {short(rid)}")')
    for f, t, k in dict.fromkeys(g.edges):
        a, b = (f"a{f[:16]}", f"r{t[:16]}") if k == "input" else (f"r{f[:16]}", f"a{t[:16]}")
        out.append(f"  {a} --> {b}")
    return "\n".join(out)


def _dataset(namespace: str, name: str, oid: str) -> dict:
    return {
        "namespace": namespace,
        "name": name,
        "facets": {"version": {"_producer": PRODUCER, "_schemaURL": VERSION_FACET_SCHEMA, "datasetVersion": oid}},
    }


def openlineage_events(runs: dict[str, dict], namespace: str) -> list[dict]:
    """One RunEvent per run: COMPLETE, or FAIL for a failed run; datasets named by path."""
    events = []
    for rid, r in sorted(runs.items(), key=lambda kv: kv[1]["started_ns"]):
        events.append(
            {
                "eventType": "FAIL" if r["status"] == "failed" else "COMPLETE",
                "eventTime": iso(r["ended_ns"]),
                "producer": PRODUCER,
                "schemaURL": RUN_EVENT_SCHEMA,
                "run": {"runId": str(uuid.UUID(bytes=bytes.fromhex(rid)[:16], version=4)), "facets": {
                    "zcas": {"_producer": PRODUCER, "_schemaURL": PRODUCER, "runId": rid, "status": r["status"],
                             "cacheKey": r.get("cache_key", "")}}},
                "job": {"namespace": namespace, "name": r["step"]},
                "inputs": [_dataset(namespace, n, o) for n, o in sorted(r["inputs"].items())],
                "outputs": [_dataset(namespace, n, o) for n, o in sorted(r["outputs"].items())],
            }
        )
    return events

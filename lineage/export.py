"""Lineage for people and other tools: a terminal tree, Graphviz dot, Mermaid, OpenLineage.

Records may come from a remote: every name printed from one is escaped (``printable`` for a
terminal, and each format's own quoting for dot and Mermaid), and every record shown as
data is its ``public_record`` (environment values as digests, never in the clear).
"""

from __future__ import annotations

import datetime as dt
import uuid

from zcas._version import __version__
from zcas.cas.safetext import printable

from .redact import public_record
from .walk import Subgraph

PRODUCER = f"https://pypi.org/project/zcas/{__version__}"
RUN_EVENT_SCHEMA = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
VERSION_FACET_SCHEMA = "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json"
MAX_INDENT = 256  # characters of tree indentation kept: a 100,000-deep chain prints in bounded lines


def short(h: str) -> str:
    return printable(h[:12])


def when(ns: int) -> str:
    try:
        return dt.datetime.fromtimestamp(ns / 1e9).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError, TypeError):
        return printable(str(ns))


def iso(ns: int) -> str:
    try:
        return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError, TypeError):
        return "1970-01-01T00:00:00Z"


def records_json(runs: dict[str, dict]) -> list[dict]:
    """Runs as JSON-ready data (``zcas log --json``): each its public record, with its id."""
    return [dict(public_record(r), id=rid) for rid, r in runs.items()]


def subgraph_json(g: Subgraph) -> dict:
    """A walk as JSON-ready data, every run its public record."""
    d = g.as_dict()
    d["runs"] = [public_record(r) for r in d["runs"]]
    return d


def run_line(rid: str, r: dict) -> str:
    """The one-line form of a run used by ``zcas log``."""
    dur = max(0, r["ended_ns"] - r["started_ns"]) / 1e9
    return f"{short(rid)}  {when(r['started_ns'])}  {printable(r['status']):<6}  {dur:8.3f}s  {printable(r['step'])}"


def _label(g: Subgraph, oid: str) -> str:
    """An artifact's label, unescaped (each output escapes it its own way)."""
    names = sorted(g.artifacts.get(oid, ()))
    return f"{names[0]} ({oid[:12]})" if names else oid[:12]


def _indent(prefix: str) -> str:
    return prefix if len(prefix) <= MAX_INDENT else "…" + prefix[-(MAX_INDENT - 1):]


def tree(g: Subgraph, upstream: bool = True) -> list[str]:
    """An indented drawing of the walk; a run met again is named, not redrawn.

    Drawn with an explicit stack (any depth, no recursion), edges looked up in maps built
    once, indentation capped at MAX_INDENT characters.
    """
    lines: list[str] = []
    runs_by_output: dict[str, list[str]] = {}
    runs_by_input: dict[str, list[str]] = {}
    into: dict[str, set[str]] = {}  # node -> nodes with an edge to it
    out_of: dict[str, set[str]] = {}  # node -> nodes it has an edge to
    for f, t, k in g.edges:
        if k == "output":
            runs_by_output.setdefault(t, []).append(f)
        else:
            runs_by_input.setdefault(f, []).append(t)
        into.setdefault(t, set()).add(f)
        out_of.setdefault(f, set()).add(t)
    shown: set[str] = set()
    # ("art", id, prefix, last, top) or ("run", id, prefix, last, False), popped in drawing order
    stack: list[tuple[str, str, str, bool, bool]] = []
    if g.root in g.artifacts:
        stack.append(("art", g.root, "", True, True))
    else:
        stack.append(("run", g.root, "", True, False))
    while stack:
        what, node, prefix, last, top = stack.pop()
        if what == "art":
            branch = "" if top else ("└── " if last else "├── ")
            runs = runs_by_output.get(node, []) if upstream else runs_by_input.get(node, [])
            runs = list(dict.fromkeys(r for r in runs if r in g.runs))
            note = "" if runs or not upstream else "  (source: no run produced it)"
            lines.append(f"{prefix}{branch}{printable(_label(g, node))}{note}")
            child = _indent(prefix + ("" if top else ("    " if last else "│   ")))
            for i in range(len(runs) - 1, -1, -1):
                stack.append(("run", runs[i], child, i == len(runs) - 1, False))
            continue
        r = g.runs.get(node)
        branch = "└── " if last else "├── "
        if r is None:
            lines.append(f"{prefix}{branch}run {short(node)}")
            continue
        head = f"{prefix}{branch}run {short(node)} {printable(r['step'])} [{printable(r['status'])}] {when(r['started_ns'])}"
        if node in shown:
            lines.append(head + " (shown above)")
            continue
        shown.add(node)
        lines.append(head)
        child = _indent(prefix + ("    " if last else "│   "))
        nxt = r["inputs"] if upstream else r["outputs"]
        reached = into.get(node, set()) if upstream else out_of.get(node, set())
        items = [o for o in dict.fromkeys(nxt.values()) if o in g.artifacts and o in reached]
        for i in range(len(items) - 1, -1, -1):
            stack.append(("art", items[i], child, i == len(items) - 1, False))
    return lines


def _dot_text(s: str) -> str:
    """The inside of a dot double-quoted string: control characters made visible, then
    backslashes and quotes escaped (so no ``\\N``-style escape or closing quote gets through)."""
    return printable(s).replace("\\", "\\\\").replace('"', '\\"')


def dot(g: Subgraph) -> str:
    out = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for oid in g.artifacts:
        out.append(f'  "a{_dot_text(oid)}" [shape=note, label="{_dot_text(_label(g, oid))}"];')
    for rid, r in g.runs.items():
        out.append(f'  "r{_dot_text(rid)}" [shape=box, style=rounded, label="{_dot_text(r["step"])}\\n{_dot_text(rid[:12])}"];')
    for f, t, k in dict.fromkeys(g.edges):
        a, b = (f"a{f}", f"r{t}") if k == "input" else (f"r{f}", f"a{t}")
        out.append(f'  "{_dot_text(a)}" -> "{_dot_text(b)}";')
    out.append("}")
    return "\n".join(out)


_MERMAID_ESCAPES = {c: f"#{ord(c)};" for c in '#"<>&`\\[](){}|'}


def _mermaid_text(s: str) -> str:
    """Text inside a Mermaid quoted label: control characters made visible, and every
    character Mermaid gives a meaning (quotes, entity ``#``, HTML, markdown) as an entity code."""
    return "".join(_MERMAID_ESCAPES.get(c, c) for c in printable(s))


def _mermaid_id(prefix: str, h: str) -> str:
    return prefix + "".join(c for c in h[:16] if c.isalnum())


def mermaid(g: Subgraph) -> str:
    out = ["flowchart LR"]
    for oid in g.artifacts:
        out.append(f'  {_mermaid_id("a", oid)}["{_mermaid_text(_label(g, oid))}"]')
    for rid, r in g.runs.items():
        out.append(f'  {_mermaid_id("r", rid)}("{_mermaid_text(r["step"] + " " + rid[:12])}")')
    for f, t, k in dict.fromkeys(g.edges):
        a, b = (_mermaid_id("a", f), _mermaid_id("r", t)) if k == "input" else (_mermaid_id("r", f), _mermaid_id("a", t))
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
    for rid, raw in sorted(runs.items(), key=lambda kv: kv[1]["started_ns"]):
        r = public_record(raw)
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

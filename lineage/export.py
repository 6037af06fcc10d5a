"""Lineage for people and other tools: a terminal tree, Graphviz dot, Mermaid, OpenLineage
RunEvents (docs/ecosystem.md).

Records may come from a remote: every name printed from one is escaped (``printable`` for a
terminal, and each format's own quoting for dot and Mermaid), and every record shown as
data is its ``public_record`` (environment values as digests, never in the clear).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable
from typing import Any

from zcas._version import __version__
from zcas.cas.safetext import printable

from .redact import public_record
from .walk import Subgraph

PRODUCER = f"https://pypi.org/project/zcas/{__version__}"
# The schemas events and facets follow (pinned for the tests in tests/data/openlineage/), each
# `_schemaURL` the exact URL and fragment of its definition, as the specification asks.
_OL = "https://openlineage.io/spec"
RUN_EVENT_SCHEMA = f"{_OL}/2-0-2/OpenLineage.json#/$defs/RunEvent"
VERSION_FACET_SCHEMA = f"{_OL}/facets/1-0-1/DatasetVersionDatasetFacet.json#/$defs/DatasetVersionDatasetFacet"
PARENT_FACET_SCHEMA = f"{_OL}/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet"
ERROR_FACET_SCHEMA = f"{_OL}/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
# zcas's own facet: its schema ships as docs/openlineage/ZcasRunFacet.json (this is its $id).
ZCAS_FACET_SCHEMA = "https://pypi.org/project/zcas/openlineage/1-0-0/ZcasRunFacet.json#/$defs/ZcasRunFacet"
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


def run_uuid(rid: str) -> str:
    """The OpenLineage runId of a zcas run: a UUID made of its id's first 16 bytes."""
    return str(uuid.UUID(bytes=bytes.fromhex(rid)[:16], version=4))


def _facet(schema: str, **fields: Any) -> dict:
    return {"_producer": PRODUCER, "_schemaURL": schema, **fields}


def _dataset(namespace: str, name: str, oid: str) -> dict:
    return {"namespace": namespace, "name": name, "facets": {"version": _facet(VERSION_FACET_SCHEMA, datasetVersion=oid)}}


Producer = Callable[[str], "tuple[str, str, str] | None"]  # artifact id -> (step, kind, output name) of a run that made it


def _output_name(step: str, kind: str, slot: str, oid: str) -> str:
    """A command's outputs are paths, which name the data; a Python step's are argument
    slots (``output``, ``X``), which do not, so they are named by the step that makes them.
    A value stored by ``Repository.put`` has no step to name it: its id does."""
    if kind == "command":
        return slot
    if step == "zcas.put":
        return f"objects/{oid}"
    return f"{step}/{slot}"


class _Names:
    """Dataset names for one export: what a run wrote, by who wrote it; what it read, by
    the name its producer gave it (in this export, else ``producer``), else by its id."""

    def __init__(self, runs: dict[str, dict], producer: Producer | None) -> None:
        self.producer = producer
        self.made: dict[str, str] = {}
        for _, r in sorted(runs.items(), key=lambda kv: kv[1]["kind"] == "pipeline"):  # steps name it before pipelines
            for slot, oid in r["outputs"].items():
                self.made.setdefault(oid, _output_name(r["step"], r["kind"], slot, oid))

    def output(self, r: dict, slot: str, oid: str) -> str:
        return _output_name(r["step"], r["kind"], slot, oid) if r["kind"] != "pipeline" else self.made[oid]

    def input(self, r: dict, slot: str, oid: str) -> str:
        if r["kind"] == "command":
            return slot
        found = self.made.get(oid)
        if found is None and self.producer is not None:
            made_by = self.producer(oid)
            if made_by is not None:
                found = self.made[oid] = _output_name(*made_by, oid)
        return found or f"objects/{oid}"


def _error(r: dict) -> dict:
    """errorMessage for a failed run. Records keep an exit status, not the exception text
    (which may hold data), so the message says what failed and with which status."""
    what = {"command": "command exited with status", "python": "step raised an exception; exit status",
            "pipeline": "a step of the pipeline failed; exit status"}[r["kind"]]
    lang = "shell" if r["kind"] == "command" else "python"
    return _facet(ERROR_FACET_SCHEMA, message=f"{what} {r.get('exit_status', 1)}", programmingLanguage=lang)


def openlineage_events(runs: dict[str, dict], namespace: str, producer: Producer | None = None,
                       pipelines: dict[str, dict] | None = None) -> list[dict]:
    """A START and then a COMPLETE (or FAIL) RunEvent per run, in time order.

    A step run carries a ``parent`` facet naming the pipeline run of its session (found in
    ``runs``, or in ``pipelines``: pipeline runs to link to but not to export). Datasets are
    named by what they are (``_Names``), versioned by content id."""
    public = {rid: public_record(raw) for rid, raw in runs.items()}
    names = _Names(public, producer)
    sessions = {r["session"]: (rid, r) for rid, r in [*(pipelines or {}).items(), *public.items()]
                if r["kind"] == "pipeline" and r.get("session")}
    out: list[tuple[tuple[int, int, int], dict]] = []
    for rid, r in public.items():
        facets: dict[str, Any] = {"zcas": _zcas_facet(rid, r)}
        parent = sessions.get(r.get("session") or "") if r["kind"] != "pipeline" else None
        if parent is not None:
            facets["parent"] = _facet(PARENT_FACET_SCHEMA, run={"runId": run_uuid(parent[0])},
                                      job={"namespace": namespace, "name": parent[1]["step"]})
        base = {"producer": PRODUCER, "schemaURL": RUN_EVENT_SCHEMA, "job": {"namespace": namespace, "name": r["step"]},
                "inputs": [_dataset(namespace, names.input(r, n, o), o) for n, o in sorted(r["inputs"].items())]}
        pipeline = r["kind"] == "pipeline"
        start = {"eventType": "START", "eventTime": iso(r["started_ns"]), "run": {"runId": run_uuid(rid), "facets": facets},
                 **base}
        failed = r["status"] == "failed"
        end_facets = dict(facets, errorMessage=_error(r)) if failed else facets
        end = {"eventType": "FAIL" if failed else "COMPLETE", "eventTime": iso(max(r["ended_ns"], r["started_ns"])),
               "run": {"runId": run_uuid(rid), "facets": end_facets}, **base,
               "outputs": [_dataset(namespace, names.output(r, n, o), o) for n, o in sorted(r["outputs"].items())]}
        out.append(((r["started_ns"], 0, 0 if pipeline else 1), start))
        out.append(((max(r["ended_ns"], r["started_ns"]), 1, 1 if pipeline else 0), end))
    return [ev for _, ev in sorted(out, key=lambda kv: kv[0])]


def _zcas_facet(rid: str, r: dict) -> dict:
    f = _facet(ZCAS_FACET_SCHEMA, runId=rid, status=r["status"], cacheKey=r.get("cache_key", ""), kind=r["kind"])
    if r.get("cached_from"):
        f["cachedFrom"] = r["cached_from"]
    return f

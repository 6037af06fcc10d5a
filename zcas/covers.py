"""What a step's cache key covers, item by item: ``zcas why STEP --explain`` and
``Repository.explain``.

A key is one hash; a user who suspects a stale result needs to see what went into it, to
check that zcas saw the helper, the constant or the file that matters. Each item is a dict
``{"kind", "name", "value", "file", "line"}``: kinds are ``definition``, ``constant``,
``package``, ``unresolved`` (from the code manifest), ``param``, ``input``, ``env``,
``file read`` (an implicit input), ``command``, ``output``, ``cwd``, ``version``. An
environment variable shows only whether it is set: its value may be a secret.
"""

from __future__ import annotations

from typing import Any

from zcas.cas.errors import UsageError
from zcas.runners import codemanifest
from zcas.runners.fingerprint import Entry

_LABEL = {"code": "definition", "const": "constant", "package": "package", "unresolved": "unresolved"}


def item(kind: str, name: str, value: str, file: str = "", line: int = 0) -> dict[str, Any]:
    return {"kind": kind, "name": name, "value": value, "file": file, "line": line}


def from_entries(entries: tuple[Entry, ...], root: str | None = None) -> list[dict[str, Any]]:
    shown = codemanifest.decode(codemanifest.encode(entries, root)) or entries  # files made relative
    return [item(_LABEL[e.kind], e.name, e.digest, e.file, e.line) for e in shown]


def from_components(comps: dict[str, str]) -> list[dict[str, Any]]:
    """Items of key components other than code (which the manifest says better)."""
    out = []
    for name, v in sorted(comps.items()):
        kind, _, what = name.partition(":")
        if kind == "param":
            out.append(item("param", what, v))
        elif kind == "input":
            out.append(item("input", what, v))
        elif kind == "inmat":
            out.append(item("input materializer", what, v))
        elif kind == "env":
            out.append(item("env", what, "unset" if v == "null" else "set"))
        elif name == "argv":
            out.append(item("command", "argv", v))
        elif name == "outputs":
            out.append(item("output", "outputs", v))
        elif name == "cwd":
            out.append(item("cwd", "cwd", v or "."))
        elif name == "code" and v.startswith("version:"):
            out.append(item("version", "version", v[len("version:"):]))
    return out


def from_record(db: Any, rec: dict[str, Any], root: str | None, entries: tuple[Entry, ...] | None = None) -> list[dict[str, Any]]:
    """Everything a run's key covered: its components, its code manifest (``entries``, when
    given, stand for it: the code as it is now), and the files it read."""
    comps = {k: v for k, v in (rec.get("key_components") or {}).items() if not k.startswith("implicit:")}
    out = from_components(comps)
    if entries is None and not str(comps.get("code", "")).startswith("version:"):
        entries = codemanifest.load(db, rec.get("code_manifest"))
        if entries is None and rec.get("kind") == "python":
            out.append(item("unresolved", "code", "the code manifest of this run is not in the store: "
                                                  "only the fingerprint " + str(comps.get("code", ""))[:12] + " is known"))
    if entries:
        out.extend(from_entries(entries, root))
    for path, oid in sorted((rec.get("implicit_inputs") or {}).items()):
        out.append(item("file read", path, oid))
    return out


def last_executed(lineage: Any, name: str) -> tuple[bytes, dict[str, Any]] | None:
    for rid, r in lineage.runs(step=name, limit=1000):
        if r.get("kind") != "pipeline" and r.get("status") == "ran":
            return rid, r
    return None


def of_step(lineage: Any, db: Any, root: str, step: Any) -> list[dict[str, Any]]:
    """What the key of ``step`` (a ``@zcas.step`` or a step's name) covers: the code as it is
    now for a step object, and what its last executed run was keyed on (params, inputs,
    files read) — a call's own arguments are known only when it is called."""
    from zcas.runners.fingerprint import manifest

    is_step = getattr(step, "is_zcas_step", False)
    name = step.name if is_step else step
    if not isinstance(name, str):
        raise UsageError("explain takes a @zcas.step or a step's name")
    last = last_executed(lineage, name)
    entries = manifest(step.fn) if is_step and getattr(step, "version", None) is None else None
    if last is None:
        if entries is None and not is_step:
            raise UsageError(f"no executed run of a step named {name!r}")
        out = from_entries(entries, root) if entries else []
        if is_step and step.version is not None:
            out.append(item("version", "version", step.version))
        return out + [item("env", e, "declared") for e in step.env] if is_step else out
    return from_record(db, last[1], root, entries)


def render(items: list[dict[str, Any]]) -> list[str]:
    """One line per item, for people."""
    lines = []
    for it in items:
        where = f"  {it['file']}:{it['line']}" if it["file"] and it["line"] else f"  {it['file']}" if it["file"] else ""
        value = it["value"]
        if it["kind"] == "definition" or (it["kind"] in ("input", "file read") and len(value) == 64):
            value = value[:12]
        if it["kind"] == "unresolved":
            lines.append(f"unresolved {it['name']}" + ("" if value in it["name"] else f": {value}") + where)
        else:
            lines.append(f"{it['kind']} {it['name']} = {value}{where}")
    return lines

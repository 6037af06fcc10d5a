"""A step's code manifest in the store: what its code fingerprint covers, entry by entry.

The key holds one hash of the code; a run record names the stored manifest beside it, so
``explain`` can list each definition with its file and line, and ``why`` can name the
definition that changed between two runs rather than say "code changed". Manifests are
content-addressed, so a thousand runs of unchanged code share one.

A manifest read back may have come from a remote: it is decoded strictly (size, shape,
types) and one that does not decode is as good as absent, never an error.
"""

from __future__ import annotations

import json
import os
from typing import Any

from zcas.cas import codec
from zcas.cas.errors import ZcasError

from .fingerprint import Entry

FORMAT = "zcas-code-manifest-1"
_MAX = codec.MAX_SIZE[codec.KIND_BLOB]
_KINDS = ("code", "const", "package", "unresolved")


def encode(entries: tuple[Entry, ...], root: str | None) -> bytes:
    """Canonical JSON; files inside ``root`` as repository-relative paths."""
    pre = os.path.realpath(root) + os.sep if root else None

    def show(f: str) -> str:
        if pre and f and os.path.realpath(f).startswith(pre):
            return os.path.relpath(os.path.realpath(f), pre).replace(os.sep, "/")
        return f

    rows = [[e.kind, e.name, e.digest, show(e.file), e.line] for e in entries]
    return json.dumps({"format": FORMAT, "entries": rows}, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8", "surrogateescape")


def decode(data: bytes) -> tuple[Entry, ...] | None:
    if len(data) > _MAX:
        return None
    try:
        d = json.loads(data)
    except (ValueError, RecursionError):
        return None
    if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("entries"), list):
        return None
    out = []
    for row in d["entries"]:
        if (not isinstance(row, list) or len(row) != 5 or row[0] not in _KINDS
                or not all(isinstance(x, str) for x in row[1:4]) or type(row[4]) is not int):
            return None
        out.append(Entry(*row))
    return tuple(out)


_stored: dict[tuple[int, int], tuple[Any, str]] = {}  # (store, entries) ids -> (entries, manifest id)


def store(db: Any, entries: tuple[Entry, ...], root: str | None) -> str | None:
    """Store ``entries`` in ``db`` (once per process and store); their id, or None if too big."""
    k = (id(db), id(entries))
    known = _stored.get(k)
    if known is not None and known[0] is entries:
        return known[1]
    data = encode(entries, root)
    if len(data) > _MAX:
        return None
    oid = db.put(codec.KIND_BLOB, data).hex()
    _stored[k] = (entries, oid)  # the entries kept alive: their id names them alone
    return oid


def load(db: Any, oid: Any) -> tuple[Entry, ...] | None:
    """The manifest ``oid`` names, or None (no id, not stored, not a manifest)."""
    if not isinstance(oid, str):
        return None
    try:
        kind, data = db.get(bytes.fromhex(oid))
    except (ZcasError, ValueError):
        return None
    return decode(bytes(data)) if kind == codec.KIND_BLOB else None


def changes(old: tuple[Entry, ...], new: tuple[Entry, ...], limit: int = 20) -> list[str]:
    """What differs between two manifests, one line each, naming file and line."""
    a = {(e.kind, e.name): e for e in old}
    b = {(e.kind, e.name): e for e in new}
    lines = []
    for k in sorted(set(a) | set(b)):
        x, y = a.get(k), b.get(k)
        if x is not None and y is not None and x.digest == y.digest:
            continue
        e = y or x
        assert e is not None
        where = f" ({e.file}:{e.line})" if e.file and e.line else f" ({e.file})" if e.file else ""
        label = {"code": "definition", "const": "constant", "package": "package", "unresolved": "unresolved"}[e.kind]
        if x is None:
            lines.append(f"{label} {e.name} added{where}")
        elif y is None:
            lines.append(f"{label} {e.name} removed{where}")
        elif e.kind == "code":
            lines.append(f"definition {e.name} changed{where}")
        else:
            lines.append(f"{label} {e.name} changed: {x.digest} -> {y.digest}{where}")
    if len(lines) > limit:
        lines = lines[:limit] + [f"... and {len(lines) - limit} more"]
    return lines

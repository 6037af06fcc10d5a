"""Writing the small TOML files zcas owns (tomllib only reads): tables of plain values."""

from __future__ import annotations

import json
import os
import re

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else json.dumps(k)


def _value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(doc: dict, header: str = "") -> str:
    """Top-level tables (and one level of sub-tables, as [a.b]) of plain values."""
    out = [header] if header else []
    for name, table in doc.items():
        plain = {k: v for k, v in table.items() if not isinstance(v, dict)}
        subs = {k: v for k, v in table.items() if isinstance(v, dict)}
        if plain or not subs:
            out.append(f"[{_key(name)}]")
            out.extend(f"{_key(k)} = {_value(v)}" for k, v in plain.items())
            out.append("")
        for sub, body in subs.items():
            out.append(f"[{_key(name)}.{_key(sub)}]")
            out.extend(f"{_key(k)} = {_value(v)}" for k, v in body.items())
            out.append("")
    return "\n".join(out)


def write(path: str, doc: dict, header: str = "") -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(dumps(doc, header))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

"""Writing the small TOML files zcas owns (tomllib only reads): tables of plain values."""

from __future__ import annotations

import os
import re
from typing import Any

from .errors import UsageError

_BARE = re.compile(r"[A-Za-z0-9_-]+")
# What a TOML basic string cannot hold as it is: the quote, the backslash, and control
# characters (tab included, for readability). Everything else, characters outside the BMP
# too, is written as itself, in UTF-8: TOML has no surrogate pairs, so the \uD83D\uDE00
# that JSON would write is an error to every TOML reader.
_ESCAPE = re.compile(r'["\\\x00-\x1f\x7f]')
_SHORT = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _escape(m: re.Match[str]) -> str:
    c = m.group(0)
    return _SHORT.get(c) or f"\\u{ord(c):04x}"


def _string(s: str) -> str:
    """``s`` as a TOML basic string. A lone surrogate (undecodable bytes carried through
    ``surrogateescape``) has no TOML spelling at all: refused, in one line."""
    try:
        s.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UsageError(f"cannot write {s!r} to TOML: it is not valid Unicode (position {e.start})") from None
    return '"' + _ESCAPE.sub(_escape, s) + '"'


def _key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _string(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dumps(doc: dict[str, dict[str, Any]], header: str = "") -> str:
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


def write(path: str, doc: dict[str, dict[str, Any]], header: str = "") -> None:
    """Replace ``path`` atomically with ``doc`` as TOML (UTF-8, whatever the locale)."""
    text = dumps(doc, header)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

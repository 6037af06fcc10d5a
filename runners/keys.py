"""Cache keys: BLAKE3 over a length-prefixed canonical encoding of named components.

Each component (the argv, each input's id, each param, each declared environment value,
the outputs, the working directory, the key schema) is kept by name in the run record, so
``zcas why`` can say exactly which one changed. Length prefixes make the encoding
unambiguous: no choice of values can make two different component sets hash alike, which a
string-joined key cannot promise.
"""

from __future__ import annotations

import json

from zcas.cas.oid import hash_bytes
from zcas.lineage.canonical import dumps

KEY_SCHEMA = "zcas-key-1"


def _lp(b: bytes) -> bytes:
    return len(b).to_bytes(8, "little") + b


def key_of(components: dict[str, str]) -> bytes:
    return hash_bytes(b"".join(_lp(k.encode()) + _lp(v.encode()) for k, v in sorted(components.items())))


def command_components(
    argv: list[str],
    inputs: dict[str, bytes],
    params: dict,
    env: dict[str, str | None],
    outputs: list[str],
    cwd: str,
) -> dict[str, str]:
    comps = {
        "schema": KEY_SCHEMA,
        "argv": dumps(argv, "argv").decode(),
        "outputs": dumps(sorted(outputs), "outputs").decode(),
        "cwd": cwd,
    }
    for path, oid in inputs.items():
        comps[f"input:{path}"] = oid.hex()
    for k, v in params.items():
        comps[f"param:{k}"] = dumps(v, f"param {k!r}").decode()
    for k, v in env.items():
        comps[f"env:{k}"] = json.dumps(v)
    return comps


def explain(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """One line per component that differs, in words a user can act on."""
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            continue
        kind, _, what = name.partition(":")
        label = {"input": "input", "param": "param", "env": "environment variable"}.get(kind)
        short = (lambda v: v[:12] if v and kind == "input" else v)
        if label is None:
            label = {"argv": "command", "outputs": "declared outputs", "cwd": "working directory",
                     "schema": "cache key schema", "code": "code", "step": "step"}.get(name, name)
            out.append(f"{label} changed: {a} -> {b}" if a is not None and b is not None else f"{label} {'added' if a is None else 'removed'}")
        elif a is None:
            out.append(f"{label} {what} added ({short(b)})")
        elif b is None:
            out.append(f"{label} {what} removed (was {short(a)})")
        else:
            out.append(f"{label} {what} changed: {short(a)} -> {short(b)}")
    return out

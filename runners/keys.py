"""Cache keys: BLAKE3 over a length-prefixed canonical encoding of named components.

Each component (the argv, each input's id, each param, each declared environment value,
the outputs, the working directory, the key schema) is kept by name in the run record, so
``zcas why`` can say exactly which one changed. Length prefixes make the encoding
unambiguous: no choice of values can make two different component sets hash alike, which a
string-joined key cannot promise.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from zcas.lineage.canonical import dumps
from zcas.lineage.keyhash import key_of  # noqa: F401 - the one key hash, re-exported for runners
from zcas.lineage.redact import env_digest, public_record

KEY_SCHEMA = "zcas-key-1"


def command_components(
    argv: list[str],
    inputs: dict[str, bytes],
    params: dict[str, Any],
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
    for k, digest in env.items():  # digests (see env_digests): a value is never stored
        comps[f"env:{k}"] = json.dumps(digest)
    return comps


def env_digests(names: Iterable[str]) -> dict[str, str | None]:
    """{VAR: digest of its value now, or None if unset}: what keys and records hold of
    declared environment variables, so a secret passed through one is never stored."""
    return {k: env_digest(os.environ.get(k)) for k in names}


def explain(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """One line per component that differs, in words a user can act on.

    Environment components are compared in their public form (a digest, whoever wrote
    the record), so a record from before digests does not report an unchanged value."""
    raw_old, raw_new = old, new
    old = public_record({"key_components": old})["key_components"]
    new = public_record({"key_components": new})["key_components"]
    out = []
    for name in sorted(set(old) | set(new)):
        a, b = old.get(name), new.get(name)
        if a == b:
            if raw_old.get(name) != raw_new.get(name):  # the same value, recorded by an older zcas
                out.append(f"environment variable {name[4:]} is now keyed by a digest of its value "
                           "(a one-time rerun after upgrading zcas)")
            continue
        kind, _, what = name.partition(":")
        label = {"input": "input", "param": "param", "env": "environment variable", "implicit": "file read"}.get(kind)
        def short(v: str | None, kind: str = kind) -> str | None:
            return v[:12] if v and kind in ("input", "implicit") else v

        if kind == "env":  # only that it changed: digests mean nothing to a reader, values are secret
            was, now = ("unset" if x == "null" else "set" for x in (a, b))
            change = "changed" if was == now else f"changed ({was} -> {now})"
            out.append(f"{label} {what} " + ("added" if a is None else "removed" if b is None else change))
            continue
        if label is None:
            label = {"argv": "command", "outputs": "declared outputs", "cwd": "working directory",
                     "schema": "cache key schema", "code": "code", "step": "step"}.get(name, name)
            out.append(f"{label} changed: {a} -> {b}" if a is not None and b is not None
                       else f"{label} {'added' if a is None else 'removed'}")
        elif a is None:
            out.append(f"{label} {what} added ({short(b)})")
        elif b is None:
            out.append(f"{label} {what} removed (was {short(a)})")
        else:
            out.append(f"{label} {what} changed: {short(a)} -> {short(b)}")
    return out

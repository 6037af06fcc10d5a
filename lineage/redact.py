"""Secrets never leave a record in the clear: environment values as digests.

A step that declares an environment variable depends on its value, but the value may be
a secret (a token, a password). Records hold a digest of it instead: ``env_digest`` is the
one function that computes it, so records written by any zcas compare equal. Records from an
older zcas hold the value itself (in ``env`` and in the ``env:VAR`` key components);
``public_record`` gives the copy of a record that is safe to print or export, with every
such value replaced by its digest, and ``plaintext_env`` says whether a record holds one
(such a record is never pushed: its bytes cannot change without changing its id).
"""

from __future__ import annotations

import json
import re
from typing import TypeGuard

from zcas.cas.oid import hash_bytes

_DOMAIN = b"zcas-env-1\0"
_DIGEST = re.compile(r"b3:[0-9a-f]{64}")
UNSET = "unset"


def env_digest(value: str | None) -> str | None:
    """``"b3:" + hex BLAKE3`` of a domain-separated encoding of ``value``; None stays None."""
    if value is None:
        return None
    return _digest(value)


def _digest(value: str) -> str:
    """``env_digest`` of a value that is set."""
    return "b3:" + hash_bytes(_DOMAIN + value.encode("utf-8", "surrogateescape")).hex()


def is_digest(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and _DIGEST.fullmatch(value) is not None


def _public_value(value: object) -> str:
    """The ``env`` field's value: its digest, or ``unset`` (kept as it is: public_record of
    a public record changes nothing)."""
    if value is None or value == UNSET:
        return UNSET
    if is_digest(value):
        return value
    return _digest(value if isinstance(value, str) else json.dumps(value))


def _component(text: object) -> tuple[str, bool]:
    """(public form, was it plaintext) of an ``env:VAR`` key component.

    Current records hold ``json.dumps(digest)`` (``"null"`` when unset); older ones
    ``json.dumps(value)``. The public form is the bare digest (or ``null``) either way, so
    old and new records of the same value compare equal.
    """
    if is_digest(text):
        return text, False
    if not isinstance(text, str):
        return _digest(json.dumps(text)), True
    try:
        v = json.loads(text)
    except ValueError:
        return _digest(text), True
    if v is None:
        return "null", False
    if is_digest(v):
        return v, False
    return _digest(v if isinstance(v, str) else text), True


def public_record(rec: dict) -> dict:
    """A copy of run record ``rec`` safe to print or export: no environment value in it.

    ``env`` maps each variable to the digest of its value (``b3:<hex>``) or ``unset``; each
    ``env:VAR`` key component becomes the bare digest or ``null``. Idempotent.
    """
    out = dict(rec)
    env = rec.get("env")
    if isinstance(env, dict):
        out["env"] = {k: _public_value(v) for k, v in env.items()}
    comps = rec.get("key_components")
    if isinstance(comps, dict):
        out["key_components"] = {k: _component(v)[0] if isinstance(k, str) and k.startswith("env:") else v
                                 for k, v in comps.items()}
    return out


def plaintext_env(rec: dict) -> bool:
    """Does ``rec`` hold an environment value itself (a record from an older zcas)?"""
    env = rec.get("env")
    if isinstance(env, dict) and any(v is not None and not is_digest(v) for v in env.values()):
        return True
    comps = rec.get("key_components")
    if isinstance(comps, dict):
        return any(_component(v)[1] for k, v in comps.items() if isinstance(k, str) and k.startswith("env:"))
    return False

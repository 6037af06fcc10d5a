"""The canonical byte form of plain values: the one encoding every id and key is hashed over.

JSON with sorted keys, no spaces, UTF-8, no NaN or infinity. Python's float repr is the
shortest round-trip form everywhere, so the same value gives the same bytes on every
machine and Python version. Only str, int, float, bool, None, lists/tuples and str-keyed
dicts have a canonical form; anything else is refused by name rather than guessed at.
"""

from __future__ import annotations

import json
import math
from typing import Any

from zcas.cas.errors import UsageError


class NotCanonicalError(UsageError, TypeError):
    def __init__(self, where: str, value: object) -> None:
        self.where = where
        super().__init__(f"{where} has no canonical encoding: {type(value).__name__} {value!r:.60}")


def check(value: Any, where: str = "value") -> None:
    """Raise NotCanonicalError naming the first part of ``value`` that has no canonical form."""
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise NotCanonicalError(where, value)
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check(v, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise NotCanonicalError(f"{where} key", k)
            check(v, f"{where}[{k!r}]")
        return
    raise NotCanonicalError(where, value)


def dumps(value: Any, where: str = "value") -> bytes:
    check(value, where)
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()

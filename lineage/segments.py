"""Names of the segments a remote's lineage and path history travel in, so that a pull
lists only what is new.

A segment is named ``<prefix>t-<16 hex: nanoseconds since the epoch>-<64 hex: BLAKE3 of
its payload>``; names sort by the time their writer gave them. A pull remembers the
latest time it has seen (its cursor) and asks the store only for keys after ``cursor -
SKEW``: one LIST request when little is new, however many segments the remote has
gathered. ``SKEW`` covers writers whose clocks run behind; a segment named more than
``SKEW`` before the cursor is not seen by that repository until its next full listing (a
first pull, or ``zcas pull --full``).

Segments written by zcas before this format are named ``<prefix>seg-<64 hex>``; they sort
before every new name, are read by a full listing, and ``zcas gc --remote`` folds them
into new ones.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zcas.cas.backend import Backend

SKEW_NS = 24 * 3600 * 10**9
_NEW = re.compile(r"t-([0-9a-f]{16})-([0-9a-f]{64})")
_OLD = re.compile(r"seg-([0-9a-f]{64})")


def new_name(digest_hex: str, time_ns: int | None = None) -> str:
    """The name (without prefix) of a segment whose payload hashes to ``digest_hex``."""
    t = time.time_ns() if time_ns is None else time_ns
    return f"t-{t:016x}-{digest_hex}"


def parse(name: str) -> tuple[int | None, str] | None:
    """(time in ns, or None for an old name; payload hash) of a segment name; None if
    ``name`` is not one."""
    m = _NEW.fullmatch(name)
    if m:
        return int(m.group(1), 16), m.group(2)
    m = _OLD.fullmatch(name)
    return (None, m.group(1)) if m else None


def listed(backend: Backend, prefix: str, cursor_ns: int | None) -> Iterator[str]:
    """Keys under ``prefix`` that may be new to a repository whose cursor is ``cursor_ns``
    (None: never listed, so all of them)."""
    if cursor_ns is None:
        return backend.list(prefix)
    start = max(0, cursor_ns - SKEW_NS)
    return backend.list_after(prefix, f"{prefix}t-{start:016x}")


class Cursor:
    """The latest segment time a repository has seen of one remote's segments under one
    prefix, kept in a small file of the remote's state folder."""

    def __init__(self, path: str) -> None:
        self.path = path

    def get(self) -> int | None:
        try:
            with open(self.path, encoding="ascii") as f:
                return int(f.read().strip())
        except (FileNotFoundError, ValueError, UnicodeDecodeError):
            return None

    def advance(self, time_ns: int) -> None:
        """Move the cursor to ``time_ns``, never past this machine's now: a name from the
        far future (a hostile remote, a writer whose clock runs days ahead) must not make
        later pulls skip what is pushed in the meantime."""
        time_ns = min(time_ns, time.time_ns())
        if time_ns <= (self.get() or -1):
            return
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        with open(self.path + ".tmp", "w", encoding="ascii") as f:
            f.write(str(time_ns))
        os.replace(self.path + ".tmp", self.path)

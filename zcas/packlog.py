"""A log of the packs added to a remote, so that a pull asks for what is new instead of
listing every pack the remote has ever held.

Each push (and each ``gc --remote`` that writes new packs) leaves
``packlog/t-<time>-<BLAKE3 of payload>``: a codec record (kind 4) naming the packs it
added, one 64-hex name a line, written after the packs themselves. Names sort by time as
lineage segments do (``lineage.segments``), so a pull lists the entries after its cursor
(less the clock-skew margin), reads those, and pulls the packs they name that it lacks: one
LIST and a GET per new entry, whatever the remote's history. A first pull, and ``zcas pull
--full``, list every pack instead (and so see packs pushed by a zcas that wrote no log).

Entries are untrusted input like anything else on a remote: one over ``MAX_ENTRY`` bytes
or that does not decode is skipped, and a line that is not a pack name is ignored. A
hostile entry can only name packs, each of which is verified whole as any pulled pack is.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from zcas.cas import codec
from zcas.cas.errors import ObjectNotFoundError, ZcasError
from zcas.cas.oid import hash_bytes
from zcas.lineage import segments

if TYPE_CHECKING:
    from zcas.cas.backend import Backend

PREFIX = "packlog/"
MAX_ENTRY = 16 << 20
_NAME = re.compile(rb"[0-9a-f]{64}")


def note(backend: Backend, names: Iterable[str], time_ns: int | None = None) -> str | None:
    """Log ``names`` as added (nothing for none); the entry's key."""
    payload = "".join(f"{n}\n" for n in sorted(set(names))).encode()
    if not payload:
        return None
    key = PREFIX + segments.new_name(hash_bytes(payload).hex(), time_ns)
    backend.put(key, codec.encode(codec.KIND_RECORD, payload))
    return key


def _read(backend: Backend, key: str) -> set[str]:
    try:
        _, payload = codec.decode(key, backend.get_bounded(key, MAX_ENTRY))
    except ObjectNotFoundError:
        return set()  # folded by a gc since it was listed: its packs are in the entry that replaced it
    except ZcasError:
        return set()  # damaged or hostile: names nothing
    return {line.decode() for line in bytes(payload).split(b"\n") if _NAME.fullmatch(line)}


def since(backend: Backend, cursor: segments.Cursor) -> tuple[set[str], int | None]:
    """(packs the entries after the cursor name, the newest entry time seen)."""
    names: set[str] = set()
    latest = None
    for key in segments.listed(backend, PREFIX, cursor.get()):
        parsed = segments.parse(key[len(PREFIX) :])
        if parsed is None or parsed[0] is None:
            continue
        names |= _read(backend, key)
        latest = parsed[0] if latest is None else max(latest, parsed[0])
    return names, latest


def newest(backend: Backend) -> int | None:
    """The time of the newest entry (for a cursor set by a full listing; names only)."""
    times = [p[0] for k in backend.list(PREFIX) if (p := segments.parse(k[len(PREFIX) :])) and p[0] is not None]
    return max(times, default=None)


def fold(backend: Backend, packs: set[str]) -> int:
    """Replace every entry by one naming the packs of ``packs`` they named (a gc: what it
    removed is no longer there to pull), named with the newest time among them, so a
    repository that has read them does not list it again. Returns the entries removed."""
    keys = [k for k in backend.list(PREFIX) if segments.parse(k[len(PREFIX) :]) is not None]
    if len(keys) < 2:
        return 0
    named: set[str] = set()
    times = []
    for key in keys:
        named |= _read(backend, key)
        t = segments.parse(key[len(PREFIX) :])
        if t is not None and t[0] is not None:
            times.append(t[0])
    new = note(backend, named & packs, max(times, default=0))  # first, then the old ones go
    gone = [k for k in keys if k != new]
    for key in gone:
        backend.delete(key)
    return len(gone)

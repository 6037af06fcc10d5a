"""The names of packs gc removed from a shared store, left on the store for its pushers.

A push sends every local pack the remote lacks by name. Once gc has rewritten a remote
pack (its live objects moved to a new pack, the rest dropped), a pusher still holding the
original would send it whole again, and with it everything gc dropped. So gc leaves the
names it removed, in notes under ``gc/packs-<BLAKE3 of the note>``, and a push does not
send those packs whole (what its new records need of them goes object by object). Each gc
folds the notes it finds into its own.

Notes are read as untrusted input: a line that is not a pack name is skipped, and a note
over ``MAX_NOTE`` bytes or that does not decode is ignored. A hostile store naming packs it
never collected can at worst keep a pusher from sending them whole.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from . import codec
from .errors import ObjectNotFoundError, ZcasError
from .oid import hash_bytes

if TYPE_CHECKING:
    from .backend import Backend

PREFIX = "gc/"
MAX_NOTE = 64 << 20
_NAME = re.compile(rb"[0-9a-f]{64}")


def collected(backend: Backend) -> tuple[set[str], list[str]]:
    """(pack names the store's notes list, the notes' keys)."""
    names: set[str] = set()
    keys: list[str] = []
    for key in backend.list(PREFIX):
        if not key.startswith(f"{PREFIX}packs-"):
            continue
        try:
            _, payload = codec.decode(key, backend.get_bounded(key, MAX_NOTE))
        except ObjectNotFoundError:
            continue
        except ZcasError:
            continue  # damaged or hostile: names nothing
        keys.append(key)
        names.update(line.decode() for line in bytes(payload).split(b"\n") if _NAME.fullmatch(line))
    return names, keys


def note(backend: Backend, names: Iterable[str], fold: tuple[set[str], list[str]] | None = None) -> None:
    """Leave ``names`` (and those of the notes in ``fold``, which are then deleted) in one note."""
    have, old = fold if fold is not None else (set(), [])
    payload = "".join(f"{n}\n" for n in sorted(have.union(names))).encode()
    if not payload:
        return
    key = f"{PREFIX}packs-{hash_bytes(payload).hex()}"
    backend.put(key, codec.encode(codec.KIND_RECORD, payload))  # before the old ones go
    for k in old:
        if k != key:
            backend.delete(k)

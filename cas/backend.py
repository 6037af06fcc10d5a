"""What a storage backend must do: move opaque bytes by key, nothing more.

Hashing, compression, packing and verification live once, above this interface, in
``ObjectDB``; a backend only stores and returns bytes. Puts are create-only: writing a key
that exists returns False and leaves the stored value alone, which is what makes concurrent
writers safe on every backend. Native errors are translated into ``StoreError`` subclasses at
each backend's edge.
"""

from __future__ import annotations

import re
from typing import Iterator, NamedTuple, Protocol, runtime_checkable

from .errors import UsageError

_KEY_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*")


def check_key(key: str) -> str:
    """Keys are short relative names; anything that could escape the store is refused."""
    if not _KEY_RE.fullmatch(key) or ".." in key:
        raise UsageError(f"invalid store key: {key!r}")
    return key


class Capabilities(NamedTuple):
    """What a backend can do beyond the basics, as data the store can branch on."""

    local: bool = False  # keys are files on this machine (local_path works; reads can pread)
    durable: bool = True  # survives the process (False for memory)


class KeyInfo(NamedTuple):
    size: int
    mtime: float  # seconds since the epoch; gc's grace period is measured from it


@runtime_checkable
class Backend(Protocol):
    capabilities: Capabilities

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, length: int) -> bytes: ...

    def put(self, key: str, data: bytes) -> bool: ...

    def put_file(self, key: str, path: str) -> bool:
        """Store a local file under key, consuming it (the file is gone afterwards)."""
        ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def list(self, prefix: str = "") -> Iterator[str]: ...

    def info(self, key: str) -> KeyInfo: ...

    def local_path(self, key: str) -> str | None: ...

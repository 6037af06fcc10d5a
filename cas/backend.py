"""What a storage backend must do: move opaque bytes by key, nothing more.

Hashing, compression, packing and verification live once, above this interface, in
``ObjectDB``; a backend only stores and returns bytes. Puts are create-only: writing a key
that exists returns False and leaves the stored value alone, which is what makes concurrent
writers safe on every backend. Native errors are translated into ``StoreError`` subclasses at
each backend's edge.

``Backend`` is the whole protocol: a backend subclasses it and implements the six abstract
operations (``get``, ``put``, ``exists``, ``delete``, ``list``, ``info``); every other
operation has a default built on those, which a backend overrides when it can do better
(ranged and multi-range reads, streaming uploads, a bounded read that learns the size from
the same request). Callers never probe a backend for what it can do.
"""

from __future__ import annotations

import mmap
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import NamedTuple

from .errors import IntegrityError, UsageError

_KEY_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*(/[a-z0-9][a-z0-9_.-]*)*")
PIECE = 8 << 20  # bytes per streamed piece
_List = list  # ``Backend.list`` shadows the builtin in the class body


def check_key(key: str) -> str:
    """Keys are short relative names; anything that could escape the store is refused."""
    if not _KEY_RE.fullmatch(key) or ".." in key:
        raise UsageError(f"invalid store key: {key!r}")
    return key


class KeyInfo(NamedTuple):
    size: int
    mtime: float  # seconds since the epoch; gc's grace period is measured from it


def too_large(key: str, size: int, limit: int) -> IntegrityError:
    return IntegrityError(key, f"{size} bytes, more than any zcas writes ({limit})")


class Backend(ABC):
    """Opaque bytes by key (see the module doc). Subclasses implement the abstract methods."""

    #: Keys are files on this machine that only this repository writes: a damaged pack
    #: index is the user's to know about (it raises), where one from a store elsewhere (a
    #: shared, untrusted remote) is skipped with a warning.
    local: bool = False

    # -- the operations every backend implements -------------------------------------------

    @abstractmethod
    def get(self, key: str) -> bytes:
        """The value of ``key`` (ObjectNotFoundError if absent)."""

    @abstractmethod
    def put(self, key: str, data: bytes) -> bool:
        """Store ``data`` under ``key`` unless it exists; True if this call created it."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def delete(self, key: str) -> None:
        """Remove ``key``; removing an absent key is harmless."""

    @abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]: ...

    @abstractmethod
    def info(self, key: str) -> KeyInfo: ...

    # -- operations with a default ---------------------------------------------------------

    def list_after(self, prefix: str, after: str) -> Iterator[str]:
        """The keys under ``prefix`` that sort after ``after`` (object storage starts its
        listing there, so what came before costs no request)."""
        return (k for k in self.list(prefix) if k > after)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of ``key`` from ``start`` (fewer at its end)."""
        return self.get(key)[start : start + length]

    def get_range_into(self, key: str, start: int, view: memoryview) -> int:
        """Read up to ``len(view)`` bytes of ``key`` from ``start`` into ``view``; how many
        (fewer at its end). A local backend reads straight into it, so a reader reusing
        one buffer does not fault in fresh pages for every range."""
        data = self.get_range(key, start, len(view))
        view[: len(data)] = data
        return len(data)

    def get_ranges(self, key: str, starts: _List[int], lengths: _List[int]) -> _List[bytes]:
        """Several ranges of one key (object storage fetches them in one call)."""
        return [self.get_range(key, s, n) for s, n in zip(starts, lengths, strict=True)]

    def get_bounded(self, key: str, limit: int) -> bytes:
        """The value of ``key``, refused (IntegrityError naming it) if over ``limit`` bytes,
        before more than ``limit`` bytes are held."""
        size = self.info(key).size
        if size > limit:
            raise too_large(key, size, limit)
        data = self.get(key)
        if len(data) > limit:  # it grew between the two requests
            raise too_large(key, len(data), limit)
        return data

    def get_mapped(self, key: str) -> bytes | mmap.mmap:
        """The whole value of ``key``, read only; a local backend may hand out a large file
        as a memory map, whose pages are read as they are touched (``ObjectDB`` bisects
        large pack indexes that way, without reading them whole)."""
        return self.get(key)

    def stream(self, key: str, end: int, piece: int = PIECE) -> Iterator[bytes | memoryview]:
        """The bytes of ``key`` from 0 up to ``end`` (or its end, if shorter), in pieces of
        about ``piece`` bytes; never more than ``end`` bytes in all."""
        sent = 0
        while sent < end:
            data = self.get_range(key, sent, min(piece, end - sent))
            if not data:
                return
            data = data[: end - sent]
            sent += len(data)
            yield data

    def put_path(self, key: str, path: str) -> bool:
        """Store a local file under ``key``, leaving the file in place."""
        with open(path, "rb") as f:
            return self.put(key, f.read())

    def put_file(self, key: str, path: str) -> bool:
        """Store a local file under ``key``, consuming it (the file is gone afterwards).
        ``path`` should be in ``tmp_dir()`` when there is one (a local backend links it)."""
        try:
            return self.put_path(key, path)
        finally:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def tmp_dir(self) -> str | None:
        """A folder on this machine for files that ``put_file`` will consume, on the keys'
        own filesystem (so publishing a pack is a link, not a copy); None when the keys
        are not files here (writers then use the system's temporary folder). Only this
        backend's writers use it, so leftovers in it are garbage for gc."""
        return None

    def local_path(self, key: str) -> str | None:
        """The file holding ``key`` on this machine, or None when keys are not files here."""
        return None

    def close(self) -> None:  # noqa: B027 - a backend that holds nothing open has nothing to do
        """Release what the backend holds open (files, connections)."""

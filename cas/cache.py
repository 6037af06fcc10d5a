"""A local read cache in front of a remote store, as a backend wrapping two backends.

``CachingBackend(remote, local)`` is the remote, as far as anyone can tell (writes, lists,
deletes and ``info`` go there), except that what it reads of the remote's packs is kept
in ``local`` and read from there next time: pack indexes whole, and pack records by the
byte range they were read at. Pack and index keys never change once written (a pack is
named after the hash of its index, and both are create-only), so a cached range is the
remote's bytes for as long as the pack exists, and a pack deleted on the remote (by gc or
a repack) is simply never asked for again.

Nothing read from the cache is trusted more than the remote: an index is served only if
it still hashes to its pack's name, and every cached range carries the BLAKE3 of its
bytes, checked on each read. A cached copy that fails its check is dropped and the remote
read instead, so a damaged cache can cost a request, never an object. (What is read is
then verified again above, by ``ObjectDB``, as everything read from a remote is.)

Cache keys live below ``prefix`` in ``local`` (``cache/<remote>/<pack>/idx`` and
``cache/<remote>/<pack>/<start>-<length>``), beside, never inside, the local ``packs/``:
the cache is an accelerator, safe to delete.
"""

from __future__ import annotations

from collections.abc import Iterator

from .backend import PIECE, Backend, KeyInfo, _List
from .errors import ObjectNotFoundError, StoreError
from .oid import hash_bytes
from .pack import PREFIX, name_of_idx_key

_PACK = PREFIX + "pack-"


def _pack_name(key: str) -> str | None:
    """The pack a ``packs/pack-<name>.pack`` key names, else None."""
    if key.startswith(_PACK) and key.endswith(".pack") and len(key) == len(_PACK) + 64 + 5:
        return key[len(_PACK) : -5]
    return None


def namespace(remote: Backend) -> str:
    """A short, stable name for a remote (its ``repr`` names its URL), for cache keys."""
    return hash_bytes(repr(remote).encode()).hex()[:16]


class CachingBackend(Backend):
    """``remote``, with what is read of its packs kept in ``local`` (see the module doc)."""

    def __init__(self, remote: Backend, local: Backend, prefix: str | None = None):
        self.remote = remote
        self.cache = local
        self.prefix = prefix if prefix is not None else f"cache/{namespace(remote)}/"
        self.hits = 0  # reads served from the cache (tests and benchmarks look)

    def __repr__(self) -> str:
        return f"CachingBackend({self.remote!r}, {self.cache!r})"

    # -- reads: from the cache when it holds a sound copy ----------------------------------

    def _idx_key(self, name: str) -> str:
        return f"{self.prefix}{name}/idx"

    def _range_key(self, name: str, start: int, length: int) -> str:
        return f"{self.prefix}{name}/{start}-{length}"

    def _cached_index(self, key: str) -> bytes | None:
        name = name_of_idx_key(key)
        if name is None:
            return None
        try:
            data = self.cache.get(self._idx_key(name))
        except ObjectNotFoundError:
            return None
        if hash_bytes(data).hex() != name:  # damaged (or torn by a crash): read the remote's
            self.cache.delete(self._idx_key(name))
            return None
        self.hits += 1
        return data

    def _keep_index(self, key: str, data: bytes) -> None:
        name = name_of_idx_key(key)
        if name is not None and hash_bytes(data).hex() == name:  # only what the remote's name vouches for
            self._keep(self._idx_key(name), data)

    def _keep(self, key: str, data: bytes) -> None:
        try:
            self.cache.put(key, data)
        except StoreError:
            pass  # a cache that cannot be written (full disk) costs requests, nothing else

    def get(self, key: str) -> bytes:
        data = self._cached_index(key)
        if data is None:
            data = self.remote.get(key)
            self._keep_index(key, data)
        return data

    def get_bounded(self, key: str, limit: int) -> bytes:
        data = self._cached_index(key)
        if data is None or len(data) > limit:
            data = self.remote.get_bounded(key, limit)
            self._keep_index(key, data)
        return data

    def _cached_range(self, name: str, start: int, length: int) -> bytes | None:
        ckey = self._range_key(name, start, length)
        try:
            data = self.cache.get(ckey)
        except ObjectNotFoundError:
            return None
        body, digest = data[:-32], data[-32:]
        if len(body) != length or hash_bytes(body) != digest:
            self.cache.delete(ckey)
            return None
        self.hits += 1
        return body

    def _keep_range(self, name: str, start: int, data: bytes) -> None:
        self._keep(self._range_key(name, start, len(data)), data + hash_bytes(data))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        name = _pack_name(key)
        if name is None or length <= 0:
            return self.remote.get_range(key, start, length)
        data = self._cached_range(name, start, length)
        if data is None:
            data = self.remote.get_range(key, start, length)
            if len(data) == length:  # a short read (the pack ends early) is not kept
                self._keep_range(name, start, data)
        return data

    def get_ranges(self, key: str, starts: _List[int], lengths: _List[int]) -> _List[bytes]:
        name = _pack_name(key)
        if name is None:
            return self.remote.get_ranges(key, starts, lengths)
        out: _List[bytes | None] = [self._cached_range(name, s, n) if n > 0 else None
                                   for s, n in zip(starts, lengths, strict=True)]
        todo = [i for i, d in enumerate(out) if d is None]
        if todo:
            got = self.remote.get_ranges(key, [starts[i] for i in todo], [lengths[i] for i in todo])
            for i, data in zip(todo, got, strict=True):
                out[i] = data
                if len(data) == lengths[i] > 0:
                    self._keep_range(name, starts[i], data)
        return [d if d is not None else b"" for d in out]

    def stream(self, key: str, end: int, piece: int = PIECE) -> Iterator[bytes | memoryview]:
        return self.remote.stream(key, end, piece)  # whole packs being pulled: verified, then installed

    # -- everything else is the remote's ---------------------------------------------------

    def put(self, key: str, data: bytes) -> bool:
        return self.remote.put(key, data)

    def put_path(self, key: str, path: str) -> bool:
        return self.remote.put_path(key, path)

    def put_file(self, key: str, path: str) -> bool:
        return self.remote.put_file(key, path)

    def exists(self, key: str) -> bool:
        return self.remote.exists(key)

    def delete(self, key: str) -> None:
        self.remote.delete(key)
        name = name_of_idx_key(key) or _pack_name(key)
        if name is not None:
            for ckey in list(self.cache.list(f"{self.prefix}{name}/")):
                self.cache.delete(ckey)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.remote.list(prefix)

    def list_after(self, prefix: str, after: str) -> Iterator[str]:
        return self.remote.list_after(prefix, after)

    def info(self, key: str) -> KeyInfo:
        return self.remote.info(key)

    def tmp_dir(self) -> str | None:
        """Packs are written on this machine (in the cache's folder), then uploaded."""
        return self.cache.tmp_dir() or self.remote.tmp_dir()

    def close(self) -> None:
        self.remote.close()
        self.cache.close()

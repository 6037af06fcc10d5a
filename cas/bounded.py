"""Reading keys from a store without trusting their sizes.

A remote may serve a key far larger than any zcas wrote there (an index of gigabytes, a
pack that never ends); these readers learn the size from the same response and refuse,
or stop, before holding or writing more than the caller allows. Object storage is read
through the ObstoreBackend's store directly (one request: the size comes with the
response's metadata, the body is streamed); other backends through the Backend protocol.
"""

from __future__ import annotations

from typing import Iterator

from .errors import IntegrityError

PIECE = 8 << 20  # bytes per streamed piece


def _obstore(backend):
    """(store, call) when ``backend`` is an ObstoreBackend, else None."""
    store = getattr(backend, "store", None)
    call = getattr(backend, "_call", None)
    return (store, call) if store is not None and call is not None else None


def get_bounded(backend, key: str, limit: int) -> bytes:
    """The value of ``key``, refused (IntegrityError naming it) if over ``limit`` bytes."""
    ob = _obstore(backend)
    if ob is None:
        if backend.capabilities.local or not hasattr(backend, "info"):
            data = backend.get(key)
        else:
            size = backend.info(key).size
            if size > limit:
                raise IntegrityError(key, f"{size} bytes, more than any zcas writes ({limit})")
            data = backend.get(key)
    else:
        import obstore

        store, call = ob
        res = call("reading", key, lambda: obstore.get(store, key))
        size = res.meta["size"]
        if size > limit:
            raise IntegrityError(key, f"{size} bytes, more than any zcas writes ({limit})")
        data = call("reading", key, lambda: res.bytes().to_bytes())
    if len(data) > limit:
        raise IntegrityError(key, f"{len(data)} bytes, more than any zcas writes ({limit})")
    return data


def stream(backend, key: str, end: int, piece: int = PIECE) -> Iterator:
    """The bytes of ``key`` from 0 up to ``end`` (or its end, if shorter), in pieces of
    about ``piece`` bytes: one streamed, ranged request on object storage, ranged reads on
    other backends. Never more than ``end`` bytes in all."""
    ob = _obstore(backend)
    sent = 0
    if ob is not None:
        import obstore

        store, call = ob
        pieces = call("reading", key, lambda: iter(
            obstore.get(store, key, options={"range": (0, end)}).stream(min_chunk_size=piece)))
        while sent < end:
            data = call("reading", key, lambda: next(pieces, None))
            if data is None:
                return
            view = memoryview(data)[: end - sent]
            sent += len(view)
            yield view
        return
    while sent < end:
        data = backend.get_range(key, sent, min(piece, end - sent))
        if not data:
            return
        data = data[: end - sent]
        sent += len(data)
        yield data

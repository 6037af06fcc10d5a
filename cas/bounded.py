"""Reading keys from a store without trusting their sizes.

A remote may serve a key far larger than any zcas wrote there (an index of gigabytes, a
pack that never ends); these readers refuse, or stop, before holding or writing more than
the caller allows. They are operations of the backend protocol (``Backend.get_bounded``
and ``Backend.stream``: object storage learns the size from the response that carries the
body); these functions are the names the rest of zcas has always called.
"""

from __future__ import annotations

from collections.abc import Iterator

from .backend import PIECE, Backend

__all__ = ["PIECE", "get_bounded", "stream"]


def get_bounded(backend: Backend, key: str, limit: int) -> bytes:
    """The value of ``key``, refused (IntegrityError naming it) if over ``limit`` bytes."""
    return backend.get_bounded(key, limit)


def stream(backend: Backend, key: str, end: int, piece: int = PIECE) -> Iterator[bytes | memoryview]:
    """The bytes of ``key`` from 0 up to ``end`` (or its end, if shorter), in pieces of
    about ``piece`` bytes. Never more than ``end`` bytes in all."""
    return backend.stream(key, end, piece)

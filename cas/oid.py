"""Object ids: BLAKE3-256 of an object's uncompressed canonical bytes.

This is the only module that imports blake3, so the hash function is chosen in one place.
Ids travel as 32 raw bytes inside the store and as 64 lowercase hex characters everywhere a
person sees them.
"""

from __future__ import annotations

import os
import re
import stat

from blake3 import blake3

from .errors import InputPathError, UsageError

OID_LEN = 32
HEX_LEN = 64
MIN_PREFIX = 4
_HEX_RE = re.compile(r"[0-9a-f]+")
_AUTO = blake3.AUTO
_READ = 1 << 22  # bytes read at a time when hashing a file


def hash_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """Id of a bytes-like object (threads only pay off for large inputs)."""
    if len(data) >= 1 << 22:
        return blake3(data, max_threads=_AUTO).digest()
    return blake3(data).digest()


def hasher() -> blake3:
    """An incremental hasher (``update``, ``digest``) for content that arrives in pieces."""
    return blake3()


def hash_fd(fd: int) -> bytes:
    """Id of the bytes an open file descriptor reads from its current position to the end
    (the descriptor is read, not closed)."""
    h = blake3(max_threads=_AUTO)
    while b := os.read(fd, _READ):
        h.update(b)
    return h.digest()


def hash_file(path: str | bytes | os.PathLike) -> bytes:
    """Id a regular file's content gets (exactly ``b3sum`` of its bytes), read from disk
    without storing anything. The one implementation of hashing a file: callers that want
    the stat cache's answer, or a folder's id, use ``ingest.path_id``."""
    shown = os.fsdecode(path)
    try:  # never blocks on a FIFO, never makes a terminal the controlling one
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        raise InputPathError(shown, e.strerror or str(e)) from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputPathError(shown, "not a regular file")
        return hash_fd(fd)
    except OSError as e:
        raise InputPathError(shown, e.strerror or str(e)) from None
    finally:
        os.close(fd)


def from_hex(text: str) -> bytes:
    """Parse a full 64-hex id, refusing anything else (ids become paths and keys)."""
    if len(text) != HEX_LEN or not _HEX_RE.fullmatch(text):
        raise UsageError(f"not a valid object id: {text!r}")
    return bytes.fromhex(text)


def check_prefix(text: str) -> str:
    """Normalise a user-typed id prefix, or raise a one-line error saying what is wrong."""
    low = text.strip().lower()
    if not _HEX_RE.fullmatch(low or "-"):
        raise UsageError(f"not a hex object id: {text!r}")
    if len(low) > HEX_LEN:
        raise UsageError(f"object id too long ({len(low)} hex characters, at most {HEX_LEN}): {text!r}")
    if len(low) < MIN_PREFIX:
        raise UsageError(f"object id prefix too short (at least {MIN_PREFIX} hex characters): {text!r}")
    return low

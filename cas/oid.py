"""Object ids: BLAKE3-256 of an object's uncompressed canonical bytes.

This is the only module that imports blake3, so the hash function is chosen in one place.
Ids travel as 32 raw bytes inside the store and as 64 lowercase hex characters everywhere a
person sees them.
"""

from __future__ import annotations

import re

from blake3 import blake3

from .errors import UsageError

OID_LEN = 32
HEX_LEN = 64
MIN_PREFIX = 4
_HEX_RE = re.compile(r"[0-9a-f]+")
_AUTO = blake3.AUTO

Hasher = blake3


def hash_bytes(data) -> bytes:
    """Id of a bytes-like object (threads only pay off for large inputs)."""
    if len(data) >= 1 << 22:
        return blake3(data, max_threads=_AUTO).digest()
    return blake3(data).digest()


def hasher() -> blake3:
    return blake3()


def to_hex(oid: bytes) -> str:
    return oid.hex()


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


def short(oid: bytes | str, n: int = 12) -> str:
    return (oid if isinstance(oid, str) else oid.hex())[:n]

"""The manifest of a chunked file: its encoding, and the checks every reader applies.

Payload: u64 total size, then per chunk: id (32 bytes), length u32, in file order. This
module needs nothing but the codec's limits, so both ``chunking.py`` (which writes and
reassembles chunked files) and ``verify.py`` (which checks every record read) import it.
"""

from __future__ import annotations

import struct

from . import codec
from .errors import IntegrityError

AVG_CHUNK = 32 << 10  # FastCDC's average is this plus its minimum (avg/4): about 40 KiB
MIN_CHUNK = AVG_CHUNK // 4  # FastCDC never cuts shorter, except a file's last chunk
_TOTAL = struct.Struct("<Q")
_ITEM = struct.Struct("<32sI")


def encode_manifest(total: int, chunks: list[tuple[bytes, int]]) -> bytes:
    return _TOTAL.pack(total) + b"".join(_ITEM.pack(o, n) for o, n in chunks)


def decode_manifest(oid: bytes | str, payload: bytes) -> tuple[int, list[tuple[bytes, int]]]:
    """(total, [(chunk id, length)]). Chunks are blobs, so each length is between 1 and the
    blob limit, and the lengths must add up to the total: a manifest cannot claim a size
    its chunks do not make up, or a chunk larger than any reader accepts. FastCDC cuts no
    chunk but the last below MIN_CHUNK, so a manifest listing more chunks than its total
    allows (millions of one-byte chunks, to make readers hold millions of entries) is
    refused before its entries are unpacked."""
    if len(payload) < 8 or (len(payload) - 8) % _ITEM.size:
        raise IntegrityError(oid, "malformed chunk manifest")
    (total,) = _TOTAL.unpack_from(payload, 0)
    if (len(payload) - 8) // _ITEM.size > total // MIN_CHUNK + 1:
        raise IntegrityError(oid, "chunk manifest lists more chunks than its size allows")
    items = list(_ITEM.iter_unpack(memoryview(payload)[8:]))
    lengths = [n for _, n in items]
    if lengths and (min(lengths) < 1 or max(lengths) > codec.MAX_SIZE[codec.KIND_BLOB]):
        raise IntegrityError(oid, "chunk manifest lists a chunk of impossible length")
    if sum(lengths) != total:
        raise IntegrityError(oid, "chunk lengths do not add up to the file size")
    return total, items


def check_manifest(oid: bytes | str, payload: bytes | memoryview) -> int:
    """The total of a manifest that ``decode_manifest`` would accept, checked a block of
    entries at a time (a 256 MiB manifest is 7.4 million entries: unpacked at once they
    would take gigabytes of Python objects)."""
    if len(payload) < 8 or (len(payload) - 8) % _ITEM.size:
        raise IntegrityError(oid, "malformed chunk manifest")
    (total,) = _TOTAL.unpack_from(payload, 0)
    count = (len(payload) - 8) // _ITEM.size
    if count > total // MIN_CHUNK + 1:
        raise IntegrityError(oid, "chunk manifest lists more chunks than its size allows")
    view = memoryview(payload)
    cap = codec.MAX_SIZE[codec.KIND_BLOB]
    step = 65536 * _ITEM.size
    added = 0
    for at in range(8, len(payload), step):
        lengths = [n for _, n in _ITEM.iter_unpack(view[at : at + step])]
        if min(lengths) < 1 or max(lengths) > cap:
            raise IntegrityError(oid, "chunk manifest lists a chunk of impossible length")
        added += sum(lengths)
    if added != total:
        raise IntegrityError(oid, "chunk lengths do not add up to the file size")
    return total

"""Hand-made packs and indexes, the way a hostile remote would serve them."""

from __future__ import annotations

import struct

from zcas.cas import codec
from zcas.cas.oid import hash_bytes
from zcas.cas.pack import ENTRY, IDX_MAGIC, PACK_HEADER, encode_index, idx_key, pack_key


def blob(data: bytes) -> tuple[bytes, int, int, bytes]:
    """(id, kind, size, record) of a well-formed blob."""
    return hash_bytes(data), codec.KIND_BLOB, len(data), codec.encode(codec.KIND_BLOB, data)


def corrupt(record: bytes) -> bytes:
    """The same record with its last byte flipped (still the right length)."""
    return record[:-1] + bytes([record[-1] ^ 0x5A])


def pack(items, header: bytes = PACK_HEADER) -> tuple[str, bytes, bytes]:
    """(name, pack bytes, index bytes) of records laid out back to back.

    ``items`` are (id, kind, size, record) or (id, kind, size, record, entry override
    dict) where the override replaces offset/length/kind/size in the index only.
    """
    body = bytearray(header)
    entries = {}
    for it in items:
        oid, kind, size, record = it[:4]
        over = it[4] if len(it) > 4 else {}
        off = len(body)
        body += record
        entries[oid] = (over.get("offset", off), over.get("length", len(record)), over.get("kind", kind), over.get("size", size))
    idx = encode_index(entries)
    return hash_bytes(idx).hex(), bytes(body), idx


def raw_index(entries: list[tuple[bytes, int, int, int, int]]) -> bytes:
    """An index with entries in the order given (sorted or not), with a valid checksum."""
    body = IDX_MAGIC + struct.pack("<I", len(entries)) + b"".join(ENTRY.pack(*e) for e in entries)
    return body + hash_bytes(body)


def publish(backend, name: str, pack_bytes: bytes, idx: bytes) -> str:
    backend.put(pack_key(name), pack_bytes)
    backend.put(idx_key(name), idx)
    return name


def low_name(idx: bytes) -> str:
    """A pack name that sorts before any real one (for an index that need not match it)."""
    return "0" * 63 + "1"

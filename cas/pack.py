"""Pack files: many objects appended to one file, found through an immutable index.

Creating a file per small object costs more than hashing and compressing it, and one request
per object is what makes object-storage remotes slow, so objects are appended to a pack and
the pack is published with its index (the same pair travels to remotes unchanged). A pack
counts only once its index exists: the pack is stored first, the index last, so a crash
leaves at worst an unindexed pack (garbage for gc), never a damaged or half-visible object.

Pack: ``ZCASPACK`` + u32 version + u32 reserved, then records (codec header + payload).
Index: ``ZCASIDX\\x01`` + u32 count, entries sorted by id (id 32, offset u64, length u32,
kind u8, size u64), then the BLAKE3 of everything before it. A pack is named after the hash
of its index.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
import threading
from typing import NamedTuple

from . import codec
from .errors import IntegrityError, store_error
from .oid import hash_bytes

# A loaded pack index: its bytes, or a read-only map of its file (see LocalBackend.get_mapped).
IndexData = bytes | mmap.mmap

PACK_MAGIC = b"ZCASPACK"
PACK_VERSION = 1
PACK_HEADER = PACK_MAGIC + struct.pack("<II", PACK_VERSION, 0)
IDX_MAGIC = b"ZCASIDX\x01"
ENTRY = struct.Struct("<32sQIBQ")
_COUNT = struct.Struct("<I")
PREFIX = "packs/"
MAX_PACK_SIZE = 256 << 20
MAX_IDX_ENTRIES = 1 << 24
MAX_INDEX_BYTES = 12 + MAX_IDX_ENTRIES * ENTRY.size + 32
# The longest record any index entry may point at (a manifest of the largest size).
MAX_ENTRY_LENGTH = codec.HEADER_SIZE + codec.MAX_OBJECT_SIZE + (codec.MAX_OBJECT_SIZE >> 7) + 128


class Entry(NamedTuple):
    pack: str  # pack name (hex), "" while still being written
    offset: int
    length: int  # stored record length, header included
    kind: int
    size: int  # logical size: bytes of the file or payload it stands for


def pack_key(name: str) -> str:
    return f"{PREFIX}pack-{name}.pack"


def idx_key(name: str) -> str:
    return f"{PREFIX}pack-{name}.idx"


_IDX_KEY = re.compile(re.escape(PREFIX) + r"pack-([0-9a-f]{64})\.idx")


def name_of_idx_key(key: str) -> str | None:
    """The pack name behind an index key, or None for keys that are not pack indexes."""
    m = _IDX_KEY.fullmatch(key)
    return m[1] if m else None


def encode_index(entries: dict[bytes, tuple[int, int, int, int]]) -> bytes:
    parts = [IDX_MAGIC, _COUNT.pack(len(entries))]
    for oid in sorted(entries):
        off, length, kind, size = entries[oid]
        parts.append(ENTRY.pack(oid, off, length, kind, size))
    body = b"".join(parts)
    return body + hash_bytes(body)


def check_index(name: str, data: IndexData) -> int:
    """The entry count of an index whose magic, length and checksum are right."""
    if len(data) < 8 + 4 + 32 or data[:8] != IDX_MAGIC:
        raise IntegrityError(name, "not a pack index")
    body, digest = memoryview(data)[:-32], data[-32:]
    if hash_bytes(body) != digest:
        raise IntegrityError(name, "pack index checksum mismatch")
    (count,) = _COUNT.unpack_from(body, 8)
    if count > MAX_IDX_ENTRIES or len(body) != 12 + count * ENTRY.size:
        raise IntegrityError(name, "pack index has the wrong length")
    return count


def index_count(name: str, data: IndexData) -> int:
    """The entry count of an index whose magic and length are right, read without hashing
    it (``check_index`` checks it whole)."""
    if len(data) < 8 + 4 + 32 or data[:8] != IDX_MAGIC:
        raise IntegrityError(name, "not a pack index")
    (count,) = _COUNT.unpack_from(data, 8)
    if count > MAX_IDX_ENTRIES or len(data) != 12 + count * ENTRY.size + 32:
        raise IntegrityError(name, "pack index has the wrong length")
    return count


def decode_index(name: str, data: IndexData) -> list[tuple[bytes, int, int, int, int]]:
    """Entries of an index, refusing one whose checksum, size or order is wrong."""
    count = check_index(name, data)
    out = list(ENTRY.iter_unpack(memoryview(data)[12 : 12 + count * ENTRY.size]))
    for i in range(1, len(out)):
        if out[i - 1][0] >= out[i][0]:
            raise IntegrityError(name, "pack index is not sorted")
    return out


class PackWriter:
    """Appends encoded records to a temporary pack file; ``finish`` returns what to publish.

    Writes go straight to the file descriptor, a batch per ``writev``, so large ingests
    spend their time compressing, not in per-record calls.
    """

    def __init__(self, tmp_dir: str):
        os.makedirs(tmp_dir, exist_ok=True)
        self.path = os.path.join(tmp_dir, f"pack-{os.getpid()}-{os.urandom(6).hex()}.tmp")
        self.entries: dict[bytes, tuple[int, int, int, int]] = {}
        self._lock = threading.Lock()
        self._fd = -1
        self.size = 0
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            self._write_all([PACK_HEADER])
        except OSError as e:
            self.abort()
            raise store_error(e, "creating a pack") from None

    def _write_all(self, bufs: list) -> None:
        pos = self.size
        for i in range(0, len(bufs), 512):
            part = bufs[i : i + 512]
            want = sum(len(b) for b in part)
            n = os.pwritev(self._fd, part, pos)
            if n != want:  # short write: finish it piece by piece
                data = b"".join(part)[n:]
                while data:
                    k = os.pwrite(self._fd, data, pos + n)
                    n += k
                    data = data[k:]
            pos += want
        self.size = pos

    def add(self, oid: bytes, kind: int, size: int, record: bytes) -> None:
        """Append one encoded record (an id already in this pack is skipped)."""
        self.add_many([(oid, kind, size, record)])

    def add_many(self, items: list[tuple[bytes, int, int, bytes]]) -> None:
        with self._lock:
            bufs = []
            pos = self.size
            for oid, kind, size, record in items:
                if oid in self.entries:
                    continue
                self.entries[oid] = (pos, len(record), kind, size)
                bufs.append(record)
                pos += len(record)
            try:
                self._write_all(bufs)
            except OSError as e:
                raise store_error(e, "writing a pack") from None

    def read(self, offset: int, length: int) -> bytes:
        """Bytes of the pack being written (records appended so far are readable at once)."""
        return os.pread(self._fd, length, offset)

    def finish(self) -> tuple[str, bytes]:
        """Close the pack; (pack name, index bytes). The temp file is then the caller's."""
        fd, self._fd = self._fd, -1
        os.close(fd)
        idx = encode_index(self.entries)
        return hash_bytes(idx).hex(), idx

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# zcas stores a payload raw unless zstd saves at least 1/32, so a record is never longer
# than its header plus its payload; the slack allows another encoder's frame overhead.
_SLACK = 128
_HEADER_LEN = len(PACK_HEADER)
_BLOB_CAP = codec.MAX_SIZE[codec.KIND_BLOB]


def max_record_length(kind: int, size: int) -> int:
    """The longest record an index entry of this kind and logical size may point at."""
    cap = codec.MAX_STORED_SIZE[kind]
    # a manifest lists chunks of at least one byte: 8 bytes, then 36 per chunk
    raw = min(cap, 8 + 36 * size) if kind == codec.KIND_CHUNKED else min(size, cap)
    return codec.HEADER_SIZE + raw + (raw >> 7) + _SLACK


def check_entry(name: str, oid: bytes, off: int, length: int, kind: int, size: int) -> None:
    """Refuse an index entry no zcas writer produces, before a byte of it is read: unknown
    kind, a size over its kind's limit, a record starting inside the pack header, shorter
    than a record header or longer than its kind and size allow (a hostile index must not
    make a reader allocate or fetch gigabytes). A record ending past the pack's end shows
    as a short read, which every reader refuses."""
    if kind == codec.KIND_BLOB and off >= _HEADER_LEN and codec.HEADER_SIZE <= length <= size + (size >> 7) + (
            codec.HEADER_SIZE + _SLACK) and size <= _BLOB_CAP:
        return  # the common case, in one test
    where = f" (pack {name[:12]})" if name else ""
    if kind not in codec.KINDS:
        raise IntegrityError(oid, f"pack index gives unknown kind {kind}{where}")
    if kind != codec.KIND_CHUNKED and size > codec.MAX_STORED_SIZE[kind]:  # a run record: 16 MiB
        raise IntegrityError(oid, f"pack index gives size {size}, over the {codec.KINDS[kind]} limit{where}")
    if off < len(PACK_HEADER):
        raise IntegrityError(oid, f"pack index points outside the pack{where}")
    if length < codec.HEADER_SIZE or length > max_record_length(kind, size):
        raise IntegrityError(oid, f"pack index gives an impossible record length {length}{where}")


def pack_extent(index: IndexData) -> int:
    """Where the last record of a checked index's pack ends (the pack's size, as written)."""
    count = (len(index) - 44) // ENTRY.size
    end = len(PACK_HEADER)
    for _, off, length, _, _ in ENTRY.iter_unpack(memoryview(index)[12 : 12 + count * ENTRY.size]):
        if off + length > end:
            end = off + length
    return end


def lower_bound(data: IndexData, oid: bytes) -> int:
    """Position of the first entry whose id is not below ``oid`` in a sorted index."""
    lo, hi = 0, (len(data) - 44) // ENTRY.size
    size = ENTRY.size
    while lo < hi:
        mid = (lo + hi) // 2
        p = 12 + mid * size
        if data[p : p + 32] < oid:
            lo = mid + 1
        else:
            hi = mid
    return lo


def find_entry(data: IndexData, oid: bytes) -> int | None:
    """Position of ``oid`` in a checked, sorted index (bisect over its bytes), or None."""
    lo, hi = 0, (len(data) - 44) // ENTRY.size
    size = ENTRY.size
    while lo < hi:
        mid = (lo + hi) // 2
        p = 12 + mid * size
        key = data[p : p + 32]
        if key < oid:
            lo = mid + 1
        elif key > oid:
            hi = mid
        else:
            return mid
    return None

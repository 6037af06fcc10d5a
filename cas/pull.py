"""Pulling whole packs from an untrusted remote: verified as they stream in, kept only
when sound, never installed beside or in front of a local copy.

Each remote pack's index is fetched (bounded) and checked: checksum, order, every entry of
a possible shape. The pack is then streamed, up to the end of its last record, into a temp
file in the local store's tmp folder, and every record is verified as soon as its bytes
are in (``verify.verify_span``: id hash, kind and size against the index, trees decode,
manifests add up), on the process-wide pool, while the next piece downloads; several packs
are in flight at once. A pack whose records all verify and none of whose ids the local store
(or another pack of the same pull) holds is installed as it is, pack first, index last;
otherwise only its verified records the store lacks are written, into a new local pack.
Refused objects are reported, one line each, and never stop the rest of the pull.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

import attrs

from . import codec
from .backend import Backend
from .bounded import get_bounded, stream
from .chunking import pool
from .db import ObjectDB
from .errors import IntegrityError, ObjectNotFoundError
from .oid import hash_bytes
from .pack import (
    MAX_ENTRY_LENGTH,
    MAX_INDEX_BYTES,
    MAX_PACK_SIZE,
    PACK_HEADER,
    check_entry,
    decode_index,
    idx_key,
    pack_key,
)
from .verify import verify_span

JOBS = 8  # packs in flight
PIECE = 8 << 20  # bytes of a pack fetched per request while pulling
_WINDOW = 3  # pieces per pack waiting for verification
_VERIFY_BATCH = 256  # records per verification task, at most
_VERIFY_BYTES = 2 << 20  # bytes of records per verification task, about
# No zcas writer makes a pack longer than this (a pack closes past MAX_PACK_SIZE, after at
# most one more batch or object), nor an index longer than MAX_IDX_ENTRIES entries.
MAX_PULLED_PACK = MAX_PACK_SIZE + MAX_ENTRY_LENGTH + (64 << 20)
# A record longer than a piece is carried (held whole) until its last byte is in. Those
# carries draw on one budget for the whole process, so eight packs each holding a record
# of the largest size an entry may have (a 256 MiB manifest) are carried one at a time.
# Memory while pulling is then at most: pieces in flight (JOBS x (_WINDOW + 2) x PIECE),
# plus _CARRIED, plus codec.BUDGET for records being decoded (raw ones are verified in
# place, without a copy).
_CARRIED = 256 << 20
_carried = codec.Budget(_CARRIED)
# Pack indexes held at once while pulling (an index of the largest size a pack allows
# takes it all), so eight hostile indexes are worked on one at a time, not together.
_indexes = codec.Budget(1 << 30)


@attrs.define
class PullResult:
    """What ``pull_packs`` did. ``rejected`` holds one line per refused object or pack
    (pack, object and reason), for the caller to print as warnings: a bad object is skipped,
    never kept, and never stops the rest of the pull."""

    packs: int = 0  # remote packs handled (installed whole or copied object by object)
    bytes: int = 0  # bytes downloaded
    objects: int = 0  # objects the local store gained
    installed: int = 0  # packs installed as they are (every record verified, none already here)
    rejected: list[str] = attrs.Factory(list)
    complete: set[str] = attrs.Factory(set)  # packs every record of which verified (installed or copied)


def pull_packs(src_backend: Backend, dst_db: ObjectDB, names: Iterable[str],
               progress: Callable[[int, int], None] | None = None) -> PullResult:
    """Fetch whole packs from ``src_backend`` into ``dst_db``, verifying every record.

    For each pack: its index is fetched and checked (checksum, order, every entry inside
    the pack and of a possible shape); the pack is streamed up to the end of its last
    record into a temp file in ``dst_db.tmp_dir``, and each record is verified as its bytes
    arrive, on the process-wide pool (all cores), while the next piece downloads
    (``verify_span``: hash, kind and size against the index, trees decode, manifests add
    up). Several packs are in flight at once. A pack whose records all verify and none of whose ids the local
    store (or another pack of this pull) has is installed as it is: pack first, index
    last. Otherwise only its verified records that the local store lacks are written, into
    a new local pack: no bad copy, and no second copy, is ever installed. Refused objects
    are listed in ``PullResult.rejected``; failures of the transfer itself raise.
    """
    local = dst_db.packs()
    todo = sorted(n for n in names if n not in local)
    res = PullResult()
    lock = threading.Lock()
    claimed: set[bytes] = set()
    try:
        with ThreadPoolExecutor(max_workers=JOBS, thread_name_prefix="zcas-pull") as ex:
            futs = [ex.submit(_pull_one, src_backend, dst_db, name, claimed, lock) for name in todo]
            try:
                for name, f in zip(todo, futs, strict=True):
                    nbytes, objects, installed, rejected = f.result()
                    if not rejected:
                        res.complete.add(name)
                    res.packs += 1
                    res.bytes += nbytes
                    res.objects += objects
                    res.installed += installed
                    res.rejected.extend(rejected)
                    if progress:
                        progress(res.packs, len(todo))
            except BaseException:
                for f in futs:
                    f.cancel()
                raise
    finally:
        dst_db.flush()  # what was verified and written so far is kept
        dst_db.refresh()
    return res


@contextlib.contextmanager
def _held(budget, n: int):
    n = budget.take(n)
    try:
        yield
    finally:
        budget.give(n)


def _pull_one(src, dst: ObjectDB, name: str, claimed: set, lock) -> tuple[int, int, int, list[str]]:
    """(bytes fetched, objects gained, 1 if installed whole, rejections) for one pack."""
    short = name[:12]
    ikey = idx_key(name)
    size = src.info(ikey).size
    if size > MAX_INDEX_BYTES:
        return 0, 0, 0, [f"pack {short}: index of {size} bytes, more than any zcas writes; skipped"]
    with _held(_indexes, size):  # indexes being worked on, all packs together
        try:
            idx = get_bounded(src, ikey, MAX_INDEX_BYTES)
            entries = decode_index(name, idx)
        except IntegrityError as e:
            return 0, 0, 0, [f"pack {short}: {e.reason}; skipped"]
        return _pull_indexed(src, dst, name, idx, entries, claimed, lock)


def _pull_indexed(src, dst: ObjectDB, name: str, idx: bytes, entries: list, claimed: set, lock):
    short = name[:12]
    pkey = pack_key(name)
    rejected: list[str] = []
    whole = hash_bytes(idx).hex() == name  # the name is the hash of the index
    if not whole:
        rejected.append(f"pack {short}: index does not hash to the pack's name; its objects were copied one by one")
    ok = []
    for t in entries:
        try:
            check_entry(name, t[0], t[1], t[2], t[3], t[4])
            ok.append(t)
        except IntegrityError as e:
            rejected.append(f"pack {short}: object {t[0].hex()}: {e.reason}")
    extent = max((t[1] + t[2] for t in ok), default=len(PACK_HEADER))
    if extent > MAX_PULLED_PACK:
        return len(idx), 0, 0, [*rejected, f"pack {short}: index spans {extent} bytes, more than any zcas pack; skipped"]
    try:
        have = src.info(pkey).size
    except ObjectNotFoundError:
        return len(idx), 0, 0, [*rejected, f"pack {short}: the pack is missing on the remote; skipped"]
    os.makedirs(dst.tmp_dir, exist_ok=True)
    tmp = os.path.join(dst.tmp_dir, f"pull-{os.getpid()}-{os.urandom(6).hex()}.pack")
    try:
        got, good, bad, header_ok = _fetch_verified(src, pkey, tmp, ok, min(extent, have))
        rejected.extend(f"pack {short}: object {o.hex()}: {why}" for o, why in bad)
        if not header_ok:
            rejected.append(f"pack {short}: not a zcas pack header; its objects were copied one by one")
        objects, installed = _keep(dst, name, idx, tmp, entries, good, claimed, lock,
                                   whole and header_ok and not bad and len(ok) == len(entries))
        return len(idx) + got, objects, installed, rejected
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _fetch_verified(src, pkey: str, tmp: str, entries: list, avail: int) -> tuple[int, list, list, bool]:
    """Download ``[0, avail)`` of a pack into ``tmp``, verifying each record on the pool
    as soon as its bytes are in. (bytes, verified entries, [(id, reason)], header ok)."""
    feed = _Feed(sorted(entries, key=lambda t: t[1]))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        for data in stream(src, pkey, avail, PIECE):
            _write_all(fd, data)
            _write_behind(fd, feed.pos, len(data))
            feed.add(data)
            if feed.pos >= avail:
                break
        feed.finish()
    except BaseException:
        feed.cancel()
        raise
    finally:
        os.close(fd)
        feed.close()
    return feed.pos, feed.good, feed.bad, feed.header == PACK_HEADER


class _Feed:
    """The records of one pack, verified on the pool as the pieces holding them come in.

    Pieces are verified where they lie, without a copy; only a record that straddles two
    pieces is copied, together with the start of the next piece up to its end (about one
    record), since copying whole pieces cost a tenth of a pull's CPU. A record longer than
    a piece is held whole (``carry``) until its end is in, on the process-wide ``_carried``
    budget. Entries are sorted by offset and may overlap (a hostile index): ``carry``
    always starts at the first record not yet complete, so every later one lies in it or
    in a later piece."""

    def __init__(self, ents: list):
        self.ents = ents
        self.i = 0  # first record not yet handed to the pool
        self.pos = 0  # bytes in so far
        self.carry: bytearray | None = None  # bytes from the start of record ``i``, when under way
        self.held = 0  # carry budget taken for record ``i``
        self.header = b""
        self.good: list = []
        self.bad: list = []
        self.futs: deque = deque()  # (verification futures of one piece, carry budget they release)

    def add(self, data) -> None:
        """Hand the records a new piece completes to the pool, and carry the one it starts."""
        ents, i, old = self.ents, self.i, self.pos
        new = self.pos = old + len(data)
        if old < len(PACK_HEADER):
            self.header += bytes(data[: len(PACK_HEADER) - old])
        j = i
        while j < len(ents) and ents[j][1] + ents[j][2] <= new:
            j += 1
        k, tasks, release = i, [], 0
        carry = self.carry
        if carry is not None and j > i:  # record ``i`` (and any starting before this piece) is whole
            while k < j and ents[k][1] < old:
                k += 1
            end = max(ents[t][1] + ents[t][2] for t in range(i, k))
            carry += memoryview(data)[: end - old]
            tasks.append(pool().submit(_verify_span, carry, ents[i][1], ents[i:k]))
            release, self.held = self.held, 0
        tasks += [pool().submit(_verify_span, data, old, batch) for batch in _batches(ents, k, j)]
        if tasks or release:
            self.futs.append((tasks, release))
        self.i = j
        self.carry = self._carry(data, old, carry, ents[i][1] if j > i else 0)
        self.collect(_WINDOW)

    def _carry(self, data, old: int, carry: bytearray | None, done: int) -> bytearray | None:
        """The bytes of the first incomplete record so far (None: no record is under way).
        ``carry`` held the bytes from ``done`` on, the start of a record this piece
        completed (0: it completed none, and ``carry``, if any, has not been handed over)."""
        if self.i >= len(self.ents) or self.ents[self.i][1] >= self.pos:
            return None
        off, length = self.ents[self.i][1], self.ents[self.i][2]
        if carry is not None and not done:  # the same record goes on: grow it in place
            carry += data
            return carry
        if length > PIECE and not self.held:  # held whole until its end is in: take the budget
            self.collect(0)  # (what we hold is given back first: never wait on ourselves)
            self.held = _carried.take(length)
        if off >= old:
            return bytearray(memoryview(data)[off - old :])
        assert carry is not None  # it started before this piece, inside the carry handed over
        grown = bytearray(memoryview(carry)[off - done : old - done])
        grown += data
        return grown

    def collect(self, keep: int) -> None:
        """Wait until at most ``keep`` pieces are being verified."""
        while len(self.futs) > keep:
            group, release = self.futs[0]
            try:
                for f in group:
                    for t, why in f.result():
                        (self.good.append(t) if why is None else self.bad.append((t[0], why)))
            finally:
                self.futs.popleft()
                if release:
                    _carried.give(release)

    def cancel(self) -> None:
        for group, _ in self.futs:
            for f in group:
                f.cancel()

    def close(self) -> None:
        """Give back every carry budget still held (verifications abandoned: their memory
        goes with them)."""
        for _, release in self.futs:
            if release:
                _carried.give(release)
        self.futs.clear()
        if self.held:
            _carried.give(self.held)
            self.held = 0

    def finish(self) -> None:
        """Verify what is left once the last piece is in: records the carry holds whole
        (one running past the pack's end, in a hostile index, must not take the good ones
        after it down with it); the rest are cut off."""
        rest = self.ents[self.i :]
        whole = [t for t in rest if t[1] + t[2] <= self.pos]  # (only ever inside the carry)
        if whole and self.carry is not None:
            self.futs.append(([pool().submit(_verify_span, self.carry, rest[0][1], whole)], 0))
        self.collect(0)
        self.bad += [(t[0], "the pack on the remote is truncated before it") for t in rest if t[1] + t[2] > self.pos]


def _batches(ents: list, k: int, j: int):
    """Runs of ``ents[k:j]`` of about ``_VERIFY_BYTES`` of records each (or
    ``_VERIFY_BATCH`` records), so that every core shares a piece and a task costs far
    more than handing it over."""
    start, size = k, 0
    for t in range(k, j):
        size += ents[t][2]
        if size >= _VERIFY_BYTES or t + 1 - start >= _VERIFY_BATCH:
            yield ents[start : t + 1]
            start, size = t + 1, 0
    if start < j:
        yield ents[start:j]


def _verify_span(buf, base: int, ents: list) -> list[tuple[tuple, str | None]]:
    return list(zip(ents, verify_span(buf, base, ents), strict=True))


def _write_behind(fd: int, off: int, n: int) -> None:
    """Start writing a piece to disk now, without waiting (Linux's sync_file_range):
    the pack is fsynced before it is installed, and the disk is idle while the records
    are checked, so that fsync then finds little left to write (on a 256 MiB pack it
    took 0.12 s at the end of the pull; started early, 0.005 s)."""
    sync_range = _sync_range()
    if sync_range is not None:
        sync_range(fd, off, n, 2)  # SYNC_FILE_RANGE_WRITE: queue the writes, wait for none


@functools.cache
def _sync_range() -> Callable[[int, int, int, int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # (only here: a pull is the one user)

    fn = getattr(ctypes.CDLL(None), "sync_file_range", None)
    if fn is not None:
        fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    return fn


def _write_all(fd: int, data) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _keep(dst: ObjectDB, name: str, idx: bytes, tmp: str, entries: list, good: list, claimed: set, lock,
          installable: bool) -> tuple[int, int]:
    """Install the pack whole, or write its verified records the store lacks; (objects, 1
    if installed whole)."""
    with lock:
        if installable and not dst.backend.exists(pack_key(name)):
            installable = not any(t[0] in claimed or dst.has(t[0]) for t in entries)
        else:
            installable = False
        if installable:
            claimed.update(t[0] for t in entries)
            need = []
        else:
            need = [t for t in good if t[0] not in claimed and not dst.has(t[0])]
            claimed.update(t[0] for t in need)
    if installable:
        if dst.backend.put_file(pack_key(name), tmp):  # pack first, index last
            dst.backend.put(idx_key(name), idx)
            return len(entries), 1
        return 0, 0  # appeared meanwhile (another process pulling): its index decides
    need.sort(key=lambda t: t[1])
    fd = os.open(tmp, os.O_RDONLY)
    try:
        batch: list = []
        held = 0
        for oid, off, length, kind, size in need:
            batch.append((oid, kind, size, os.pread(fd, length, off)))
            held += length
            if held >= PIECE:
                dst.put_records(batch)
                batch, held = [], 0
        if batch:
            dst.put_records(batch)
    finally:
        os.close(fd)
    return len(need), 0

"""ObjectDB: content-addressed objects over any backend, in packs.

This is where ids are computed and checked, payloads compressed and verified, and packs
written and indexed; the backend below only moves bytes. Objects written by this process
are readable at once, and visible to other processes after ``flush()`` publishes the pack.

An id may be stored in several packs (two writers raced, or a pull brought a copy). The
index points at one copy; if that copy fails verification, the other packs' indexes are
searched and the first copy that verifies is used and remembered, so a damaged or hostile
duplicate can never hide a good one.

A chunked file's manifest is stored under the hash of the whole file, so a copy can only
be judged by reassembling it: a remote may plant a manifest that adds up, under the id of a
file the user will add later. So ``put_manifest`` compares what is stored with the manifest
it just computed (chunking is deterministic) and, when they differ, stores its own as
another copy that the index then uses; and whenever a manifest has several copies,
``get`` hands out the first whose chunks reassemble to the id (checked once per process),
so readers (checkout, cat, fsck) and gc's walk all use that one, across processes too.

Pack indexes of a local store that fail their checks raise (damage to fix with fsck); those
of a remote (a backend that is not local) are skipped, remembered so they are not fetched
again, and reported once through ``warn``.

Every run flushes a pack of its own, so small packs pile up; past ``REPACK_AT`` of them a
flush consolidates them into one (``repack.py``), so opening the store and looking an id up
cost the same after ten thousand runs as after ten. A local read cache in front of a remote
store is a backend (``cache.CachingBackend``), not something this class knows about.
"""

from __future__ import annotations

import operator
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator
from itertools import islice

from . import codec
from .backend import Backend
from .errors import AmbiguousIdError, IntegrityError, ObjectNotFoundError, StoreError
from .oid import check_prefix, hash_bytes
from .pack import (
    ENTRY,
    MAX_INDEX_BYTES,
    MAX_PACK_SIZE,
    PREFIX,
    Entry,
    IndexData,
    PackWriter,
    check_entry,
    check_index,
    find_entry,
    idx_key,
    index_count,
    lower_bound,
    name_of_idx_key,
    pack_extent,
    pack_key,
)
from .verify import verify_record

# Index bytes an ObjectDB loads from a store that is not on this machine. Each id costs its
# 53 index bytes plus ~150 bytes of dict entry, key and locator in memory (measured: 1M ids
# take ~200 MB), so 256 MiB of indexes (about 5 million objects) stay near 1 GiB in all; a
# remote serving more is refused rather than held.
MAX_REMOTE_INDEXES = 256 << 20


# A pack whose records end before this many bytes is small; past REPACK_AT small packs, a
# flush consolidates them (see repack.py). Each consolidation rewrites at most
# REPACK_AT x SMALL_PACK bytes, so its cost spread over the flushes it follows is constant.
SMALL_PACK = 4 << 20
REPACK_AT = 32
_SMALL_ENTRIES = 4096  # a pack with more entries than this is never counted small
# Bisecting one pack's index costs about what putting this many ids in the dict of every id
# does (measured: ~0.9 us a bisection, ~0.3 us an id, checks included), so once lookups
# have bisected packs x _PROBE_COST >= the loaded entries, the dict is built (see _code):
# a process never pays much more than twice what the cheaper way would have cost it.
_PROBE_COST = 3
# Bytes of back-to-back records ``read_records`` reads from a local pack in one request.
SPAN_READ = 4 << 20


class ObjectDB:
    """Objects over a backend, in packs (see the module doc).

    ``auto_repack``: consolidate small packs when a flush leaves ``REPACK_AT`` or more of
    them (default: for a local backend only; a repository whose objects live in object
    storage turns it on for its own store). A local read cache in front of a remote is a
    backend: ``ObjectDB(CachingBackend(remote, local))``.
    """

    def __init__(self, backend: Backend, tmp_dir: str | None = None, max_pack_size: int = MAX_PACK_SIZE,
                 warn: Callable[[str], None] | None = None, auto_repack: bool | None = None):
        self.backend: Backend
        self.backend = backend
        # Told (once each) about a remote's pack indexes that were skipped; None: silent.
        self.warn = warn
        self.tmp_dir = tmp_dir or backend.tmp_dir() or tempfile.gettempdir()
        self.max_pack_size = max_pack_size
        self.auto_repack = backend.local if auto_repack is None else auto_repack
        self.repacking = False  # a repack is under way (it flushes nothing of ours)
        # Loaded packs, by pack number (load order). A locator is (pack number << 32) |
        # entry number; the entry's fields stay in the index bytes, unpacked on lookup.
        self._loaded = False  # refresh has run
        self._names: list[str] = []  # pack number -> name
        self._idx: list[IndexData] = []  # pack number -> index bytes
        self._ok: list[bool] = []  # pack number -> index checked in full
        self._extent: list[int | None] = []  # pack number -> where its records end, once read
        self._entries = 0  # entries of the loaded packs
        self._probes = 0  # packs bisected by lookups since the load
        self._pins: dict[bytes, int] = {}  # id -> locator of the copy in use, when not the first
        self._all: dict[bytes, int] | None = None  # id -> locator of every id, once built
        self._writer: PackWriter | None = None
        self._lock = threading.RLock()
        self._remote_bytes = 0  # index bytes loaded from a non-local backend
        self._bad: set[str] = set()  # a remote's pack indexes refused (not fetched again)
        self._prefer: set[bytes] = set()  # manifests whose pending copy replaces the indexed one
        # ids whose every copy failed verification here: absent to ``has``, so storing the same
        # content again (a rerun of the step that made it) writes a good copy reads then use
        self._damaged: set[bytes] = set()
        self._settled: set[bytes] = set()  # manifests whose copy in use reassembles (or has no rival)
        self._proven: set[bytes] = set()  # manifests whose copy in use was reassembled and hashed to the id here

    # -- index ---------------------------------------------------------------------------
    #
    # Opening the store lists the pack indexes and reads them, nothing more: a lookup
    # bisects each loaded index (in load order: the first pack holding an id has the copy
    # in use), after ``_pins``, the ids whose copy in use was chosen otherwise (a copy that
    # verifies, a manifest that reassembles, a healed object's new copy). So a run that
    # looks up a few ids pays for the number of packs (kept small by repacking), not for
    # the number of objects. A dict of every id (``index``) is built only when asked for
    # (gc, fsck, iterating), or once bisecting has cost about as much as building it would
    # (a process looking up many ids), so neither kind of process pays much more than the
    # cheaper way would have cost it.
    #
    # A local pack's index is checked in full (checksum, length, order) before any entry
    # of it is used or its ids are listed; until then only its magic and length are (a
    # miss in a damaged index can only make an object look absent: it is then stored
    # again). A remote's are checked whole as they are loaded, and a bad one skipped.

    def _load(self) -> None:
        if not self._loaded:
            self.refresh()

    @property
    def index(self) -> dict[bytes, int]:
        """Every published id (values are internal locators: use ``entry``). Built on
        first use, with every loaded pack's index checked in full."""
        found = self._all
        if found is None:
            with self._lock:
                self._load()
                found = self._all
                if found is None:
                    found = {}
                    for num in range(len(self._idx)):
                        self._merge(found, num)
                    found.update(self._pins)
                    self._all = found
        return found

    def _merge(self, found: dict[bytes, int], num: int) -> None:
        """Add pack ``num``'s ids to ``found`` (an id already there keeps its copy)."""
        data = self._idx[num]
        base = num << 32
        ids = [data[p : p + 32] for p in range(12, len(data) - 32, ENTRY.size)]
        self._check(num, ids)
        if not found:
            found.update(zip(ids, range(base, base + len(ids)), strict=True))
        else:
            setdefault = found.setdefault
            for oid, code in zip(ids, range(base, base + len(ids)), strict=True):
                setdefault(oid, code)

    def _check(self, num: int, ids: list[bytes] | None = None) -> None:
        """Check pack ``num``'s index in full, once (see above); ``ids``: its ids, if the
        caller has them already."""
        if self._ok[num]:
            return
        name, data = self._names[num], self._idx[num]
        n = check_index(name, data)
        if ids is None:
            ids = [data[p : p + 32] for p in range(12, 12 + n * ENTRY.size, ENTRY.size)]
        if not all(map(operator.lt, ids, islice(ids, 1, None))):  # lookups bisect it
            raise IntegrityError(name, "pack index is not sorted")
        self._ok[num] = True

    def refresh(self) -> None:
        """Pick up packs published since the index was loaded (by us or another process).

        Threads share one ObjectDB: packs are appended to the loaded lists whole, and a
        first load is marked done only once every pack listed is in, so a reader never
        misses an id of a pack loaded before it looked.
        """
        with self._lock:
            known = set(self._names)
            for key in self.backend.list(PREFIX):
                name = name_of_idx_key(key)
                if name is None or name in known or name in self._bad:
                    continue
                if self._take(name, key):
                    known.add(name)
            self._loaded = True

    def adopt_packs(self, names: Iterable[str]) -> None:
        """Load the indexes of packs named by whoever published them (a worker returning a
        step's outputs), each checked as ``refresh`` checks it, without listing the store:
        a listing grows with the store, and a client would pay for one per step. A name
        that is no pack's is ignored (``has`` then says what is missing)."""
        with self._lock:
            if not self._loaded:
                self.refresh()
                return
            known = set(self._names)
            for name in names:
                key = idx_key(name) if isinstance(name, str) and len(name) == 64 else None
                if key is None or name_of_idx_key(key) != name or name in known or name in self._bad:
                    continue
                if self._take(name, key):
                    known.add(name)

    def _take(self, name: str, key: str) -> bool:
        """Load pack ``name``'s index (key ``key``) as the last pack; False if it is gone
        or (a remote's) refused."""
        if self.backend.local:  # damage here is the user's to know about: it raises
            try:
                data = self.backend.get_mapped(key)  # a large one is not read whole
            except ObjectNotFoundError:
                return False  # repacked (or collected) since it was listed
            self._add_pack(name, data, index_count(name, data), checked=False)
            return True
        # a remote's indexes are refused, not held, past what zcas could write; a bad
        # one is skipped (and remembered), so one junk key cannot break every lookup
        room = MAX_REMOTE_INDEXES - self._remote_bytes
        try:
            data = self.backend.get_bounded(key, min(MAX_INDEX_BYTES, room))
        except ObjectNotFoundError:
            return False  # deleted since it was listed
        except IntegrityError as e:
            if room < MAX_INDEX_BYTES and self.backend.info(key).size <= MAX_INDEX_BYTES:
                raise IntegrityError(key, f"the store's pack indexes exceed {MAX_REMOTE_INDEXES} bytes "
                                     "in all") from None
            self._skip(name, key, e.reason)
            return False
        try:
            n = check_index(name, data)
            ids = [data[p : p + 32] for p in range(12, 12 + n * ENTRY.size, ENTRY.size)]
            if not all(map(operator.lt, ids, islice(ids, 1, None))):
                raise IntegrityError(name, "pack index is not sorted")
        except IntegrityError as e:
            self._skip(name, key, e.reason)
            return False
        self._add_pack(name, data, n, checked=True)
        self._remote_bytes += len(data)
        return True

    def _skip(self, name: str, key: str, reason: str) -> None:
        self._bad.add(name)
        if self.warn is not None:
            self.warn(f"pack index {key} skipped: {reason}; that pack is not read")

    def bad_indexes(self) -> set[str]:
        """Names of a remote's packs whose index was refused (see ``refresh``)."""
        return set(self._bad)

    def reload(self) -> None:
        """Forget the loaded index (packs were deleted) and read it again."""
        with self._lock:
            self._loaded = False
            self._all = None
            self._pins = {}
            self._names, self._idx, self._ok, self._extent = [], [], [], []
            self._entries = self._probes = 0
            self._remote_bytes = 0
            self._settled.clear()
            self._proven.clear()
            self.refresh()

    def _add_pack(self, name: str, data: IndexData, n: int, checked: bool) -> None:
        """Append a pack to the loaded ones (the last in load order). Its ids are read only
        if the dict of every id is built already."""
        num = len(self._names)
        self._ok.append(checked)
        self._extent.append(None)
        self._idx.append(data)
        self._names.append(name)  # last: a reader ranges over the names
        self._entries += n
        if self._all is not None:
            self._merge(self._all, num)

    def _is_small(self, num: int) -> bool:
        if (len(self._idx[num]) - 44) // ENTRY.size > _SMALL_ENTRIES:
            return False
        end = self._extent[num]
        if end is None:
            end = self._extent[num] = pack_extent(self._idx[num])
        return end < SMALL_PACK

    def _repack_due(self) -> bool:
        """Whether ``REPACK_AT`` or more loaded packs are small (read only when that many
        have few enough entries to be)."""
        few = [num for num, data in enumerate(self._idx) if (len(data) - 44) // ENTRY.size <= _SMALL_ENTRIES]
        return len(few) >= REPACK_AT and sum(map(self._is_small, few)) >= REPACK_AT

    def small_packs(self) -> list[str]:
        """Loaded packs whose records end before ``SMALL_PACK`` bytes, by name."""
        self._load()
        return sorted(self._names[num] for num in range(len(self._names)) if self._is_small(num))

    def index_bytes(self, name: str) -> IndexData:
        """The loaded (checked) index of pack ``name``."""
        self._load()
        num = self._names.index(name)
        self._check(num)
        return self._idx[num]

    def duplicates(self, among: Iterable[str] | None = None) -> set[bytes]:
        """Ids indexed in more than one loaded pack (``among``: of those, the ones in one
        of these packs)."""
        self._load()
        for num in range(len(self._idx)):
            self._check(num)
        seen: set[bytes] = set()
        dup: set[bytes] = set()
        for data in list(self._idx):
            n = (len(data) - 44) // ENTRY.size
            for oid in (data[p : p + 32] for p in range(12, 12 + n * ENTRY.size, ENTRY.size)):
                (dup if oid in seen else seen).add(oid)
        if among is None:
            return dup
        wanted = set(among)
        return {o for num, name in enumerate(list(self._names)) if name in wanted
                for o in (self._idx[num][p : p + 32] for p in range(12, len(self._idx[num]) - 32, ENTRY.size))
                if o in dup}

    def packs(self) -> set[str]:
        self._load()
        return set(self._names)

    def _entry_at(self, code: int) -> Entry:
        num, pos = code >> 32, code & 0xFFFFFFFF
        _, off, length, kind, size = ENTRY.unpack_from(self._idx[num], 12 + pos * ENTRY.size)
        return Entry(self._names[num], off, length, kind, size)

    def _code(self, oid: bytes) -> int | None:
        """The locator of the copy in use of a published id, or None."""
        code = self._pins.get(oid)
        if code is not None:
            return code
        found = self._all
        if found is not None:
            return found.get(oid)
        self._load()
        names = self._names
        self._probes += len(names)
        if self._probes * _PROBE_COST >= self._entries:  # bisecting now costs what the dict would
            return self.index.get(oid)
        idx = self._idx
        for num in range(len(names)):
            pos = find_entry(idx[num], oid)
            if pos is not None:
                if not self._ok[num]:
                    self._check(num)
                return (num << 32) | pos
        return None

    def _pin(self, oid: bytes, code: int) -> None:
        """Make the copy at ``code`` the one in use of ``oid``."""
        self._pins[oid] = code
        if self._all is not None:
            self._all[oid] = code

    def _lookup(self, oid: bytes) -> Entry | None:
        if self._prefer and oid in self._prefer and self._writer is not None:
            w = self._writer.entries.get(oid)
            if w is not None:
                return Entry("", *w)
        code = self._code(oid)
        if code is not None:
            return self._entry_at(code)
        if self._writer is not None:
            w = self._writer.entries.get(oid)
            if w is not None:
                return Entry("", *w)
        return None

    @property
    def damaged(self) -> frozenset[bytes]:
        """Ids whose every copy failed verification in this process (see ``has``)."""
        return frozenset(self._damaged)

    def mark_damaged(self, oids: Iterable[bytes]) -> None:
        """Ids another process found damaged: the next put of each writes a fresh copy."""
        with self._lock:
            self._damaged.update(oids)

    def has(self, oid: bytes) -> bool:
        if oid in self._damaged:
            return False
        return self._code(oid) is not None or (self._writer is not None and oid in self._writer.entries)

    def entry(self, oid: bytes) -> Entry:
        e = self._lookup(oid)
        if e is None:
            self.refresh()
            e = self._lookup(oid)
            if e is None:
                raise ObjectNotFoundError(oid)
        return e

    def __iter__(self) -> Iterator[bytes]:
        return iter(list(self.index))

    def __len__(self) -> int:
        return len(self.index)

    def resolve(self, text: str) -> bytes:
        """The id a user means by a full id or a unique prefix of at least 4 hex digits."""
        prefix = check_prefix(text)
        if len(prefix) == 64:
            oid = bytes.fromhex(prefix)
            self.entry(oid)
            return oid
        matches = self._matches(prefix)
        if not matches:
            self.refresh()
            matches = self._matches(prefix)
        if not matches:
            raise ObjectNotFoundError(prefix)
        if len(matches) > 1:
            raise AmbiguousIdError(prefix, len(matches))
        return matches[0]

    def _matches(self, prefix: str) -> list[bytes]:
        """Published and pending ids starting with ``prefix`` (a range bisected in each pack)."""
        lo = bytes.fromhex(prefix.ljust(64, "0"))
        hi = bytes.fromhex(prefix.ljust(64, "f"))
        self._load()
        found: set[bytes] = set()
        size = ENTRY.size
        for num in range(len(self._names)):
            data = self._idx[num]
            end = len(data) - 32
            p = 12 + lower_bound(data, lo) * size
            if p < end and data[p : p + 32] <= hi:
                self._check(num)
            while p < end and (oid := data[p : p + 32]) <= hi:
                found.add(oid)
                p += size
        pending = self._writer.entries if self._writer else {}
        found.update(o for o in pending if lo <= o <= hi)
        return sorted(found)

    # -- writing -------------------------------------------------------------------------

    def put(self, kind: int, payload, oid: bytes | None = None, size: int | None = None) -> bytes:
        """Store a payload (if absent) and return its id.

        ``oid`` and ``size`` are given only for a chunked manifest, which is stored under its
        file's id and stands for the file's size.
        """
        if oid is None:
            oid = hash_bytes(payload)
        if not self.has(oid):
            n = len(payload) if size is None else size
            codec.check_size(kind, len(payload), codec.MAX_STORED_SIZE)  # what pack readers accept
            self.put_record(oid, kind, n, codec.encode(kind, payload))
        return oid

    def put_manifest(self, oid: bytes, size: int, payload: bytes) -> None:
        """Store the manifest of a chunked file whose content hashes to ``oid``.

        Chunking is deterministic, so a copy already stored under ``oid`` must hold exactly
        this payload. One that does not (planted by a remote, or damaged) is not trusted:
        ours is stored as another copy and becomes the one the index uses (and, being the
        copy that reassembles, the one every later process picks; see ``get``)."""
        with self._lock:
            if not self.has(oid):
                self.put_record(oid, codec.KIND_CHUNKED, size, codec.encode(codec.KIND_CHUNKED, payload))
                return
            for code, e in self._copies(oid):
                try:
                    record = self.read_record(oid, e)
                    same = e.size == size and verify_record(oid, record, e.kind, e.size, trees=False) == payload
                except StoreError:
                    continue
                if same:
                    self._use(oid, code)
                    return
            if self._writer is not None and oid in self._writer.entries:
                self.flush()  # a pack holds one copy of an id: publish the other one first
            self._prefer.add(oid)
            self._settled.add(oid)
            self.put_record(oid, codec.KIND_CHUNKED, size, codec.encode(codec.KIND_CHUNKED, payload))

    def put_record(self, oid: bytes, kind: int, size: int, record: bytes) -> None:
        """Append an already-encoded record (workers encode in parallel, one thread appends)."""
        self.put_records([(oid, kind, size, record)])

    def put_records(self, items: list[tuple[bytes, int, int, bytes]]) -> None:
        with self._lock:
            healed = self._damaged.intersection(oid for oid, *_ in items)
            if healed:  # a good copy of a damaged object: the one reads use from now on
                if self._writer is not None and healed & self._writer.entries.keys():
                    self.flush()  # a pack holds one copy of an id: publish the other one first
                self._prefer.update(healed)
                self._damaged.difference_update(healed)
            if self._writer is None:
                self._writer = PackWriter(self.tmp_dir)
            self._writer.add_many(items)
            if self._writer.size >= self.max_pack_size:
                self.flush()

    def flush(self) -> str | None:
        """Publish the pack being written: pack first, index last. Returns the pack name."""
        with self._lock:
            w, self._writer = self._writer, None
            if w is None or not w.entries:
                if w is not None:
                    w.abort()
                return None
            try:
                name, idx = w.finish()
                if self._prefer & w.entries.keys() and self.backend.exists(pack_key(name)):
                    w = self._renamed(w)
                    name, idx = w.finish()
                self.backend.put_file(pack_key(name), w.path)
                self.backend.put(idx_key(name), idx)
            except BaseException:
                w.abort()
                raise
            if self._loaded and name not in self._names:
                self._add_pack(name, idx, len(w.entries), checked=True)
                num = len(self._names) - 1
                for oid in self._prefer & w.entries.keys():  # our manifest, not the one found before
                    pos = find_entry(idx, oid)
                    if pos is not None:
                        self._pin(oid, (num << 32) | pos)
            self._prefer.difference_update(w.entries.keys())
            if self.auto_repack and not self.repacking and self._repack_due():
                self.repack()
            return name

    def _renamed(self, w: PackWriter) -> PackWriter:
        """The finished pack ``w`` again, plus 32 random bytes stored as an object nothing
        names (gc removes it). Packs are named by their index: good copies of a damaged
        pack's objects, rewritten as they were, make a pack of the very name of the damaged
        one, and create-only publishing would keep the damaged file. Rare: only then."""
        with open(w.path, "rb") as f:
            data = f.read()
        items = [(oid, kind, size, data[off : off + length]) for oid, (off, length, kind, size) in w.entries.items()]
        noise = os.urandom(32)
        items.append((hash_bytes(noise), codec.KIND_BLOB, len(noise), codec.encode(codec.KIND_BLOB, noise)))
        other = PackWriter(self.tmp_dir)
        try:
            other.add_many(items)
        except BaseException:
            other.abort()
            raise
        finally:
            w.abort()
        return other

    def repack(self, min_packs: int = REPACK_AT) -> int:
        """Consolidate the small packs into one, when there are at least ``min_packs`` of
        them (see repack.py); returns how many packs were replaced."""
        from .repack import repack

        return repack(self, min_packs=min_packs).packs_removed

    def abort(self) -> None:
        """Drop everything written since the last flush (an error happened mid-command)."""
        with self._lock:
            w, self._writer = self._writer, None
            if w is not None:
                w.abort()

    def close(self) -> None:
        self.flush()
        self.backend.close()

    # -- reading -------------------------------------------------------------------------

    def read_record(self, oid: bytes, e: Entry | None = None) -> bytes:
        """The stored record of ``oid``: of the copy in use, or of copy ``e`` when given
        (then a pack deleted meanwhile raises ObjectNotFoundError: that copy is gone)."""
        if e is not None:
            return self._read_at(oid, e)
        try:
            return self._read_at(oid, self.entry(oid))
        except ObjectNotFoundError:
            # a repack or gc may have replaced its pack since the index was loaded: look again, once
            self.reload()
            return self._read_at(oid, self.entry(oid))

    def read_records(self, items: list[tuple[bytes, Entry]], into: bytearray | None = None) -> list[bytes | memoryview]:
        """The stored records of these copies, in order, as ``read_record(oid, e)`` gives
        each (nothing is verified here). On a local store, records lying back to back in
        one pack are read with one request of about ``SPAN_READ`` bytes: the chunks of a
        large file, written in file order, come a few megabytes at a time instead of one
        ~40 KiB read each. ``into``: a buffer the caller reuses; records read into it are
        views, valid until the next call given the same buffer (spans that no longer fit
        are read into bytes of their own). Elsewhere (a read cache keeps the exact ranges
        it was asked for) each record is read alone."""
        if not self.backend.local:
            return [self.read_record(oid, e) for oid, e in items]
        out: list[bytes | memoryview] = []
        used = 0  # bytes of ``into`` handed out by this call
        i, n = 0, len(items)
        while i < n:
            oid, e = items[i]
            j, end = i + 1, e.offset + e.length
            while (j < n and e.pack and items[j][1].pack == e.pack and items[j][1].offset == end
                   and end - e.offset < SPAN_READ):
                end += items[j][1].length
                j += 1
            if j == i + 1:
                out.append(self.read_record(oid, e))
                i = j
                continue
            for o, x in items[i:j]:
                check_entry(x.pack, o, x.offset, x.length, x.kind, x.size)
            length = end - e.offset
            if into is None or len(into) < used + length:
                data: bytes | memoryview = self.backend.get_range(pack_key(e.pack), e.offset, length)
                got = len(data)
            else:
                data = memoryview(into)[used : used + length]
                got = self.backend.get_range_into(pack_key(e.pack), e.offset, data)
                used += length
            if got != length:  # a truncated pack: each record says whether it is whole
                out.extend(self.read_record(o, x) for o, x in items[i:j])
            else:
                mv = memoryview(data)
                out.extend(mv[x.offset - e.offset : x.offset - e.offset + x.length] for _, x in items[i:j])
            i = j
        return out

    def _read_at(self, oid: bytes, e: Entry) -> bytes:
        if e.pack == "":
            assert self._writer is not None
            return self._writer.read(e.offset, e.length)
        check_entry(e.pack, oid, e.offset, e.length, e.kind, e.size)
        data = self.backend.get_range(pack_key(e.pack), e.offset, e.length)
        if len(data) != e.length:
            raise IntegrityError(oid, f"pack {e.pack[:12]} is truncated")
        return data

    def get(self, oid: bytes) -> tuple[int, bytes]:
        """(kind, payload), verified: a chunked manifest's chunks are checked on assembly."""
        e, record, payload = self.verified(oid)
        if e.kind == codec.KIND_CHUNKED and oid not in self._settled:
            e, record, payload = self._reassembling(oid, e, record, payload)
        return e.kind, payload

    def prove(self, oid: bytes) -> bytes:
        """The manifest in use of chunked ``oid``, once its chunks have been reassembled and
        hashed to ``oid`` (once per process, as ``get`` settles rival copies; a single copy
        is otherwise never reassembled by ``get``). IntegrityError if they do not: a ranged
        reader calls this before handing out bytes it could not otherwise tie to the id."""
        kind, payload = self.get(oid)
        if kind != codec.KIND_CHUNKED or oid in self._proven:
            return payload
        from .chunking import iter_content

        for _ in iter_content(self, oid, payload):  # parallel; raises at the end on a mismatch
            pass
        self._proven.add(oid)
        return payload

    def _copies(self, oid: bytes) -> list[tuple[int | None, Entry]]:
        """(locator, entry) of every copy of ``oid``: the one in use first, then the other
        loaded packs' in load order, then one being written (locator None)."""
        first = self._code(oid)
        codes = [] if first is None else [first]
        for num in range(len(self._names)):
            pos = find_entry(self._idx[num], oid)
            if pos is not None and (num << 32) | pos != first:
                self._check(num)
                codes.append((num << 32) | pos)
        out: list[tuple[int | None, Entry]] = [(c, self._entry_at(c)) for c in codes]
        w = self._writer.entries.get(oid) if self._writer is not None else None
        if w is not None:
            out.insert(0 if oid in self._prefer else len(out), (None, Entry("", *w)))
        return out

    def _use(self, oid: bytes, code: int | None) -> None:
        """Make the copy at ``code`` (None: the one being written) the one reads use."""
        if code is None:
            self._prefer.add(oid)
        else:
            self._prefer.discard(oid)
            self._pin(oid, code)
        self._settled.add(oid)

    def _reassembling(self, oid: bytes, e: Entry, record: bytes, payload: bytes) -> tuple[Entry, bytes, bytes]:
        """A manifest with several copies: the first copy whose chunks reassemble to ``oid``
        (read and hashed once per process), which the index then points at. With a single
        copy, or none that reassembles, the copy in hand is returned (readers hash what they
        assemble and raise on a mismatch)."""
        from .chunking import reassembles

        copies = self._copies(oid)
        if len(copies) > 1:
            for code, c in copies:
                try:
                    rec = record if c == e else self.read_record(oid, c)
                    pay = payload if c == e else verify_record(oid, rec, c.kind, c.size, trees=False)
                except StoreError:
                    continue
                if c.kind == codec.KIND_CHUNKED and reassembles(self, oid, pay, c.size):
                    self._use(oid, code)
                    self._proven.add(oid)
                    return c, rec, pay
        self._settled.add(oid)
        return e, record, payload

    def verified(self, oid: bytes) -> tuple[Entry, bytes, bytes]:
        """(entry, record, payload) of a copy of ``oid`` that verifies (see the module doc).

        Trees are hashed here and decoded by their readers; a manifest's total must match
        the size its index entry records."""
        e = self.entry(oid)
        try:
            try:
                record = self.read_record(oid, e)
            except ObjectNotFoundError:  # its pack was repacked away since the index was loaded
                self.reload()
                e = self.entry(oid)
                record = self.read_record(oid, e)
            return e, record, verify_record(oid, record, e.kind, e.size, trees=False)
        except IntegrityError as first:
            found = self._other_copy(oid, e.pack)
            if found is None:
                self._damaged.add(oid)
                raise first from None
            return found

    def _other_copy(self, oid: bytes, bad: str) -> tuple[Entry, bytes, bytes] | None:
        """The first copy of ``oid`` in another loaded pack that verifies; the index then
        points at it, so later reads (and gc, which keeps the index's choice) use it."""
        self._load()
        for num in range(len(self._names)):
            if self._names[num] == bad:
                continue
            pos = find_entry(self._idx[num], oid)
            if pos is None:
                continue
            self._check(num)
            code = (num << 32) | pos
            e = self._entry_at(code)
            try:
                record = self.read_record(oid, e)
                payload = verify_record(oid, record, e.kind, e.size, trees=False)
            except StoreError:  # corrupt too (IntegrityError), or its pack is gone
                continue
            self._pin(oid, code)
            return e, record, payload
        return None

    def get_bytes(self, oid: bytes) -> bytes:
        """A blob's or large file's whole content, verified against its id."""
        kind, payload = self.get(oid)
        if kind != codec.KIND_CHUNKED:
            return payload
        from .chunking import assemble

        return assemble(self, oid, payload)

    def iter_entries(self) -> Iterable[tuple[bytes, Entry]]:
        return [(oid, self._entry_at(code)) for oid, code in self.index.items()]

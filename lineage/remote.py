"""Lineage on a remote: run records travel in segments, objects the pushes write.

A segment is run records, each an 8-byte little-endian length and the record's canonical
bytes, stored with the object codec (zstd) under ``lineage/t-<time>-<BLAKE3 of the payload>``
(``lineage.segments``: names that sort by time, so a pull lists only what is new).
Pulling fetches the segments not seen before, checks each and indexes its records, so
``zcas log`` shows a colleague's runs with their host and user in their provenance. (A
cache lookup does not need this: it asks the action cache, ``lineage.actions``.)

A remote is untrusted input. A segment is read only if it is at most ``MAX_SEGMENT`` bytes
(decoded), is a record object that decodes, hashes to its name and is framed exactly; else
it is skipped whole, with one warning naming it. In a good segment each record must decode
strictly (``serde``), be a run, and, if it has a cache key, have the key its components
hash to (``keyhash.key_of``); a record that fails is skipped, the others are indexed, and
one warning per segment says how many were skipped and why. A skipped segment, or a segment
with skipped records, is remembered (``rejected-<hash of its key>`` in the state folder,
holding the reason), so the warning is not repeated on every pull; deleting those files
makes zcas look again. A segment holding records of a newer schema than this zcas knows is
not remembered: its warning ("upgrade zcas") repeats, and an upgraded zcas reads it.

Pushing never sends a record that holds an environment value in the clear (a record of an
older zcas: its bytes cannot change without changing its id), nor one a remote would refuse.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import attrs

from zcas.cas import codec
from zcas.cas.errors import IntegrityError, ObjectNotFoundError, ZcasError
from zcas.cas.oid import hash_bytes
from zcas.cas.safetext import printable

from . import segments

if TYPE_CHECKING:
    from zcas.cas.backend import Backend

    from .store import Lineage

PREFIX = "lineage/"
MAX_SEGMENT = 256 << 20  # decoded bytes of one segment
SEGMENT_TARGET = 64 << 20  # a push starts another segment once one holds this many bytes
_BATCH_RECORDS = 2000  # records decoded and indexed at a time (bounds memory in a big segment)
_BATCH_BYTES = 16 << 20
_REJECTED = "rejected-"
_PREFETCH = 8  # segments fetched ahead while the one before is checked and indexed
_PREFETCH_MAX = 16 << 20  # a larger one is fetched when its turn comes (what is held ahead stays bounded)
_GONE = object()  # what _fetch_small gives for a segment deleted since it was listed

Warn = Callable[[str], None]


class SegmentError(ZcasError):
    """A whole segment is unusable (the message says why, in one line)."""


def default_warn(message: str) -> None:
    print(f"zcas: warning: {printable(message)}", file=sys.stderr, flush=True)


def _escaped(warn: Warn) -> Warn:
    """``warn`` given text fit for a terminal: whatever the callback, names from a remote
    reach it with their control characters shown as escapes."""
    return lambda message: warn(printable(message))


def _seg_key(payload: bytes, time_ns: int | None = None) -> str:
    return PREFIX + segments.new_name(hash_bytes(payload).hex(), time_ns)


def _pack(records: list[bytes]) -> bytes:
    return b"".join(len(r).to_bytes(8, "little") + r for r in records)


def _frames(payload: bytes | memoryview) -> Iterator[tuple[int, int]]:
    """(start, end) of each record in ``payload``; SegmentError where the framing is wrong."""
    from .serde import MAX_RECORD

    pos, n = 0, len(payload)
    while pos < n:
        if n - pos < 8:
            raise SegmentError(f"truncated length prefix at byte {pos}")
        size = int.from_bytes(payload[pos : pos + 8], "little")
        if size > MAX_RECORD:
            raise SegmentError(f"record at byte {pos} claims {size} bytes, more than the limit {MAX_RECORD}")
        if size > n - pos - 8:
            raise SegmentError(f"record at byte {pos} claims {size} bytes, past the end of the segment")
        yield pos + 8, pos + 8 + size
        pos += 8 + size


def _unpack(payload: bytes | memoryview) -> list[bytes]:
    """The records of a segment payload (SegmentError if its framing is wrong)."""
    return [bytes(payload[a:b]) for a, b in list(_frames(payload))]


def check_run_record(data: bytes) -> dict:
    """The unstructured run of ``data``, if lineage may index it from a remote: it decodes
    strictly, is a run, and its cache key (if any) is the hash of its key components.
    RecordError otherwise."""
    from . import serde
    from .graph import key_matches
    from .records import Run

    rec = serde.decode(data)
    if not isinstance(rec, Run):
        raise serde.RecordError("not a run record")
    d = serde.unstructure(rec)
    if rec.cache_key and not key_matches(d):
        raise serde.RecordError(f"cache key {rec.cache_key[:12]} does not match its key components")
    return d


def secret_run_ids(lineage: Lineage) -> set[bytes]:
    """Ids of the local run records holding an environment value in the clear (written by an
    older zcas). They must never reach a remote: ``RemoteLineage.push`` leaves them out, and a
    push that copies whole packs (they are objects in them) must leave these objects out too."""
    import json

    from .redact import plaintext_env

    graph = lineage.graph
    out: set[bytes] = set()
    for rid in graph.all_run_ids():
        data = graph.run_bytes(rid)
        try:
            rec = json.loads(data) if data is not None else None
        except ValueError:
            continue
        if isinstance(rec, dict) and plaintext_env(rec):
            out.add(rid)
    return out


@attrs.define
class Unpushed:
    """What a push of lineage would send: (id, canonical bytes) of each run, and how many
    local records stay here (``plaintext_env``: an older zcas's, holding env values;
    ``refused``: they do not validate)."""

    records: list[tuple[bytes, bytes]] = attrs.Factory(list)
    plaintext_env: int = 0
    refused: int = 0


class _Indexer:
    """Records pulled from many segments, indexed together (one local pack and one index
    transaction per batch, not per segment: a first pull of 10,000 small segments would
    otherwise write 10,000 packs). A segment is marked seen only once every record of it is
    indexed, so a crash between leaves it to be read again, never half-taken."""

    def __init__(self, remote: RemoteLineage) -> None:
        self.remote = remote
        self.batch: list[tuple[bytes, dict, bytes]] = []
        self.pending: set[bytes] = set()
        self.bytes = 0
        self.marks: list[tuple[str, str, list[bytes], str | None]] = []
        self.new = 0

    def add(self, rid: bytes, rec: dict, data: bytes) -> None:
        self.batch.append((rid, rec, data))
        self.pending.add(rid)
        self.bytes += len(data)
        if len(self.batch) >= _BATCH_RECORDS or self.bytes >= _BATCH_BYTES:
            self.flush()

    def mark(self, key: str, name: str, ids: list[bytes], rejected: str | None) -> None:
        self.marks.append((key, name, ids, rejected))

    def flush(self) -> None:
        self.new += self.remote._index(self.batch)
        for key, name, ids, rejected in self.marks:
            self.remote._mark(name, ids)
            if rejected:
                self.remote._reject(key, rejected)
        self.batch, self.pending, self.bytes, self.marks = [], set(), 0, []


def _rejected_name(key: str) -> str:
    return _REJECTED + hash_bytes(key.encode("utf-8", "surrogateescape")).hex()


class RemoteLineage:
    def __init__(self, lineage: Lineage, backend: Backend, state_dir: str, warn: Warn | None = None) -> None:
        self.lineage = lineage
        self.backend = backend
        self.state_dir = state_dir  # which segments this repository has already seen
        self.warn = warn or default_warn
        self.last_push_skipped: dict[str, int] = {"plaintext_env": 0, "refused": 0}
        os.makedirs(state_dir, exist_ok=True)
        self.cursor = segments.Cursor(os.path.join(os.path.dirname(state_dir), "lineage-cursor"))

    # -- what this repository remembers of the remote ----------------------------------------

    def _seen(self) -> set[str]:
        return set(os.listdir(self.state_dir))

    def _write_state(self, name: str, data: bytes) -> None:
        path = os.path.join(self.state_dir, name)
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)

    def _mark(self, name: str, run_ids: list[bytes]) -> None:
        self._write_state(name, b"".join(run_ids))

    def _reject(self, key: str, reason: str) -> None:
        self._write_state(_rejected_name(key), (printable(key) + "\n" + printable(reason) + "\n").encode())

    def remote_run_ids(self) -> set[bytes]:
        self.pull()
        out: set[bytes] = set()
        for name in self._seen():
            if segments.parse(name) is None:
                continue
            with open(os.path.join(self.state_dir, name), "rb") as f:
                data = f.read()
            out.update(data[i : i + 32] for i in range(0, len(data) - 31, 32))
        return out

    # -- push --------------------------------------------------------------------------------

    def unpushed(self) -> Unpushed:
        """The shareable local run records the remote does not have, in the order a push
        sends them. A record holding an environment value in the clear (written by an older
        zcas), or one a remote would refuse, is left out and counted."""
        from .redact import plaintext_env
        from .serde import RecordError

        have = self.remote_run_ids()
        graph = self.lineage.graph
        out = Unpushed()
        for rid in graph.all_run_ids():
            if rid in have:
                continue
            data = graph.run_bytes(rid)
            if data is None:
                continue
            try:
                rec = check_run_record(data)
            except RecordError:
                out.refused += 1
                continue
            if plaintext_env(rec):
                out.plaintext_env += 1
                continue
            out.records.append((rid, data))
        return out

    def push(self, warn: Warn | None = None, pending: Unpushed | None = None) -> int:
        """Send ``pending`` (default: ``unpushed()``); returns how many records were sent.
        One warning per kind of record left out says so (``last_push_skipped`` counts them).
        Records go in segments of about SEGMENT_TARGET bytes."""
        warn = _escaped(warn or self.warn)
        pending = pending if pending is not None else self.unpushed()
        sent = 0
        records: list[bytes] = []
        ids: list[bytes] = []
        size = 0
        for rid, data in pending.records:
            records.append(data)
            ids.append(rid)
            size += 8 + len(data)
            if size >= SEGMENT_TARGET:
                self._send(records, ids)
                sent += len(ids)
                records, ids, size = [], [], 0
        if records:
            self._send(records, ids)
            sent += len(ids)
        plain, refused = pending.plaintext_env, pending.refused
        self.last_push_skipped = {"plaintext_env": plain, "refused": refused}
        if plain:
            warn(f"{plain} run record{'s' if plain != 1 else ''} not pushed: written by an older zcas, they hold "
                 "environment variable values in the clear; run those steps again to share their results")
        if refused:
            warn(f"{refused} run record{'s' if refused != 1 else ''} not pushed: they do not validate "
                 "(a cache key that does not match its components, or a malformed field)")
        return sent

    def _send(self, records: list[bytes], ids: list[bytes], time_ns: int | None = None) -> str:
        payload = _pack(records)
        key = _seg_key(payload, time_ns)
        self.backend.put(key, codec.encode(codec.KIND_RECORD, payload))
        self._mark(key[len(PREFIX) :], ids)
        return key

    # -- pull --------------------------------------------------------------------------------

    def pull(self, warn: Warn | None = None, full: bool = False) -> int:
        """Fetch and index the segments not seen yet; returns how many runs were new here.

        Only segments named after this repository's cursor (less the clock-skew margin)
        are listed (``lineage.segments``); ``full`` lists them all. Malformed segments and
        records are skipped with a warning (see the module's doc); only a failure to reach
        the remote is an error.
        """
        warn = _escaped(warn or self.warn)
        seen = self._seen()
        todo = []
        for key in segments.listed(self.backend, PREFIX, None if full else self.cursor.get()):
            name = key[len(PREFIX) :]
            if not key.startswith(PREFIX) or name in seen or _rejected_name(key) in seen:
                continue
            parsed = segments.parse(name)
            if parsed is not None or name.startswith(("seg-", "t-")):  # (one like a segment's is refused below, once)
                todo.append((key, name, parsed[0] if parsed else None))
        ix = _Indexer(self)
        latest = held = None  # the newest segment time taken, the oldest left to read again
        with ThreadPoolExecutor(max_workers=_PREFETCH, thread_name_prefix="zcas-lineage") as ex:
            ahead: deque = deque()
            for i, (key, name, t) in enumerate(todo):
                while len(ahead) <= _PREFETCH and i + len(ahead) < len(todo):  # requests run while we index
                    ahead.append(ex.submit(self._fetch_small, todo[i + len(ahead)][0]))
                data = ahead.popleft().result()
                try:
                    done = self._pull_segment(key, name, warn, ix, data)
                except SegmentError as e:
                    self._reject(key, str(e))
                    warn(f"remote lineage segment {key} skipped: {e}")
                    done = True
                if t is not None:
                    if not done:  # to be read again (records of a newer zcas): the cursor stays before it
                        held = t if held is None else min(held, t)
                    else:
                        latest = t if latest is None else max(latest, t)
        ix.flush()
        if latest is not None:
            self.cursor.advance(latest if held is None else min(latest, held - 1))
        return ix.new

    def _fetch_small(self, key: str) -> bytes | object | None:
        """The stored bytes of a segment of at most _PREFETCH_MAX bytes (_GONE if it was
        deleted); None for a larger one, fetched when its turn comes, so what is held ahead
        stays bounded whatever a remote claims. (A name that does not parse is never asked
        for: ``_read_segment`` refuses it.)"""
        if segments.parse(key[len(PREFIX) :]) is None:
            return None
        try:
            size = self.backend.info(key).size
            if size > min(_PREFETCH_MAX, MAX_SEGMENT + codec.HEADER_SIZE):
                return None  # (one over the limit is refused, unread, when its turn comes)
            return self.backend.get_range(key, 0, size) if size else b""
        except ObjectNotFoundError:
            return _GONE

    def _read_segment(self, key: str, name: str, data: bytes | object | None = None) -> memoryview | None:
        """The checked payload of segment ``key`` (None if it vanished meanwhile); ``data``:
        its bytes, fetched ahead (``_fetch_small``)."""
        parsed = segments.parse(name)
        if parsed is None:
            raise SegmentError("its name is not t-<16 hex digits>-<64 hex digits>")
        limit = MAX_SEGMENT + codec.HEADER_SIZE
        if data is _GONE:
            return None
        if not isinstance(data, bytes):
            try:
                size = self.backend.info(key).size
                if size > limit:
                    raise SegmentError(f"it is {size} bytes, more than the limit {MAX_SEGMENT}")
                data = self.backend.get_range(key, 0, size) if size else b""
            except ObjectNotFoundError:
                return None
        if len(data) > limit:
            raise SegmentError(f"it is {len(data)} bytes, more than the limit {MAX_SEGMENT}")
        try:
            kind, _, raw_size = codec.read_header(key, data)
            if kind != codec.KIND_RECORD:
                raise SegmentError(f"it is a {codec.KINDS[kind]} object, not a record object")
            if raw_size > MAX_SEGMENT:
                raise SegmentError(f"it declares {raw_size} bytes, more than the limit {MAX_SEGMENT}")
            _, payload = codec.decode(key, data)
        except IntegrityError as e:
            raise SegmentError(f"it does not decode: {e.reason}") from None
        del data  # at most one copy of a large segment in memory
        if hash_bytes(payload).hex() != parsed[1]:
            raise SegmentError("its content does not match its name")
        return memoryview(payload)

    def _pull_segment(self, key: str, name: str, warn: Warn, ix: _Indexer,
                      data: bytes | object | None = None) -> bool:
        """Check a segment and hand its new records to ``ix``; whether the segment is done
        with (False while it must be read again, as when it holds records only a newer zcas
        reads). ``ix`` marks it seen once its records are indexed."""
        from .serde import NewerRecordError, RecordError

        payload = self._read_segment(key, name, data)
        if payload is None:
            return True  # deleted since it was listed (folded by a gc): nothing to remember
        total = sum(1 for _ in _frames(payload))  # the whole framing is checked before anything is indexed
        graph = self.lineage.graph
        ids: list[bytes] = []
        known: set[bytes] = set()
        rejected = newer = 0
        first = ""
        for a, b in _frames(payload):
            data = bytes(payload[a:b])
            rid = hash_bytes(data)
            if rid in known:
                continue
            if rid in ix.pending or graph.has_run(rid):  # indexed (or about to be): it passed these checks
                known.add(rid)
                ids.append(rid)
                continue
            try:
                rec = check_run_record(data)
            except NewerRecordError:
                newer += 1
                continue
            except RecordError as e:
                rejected += 1
                first = first or str(e)
                continue
            known.add(rid)
            ids.append(rid)
            ix.add(rid, rec, data)
        reason = None
        if rejected:
            reason = f"{rejected} of {total} run record{'s' if total != 1 else ''} skipped (first: {first})"
            warn(f"remote lineage segment {key}: {reason}")
        if newer:  # not remembered: a newer zcas will read them, so the segment is read again
            warn(f"remote lineage segment {key}: {newer} run record{'s need' if newer != 1 else ' needs'} a newer "
                 "zcas; upgrade zcas to use them")
            return False
        ix.mark(key, name, ids, reason)
        return True

    # -- what gc over the remote reads and rewrites -------------------------------------------

    def records(self) -> tuple[list[str], dict[bytes, tuple[bytes, dict]], int]:
        """(segment keys, every run record on the remote by id (its bytes, and as a dict),
        records skipped as malformed), each record checked as a pull checks it. A segment that does not read, or a record of
        a newer schema, raises SegmentError: what it names is unknown, so gc must not act."""
        from .serde import NewerRecordError, RecordError

        keys: list[str] = []
        out: dict[bytes, tuple[bytes, dict]] = {}
        bad = 0
        for key in self.backend.list(PREFIX):
            name = key[len(PREFIX) :]
            if segments.parse(name) is None:
                continue
            try:
                payload = self._read_segment(key, name)
            except SegmentError as e:
                raise SegmentError(f"remote lineage segment {key}: {e}") from None
            if payload is None:
                continue
            keys.append(key)
            for a, b in list(_frames(payload)):
                data = bytes(payload[a:b])
                rid = hash_bytes(data)
                if rid in out:
                    continue
                try:
                    out[rid] = (data, check_run_record(data))
                except NewerRecordError:
                    raise SegmentError(f"remote lineage segment {key} holds records of a newer zcas; "
                                       "upgrade zcas to collect this remote") from None
                except RecordError:
                    bad += 1  # never indexed by anyone: it names nothing
        return keys, out, bad

    def compact(self, old: list[str], keep: dict[bytes, bytes]) -> int:
        """Fold the segments ``old`` into as few as hold ``keep`` (new ones first, then the
        old deleted: a crash between leaves records twice, which readers skip); returns how
        many segments were removed. The new segments are marked seen here, and named with
        the newest time of those they fold, so a repository that has seen those does not
        list them again."""
        times = [p[0] for k in old if (p := segments.parse(k[len(PREFIX) :])) is not None and p[0] is not None]
        when = max(times, default=0)
        new: set[str] = set()
        records: list[bytes] = []
        ids: list[bytes] = []
        size = 0
        for rid, data in keep.items():
            records.append(data)
            ids.append(rid)
            size += 8 + len(data)
            if size >= SEGMENT_TARGET:
                new.add(self._send(records, ids, when))
                records, ids, size = [], [], 0
        if records:
            new.add(self._send(records, ids, when))
        gone = [k for k in old if k not in new]
        for key in gone:
            self.backend.delete(key)
        return len(gone)

    def _index(self, batch: list[tuple[bytes, dict, bytes]]) -> int:
        """Store records as local objects (reindex finds them), then index them."""
        if not batch:
            return 0
        db = self.lineage.repo.db
        for rid, _, data in batch:
            db.put(codec.KIND_RECORD, data, oid=rid)
        db.flush()
        self.lineage.index_runs(batch)
        return len(batch)

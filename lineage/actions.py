"""The action cache on a remote: one small object per cache key, so that "has anyone
computed this key?" is one GET, whatever the size of the remote's history.

``ac/<cache key, 64 hex>`` holds a codec record (kind 4) whose payload is JSON:
``{"v": 1, "run": <the run record's canonical text>, "where": {id: [pack, offset, length,
kind, size]}, "then": [{"key": <cache key>, "run": ..., "where": {...}}, ...]}``. ``where``
says where the objects a hit needs (the run's outputs and what they reach, up to
``MAX_WHERE`` of them) sit in the remote's packs, so fetching them is a few ranged GETs
rather than loading every pack index of the remote. ``then`` (optional, up to ``MAX_THEN``)
holds the entries of runs pushed with this one that used its outputs, and theirs in turn:
the keys a pipeline reaches next once this one hits, so a chain of hits is one GET rather
than one per step.

Entries are written create-only by push, after the objects and the lineage segments: the
first run pushed for a key stays. Every run of one key is the same result by the cache's
own rule, and keeping the first needs no read-modify-write, so concurrent pushes of one
key cannot clobber each other (one creates it, the others find it there). ``gc --remote``
deletes an entry whose run it forgot, and writes one for a kept run of that key.

Read as untrusted input, like every remote read: the entry must be at most ``MAX_ENTRY``
bytes, decode, hold a run record that validates strictly (``remote.check_run_record``:
a run, its key the hash of its components) and whose cache key is the key asked for. Its
``where`` hints are only hints: each fetched record is verified against its id, and a
hint that is wrong, or missing, falls back to the remote's pack indexes. Anything else
makes the entry no hit (the step runs), never an error. Each entry in ``then`` is checked
by the same rules against the key it names, and one that fails is dropped: it is worth no
more than the entry a GET of that key would give, which the remote writes as it likes too.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any, NamedTuple

from zcas.cas import codec
from zcas.cas.oid import hash_bytes
from zcas.cas.pack import Entry

from .remote import check_run_record
from .serde import MAX_RECORD, RecordError

if TYPE_CHECKING:
    from zcas.cas.backend import Backend

PREFIX = "ac/"
MAX_WHERE = 4096  # objects located per entry (a hit needing more reads the pack indexes)
MAX_THEN = 64  # entries of downstream runs carried in one entry
THEN_WHERE = 64  # objects located per carried entry
THEN_BYTES = 1 << 20  # run records carried in one entry, in all
MAX_ENTRY = 2 * MAX_RECORD + MAX_WHERE * 128 + 2 * THEN_BYTES + MAX_THEN * THEN_WHERE * 128 + codec.HEADER_SIZE
_HEX64 = re.compile(r"[0-9a-f]{64}")


def entry_key(cache_key: str) -> str:
    return f"{PREFIX}{cache_key}"


class Then(NamedTuple):
    """The entry of a run downstream, carried in another's entry (``then``; its first
    ``THEN_WHERE`` hints are written)."""

    key: str
    record: bytes
    where: dict[bytes, Entry]


class Found(NamedTuple):
    run_id: bytes
    record: dict[str, Any]
    raw: bytes
    where: dict[bytes, Entry]
    then: list[tuple[str, bytes, dict[str, Any], bytes, dict[bytes, Entry]]]  # (key, run id, record, raw, where), checked


def _hints(where: dict[bytes, Entry]) -> dict[str, list]:
    return {o.hex(): [e.pack, e.offset, e.length, e.kind, e.size] for o, e in where.items()}


def encode(record: bytes, where: dict[bytes, Entry], then: list[Then] | tuple[Then, ...] = ()) -> bytes:
    body: dict[str, Any] = {"v": 1, "run": record.decode("utf-8"), "where": _hints(where)}
    if then:
        body["then"] = [{"key": t.key, "run": t.record.decode("utf-8"),
                         "where": _hints(dict(list(t.where.items())[:THEN_WHERE]))} for t in then]
    return codec.encode(codec.KIND_RECORD, json.dumps(body, separators=(",", ":")).encode())


def decode(cache_key: str, data: bytes) -> tuple[bytes, dict[str, Any], bytes, dict[bytes, Entry]]:
    """(run id, run record, its canonical bytes, where hints) of an entry read for
    ``cache_key``; RecordError if it is not one to use."""
    found = decode_all(cache_key, data)
    return found.run_id, found.record, found.raw, found.where


def decode_all(cache_key: str, data: bytes) -> Found:
    """``decode``, and the entries carried in ``then`` that check (the others dropped)."""
    from zcas.cas.errors import ZcasError

    try:
        kind, how, raw_size = codec.read_header(entry_key(cache_key), data)
    except ZcasError as e:
        raise RecordError(f"action cache entry does not decode: {e}") from None
    if raw_size > MAX_ENTRY:  # (a small object may claim to inflate to far more)
        raise RecordError(f"action cache entry inflates to {raw_size} bytes, over {MAX_ENTRY}")
    try:
        payload = codec.decode_body(entry_key(cache_key), how, raw_size, data)
    except ZcasError as e:
        raise RecordError(f"action cache entry does not decode: {e}") from None
    if kind != codec.KIND_RECORD:
        raise RecordError("action cache entry is not a record object")
    try:
        body = json.loads(payload)
    except ValueError:
        raise RecordError("action cache entry is not JSON") from None
    if not isinstance(body, dict) or body.get("v") != 1 or not isinstance(body.get("run"), str):
        raise RecordError("action cache entry has no run record")
    raw = body["run"].encode("utf-8")
    rec = _checked(cache_key, raw)
    return Found(hash_bytes(raw), rec, raw, _where(body.get("where")), _then(body.get("then"), cache_key))


def _checked(cache_key: str, raw: bytes) -> dict[str, Any]:
    rec = check_run_record(raw)
    if rec.get("cache_key") != cache_key:
        raise RecordError("action cache entry holds the run of another cache key")
    if rec.get("status") not in ("ran", "cached"):
        raise RecordError("action cache entry holds a run that did not succeed")
    return rec


def _then(items: object, cache_key: str) -> list[tuple[str, bytes, dict[str, Any], bytes, dict[bytes, Entry]]]:
    out: list[tuple[str, bytes, dict[str, Any], bytes, dict[bytes, Entry]]] = []
    if not isinstance(items, list):
        return out
    size = 0
    for item in items[:MAX_THEN]:
        if not (isinstance(item, dict) and isinstance(item.get("key"), str) and _HEX64.fullmatch(item["key"])
                and item["key"] != cache_key and isinstance(item.get("run"), str)):
            continue
        raw = item["run"].encode("utf-8")
        size += len(raw)
        if size > THEN_BYTES:  # what a push writes, at most: the rest is not kept
            break
        try:
            rec = _checked(item["key"], raw)
        except RecordError:
            continue
        out.append((item["key"], hash_bytes(raw), rec, raw, _where(item.get("where"), THEN_WHERE)))
    return out


def _where(hints: object, limit: int = MAX_WHERE) -> dict[bytes, Entry]:
    """The well-formed hints (a malformed one is dropped: it only costs a fallback)."""
    out: dict[bytes, Entry] = {}
    if not isinstance(hints, dict):
        return out
    for oid, e in list(hints.items())[:limit]:
        if not (isinstance(oid, str) and _HEX64.fullmatch(oid) and isinstance(e, list) and len(e) == 5):
            continue
        pack, off, length, kind, size = e
        if not (isinstance(pack, str) and _HEX64.fullmatch(pack)):
            continue
        if not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 1 << 48 for x in (off, length, kind, size)):
            continue
        out[bytes.fromhex(oid)] = Entry(pack, off, length, kind, size)
    return out


def locate(db: Any, outputs: list[bytes], packs: set[str] | None = None) -> dict[bytes, Entry]:
    """Where ``outputs``, and what they reach, sit in ``db``'s packs (only packs named in
    ``packs``, when given: those a remote holds under the same name); outputs first, at most
    ``MAX_WHERE``. An object ``db`` lacks is left out."""
    from zcas.cas.errors import ZcasError
    from zcas.cas.reach import walk

    live, _ = walk(db, outputs)
    out: dict[bytes, Entry] = {}
    for o in [*outputs, *sorted(live.difference(outputs))]:
        if len(out) >= MAX_WHERE:
            break
        try:
            e = db.entry(o)
        except ZcasError:
            continue
        if e.pack and (packs is None or e.pack in packs):
            out[o] = e
    return out


def put(backend: Backend, cache_key: str, record: bytes, where: dict[bytes, Entry],
        then: list[Then] | tuple[Then, ...] = ()) -> bool:
    """Create the entry for ``cache_key`` unless one exists (True: this call made it)."""
    return backend.put(entry_key(cache_key), encode(record, where, then))


def downstream(runs: list[tuple[str, dict[str, Any]]]) -> list[list[int]]:
    """For each of ``runs`` ((cache key, record), pushed together), the runs among them that
    used its outputs, then theirs, breadth first: what ``then`` carries (at most
    ``MAX_THEN``, and ``THEN_BYTES`` of records, counted by the caller)."""
    used_by: dict[str, list[int]] = {}
    for j, (_, rec) in enumerate(runs):
        inputs = rec.get("inputs")
        for oid in dict.fromkeys(inputs.values() if isinstance(inputs, dict) else ()):
            if isinstance(oid, str):
                used_by.setdefault(oid, []).append(j)
    out = []
    for i, (key, _) in enumerate(runs):
        seen, frontier = {i}, [i]
        order: list[int] = []
        while frontier and len(order) < MAX_THEN:
            nxt = []
            for f in frontier:
                outputs = runs[f][1].get("outputs")
                for oid in outputs.values() if isinstance(outputs, dict) else ():
                    for j in used_by.get(oid, ()) if isinstance(oid, str) else ():
                        if len(order) >= MAX_THEN:
                            break
                        if j not in seen and runs[j][0] != key:
                            seen.add(j)
                            order.append(j)
                            nxt.append(j)
            frontier = nxt
        out.append(order)
    return out


def get(backend: Backend, cache_key: str) -> bytes | None:
    """The entry's bytes (None: none). A store failure raises (the caller decides)."""
    from zcas.cas.errors import ObjectNotFoundError

    try:
        return backend.get_bounded(entry_key(cache_key), MAX_ENTRY)
    except ObjectNotFoundError:
        return None


def keys(backend: Backend) -> list[str]:
    """The cache keys that have an entry (for gc)."""
    return [k[len(PREFIX) :] for k in backend.list(PREFIX) if _HEX64.fullmatch(k[len(PREFIX) :])]

"""The lineage graph in LMDB: the only module that imports lmdb.

Sub-databases, keys raw bytes (ids are 32 raw bytes, never hex):

| db | key | value |
| --- | --- | --- |
| runs | run id | canonical record bytes |
| cache | cache key | run id (the latest successful run whose key is the hash of its key components) |
| produced | artifact id | run id (dupsort: every run that wrote it) |
| consumed | artifact id | run id (dupsort) |
| paths | blake3(path)[:16] + time_ns (8, big-endian) | id, run id (or zeros), kind byte, path |
| tags | tag name | id |
| time | started_ns (8, big-endian) + run id | (empty) |
| steps | blake3(step name)[:16] | run id of the step's latest successful run |
| exps | blake3(step name)[:16] + started_ns (8, big-endian) + run id | the run's comparison row (``exp_row``) |
| cols | blake3(marshal of a tuple of column names)[:16] | that tuple: the names of a row's params or metrics |

The map grows by itself: a write that fills it doubles the map and retries, and a process
that finds the map grown by another adopts the new size. Readers never block the writer
(LMDB's MVCC); writers in several processes take turns on LMDB's lock. Everything here can
be rebuilt from the object store and the refs files (``reindex``).
"""

from __future__ import annotations

import json
import marshal
import os
import struct
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import lmdb

from zcas.cas.errors import ZcasError
from zcas.cas.oid import hash_bytes
from zcas.cas.refs import Forgotten

from .keyhash import key_of

if TYPE_CHECKING:
    from .records import PathVersion

    Txn = lmdb.Transaction[bytes]  # opened without buffers=True: values are bytes

T = TypeVar("T")
DBS = ("runs", "cache", "produced", "consumed", "paths", "tags", "time", "steps", "meta", "exps", "cols")
# The exps database holds a row for every indexed run, in the form ``exp_row`` writes (v3:
# names apart from values; an index with rows of an older form gets them again on open).
EXPS_MARK = b"exps-v3"
# The mark a zcas of the v2 form sets. Writing v3 rows removes it, so that zcas rebuilds its
# own rows if it opens the index again, and finding it back means rows of that form again.
EXPS_MARK_V2 = b"exps-v2"
DUPS = {"produced", "consumed"}
_INITIAL_MAP = 64 << 20
_BE = struct.Struct(">Q")
ZERO = b"\0" * 32
MAX_KEY = 511  # LMDB's default maximum key size, in bytes
# The kind byte of a path version (records.PATH_KINDS; records, and attrs with them, are
# imported only where a record is made: reading rows and ids needs neither).
_KINDS = {"file": 1, "tree": 2, "link": 3}
_KIND_NAMES = {v: k for k, v in _KINDS.items()}


class LineageStoreError(ZcasError):
    pass


def _open_env(path: str) -> tuple[lmdb.Environment, dict[str, Any]]:
    try:
        env = lmdb.open(
            path, map_size=_INITIAL_MAP, max_dbs=len(DBS) + 2, subdir=True,
            readahead=False, metasync=True, sync=True, lock=True, max_readers=256,
        )
    except lmdb.Error as e:
        raise LineageStoreError(f"cannot open the lineage store {path}: {e}; run 'zcas reindex'") from None
    try:
        dbs = {n: env.open_db(n.encode(), dupsort=n in DUPS) for n in DBS}
    except lmdb.Error as e:
        env.close()
        raise LineageStoreError(f"the lineage store {path} is damaged: {e}; run 'zcas reindex'") from None
    return env, dbs


def step_key(step: str) -> bytes:
    return hash_bytes(step.encode("utf-8", "surrogateescape"))[:16]


def exp_row(rec: dict[str, Any]) -> tuple[bytes, list[tuple[bytes, tuple[str, ...]]]]:
    """What ``zcas exp show`` reads of a run, and the column names it refers to.

    The row is ``marshal`` (version 4) of ``(status, session, user, host, params' names id,
    params' values, metrics' names id, metrics' values)``: the names of a run's flattened
    params and of its metrics are a tuple stored once in the ``cols`` database (ten thousand
    runs of one pipeline share two), so a row holds only values, and ten thousand rows load
    in about half the time rows holding their names took (benchmarks/bench_exp.py).
    Marshal, as the stat cache is: a local index of validated records, rebuilt at will."""
    params = flat(rec.get("params") or {})
    metrics = rec.get("metrics") or {}
    pn, mn = tuple(params), tuple(metrics)
    pid, mid = names_id(pn), names_id(mn)
    row = marshal.dumps((rec["status"], rec.get("session"), rec.get("user", ""), rec.get("host", ""),
                         pid, tuple(params.values()), mid, tuple(metrics.values())), 4)
    return row, [(pid, pn), (mid, mn)]


_names_ids: dict[tuple[str, ...], bytes] = {}


def names_id(names: tuple[str, ...]) -> bytes:
    """The key of a tuple of column names in ``cols`` (empty for none)."""
    if not names:
        return b""
    found = _names_ids.get(names)
    if found is None:
        found = hash_bytes(marshal.dumps(names, 4))[:16]
        if len(_names_ids) < 4096:
            _names_ids[names] = found
    return found


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` as ``{"train.lr": 0.1}``: one column per leaf."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def path_prefix(path: str) -> bytes:
    return hash_bytes(path.encode("utf-8", "surrogateescape"))[:16]


def key_matches(rec: dict[str, Any]) -> bool:
    """Is the run's cache key the hash of its key components? Only such a run is a cache
    entry: a record in the object store may have come from a remote's packs, and a key that
    does not match would let it answer for a step it is not (cache poisoning)."""
    try:
        return key_of(rec.get("key_components") or {}).hex() == rec["cache_key"]
    except (AttributeError, TypeError, UnicodeEncodeError, KeyError):
        return False


def tag_key(name: str) -> bytes:
    """A tag name as an LMDB key: non-empty text without NUL, at most MAX_KEY bytes."""
    try:
        key = name.encode("utf-8")
    except (AttributeError, UnicodeEncodeError):
        raise LineageStoreError(f"invalid tag name {name!r:.80}") from None
    if not key or len(key) > MAX_KEY or b"\0" in key:
        raise LineageStoreError(f"invalid tag name {name!r:.80}: 1 to {MAX_KEY} bytes, no NUL")
    return key


def _indexable(v: PathVersion) -> bool:
    """A PathVersion (valid: records checked it) the index can hold: its path must encode."""
    try:
        v.path.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return True


def path_kind_file(oid: bytes) -> str:
    """The kind of path a run's input or output is indexed as when nothing better is known."""
    return "file"


_open: dict[str, list[Any]] = {}  # real path -> [env, dbs, users]: LMDB allows one env per process
_open_lock = threading.Lock()


class Graph:
    def __init__(self, path: str) -> None:
        self.path = os.path.realpath(path)
        os.makedirs(self.path, exist_ok=True)
        with _open_lock:
            shared = _open.get(self.path)
            if shared is None:
                shared = _open[self.path] = [*_open_env(self.path), 0]
            shared[2] += 1
        self.env, self.dbs = shared[0], shared[1]
        self._closed = False
        # What the refs say is forgotten: such runs and path versions are never indexed
        # (Lineage sets it from the refs; reindex therefore cannot bring them back).
        self.forgotten: Forgotten = Forgotten()

    def close(self) -> None:
        with _open_lock:
            if self._closed:
                return
            self._closed = True
            shared = _open.get(self.path)
            if shared is not None:
                shared[2] -= 1
                if shared[2] <= 0:
                    del _open[self.path]
                    shared[0].close()

    # -- transactions ----------------------------------------------------------------------

    def write(self, fn: Callable[[Txn], T]) -> T:
        """Run ``fn`` in a write transaction, growing the map as often as it needs."""
        while True:
            try:
                with self.env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self.env.set_mapsize(self.env.info()["map_size"] * 2)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)

    def read(self, fn: Callable[[Txn], T]) -> T:
        while True:
            try:
                with self.env.begin(write=False) as txn:
                    return fn(txn)
            except lmdb.MapResizedError:
                self.env.set_mapsize(0)

    # -- writing ---------------------------------------------------------------------------

    def put_runs(self, items: list[tuple[bytes, dict[str, Any], bytes]],
                 kind_of: Callable[[bytes], str] = path_kind_file) -> None:
        """Index runs in one transaction: (run id, decoded record, record bytes).

        A command's inputs and outputs are paths, indexed into path history too; a record
        names only their ids, so ``kind_of(id)`` says what each path held ("file", "tree" or
        "link"; ``Lineage.path_kind`` asks the object store)."""

        def fn(txn: Txn) -> None:
            for rid, rec, data in items:
                self._put_run(txn, rid, rec, data, kind_of)

        self.write(fn)

    def _put_run(self, txn: Txn, rid: bytes, rec: dict[str, Any], data: bytes, kind_of: Callable[[bytes], str]) -> None:
        d = self.dbs
        if rid in self.forgotten.runs:
            return
        if not txn.put(rid, data, db=d["runs"], overwrite=False):
            return  # already indexed
        txn.put(_BE.pack(rec["started_ns"]) + rid, b"", db=d["time"])
        self._put_exp(txn, rid, rec)
        if rec["status"] == "ran" and rec.get("cache_key") and key_matches(rec):
            txn.put(bytes.fromhex(rec["cache_key"]), rid, db=d["cache"])
        if rec["status"] == "failed":
            return
        skey = step_key(rec["step"])
        prev = txn.get(skey, db=d["steps"])
        if prev is None or self._started(txn, prev) <= rec["started_ns"]:
            txn.put(skey, rid, db=d["steps"])
        if rec["status"] == "ran":
            for oid in rec["outputs"].values():
                txn.put(bytes.fromhex(oid), rid, db=d["produced"], dupdata=True)
        for oid in rec["inputs"].values():
            txn.put(bytes.fromhex(oid), rid, db=d["consumed"], dupdata=True)
        if rec["kind"] == "command":  # names are paths: index what each path held
            for name, oid in rec["inputs"].items():
                b = bytes.fromhex(oid)
                self._put_path(txn, name, b, rec["started_ns"], None, kind_of(b))
            for name, oid in rec["outputs"].items():
                b = bytes.fromhex(oid)
                self._put_path(txn, name, b, rec["ended_ns"], rid, kind_of(b))

    def _put_exp(self, txn: Txn, rid: bytes, rec: dict[str, Any]) -> None:
        row, names = exp_row(rec)
        txn.put(step_key(rec["step"]) + _BE.pack(rec["started_ns"]) + rid, row, db=self.dbs["exps"])
        for nid, tup in names:
            if nid:
                txn.put(nid, marshal.dumps(tup, 4), db=self.dbs["cols"], overwrite=False)

    def _started(self, txn: Txn, rid: bytes) -> int:
        data = txn.get(rid, db=self.dbs["runs"])
        return int(json.loads(data)["started_ns"]) if data else 0

    def _put_path(self, txn: Txn, path: str, oid: bytes, time_ns: int, run: bytes | None, kind: str) -> None:
        if self.forgotten.version(path, oid, time_ns):
            return
        key = path_prefix(path) + _BE.pack(time_ns)
        val = oid + (run or ZERO) + bytes([_KINDS.get(kind, 1)]) + path.encode("utf-8", "surrogateescape")
        txn.put(key, val, db=self.dbs["paths"])

    def put_paths(self, versions: Iterable[PathVersion]) -> int:
        """Index path versions; one whose path does not encode is skipped. Returns how many
        were indexed."""
        ok = [v for v in versions if _indexable(v) and not self.forgotten.version(v.path, bytes.fromhex(v.id), v.time_ns)]

        def fn(txn: Txn) -> None:
            for v in ok:
                run = bytes.fromhex(v.run) if v.run else None
                self._put_path(txn, v.path, bytes.fromhex(v.id), v.time_ns, run, v.kind)

        self.write(fn)
        return len(ok)

    def set_tag(self, name: str, oid: bytes | None) -> None:
        key = tag_key(name)
        if oid is not None and (not isinstance(oid, bytes) or len(oid) != 32):
            raise LineageStoreError(f"tag {name} must name a 32-byte id")

        def fn(txn: Txn) -> None:
            if oid is None:
                txn.delete(key, db=self.dbs["tags"])
            else:
                txn.put(key, oid, db=self.dbs["tags"])

        self.write(fn)

    def clear(self) -> None:
        def fn(txn: Txn) -> None:
            for db in self.dbs.values():
                txn.drop(db, delete=False)

        self.write(fn)

    # -- reading ---------------------------------------------------------------------------

    def _get(self, db: str, key: bytes) -> bytes | None:
        v = self.read(lambda txn: txn.get(key, db=self.dbs[db]))
        return None if v is None else bytes(v)

    def cache_get(self, key: bytes) -> bytes | None:
        return self._get("cache", key)

    def last_run(self, step: str) -> bytes | None:
        return self._get("steps", step_key(step))

    def run_bytes(self, rid: bytes) -> bytes | None:
        return self._get("runs", rid)

    def has_run(self, rid: bytes) -> bool:
        return self.run_bytes(rid) is not None

    def _dups(self, db: str, key: bytes) -> list[bytes]:
        def fn(txn: Txn) -> list[bytes]:
            cur = txn.cursor(self.dbs[db])
            if not cur.set_key(key):
                return []
            return [bytes(v) for v in cur.iternext_dup()]

        return self.read(fn)

    def producers(self, oid: bytes) -> list[bytes]:
        return self._dups("produced", oid)

    def consumers(self, oid: bytes) -> list[bytes]:
        return self._dups("consumed", oid)

    def versions(self, path: str) -> list[PathVersion]:
        """Every version of ``path``, oldest first.

        A path is indexed each time it is added, read by a run or written by one; the same
        content seen again in a row is one version (credited to the run that wrote it).
        """
        return [v for v, _ in self.version_spans(path)]

    def version_spans(self, path: str) -> list[tuple[PathVersion, int]]:
        """``versions(path)``, each with the time of the last record it groups (the span
        ``zcas forget`` records)."""
        prefix = path_prefix(path)
        want = path.encode("utf-8", "surrogateescape")

        def fn(txn: Txn) -> list[tuple[int, bytes, bytes | None, str, int]]:
            out: list[tuple[int, bytes, bytes | None, str, int]] = []
            cur = txn.cursor(self.dbs["paths"])
            if not cur.set_range(prefix):
                return out
            for k, v in cur:
                if not k.startswith(prefix):
                    break
                if v[65:] != want:
                    continue  # another path with the same 16-byte hash prefix
                run = None if v[32:64] == ZERO else bytes(v[32:64])
                t = _BE.unpack(k[16:])[0]
                if out and out[-1][1] == v[:32]:  # seen again (read by a later run): one version
                    first, oid, prev, kind, _ = out[-1]
                    out[-1] = (first, oid, run if prev is None and run is not None else prev, kind, t)
                    continue
                out.append((t, bytes(v[:32]), run, _KIND_NAMES.get(v[64], "file"), t))
            return out

        from .records import PathVersion

        return [(PathVersion(path=path, id=oid.hex(), time_ns=t, kind=kind, run=run.hex() if run else None), last)
                for t, oid, run, kind, last in self.read(fn)]

    def all_path_names(self) -> list[str]:
        """Every path with a recorded version, sorted."""
        return sorted({p for p, _ in self.all_paths()})

    def all_paths(self) -> Iterator[tuple[str, bytes]]:
        def fn(txn: Txn) -> list[tuple[str, bytes]]:
            return [(bytes(v[65:]).decode("utf-8", "surrogateescape"), bytes(v[:32]))
                    for _, v in txn.cursor(self.dbs["paths"])]

        return iter(self.read(fn))

    def run_ids_newest(self, since_ns: int = 0) -> Iterator[bytes]:
        """Run ids, newest first (a generator: stop reading whenever you have enough)."""
        with self.env.begin() as txn:
            cur = txn.cursor(self.dbs["time"])
            if not cur.last():
                return
            while True:
                k = cur.key()
                if _BE.unpack(k[:8])[0] < since_ns:
                    return
                yield bytes(k[8:])
                if not cur.prev():
                    return

    def step_run_ids_newest(self, step: str, since_ns: int = 0) -> Iterator[bytes]:
        """Ids of the runs of one step, newest first, from the exps database (a generator:
        one cursor step a run, whatever the number of other steps' runs)."""
        prefix = step_key(step)
        with self.env.begin() as txn:
            cur = txn.cursor(self.dbs["exps"])
            if cur.set_range(prefix + b"\xff" * 8):  # past the step's newest row: step back
                if not cur.prev():
                    return
            elif not cur.last():
                return
            while True:
                k = cur.key()
                if k[:16] != prefix or _BE.unpack(k[16:24])[0] < since_ns:
                    return
                yield bytes(k[24:])
                if not cur.prev():
                    return

    def find_prefix(self, prefix: str, limit: int = 2) -> list[bytes]:
        """Run and artifact ids lineage knows that start with a hex prefix (at most ``limit``)."""
        lo = bytes.fromhex(prefix[: len(prefix) // 2 * 2])
        odd = prefix[-1] if len(prefix) % 2 else ""

        def fn(txn: Txn) -> list[bytes]:
            found: set[bytes] = set()
            for db in ("runs", "produced", "consumed"):
                cur = txn.cursor(self.dbs[db])
                if not cur.set_range(lo):
                    continue
                for k in cur.iternext_nodup(values=False) if db != "runs" else cur.iternext(values=False):
                    if not k.startswith(lo):
                        break
                    if odd and k[len(lo) : len(lo) + 1].hex()[0] != odd:
                        continue
                    found.add(bytes(k))
                    if len(found) >= limit:
                        return sorted(found)
            return sorted(found)

        return self.read(fn)

    def exp_rows(self, step: str) -> list[tuple[bytes, int, bytes]]:
        """(run id, started_ns, row) of every run of ``step``, oldest first (``exp_row``)."""
        prefix = step_key(step)

        def fn(txn: Txn) -> list[tuple[bytes, int, bytes]]:
            cur = txn.cursor(self.dbs["exps"])
            out: list[tuple[bytes, int, bytes]] = []
            if not cur.set_range(prefix):
                return out
            unpack = _BE.unpack
            for k, v in cur:
                if k[:16] != prefix:
                    break
                out.append((k[24:], unpack(k[16:24])[0], v))
            return out

        return self.read(fn)

    def names(self, ids: Iterable[bytes]) -> dict[bytes, tuple[str, ...]]:
        """The tuples of column names rows refer to (``exp_row``), by id; an id not found
        (or not holding a tuple of names) is left out."""

        def fn(txn: Txn) -> dict[bytes, tuple[str, ...]]:
            out: dict[bytes, tuple[str, ...]] = {}
            for nid in ids:
                data = txn.get(nid, db=self.dbs["cols"])
                if data is None:
                    continue
                try:
                    names = marshal.loads(data)
                except (ValueError, EOFError, TypeError):
                    continue
                if type(names) is tuple and all(type(n) is str for n in names):
                    out[nid] = names
            return out

        return self.read(fn)

    def has_exps(self, step: str) -> bool:
        """Whether any run of ``step`` is indexed (without reading its rows)."""
        prefix = step_key(step)

        def fn(txn: Txn) -> bool:
            cur = txn.cursor(self.dbs["exps"])
            return bool(cur.set_range(prefix)) and bytes(cur.key()[:16]) == prefix

        return self.read(fn)

    def fill_exps(self) -> int:
        """Give an index built before the exps database (or with rows of an older form) its
        rows, from the runs it holds (validated when indexed), once; how many."""
        meta = self.dbs["meta"]
        if self.read(lambda t: t.get(EXPS_MARK, db=meta) is not None and t.get(EXPS_MARK_V2, db=meta) is None):
            return 0

        def fn(txn: Txn) -> int:
            n = 0
            txn.drop(self.dbs["exps"], delete=False)  # rows of an older form, if any
            for rid, data in txn.cursor(self.dbs["runs"]):
                try:
                    rec = json.loads(data)
                    self._put_exp(txn, rid, rec)
                except (ValueError, KeyError, TypeError, AttributeError, struct.error):
                    continue
                n += 1
            txn.put(EXPS_MARK, b"1", db=self.dbs["meta"])
            txn.delete(EXPS_MARK_V2, db=self.dbs["meta"])
            return n

        return self.write(fn)

    def all_run_ids(self) -> list[bytes]:
        return self.read(lambda txn: [bytes(k) for k, _ in txn.cursor(self.dbs["runs"])])

    def tags(self) -> dict[str, bytes]:
        return self.read(lambda txn: {bytes(k).decode("utf-8", "replace"): bytes(v) for k, v in txn.cursor(self.dbs["tags"])})

    def count(self, db: str) -> int:
        return self.read(lambda txn: txn.stat(self.dbs[db])["entries"])

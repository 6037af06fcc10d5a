"""A worker's read cache of the store: bounded, on the worker's own disk, shared by its tasks.

A fan-out of a hundred steps over one large input would otherwise download that input a
hundred times. The worker opens the stack's store once per process (``tasks.open_store``)
behind ``cas.cache.CachingBackend``, whose cached pack ranges carry their own BLAKE3 and are
dropped and read again when they fail it (and ``ObjectDB`` verifies every object above
that), so nothing here is trusted: this module only decides where the cached bytes live
and how many of them are kept. The least recently used ranges are evicted past the bound,
so a long-lived worker never fills its disk.

The bound is the worker's to set, since the disk is the worker's: ``ZCAS_WORKER_CACHE``
(bytes, or with a unit: ``500MB``, ``4GiB``; ``0`` turns the cache off) in the worker's
environment, default ``DEFAULT_BYTES``, per worker process. The folder is a slot of this
process's own (``_folder``) below ``ZCAS_WORKER_CACHE_DIR`` if set, else below the Dask
worker's local directory (removed with the worker), else a new one in the system's
temporary folder; nothing in it but cache keys is ever counted or removed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import stat
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

from zcas.cas import codec
from zcas.cas.backend import PIECE, Backend, KeyInfo, _List, check_key
from zcas.cas.cache import CachingBackend
from zcas.cas.db import ObjectDB
from zcas.cas.errors import ObjectNotFoundError, StoreError, UsageError, ZcasError
from zcas.cas.oid import hash_bytes
from zcas.cas.pack import PREFIX, pack_key

DEFAULT_BYTES = 2 << 30  # 2 GiB: ten 200 MB inputs, small next to a worker's scratch disk
_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9, "t": 10**12,
          "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: str) -> int:
    """Bytes of ``500MB``, ``4GiB``, ``1000``; a one-line error for anything else."""
    m = _SIZE.fullmatch(text)
    unit = m.group(2).lower() if m else ""
    if m is None or unit not in _UNITS:
        raise UsageError(f"ZCAS_WORKER_CACHE: expected a size such as 2GiB or 500MB, got {text!r}")
    return int(float(m.group(1)) * _UNITS[unit])


MARKER = "ZCAS-WORKER-CACHE"  # in a folder this module made: only there is anything adopted
_KEY = re.compile(r"cache/[0-9a-f]{16}/[0-9a-f]{64}/(idx|b[0-9]+|[0-9]+-[0-9]+)")  # what CachingBackend writes


class BoundedDir(Backend):
    """Keys as files below ``root``, at most ``limit`` bytes of them: putting one past the
    bound evicts the least recently read or written. A value larger than the bound is not
    kept (``put`` answers False). One process owns a folder (``_folder`` gives each worker
    process one of its own). At start, files of a restarted worker's are adopted, oldest
    first in line for eviction, only in a folder bearing ``MARKER`` and only names that are
    cache keys: a folder holding anything else is someone's, and nothing of theirs is
    counted or removed. Temporary files a killed worker left are removed."""

    def __init__(self, root: str, limit: int):
        self.root = os.path.abspath(root)
        self.limit = limit
        self._sizes: OrderedDict[str, int] = OrderedDict()  # key -> size, least recently used first
        self.used = 0
        self.evicted = 0  # keys removed to stay under the bound (tests and benchmarks look)
        self._lock = threading.Lock()
        tmp = os.path.join(self.root, "tmp")
        os.makedirs(tmp, exist_ok=True)
        marker = os.path.join(self.root, MARKER)
        if os.path.exists(marker):
            for name in os.listdir(tmp):  # half-written values and packs of a killed worker
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(tmp, name))
            self._adopt()
        elif not set(os.listdir(self.root)) - {"tmp", "lock"}:  # a new folder: ours from now on
            with open(marker, "w") as f:
                f.write("zcas worker cache: files below are removed to stay under its bound\n")

    def __repr__(self) -> str:
        return f"BoundedDir({self.root!r}, {self.limit})"

    def _adopt(self) -> None:
        found = []
        for dirpath, dirnames, files in os.walk(self.root):
            if dirpath == self.root and "tmp" in dirnames:
                dirnames.remove("tmp")
            for f in files:
                path = os.path.join(dirpath, f)
                key = os.path.relpath(path, self.root).replace(os.sep, "/")
                if not _KEY.fullmatch(key):
                    continue
                try:
                    st = os.lstat(path)
                except OSError:
                    continue
                if stat.S_ISREG(st.st_mode):
                    found.append((st.st_mtime, key, st.st_size))
        for _, key, size in sorted(found):
            self._sizes[key] = size
            self.used += size
        with self._lock:
            self._evict(0)

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *check_key(key).split("/"))

    def _evict(self, room: int) -> None:
        """Drop the least recently used keys until ``room`` more bytes fit (lock held)."""
        while self._sizes and self.used + room > self.limit:
            key, size = self._sizes.popitem(last=False)
            self.used -= size
            self.evicted += 1
            try:
                os.unlink(self._path(key))
            except FileNotFoundError:
                pass

    def get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                data = f.read()
        except FileNotFoundError:
            raise ObjectNotFoundError(key, "key") from None
        with self._lock:
            if key in self._sizes:
                self._sizes.move_to_end(key)
        return data

    def put(self, key: str, data: Any) -> bool:
        data = bytes(data)
        if len(data) > self.limit:
            return False
        path = self._path(key)
        with self._lock:
            if key in self._sizes:
                return False
            self._evict(len(data))
            self._sizes[key] = len(data)
            self.used += len(data)
        tmp = None
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=os.path.join(self.root, "tmp"))
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            with self._lock:  # evicted while it was written: never on disk uncounted
                if self._sizes.get(key) != len(data):
                    os.unlink(tmp)
                    return False
                os.replace(tmp, path)  # a reader sees the whole value or none (and checks it anyway)
        except BaseException as e:
            with self._lock:
                if self._sizes.pop(key, None) is not None:
                    self.used -= len(data)
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except FileNotFoundError:
                    pass
            if isinstance(e, OSError):
                return False  # a full disk costs requests, never a read
            raise
        return True

    def exists(self, key: str) -> bool:
        return key in self._sizes

    def delete(self, key: str) -> None:
        with self._lock:
            size = self._sizes.pop(key, None)
            if size is not None:
                self.used -= size
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass

    def list(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            keys = [k for k in self._sizes if k.startswith(prefix)]
        return iter(sorted(keys))

    def info(self, key: str) -> KeyInfo:
        try:
            st = os.stat(self._path(key))
        except FileNotFoundError:
            raise ObjectNotFoundError(key, "key") from None
        return KeyInfo(st.st_size, st.st_mtime)

    def tmp_dir(self) -> str | None:
        return os.path.join(self.root, "tmp")


class Counting(Backend):
    """``inner``, counting the bytes read from it: what a worker downloaded."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.read = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return repr(self.inner)  # the cache's namespace is the store's, not this wrapper's

    def _count(self, n: int) -> None:
        with self._lock:
            self.read += n

    def get(self, key: str) -> bytes:
        data = self.inner.get(key)
        self._count(len(data))
        return data

    def get_bounded(self, key: str, limit: int) -> bytes:
        data = self.inner.get_bounded(key, limit)
        self._count(len(data))
        return data

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = self.inner.get_range(key, start, length)
        self._count(len(data))
        return data

    def get_ranges(self, key: str, starts: _List[int], lengths: _List[int]) -> _List[bytes]:
        got = self.inner.get_ranges(key, starts, lengths)
        self._count(sum(len(d) for d in got))
        return got

    def stream(self, key: str, end: int, piece: int = PIECE) -> Iterator[bytes | memoryview]:
        for data in self.inner.stream(key, end, piece):
            self._count(len(data))
            yield data

    def put(self, key: str, data: Any) -> bool:
        return self.inner.put(key, data)

    def put_path(self, key: str, path: str) -> bool:
        return self.inner.put_path(key, path)

    def put_file(self, key: str, path: str) -> bool:
        return self.inner.put_file(key, path)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        return self.inner.list(prefix)

    def list_after(self, prefix: str, after: str) -> Iterator[str]:
        return self.inner.list_after(prefix, after)

    def info(self, key: str) -> KeyInfo:
        return self.inner.info(key)

    def close(self) -> None:
        self.inner.close()


BLOCK = 4 << 20  # bytes of a pack fetched (and cached) at once: 50 requests for 200 MB, not 5,000 of a chunk each
HOT = 8  # blocks kept in memory once checked: a large file's chunks are read one after another
_PACK = PREFIX + "pack-"


def _pack_name(key: str) -> str | None:
    if key.startswith(_PACK) and key.endswith(".pack") and len(key) == len(_PACK) + 64 + 5:
        return key[len(_PACK):-5]
    return None


class BlockCaching(CachingBackend):
    """``CachingBackend`` reading packs a block at a time: a range is served from the
    aligned ``BLOCK``-byte blocks covering it, each fetched once (concurrent readers of one
    block wait for the first), kept on disk with its BLAKE3 and checked when first used in
    this process, then held in memory while in use. Packs never change once written (named
    after their index, create-only), so a block stays the store's bytes for as long as the
    pack exists. A damaged block is dropped and fetched again; ``ObjectDB`` verifies every
    object above this, as always."""

    def __init__(self, remote: Backend, local: Backend, block: int = BLOCK, hot: int = HOT):
        super().__init__(remote, local)
        self.block, self.hot = block, hot
        self._mem: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._flights: dict[tuple[str, int], threading.Event] = {}
        self._mem_lock = threading.Lock()

    def _remembered(self, at: tuple[str, int]) -> bytes | None:
        with self._mem_lock:
            data = self._mem.get(at)
            if data is not None:
                self._mem.move_to_end(at)
            return data

    def _remember(self, at: tuple[str, int], data: bytes) -> None:
        with self._mem_lock:
            self._mem[at] = data
            while len(self._mem) > self.hot:
                self._mem.popitem(last=False)

    def _block(self, key: str, name: str, n: int) -> bytes:
        at = (name, n)
        while True:
            data = self._remembered(at)
            if data is not None:
                return data
            with self._mem_lock:
                flight = self._flights.get(at)
                leader = flight is None
                if leader:
                    flight = self._flights[at] = threading.Event()
            assert flight is not None
            if not leader:
                flight.wait()
                continue  # the leader's block is in memory now (or it failed: try ourselves)
            try:
                data = self._disk_block(name, n)
                if data is None:
                    data = self._fetch(key, n)
                    self._keep(self._block_key(name, n), data + hash_bytes(data))
                self._remember(at, data)
                return data
            finally:
                with self._mem_lock:
                    del self._flights[at]
                flight.set()

    def _fetch(self, key: str, n: int) -> bytes:
        """Block ``n`` from the store. A short one is the pack's end only if the pack ends
        there: a read cut short (a dropped connection read as its end) is not kept, or its
        own hash would vouch for it to every later task of this worker and the next."""
        data = self.remote.get_range(key, n * self.block, self.block)
        if len(data) < self.block:
            size = self.remote.info(key).size
            if n * self.block + len(data) != min(size, (n + 1) * self.block):
                raise StoreError(0, f"{key}: {len(data)} bytes read at {n * self.block}, of a pack of {size}")
        return data

    def forget(self, key: str | None = None, start: int = 0, length: int = 0) -> None:
        """Drop the cached blocks covering ``length`` bytes at ``start`` of pack ``key``
        (None: every block): what they hold failed verification above, so they were the
        store's bytes damaged in transit, or the store's own damage; either way they are
        read again, never served from here."""
        with self._mem_lock:
            if key is None:
                self._mem.clear()
            else:
                name = _pack_name(key)
                for n in range(start // self.block, max(start + length - 1, start) // self.block + 1):
                    self._mem.pop((name or "", n), None)
        if key is None:
            for ckey in list(self.cache.list(self.prefix)):
                if ckey.rsplit("/", 1)[1].startswith("b"):  # blocks, not indexes
                    self.cache.delete(ckey)
            return
        name = _pack_name(key)
        if name is not None:
            for n in range(start // self.block, max(start + length - 1, start) // self.block + 1):
                self.cache.delete(self._block_key(name, n))

    def _block_key(self, name: str, n: int) -> str:
        return f"{self.prefix}{name}/b{n}"

    def _disk_block(self, name: str, n: int) -> bytes | None:
        ckey = self._block_key(name, n)
        try:
            data = self.cache.get(ckey)
        except ObjectNotFoundError:
            return None
        body, digest = data[:-32], data[-32:]
        if hash_bytes(body) != digest:  # damaged (or torn): fetched again
            self.cache.delete(ckey)
            return None
        self.hits += 1
        return body

    def get_range(self, key: str, start: int, length: int) -> bytes:
        name = _pack_name(key)
        if name is None or length <= 0:
            return self.remote.get_range(key, start, length)
        end = start + length
        parts = []
        for n in range(start // self.block, (end - 1) // self.block + 1):
            data = self._block(key, name, n)
            base = n * self.block
            parts.append(data[max(start, base) - base:min(end, base + self.block) - base])
            if len(data) < self.block:  # the pack ends in this block
                break
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def get_ranges(self, key: str, starts: _List[int], lengths: _List[int]) -> _List[bytes]:
        return [self.get_range(key, s, n) for s, n in zip(starts, lengths, strict=True)]


_opened: list[tuple[Counting, CachingBackend | None, BoundedDir | None]] = []


_claims: list[int] = []  # descriptors holding this process's cache folder (never closed)


def _folder() -> str:
    """This process's cache folder: ``zcas-worker-cache/pN`` below ``ZCAS_WORKER_CACHE_DIR``
    (made absolute once: a Python step changes the working folder), else below the Dask
    worker's local directory, else a new temporary folder. Each process holds a lock on
    the first slot no other holds, so the processes of ``dask worker --nworkers N`` sharing
    one folder each keep their own bound (N of them in all) and never evict each other's
    files, and a restarted worker takes over a free slot's cache."""
    where = os.environ.get("ZCAS_WORKER_CACHE_DIR")
    if not where:
        try:
            from distributed import get_worker

            where = get_worker().local_directory
        except (ImportError, ValueError):  # not on a dask worker (a test, a thread)
            return tempfile.mkdtemp(prefix="zcas-worker-cache-")
    top = os.path.join(os.path.abspath(where), "zcas-worker-cache")
    for n in range(4096):
        slot = os.path.join(top, f"p{n}")
        os.makedirs(slot, exist_ok=True)
        fd = os.open(os.path.join(slot, "lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _claims.append(fd)
        return slot
    raise UsageError(f"ZCAS_WORKER_CACHE_DIR: no free cache folder in {top} (4096 processes hold one)")


def forget(db: ObjectDB, oid: str | bytes) -> bool:
    """After an object failed verification on a worker, drop the cached blocks it was
    read from (all of them when it cannot be placed, or is a large file whose chunks may
    be in any pack: rare, and a download is all it costs), so a retry reads the store again;
    False if there is no block cache to blame."""
    caching = db.backend
    if not isinstance(caching, BlockCaching):
        return False
    try:
        e = db.entry(bytes.fromhex(oid) if isinstance(oid, str) else oid)
    except (ValueError, ZcasError):  # a pack or index named, not an object
        e = None
    if e is None or not e.pack or e.kind == codec.KIND_CHUNKED:  # a file's chunks may be in any pack
        caching.forget()
    else:
        caching.forget(pack_key(e.pack), e.offset, e.length)
    return True


def open_backend(remote: Backend) -> tuple[Backend, str]:
    """The store as a worker reads it, through a bounded cache on the worker's disk (see
    the module doc), and the folder its tasks build packs in; opened once per process,
    shared by every task's ObjectDB."""
    limit = parse_size(os.environ.get("ZCAS_WORKER_CACHE", str(DEFAULT_BYTES)))
    counted = Counting(remote)
    if limit <= 0:
        _opened.append((counted, None, None))
        return counted, tempfile.mkdtemp(prefix="zcas-worker-")
    folder = _folder()
    local = BoundedDir(folder, limit)
    caching = BlockCaching(counted, local)
    _opened.append((counted, caching, local))
    tmp = local.tmp_dir()
    assert tmp is not None
    return caching, tmp


def open_db(remote: Backend) -> ObjectDB:
    """An ObjectDB over ``open_backend`` (tests and tools; tasks open one each)."""
    backend, tmp = open_backend(remote)
    return ObjectDB(backend, tmp_dir=tmp)


def stats() -> dict[str, int]:
    """What this process's worker stores read: bytes downloaded, reads served from the
    cache, bytes held and keys evicted (``client.run(stats)`` asks every worker)."""
    out = {"downloaded": 0, "cache_hits": 0, "cache_bytes": 0, "evicted": 0}
    for counted, caching, local in _opened:
        out["downloaded"] += counted.read
        out["cache_hits"] += caching.hits if caching is not None else 0
        out["cache_bytes"] += local.used if local is not None else 0
        out["evicted"] += local.evicted if local is not None else 0
    return out

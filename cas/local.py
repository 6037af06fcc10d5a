"""The local-disk backend: one file per key under a root folder.

Every put writes a temporary file beside the target, fsyncs it and links it into place, so a
key is either absent or complete; ``os.link`` refuses an existing target, which gives
create-only semantics without a lock.
"""

from __future__ import annotations

import mmap
import os
import threading
from collections.abc import Iterator

from .backend import Backend, KeyInfo, check_key, too_large
from .errors import ObjectNotFoundError, store_error

_TMP = "tmp"
# Files at least this large are memory-mapped by ``get_mapped``: below it, reading is
# cheaper than mapping; above it, reading the whole file costs more than a map's few pages.
MAP_AT = 64 << 10


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBackend(Backend):
    local = True

    def __init__(self, root: str, fsync: bool = True):
        self.root = os.path.abspath(root)
        self.fsync = fsync
        self._fds: dict[str, int] = {}
        self._lock = threading.Lock()
        os.makedirs(os.path.join(self.root, _TMP), exist_ok=True)

    def __repr__(self) -> str:
        return f"LocalBackend({self.root!r})"

    def _path(self, key: str) -> str:
        return os.path.join(self.root, check_key(key))

    def tmp_dir(self) -> str:
        return os.path.join(self.root, _TMP)

    def local_path(self, key: str) -> str:
        return self._path(key)

    def get(self, key: str) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ObjectNotFoundError(key, "key") from None
        except OSError as e:
            raise store_error(e, f"reading {key}") from None

    def get_mapped(self, key: str) -> bytes | mmap.mmap:
        """A file of ``MAP_AT`` bytes or more as a read-only memory map, a smaller one read.
        zcas never rewrites a key in place (puts are create-only links), so a map stays
        valid, through a delete too."""
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError:
            raise ObjectNotFoundError(key, "key") from None
        except OSError as e:
            raise store_error(e, f"reading {key}") from None
        try:
            size = os.fstat(fd).st_size
            if size >= MAP_AT:
                return mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
            data = os.read(fd, size + 1)
            if len(data) > size:  # longer than fstat said: read on to its end
                parts = [data]
                while chunk := os.read(fd, 1 << 16):
                    parts.append(chunk)
                data = b"".join(parts)
            return data
        except OSError as e:
            raise store_error(e, f"reading {key}") from None
        finally:
            os.close(fd)

    def _fd(self, key: str) -> int:
        fd = self._fds.get(key)
        if fd is None:
            with self._lock:
                fd = self._fds.get(key)
                if fd is None:
                    try:
                        fd = os.open(self._path(key), os.O_RDONLY)
                    except FileNotFoundError:
                        raise ObjectNotFoundError(key, "key") from None
                    self._fds[key] = fd
        return fd

    def get_range(self, key: str, start: int, length: int) -> bytes:
        fd = self._fd(key)  # ObjectNotFoundError when the pack is gone (readers look again)
        try:
            data = os.pread(fd, length, start)
        except OSError as e:
            raise store_error(e, f"reading {key}") from None
        return data

    def get_range_into(self, key: str, start: int, view: memoryview) -> int:
        fd = self._fd(key)
        done = 0
        try:
            while done < len(view):
                n = os.preadv(fd, [view[done:]], start + done)
                if n == 0:
                    break
                done += n
        except OSError as e:
            raise store_error(e, f"reading {key}") from None
        return done

    def _link_into_place(self, tmp: str, key: str) -> bool:
        dst = self._path(key)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        try:
            os.link(tmp, dst)
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)
        if self.fsync:
            _fsync_dir(os.path.dirname(dst))
        return True

    def put(self, key: str, data: bytes) -> bool:
        check_key(key)
        if self.exists(key):
            return False
        tmp = os.path.join(self.tmp_dir(), f"put-{os.getpid()}-{threading.get_ident()}-{os.urandom(4).hex()}")
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                if self.fsync:
                    f.flush()
                    os.fsync(f.fileno())
        except OSError as e:
            _unlink_quiet(tmp)
            raise store_error(e, f"writing {key}") from None
        try:
            return self._link_into_place(tmp, key)
        except OSError as e:
            raise store_error(e, f"writing {key}") from None

    def get_bounded(self, key: str, limit: int) -> bytes:
        """The file, read up to one byte past ``limit`` (so a huge one is never held)."""
        try:
            with open(self._path(key), "rb") as f:
                data = f.read(limit + 1)
        except FileNotFoundError:
            raise ObjectNotFoundError(key, "key") from None
        except OSError as e:
            raise store_error(e, f"reading {key}") from None
        if len(data) > limit:
            raise too_large(key, os.path.getsize(self._path(key)), limit)
        return data

    def put_file(self, key: str, path: str) -> bool:
        check_key(key)
        try:
            if self.fsync:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            return self._link_into_place(path, key)
        except OSError as e:
            _unlink_quiet(path)
            raise store_error(e, f"writing {key}") from None

    def exists(self, key: str) -> bool:
        return os.path.exists(self._path(key))

    def delete(self, key: str) -> None:
        with self._lock:
            fd = self._fds.pop(key, None)
        if fd is not None:
            os.close(fd)
        _unlink_quiet(self._path(key))

    def list(self, prefix: str = "") -> Iterator[str]:
        # only the folder the prefix names is walked (``packs/`` never walks a cache beside it)
        top = prefix.rsplit("/", 1)[0] if "/" in prefix else ""
        base = os.path.join(self.root, top) if top else self.root
        for dirpath, dirnames, filenames in os.walk(base):
            rel = os.path.relpath(dirpath, self.root)
            if rel == _TMP:
                dirnames[:] = []
                continue
            rel = "" if rel == "." else rel + "/"
            for name in filenames:
                key = rel + name
                if key.startswith(prefix):
                    yield key

    def info(self, key: str) -> KeyInfo:
        try:
            st = os.stat(self._path(key))
        except FileNotFoundError:
            raise ObjectNotFoundError(key, "key") from None
        return KeyInfo(st.st_size, st.st_mtime)

    def close(self) -> None:
        with self._lock:
            fds, self._fds = self._fds, {}
        for fd in fds.values():
            os.close(fd)


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass

"""An in-memory backend: the reference for the contract tests and a fast store for tests."""

from __future__ import annotations

import threading
import time
from typing import Iterator

from .backend import Capabilities, KeyInfo, check_key
from .errors import ObjectNotFoundError


class MemoryBackend:
    capabilities = Capabilities(local=False, durable=False)

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "MemoryBackend()"

    def local_path(self, key: str) -> str | None:
        return None

    def get(self, key: str) -> bytes:
        try:
            return self._data[check_key(key)][0]
        except KeyError:
            raise ObjectNotFoundError(key, "key") from None

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.get(key)[start : start + length]

    def put(self, key: str, data: bytes) -> bool:
        check_key(key)
        with self._lock:
            if key in self._data:
                return False
            self._data[key] = (bytes(data), time.time())
            return True

    def put_file(self, key: str, path: str) -> bool:
        import os

        with open(path, "rb") as f:
            data = f.read()
        os.unlink(path)
        return self.put(key, data)

    def exists(self, key: str) -> bool:
        return check_key(key) in self._data

    def delete(self, key: str) -> None:
        with self._lock:
            self._data.pop(check_key(key), None)

    def list(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            keys = sorted(self._data)
        return iter([k for k in keys if k.startswith(prefix)])

    def info(self, key: str) -> KeyInfo:
        try:
            data, mtime = self._data[check_key(key)]
        except KeyError:
            raise ObjectNotFoundError(key, "key") from None
        return KeyInfo(len(data), mtime)

    def set_mtime(self, key: str, mtime: float) -> None:
        """Age a key (tests of gc's grace period)."""
        with self._lock:
            self._data[key] = (self._data[key][0], mtime)

    def close(self) -> None:
        pass

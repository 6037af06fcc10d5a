"""An in-memory backend: the reference for the contract tests and a fast store for tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

from .backend import Backend, KeyInfo, check_key
from .errors import ObjectNotFoundError


class MemoryBackend(Backend):

    def __init__(self) -> None:
        self._data: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return "MemoryBackend()"

    def get(self, key: str) -> bytes:
        try:
            return self._data[check_key(key)][0]
        except KeyError:
            raise ObjectNotFoundError(key, "key") from None

    def put(self, key: str, data: bytes) -> bool:
        check_key(key)
        with self._lock:
            if key in self._data:
                return False
            self._data[key] = (bytes(data), time.time())
            return True

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

"""Object storage through obstore: S3 (and S3-compatible servers), GCS, Azure, local, memory.

The only module that imports obstore, and lazily: commands that never touch a remote never
pay for it. Puts are conditional (``mode="create"``); an object that already exists counts
as success, so concurrent writers never clobber each other and a retried upload is
harmless. Native errors become zcas errors here, at the edge, and never carry credentials.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlparse

from .backend import PIECE, Backend, KeyInfo, _List, check_key, too_large
from .errors import ObjectNotFoundError, StoreError, UsageError

SCHEMES = ("s3", "gs", "az", "abfs", "abfss", "memory", "file")
_T = TypeVar("_T")
_SECRETS = re.compile(r"(?i)(secret|token|password|signature|credential|key)[=:]\s*\S+")


class RemoteError(StoreError):
    """A remote store failed: unreachable, refused, wrong credentials, missing bucket."""


def _clean(text: object) -> str:
    """First line of a native error, with anything that looks like a secret blanked."""
    line = str(text).strip().splitlines()[0] if str(text).strip() else ""
    line = line.split("<?xml")[0].rstrip(": ")  # servers append an XML body: the status says enough
    return _SECRETS.sub(r"\1=***", line)[:300]


def masked(url: str) -> str:
    """A URL as it may be printed: any user:password@ part replaced by ***@."""
    return re.sub(r"(?<=://)[^/@]*@", "***@", url)


def check_no_credentials(url: str | None, what: str = "URL") -> str | None:
    """Refuse a URL that carries credentials (user:password@host): zcas writes URLs to
    config.toml and prints them, and neither may ever hold a secret."""
    if url and isinstance(url, str) and "://" in url:
        netloc = url.split("://", 1)[1].split("/", 1)[0]
        if "@" in netloc:
            raise UsageError(
                f"{what} {masked(url)} holds credentials: zcas never stores them; remove the user:password@ part "
                "and set them in the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...)"
            )
    return url


def parse_url(url: str) -> tuple[str, str, str]:
    """(scheme, bucket or container, prefix) of a store URL, or a one-line error."""
    if not isinstance(url, str) or not url:
        raise UsageError(f"store URL must be a non-empty string, got {url!r}")
    check_no_credentials(url, "store URL")
    if "://" not in url:
        return "file", "", os.path.abspath(url)
    u = urlparse(url)
    if u.scheme not in SCHEMES:
        raise UsageError(f"unsupported store URL {masked(url)!r}: use s3://, gs://, az://, memory:// or a path")
    if u.scheme == "memory":
        return "memory", "", ""
    if u.scheme == "file":
        return "file", "", u.path
    if not u.netloc:
        raise UsageError(f"store URL {url!r} names no bucket (expected {u.scheme}://BUCKET/PREFIX)")
    return u.scheme, u.netloc, u.path.strip("/")


def make_store(url: str, endpoint: str | None = None, region: str | None = None,
               allow_http: bool | None = None) -> Any:
    import obstore.store as s

    scheme, bucket, prefix = parse_url(url)
    if endpoint is not None and not isinstance(endpoint, str):
        raise UsageError(f"endpoint must be a string, got {endpoint!r}")
    check_no_credentials(endpoint, "endpoint URL")
    client: dict[str, Any] = {}
    if allow_http or os.environ.get("AWS_ALLOW_HTTP", "").lower() in ("1", "true", "yes"):
        client["allow_http"] = True
    try:
        if scheme == "memory":
            return s.MemoryStore()
        if scheme == "file":
            os.makedirs(prefix, exist_ok=True)
            return s.LocalStore(prefix)
        if scheme == "s3":
            cfg: dict[str, Any] = {}
            if endpoint:
                cfg["endpoint"] = endpoint
            if region:
                cfg["region"] = region
            return s.S3Store(bucket, prefix=prefix or None, config=cfg or None,  # type: ignore[arg-type]
                             client_options=client or None)  # type: ignore[arg-type]
        if scheme == "gs":
            return s.GCSStore(bucket, prefix=prefix or None, client_options=client or None)  # type: ignore[arg-type]
        return s.AzureStore(bucket, prefix=prefix or None, client_options=client or None)  # type: ignore[arg-type]
    except Exception as e:  # noqa: BLE001 - obstore raises several kinds for bad config
        raise RemoteError(0, f"cannot open {scheme}://{bucket}: {_clean(e)}") from None


class ObstoreBackend(Backend):
    """A Backend over an obstore store (see cas/backend.py for the contract)."""

    def __init__(self, url: str, endpoint: str | None = None, region: str | None = None,
                 allow_http: bool | None = None):
        self.url = url
        self.store = make_store(url, endpoint, region, allow_http)
        import obstore

        self._obs = obstore

    def __repr__(self) -> str:
        return f"ObstoreBackend({self.url!r})"

    def _call(self, what: str, key: str, fn: Callable[[], _T]) -> _T:
        from obstore.exceptions import NotFoundError

        try:
            return fn()
        except (NotFoundError, FileNotFoundError):
            if what == "writing":  # no key to miss: the bucket (or container) is what is missing
                raise RemoteError(0, f"{what} {key} on {self.url} failed: no such bucket or container") from None
            raise ObjectNotFoundError(key, "key") from None
        except Exception as e:  # noqa: BLE001 - translated at the edge, one line
            raise RemoteError(0, f"{what} {key} on {self.url} failed: {_clean(e)}") from None

    def get(self, key: str) -> bytes:
        check_key(key)
        return self._call("reading", key, lambda: self._obs.get(self.store, key).bytes().to_bytes())

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_key(key)
        if length == 0:
            return b""
        return self._call("reading", key, lambda: self._obs.get_range(self.store, key, start=start, length=length).to_bytes())

    def get_ranges(self, key: str, starts: _List[int], lengths: _List[int]) -> _List[bytes]:
        check_key(key)
        ends = [s + n for s, n in zip(starts, lengths, strict=True)]
        got = self._call("reading", key, lambda: self._obs.get_ranges(self.store, key, starts=starts, ends=ends))
        return [b.to_bytes() for b in got]

    def put(self, key: str, data: Any) -> bool:
        """Create-only (``mode="create"``): False when the key exists. obstore raises
        AlreadyExistsError for that, or PreconditionError from servers that answer the
        condition with 412; both are caught here, before ``_call`` would translate them."""
        from obstore.exceptions import AlreadyExistsError, PreconditionError

        check_key(key)

        def create() -> bool:
            try:
                self._obs.put(self.store, key, data, mode="create")
            except (AlreadyExistsError, PreconditionError):
                return False
            return True

        return self._call("writing", key, create)

    def put_path(self, key: str, path: str) -> bool:
        """Upload a local file (streamed, multipart when large), leaving it in place."""
        import pathlib

        return self.put(key, pathlib.Path(path))

    def get_bounded(self, key: str, limit: int) -> bytes:
        """One request: the size comes with the response's metadata, before the body."""
        check_key(key)
        res = self._call("reading", key, lambda: self._obs.get(self.store, key))
        size = res.meta["size"]
        if size > limit:
            raise too_large(key, size, limit)
        data = self._call("reading", key, lambda: res.bytes().to_bytes())
        if len(data) > limit:
            raise too_large(key, len(data), limit)
        return data

    def stream(self, key: str, end: int, piece: int = PIECE) -> Iterator[bytes | memoryview]:
        """One streamed, ranged request; never more than ``end`` bytes in all."""
        check_key(key)
        if end <= 0:
            return
        pieces = self._call("reading", key, lambda: iter(
            self._obs.get(self.store, key, options={"range": (0, end)}).stream(min_chunk_size=piece)))
        sent = 0
        while sent < end:
            data = self._call("reading", key, lambda: next(pieces, None))
            if data is None:
                return
            view = memoryview(data)[: end - sent]
            sent += len(view)
            yield view

    def exists(self, key: str) -> bool:
        try:
            self.info(key)
            return True
        except ObjectNotFoundError:
            return False

    def delete(self, key: str) -> None:
        check_key(key)
        try:
            self._call("deleting", key, lambda: self._obs.delete(self.store, key))
        except ObjectNotFoundError:
            pass

    def list(self, prefix: str = "") -> Iterator[str]:
        return self._list(prefix, None)

    def list_after(self, prefix: str, after: str) -> Iterator[str]:
        return self._list(prefix, after)

    def _list(self, prefix: str, after: str | None) -> Iterator[str]:
        def all_keys() -> list[str]:
            out: list[str] = []
            for batch in self._obs.list(self.store, prefix=prefix or None, offset=after, chunk_size=1000):
                out.extend(m["path"] for m in batch)
            return out

        keys = sorted(self._call("listing", prefix or "/", all_keys))
        return iter(keys if after is None else [k for k in keys if k > after])

    def info(self, key: str) -> KeyInfo:
        check_key(key)
        meta = self._call("reading", key, lambda: self._obs.head(self.store, key))
        return KeyInfo(meta["size"], meta["last_modified"].timestamp())

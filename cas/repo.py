"""A repository on disk: the ``.zcas`` folder, and finding it as git finds ``.git``.

Layout: ``config.toml`` (format version), ``objects/`` (the local backend: packs and their
indexes), ``refs/tags/``, ``history.jsonl``, ``statcache``. The lineage store adds its own
files beside these.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from .backend import Backend
from .db import ObjectDB
from .errors import NotARepositoryError, ZcasError
from .local import LocalBackend
from .refs import Forgotten, PathVersion, Refs, TagNotFoundError, now

DIRNAME = ".zcas"
FORMAT_VERSION = 1


def is_zdir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.toml")) and os.path.isdir(os.path.join(path, "objects"))


def find_root(start: str | None = None) -> str:
    """The folder holding ``.zcas``: from ``ZCAS_DIR`` if set, else the nearest parent."""
    env = os.environ.get("ZCAS_DIR")
    if env:
        env = os.path.abspath(env)
        if is_zdir(os.path.join(env, DIRNAME)):
            return env
        if os.path.basename(env) == DIRNAME and is_zdir(env):
            return os.path.dirname(env)
        raise NotARepositoryError(env)
    here = os.path.abspath(start or os.getcwd())
    cur = here
    while True:
        if is_zdir(os.path.join(cur, DIRNAME)):
            return cur
        parent = os.path.dirname(cur)
        if parent == cur:
            raise NotARepositoryError(here)
        cur = parent


def init(path: str, store: dict | None = None) -> tuple[str, bool]:
    """Create ``PATH/.zcas``; returns (zdir, created). Re-initialising is harmless.

    ``store`` ({"url", "endpoint", "region", "allow_http"}) puts the objects in object
    storage instead of ``.zcas/objects``, with a local read cache in front.
    """
    root = os.path.abspath(path)
    zdir = os.path.join(root, DIRNAME)
    if is_zdir(zdir):
        if store:
            raise ZcasError(f"{zdir} already exists: its store cannot be changed by init")
        return zdir, False
    if os.path.exists(root) and not os.path.isdir(root):
        raise ZcasError(f"cannot create a repository in {path}: not a folder")
    if store:
        from .objstore import ObstoreBackend

        b = ObstoreBackend(store["url"], store.get("endpoint"), store.get("region"), store.get("allow_http"))
        list(b.list("packs/"))  # fail now, in one line, if the store cannot be reached
    os.makedirs(os.path.join(zdir, "objects", "packs"), exist_ok=True)
    os.makedirs(os.path.join(zdir, "refs", "tags"), exist_ok=True)
    cfg: dict = {"core": {"format": FORMAT_VERSION}}
    if store:
        cfg["store"] = {k: v for k, v in store.items() if v is not None}
    write_config(zdir, cfg)
    return zdir, True


def read_config(zdir: str) -> dict:
    """The parsed config, or a one-line error naming the file (bad bytes, bad TOML)."""
    import tomllib

    path = os.path.join(zdir, "config.toml")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ZcasError(f"{path}: cannot read repository config: {e.strerror or e}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ZcasError(f"{path}: cannot read repository config: not valid UTF-8 (byte {e.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ZcasError(f"{path}: cannot read repository config: {str(e).splitlines()[0]}") from None


def write_config(zdir: str, cfg: dict) -> None:
    from .tomlw import write

    write(os.path.join(zdir, "config.toml"), cfg, "# zcas repository configuration\n")


def check_format(zdir: str, cfg: dict | None = None) -> dict:
    """The config, once its types are what zcas reads: ``[core] format`` a positive integer
    this zcas understands, ``[store]`` (if present) a table of strings and a boolean.
    Errors name the file and the key, in one line."""
    path = os.path.join(zdir, "config.toml")
    cfg = read_config(zdir) if cfg is None else cfg
    core = cfg.get("core")
    if not isinstance(core, dict):
        raise ZcasError(f"{path}: [core] must be a table holding format = {FORMAT_VERSION}")
    fmt = core.get("format")
    if not isinstance(fmt, int) or isinstance(fmt, bool) or fmt < 1:
        raise ZcasError(f"{path}: core.format must be a positive integer, not {_shown(fmt)}")
    if fmt > FORMAT_VERSION:
        raise ZcasError(f"{path}: repository format {fmt} is newer than this zcas understands ({FORMAT_VERSION}); upgrade zcas")
    store_settings(cfg, path)
    return cfg


_STORE_TYPES = {"url": str, "endpoint": str, "region": str, "allow_http": bool}


def store_settings(cfg: dict, path: str, table: str = "store") -> dict | None:
    """``cfg[table]`` checked (a table; url a non-empty string; endpoint and region
    strings; allow_http a boolean), or None when absent or naming no url."""
    store = cfg.get(table)
    if store is None:
        return None
    if not isinstance(store, dict):
        raise ZcasError(f"{path}: [{table}] must be a table, not {_shown(store)}")
    for key, want in _STORE_TYPES.items():
        value = store.get(key)
        if value is not None and (not isinstance(value, want) or (want is str and not value)):
            kind = "a boolean" if want is bool else "a non-empty string"
            raise ZcasError(f"{path}: {table}.{key} must be {kind}, not {_shown(value)}")
    return store if store.get("url") else None  # no url: the objects stay in .zcas/objects


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class Repo:
    """The object store, refs and stat cache of one repository."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.zdir = os.path.join(self.root, DIRNAME)
        if not is_zdir(self.zdir):
            raise NotARepositoryError(self.root)
        cfg = check_format(self.zdir)
        self.config = cfg
        local = LocalBackend(os.path.join(self.zdir, "objects"))
        store = store_settings(cfg, os.path.join(self.zdir, "config.toml"))
        if store is not None:
            from .cache import CachingBackend
            from .objstore import ObstoreBackend

            remote = ObstoreBackend(store["url"], store.get("endpoint"), store.get("region"), store.get("allow_http"))
            # packs are written locally, then uploaded; what is read is kept in objects/cache/
            self.backend: Backend = CachingBackend(remote, LocalBackend(local.root, fsync=False))
            self.db = ObjectDB(self.backend, auto_repack=True)  # the repository's own store: consolidated too
        else:
            self.backend = local
            self.db = ObjectDB(self.backend)
        self.refs = Refs(self.zdir)
        self.statcache_path = os.path.join(self.zdir, "statcache")

    @classmethod
    def find(cls, start: str | None = None) -> Repo:
        return cls(find_root(start))

    def rel(self, path: str) -> str:
        """A path as history records it: relative to the root when inside it."""
        full = os.path.abspath(path)
        if full == self.root or full.startswith(self.root + os.sep):
            return os.path.relpath(full, self.root).replace(os.sep, "/")
        return full

    def resolve(self, name: str) -> bytes:
        """A tag name or an id (a unique prefix of at least 4 hex digits)."""
        oid = self.refs.get_tag(name)
        if oid is not None:
            return oid
        if name and all(c in "0123456789abcdefABCDEF" for c in name):
            return self.db.resolve(name)
        raise TagNotFoundError(name)

    def add(self, paths: list[str], progress: Callable[[int], None] | None = None) -> list[tuple[bytes, str, str]]:
        """Store each path and record this version of it; [(id, path as given, kind)].
        ``progress(n)`` hears of n more bytes stored or found unchanged."""
        from .ingest import Ingester
        from .statcache import StatCache
        from .tree import MODES

        cache = StatCache(self.statcache_path)
        ing = Ingester(self.db, cache, progress)
        out = []
        try:
            for p in paths:
                oid, mode = ing.add(p)
                out.append((oid, p, MODES[mode]))
            self.db.flush()
        except BaseException:
            self.db.abort()
            raise
        cache.save()
        t = now()
        self.refs.record([PathVersion(self.rel(p), oid, kind, t) for oid, p, kind in out])
        return out

    def roots(self, forgotten: Forgotten | None = None) -> list[bytes]:
        """Everything a name keeps alive: tags and every recorded path version not forgotten
        (``forgotten``: what to treat as forgotten; default, what the refs record)."""
        return list(self.refs.tags().values()) + [v.oid for v in self.refs.live_history(forgotten)]

    def close(self) -> None:
        self.db.close()

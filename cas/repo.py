"""A repository on disk: the ``.zcas`` folder, and finding it as git finds ``.git``.

Layout: ``config.toml`` (format version), ``objects/`` (the local backend: packs and their
indexes), ``refs/tags/``, ``history.jsonl``, ``statcache``. The lineage store adds its own
files beside these.
"""

from __future__ import annotations

import os

from .db import ObjectDB
from .errors import NotARepositoryError, ZcasError
from .local import LocalBackend
from .refs import PathVersion, Refs, TagNotFoundError, now

DIRNAME = ".zcas"
FORMAT_VERSION = 1
_CONFIG = f"""# zcas repository configuration
[core]
format = {FORMAT_VERSION}
"""


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


def init(path: str) -> tuple[str, bool]:
    """Create ``PATH/.zcas``; returns (zdir, created). Re-initialising is harmless."""
    root = os.path.abspath(path)
    zdir = os.path.join(root, DIRNAME)
    if is_zdir(zdir):
        return zdir, False
    if os.path.exists(root) and not os.path.isdir(root):
        raise ZcasError(f"cannot create a repository in {path}: not a folder")
    os.makedirs(os.path.join(zdir, "objects", "packs"), exist_ok=True)
    os.makedirs(os.path.join(zdir, "refs", "tags"), exist_ok=True)
    tmp = os.path.join(zdir, "config.toml.tmp")
    with open(tmp, "w") as f:
        f.write(_CONFIG)
    os.replace(tmp, os.path.join(zdir, "config.toml"))
    return zdir, True


def check_format(zdir: str) -> None:
    import tomllib

    path = os.path.join(zdir, "config.toml")
    try:
        with open(path, "rb") as f:
            cfg = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ZcasError(f"{path}: cannot read repository config: {e}") from None
    fmt = cfg.get("core", {}).get("format")
    if not isinstance(fmt, int):
        raise ZcasError(f"{path}: core.format must be an integer")
    if fmt > FORMAT_VERSION:
        raise ZcasError(f"{path}: repository format {fmt} is newer than this zcas understands ({FORMAT_VERSION}); upgrade zcas")


class Repo:
    """The object store, refs and stat cache of one repository."""

    def __init__(self, root: str):
        self.root = os.path.abspath(root)
        self.zdir = os.path.join(self.root, DIRNAME)
        if not is_zdir(self.zdir):
            raise NotARepositoryError(self.root)
        check_format(self.zdir)
        self.backend = LocalBackend(os.path.join(self.zdir, "objects"))
        self.db = ObjectDB(self.backend)
        self.refs = Refs(self.zdir)
        self.statcache_path = os.path.join(self.zdir, "statcache")

    @classmethod
    def find(cls, start: str | None = None) -> "Repo":
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

    def add(self, paths: list[str]) -> list[tuple[bytes, str, str]]:
        """Store each path and record this version of it; [(id, path as given, kind)]."""
        from .ingest import Ingester
        from .statcache import StatCache
        from .tree import MODES

        cache = StatCache(self.statcache_path)
        ing = Ingester(self.db, cache)
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

    def roots(self) -> list[bytes]:
        """Everything a name keeps alive: tags and every recorded path version."""
        return list(self.refs.tags().values()) + [v.oid for v in self.refs.history()]

    def close(self) -> None:
        self.db.close()

"""Implicit inputs: files a Python step read without declaring them, and what they mean for
its key.

After a step runs, each file it read (``fileaudit``) and did not itself write is named in
its record with the id of its content. A record is a hit only while every one of those
files still has that id. Since the key is made before the step runs, it cannot hold what
the step will read; it holds what the step read last time (``predict``), so that each
version of those files keeps a cache entry of its own and going back to an earlier one is
a hit again, not a rerun.

A folder the step lists (``os.listdir``, ``os.scandir``, and so ``glob``, ``os.walk`` and
``pathlib``'s ``iterdir``/``glob``) is an implicit input named ``DIR/`` (``./`` for the top
folder) whose id is a digest of its listing: sorted names with their kinds, so a file added
to or removed from a folder a step globbed is a miss. A database opened with
``sqlite3.connect`` is a file read like any other (its content's id).

What a step read when it last ran in this repository is kept apart (``.zcas/implicit``),
and only that may shape the key a new run is recorded under: records from a remote only
help find a hit (``predict``).

Paths come back from records, and records may come from a remote: each is checked to be a
plain repository-relative path, and what it names is hashed only if it really lies inside
the repository (a symlink out of it makes the record no hit).
"""

from __future__ import annotations

import json
import os
import stat
import sys
from collections.abc import Iterable
from typing import Any

from zcas.cas.errors import ZcasError
from zcas.cas.oid import hash_bytes, hash_file
from zcas.cas.statcache import StatCache, stat_key
from zcas.lineage.records import RecordError, check_rel_path

from .keys import key_of

ABSENT = "absent"  # a predicted file that is not there now
_WARN_LIMIT = 5


class _Tree:
    """Ids of files under one root, with each folder's real path worked out once (a step
    reading 10,000 files in one folder resolves one folder, not 10,000 paths)."""

    def __init__(self, root: str, statcache: StatCache | None):
        self.root = os.path.abspath(root)
        self.real_root = os.path.realpath(root).rstrip(os.sep) + os.sep
        self.statcache = statcache
        self._dirs: dict[str, bool] = {}

    def _inside(self, real: str) -> bool:
        return real.startswith(self.real_root)

    def id_of(self, rel: str) -> str | None:
        """The id (hex) of the regular file at ``rel`` now, or None: absent, not a file,
        unreadable, not a safe path, or reached through a link out of the repository.
        ``DIR/`` (``./``: the top folder) is a folder's listing (``listing_of``)."""
        try:
            check_rel_path("implicit input", rel)
        except RecordError:
            return None
        if rel.endswith("/"):
            return self.listing_of(rel)
        full = f"{self.root}/{rel}" if os.sep == "/" else os.path.join(self.root, *rel.split("/"))
        parent = full.rpartition(os.sep)[0]
        inside = self._dirs.get(parent)
        if inside is None:
            inside = self._dirs[parent] = self._inside(os.path.realpath(parent) + os.sep)
        try:
            st = os.lstat(full)
        except OSError:
            return None
        if not inside:
            return None
        if stat.S_ISLNK(st.st_mode):
            real = os.path.realpath(full)
            if not self._inside(real):
                return None
            try:
                st = os.stat(real)
            except OSError:
                return None
        if not stat.S_ISREG(st.st_mode):
            return None
        key, bpath = stat_key(st), os.fsencode(full)
        known = self.statcache.get(bpath, key) if self.statcache is not None else None
        if known is not None:
            return known.hex()
        try:
            oid = hash_file(full)
        except (ZcasError, OSError):
            return None
        if self.statcache is not None and not stat.S_ISLNK(os.lstat(full).st_mode):
            self.statcache.put(bpath, key, oid)
        return oid.hex()


    def listing_of(self, rel: str) -> str | None:
        """The id of what a folder holds now: its sorted names, each with its kind (folder,
        file, link, other), so adding, removing or renaming an entry changes it; None when
        it is not a folder inside the repository."""
        full = self.root if rel == "./" else os.path.join(self.root, *rel.rstrip("/").split("/"))
        real = os.path.realpath(full)
        if real != self.real_root.rstrip(os.sep) and not self._inside(real + os.sep):
            return None
        try:
            with os.scandir(full) as it:
                names = sorted((e.name, "l" if e.is_symlink() else "d" if e.is_dir() else "f" if e.is_file()
                                else "o") for e in it)
        except OSError:
            return None
        text = "zcas-listing-1\n" + "".join(f"{kind} {name}\n" for name, kind in names)
        return hash_bytes(text.encode("utf-8", "surrogateescape")).hex()


def current(root: str, rel: str, statcache: StatCache | None) -> str | None:
    """The id (hex) of the regular file at ``rel`` under ``root`` now (see ``_Tree.id_of``)."""
    return _Tree(root, statcache).id_of(rel)


def ids_of(root: str, reads: Iterable[str], writes: Iterable[str], statcache: StatCache | None) -> dict[str, str]:
    """{path: id} of the files read (and not written: the step's own scratch) that exist."""
    tree = _Tree(root, statcache)
    written = set(writes)
    out = {}
    for rel in sorted(set(reads) - written):
        oid = tree.id_of(rel)
        if oid is not None:
            out[rel] = oid
    return out


def warn_writes(step: str, writes: Iterable[str], declared: Iterable[str]) -> None:
    """Say which files a step wrote that are none of its outputs: a hit will not write them."""
    outs = [d.rstrip("/") for d in declared]
    stray = sorted(w for w in writes if not any(w == o or w.startswith(o + "/") for o in outs))
    if not stray:
        return
    more = f" and {len(stray) - _WARN_LIMIT} more" if len(stray) > _WARN_LIMIT else ""
    print(f"zcas: warning: step {step} wrote {', '.join(stray[:_WARN_LIMIT])}{more}, which it does not return "
          "(a cache hit will not write it; return the path to make it an output)", file=sys.stderr)


def matches(root: str, implicit: Any, statcache: StatCache | None) -> bool:
    """Whether every implicit input a record names still has the id it names."""
    if not isinstance(implicit, dict):
        return False
    tree = _Tree(root, statcache)
    return all(isinstance(rel, str) and isinstance(oid, str) and tree.id_of(rel) == oid for rel, oid in implicit.items())


def components(paths: Iterable[str], root: str, statcache: StatCache | None) -> dict[str, str]:
    """Key components for a guess of what a step will read: each path's id now."""
    tree = _Tree(root, statcache)
    return {f"implicit:{p}": tree.id_of(p) or ABSENT for p in sorted(paths)}


def _known_path(zdir: str, step: str) -> str:
    return os.path.join(zdir, "implicit", hash_bytes(step.encode("utf-8", "surrogateescape")).hex()[:32] + ".json")


def remember(zdir: str, step: str, paths: Iterable[str]) -> None:
    """Keep, in this repository only, what ``step`` read when it last ran here: what
    ``predict`` may plan a new run under (a record from a remote may not: see there)."""
    path = _known_path(zdir, step)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w") as f:
            json.dump({"step": step, "paths": sorted(paths)}, f)
        os.replace(tmp, path)
    except OSError:  # a guess: without it, the next run plans under the key without files
        try:
            os.unlink(tmp)
        except OSError:
            pass


def known(zdir: str, step: str) -> list[str]:
    """The paths ``step`` read when it last ran in this repository ([] when unknown)."""
    try:
        with open(_known_path(zdir, step), "rb") as f:
            d = json.loads(f.read())
    except (OSError, ValueError, RecursionError):
        return []
    paths = d.get("paths") if isinstance(d, dict) and d.get("step") == step else None
    return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []


def predict(comps: dict[str, str], here: list[str], seen: list[dict[str, Any]], root: str,
            statcache: StatCache | None, lookup: Any, fits: Any) -> dict[str, str]:
    """The key components to plan under, given the key without files (``comps``), the
    paths the step read when it last ran in this repository (``here``), and other records
    that name what it read (``seen``, newest first: the step's last run, the one cached
    under the key without files), which may have come from a remote.

    ``lookup(key) -> record or None`` reads the cache; ``fits(record)`` says whether one is
    a hit now. The first guess with a fitting record wins; failing that, the key without
    files if its record fits; failing that, the guess from ``here``, so the run about to
    happen is cached under the files it will most likely read.

    Only ``here`` may give the key a run is recorded (and pushed) under. A guess from a
    record of elsewhere is used only when a record fits it, and then every id it holds is
    one that record already names: a planted record naming ``.env`` cannot make a run put
    the id of ``.env`` in its key, nor in a key it asks a remote for."""
    mine = {**comps, **components(here, root, statcache)} if here else None
    guesses: list[dict[str, str]] = [mine] if mine is not None else []
    for rec in seen:
        paths = sorted((rec.get("implicit_inputs") or {}) if isinstance(rec.get("implicit_inputs"), dict) else {})
        c = {**comps, **components(paths, root, statcache)} if paths else None
        if c is not None and c not in guesses:
            guesses.append(c)
    for c in guesses:
        rec = lookup(key_of(c))
        if rec is not None and fits(rec):
            return c
    bare = lookup(key_of(comps))
    if bare is not None and fits(bare):
        return comps
    return mine if mine is not None else comps

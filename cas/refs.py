"""Names for objects: tags, and the history of every path added.

Both are small files beside the objects, written atomically (tags) or appended a line at a
time (history), so a crash leaves either the old state or the new one. The lineage store
indexes them later; the files stay the record of truth.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from typing import NamedTuple

from .errors import UsageError, ZcasError
from .oid import from_hex

_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
_HEXISH = re.compile(r"[0-9a-fA-F]{4,64}")


class TagNotFoundError(ZcasError, LookupError):
    def __init__(self, name: str):
        self.name = name
        super().__init__(f"unknown tag or id: {name}")


def check_tag_name(name: str) -> str:
    if not _TAG_RE.fullmatch(name) or name.endswith(".lock") or name.endswith("."):
        raise UsageError(f"invalid tag name {name!r}: use letters, digits, '.', '_' and '-'")
    if _HEXISH.fullmatch(name):
        raise UsageError(f"invalid tag name {name!r}: it would read as an object id")
    return name


class PathVersion(NamedTuple):
    path: str
    oid: bytes
    kind: str  # "file", "tree", "link"
    time: float


class Refs:
    def __init__(self, zdir: str):
        self.tags_dir = os.path.join(zdir, "refs", "tags")
        self.history_path = os.path.join(zdir, "history.jsonl")
        self.last_recorded: list[PathVersion] = []  # what the latest record() wrote

    # -- tags ----------------------------------------------------------------------------

    def set_tag(self, name: str, oid: bytes, force: bool = False) -> None:
        check_tag_name(name)
        path = os.path.join(self.tags_dir, name)
        old = self.get_tag(name)
        if old is not None and old != oid and not force:
            raise ZcasError(f"tag {name} already points to {old.hex()[:12]} (use --force to move it)")
        os.makedirs(self.tags_dir, exist_ok=True)
        tmp = f"{path}.{os.getpid()}.lock"
        with open(tmp, "w") as f:
            f.write(oid.hex() + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def get_tag(self, name: str) -> bytes | None:
        if not _TAG_RE.fullmatch(name):
            return None
        try:
            with open(os.path.join(self.tags_dir, name)) as f:
                return from_hex(f.read().strip())
        except FileNotFoundError:
            return None
        except UsageError:
            raise ZcasError(f"tag {name} is damaged: it does not hold an object id") from None

    def delete_tag(self, name: str) -> None:
        try:
            os.unlink(os.path.join(self.tags_dir, check_tag_name(name)))
        except FileNotFoundError:
            raise TagNotFoundError(name) from None

    def tags(self) -> dict[str, bytes]:
        try:
            names = sorted(os.listdir(self.tags_dir))
        except FileNotFoundError:
            return {}
        out = {}
        for name in names:
            if _TAG_RE.fullmatch(name) and not name.endswith(".lock"):
                oid = self.get_tag(name)
                if oid is not None:
                    out[name] = oid
        return out

    # -- path history --------------------------------------------------------------------

    def record(self, versions: list[PathVersion]) -> None:
        self.last_recorded = list(versions)
        if not versions:
            return
        lines = "".join(
            json.dumps({"path": v.path, "id": v.oid.hex(), "kind": v.kind, "time": v.time}) + "\n"
            for v in versions
        )
        fd = os.open(self.history_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            os.write(fd, lines.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def history(self, path: str | None = None) -> Iterator[PathVersion]:
        try:
            f = open(self.history_path, encoding="utf-8")
        except FileNotFoundError:
            return
        with f:
            for line in f:
                try:
                    d = json.loads(line)
                    v = PathVersion(d["path"], from_hex(d["id"]), d["kind"], float(d["time"]))
                except (ValueError, KeyError, TypeError):
                    continue  # a line torn by a crash mid-append
                if path is None or v.path == path:
                    yield v


def now() -> float:
    return time.time()

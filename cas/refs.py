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


FORGOTTEN_VERSION = 1
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_NS = (1 << 63) - 1


class Forgotten:
    """What the user asked to forget: run ids, and spans of path versions.

    A path version is forgotten as a span, (path, id, first_ns, last_ns): every record of
    ``path`` holding ``id`` from its first time to its last, as one version of ``zcas log
    PATH --versions`` groups them. The same content recorded there again later is a new
    version, not forgotten."""

    def __init__(self) -> None:
        self.runs: set[bytes] = set()
        self.spans: dict[str, list[tuple[bytes, int, int]]] = {}

    def __bool__(self) -> bool:
        return bool(self.runs or self.spans)

    def add_run(self, rid: bytes) -> None:
        self.runs.add(rid)

    def add_version(self, path: str, oid: bytes, first_ns: int, last_ns: int) -> None:
        self.spans.setdefault(path, []).append((oid, first_ns, last_ns))

    def union(self, other: Forgotten) -> Forgotten:
        out = Forgotten()
        out.runs = self.runs | other.runs
        for src in (self.spans, other.spans):
            for path, spans in src.items():
                out.spans.setdefault(path, []).extend(spans)
        return out

    def version(self, path: str, oid: bytes, time_ns: int) -> bool:
        """Is the record "``path`` held ``oid`` at ``time_ns``" forgotten?"""
        return any(o == oid and lo <= time_ns <= hi for o, lo, hi in self.spans.get(path, ()))

    def line(self, v: PathVersion) -> bool:
        """Is this line of a history file forgotten? (Its time in ns as lineage indexes it.)"""
        try:
            return self.version(v.path, v.oid, int(v.time * 1e9))
        except (TypeError, ValueError, OverflowError):
            return False


def _forget_entry(d: object, into: Forgotten) -> bool:
    """Add one line of the forgotten file to ``into``; False (nothing added) if malformed."""
    if not isinstance(d, dict) or d.get("v") != FORGOTTEN_VERSION:
        return False
    runs, versions = d.get("runs", []), d.get("versions", [])
    if not isinstance(runs, list) or not isinstance(versions, list):
        return False
    if not all(isinstance(r, str) and _HEX64.fullmatch(r) for r in runs):
        return False
    spans = []
    for v in versions:
        if not isinstance(v, dict) or not isinstance(v.get("path"), str) or not isinstance(v.get("id"), str):
            return False
        lo, hi = v.get("first_ns"), v.get("last_ns")
        if not _HEX64.fullmatch(v["id"]) or not isinstance(lo, int) or not isinstance(hi, int):
            return False
        if isinstance(lo, bool) or isinstance(hi, bool) or not 0 <= lo <= hi <= _MAX_NS:
            return False
        spans.append((v["path"], bytes.fromhex(v["id"]), lo, hi))
    for r in runs:
        into.add_run(bytes.fromhex(r))
    for path, oid, lo, hi in spans:
        into.add_version(path, oid, lo, hi)
    return True


class Refs:
    def __init__(self, zdir: str):
        self.tags_dir = os.path.join(zdir, "refs", "tags")
        self.history_path = os.path.join(zdir, "history.jsonl")
        self.forgotten_path = os.path.join(zdir, "forgotten.jsonl")
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


    # -- forgetting --------------------------------------------------------------------------

    def forget(self, runs: list[bytes], versions: list[tuple[str, bytes, int, int]]) -> None:
        """Record durably that these runs and path-version spans (path, id, first_ns,
        last_ns) are forgotten: one line per call, appended and fsynced, so a crash leaves
        the whole request recorded or none of it (a torn last line is skipped on read, and
        the next append starts on a line of its own)."""
        if not runs and not versions:
            return
        line = json.dumps(
            {"v": FORGOTTEN_VERSION, "time": now(), "runs": sorted({r.hex() for r in runs}),
             "versions": [{"path": p, "id": o.hex(), "first_ns": lo, "last_ns": hi} for p, o, lo, hi in versions]},
            sort_keys=True,
        ) + "\n"
        fd = os.open(self.forgotten_path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = "\n" + line  # after a torn line: never glue onto it
            data = line.encode()
            n = os.write(fd, data)
            if n != len(data):
                raise OSError(f"short write to {self.forgotten_path}")
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_dir(os.path.dirname(self.forgotten_path))

    def forgotten(self) -> Forgotten:
        """Everything forgotten so far; malformed or torn lines are skipped."""
        out = Forgotten()
        try:
            f = open(self.forgotten_path, encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return out
        with f:
            for line in f:
                try:
                    d = json.loads(line)
                except ValueError:
                    continue  # a line torn by a crash mid-append
                _forget_entry(d, out)
        return out

    def live_history(self, forgotten: Forgotten | None = None) -> Iterator[PathVersion]:
        """The history lines not forgotten."""
        f = self.forgotten() if forgotten is None else forgotten
        return (v for v in self.history() if not f.line(v))


def _fsync_dir(path: str) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def now() -> float:
    return time.time()

"""Tags and path history travel with ``zcas push`` and ``zcas pull`` (without targets).

A tag is pushed create-only: one that names another id on the remote is reported and left
alone (``zcas push --force TAG`` moves it). A pulled tag is set here only when no local tag
has the name and its object arrived; a local tag that differs is kept, and reported.

Path history goes as segments, ``history/t-<time>-<BLAKE3>`` (``lineage.segments``: a
pull lists only those named after its cursor): the lines of ``history.jsonl`` not
yet pushed (the offset pushed so far is remembered per remote). Pulled lines are validated
one by one — a hostile remote's history is no more trusted than its records — and kept in
``.zcas/remotes/NAME/history.jsonl``, apart from the local history: versions someone else
recorded, whose objects may never be fetched here, name nothing gc must find.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from zcas.cas import codec
from zcas.cas.bounded import get_bounded
from zcas.cas.errors import ObjectNotFoundError, ZcasError
from zcas.cas.oid import from_hex, hash_bytes
from zcas.cas.refs import PathVersion, check_tag_name
from zcas.cas.safetext import printable
from zcas.lineage import segments
from zcas.runners.spec import SpecError, norm_path

if TYPE_CHECKING:
    from .remotes import Remote  # type only: remotes imports this module

Warn = Callable[[str], None]

PREFIX = "history/"
_SEGMENT = 8 << 20  # bytes of history lines per segment
_MAX_SEGMENT = 64 << 20  # the most a pulled segment may hold
_KINDS = ("file", "exec", "tree", "link")  # as cas.refs writes them (an executable is "exec")


def _state(remote: Remote, name: str) -> str:
    return os.path.join(remote.repo.zdir, "remotes", remote.spec.name, name)


def push_refs(remote: Remote, warn: Warn) -> tuple[int, int]:
    """(tags created on the remote, history lines sent)."""
    tags = 0
    for name, oid in remote.repo.refs.tags().items():
        try:
            if remote.remote_tag(name) != oid:
                remote.push_tag(name, oid)
                tags += 1
        except ZcasError as e:
            warn(f"{printable(e)}; not moved")
    return tags, _push_history(remote)


def _unpushed(remote: Remote) -> tuple[bytes, int]:
    """(the whole lines of the local history not pushed yet, the offset pushed so far)."""
    try:
        with open(_state(remote, "history-pushed")) as f:
            done = int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        done = 0
    try:
        with open(remote.repo.refs.history_path, "rb") as f:
            f.seek(done)
            data = f.read()
    except FileNotFoundError:
        return b"", done
    return data[: data.rfind(b"\n") + 1], done  # whole lines only (a line being appended waits)


def unpushed_history(remote: Remote) -> list[PathVersion]:
    """The history lines the next push sends."""
    return _lines(_not_forgotten(remote, _unpushed(remote)[0]))[0]


def _push_history(remote: Remote) -> int:
    data, done = _unpushed(remote)
    send = _not_forgotten(remote, data)
    _send_lines(remote, send)
    if data:
        done_path = _state(remote, "history-pushed")
        os.makedirs(os.path.dirname(done_path), exist_ok=True)
        with open(done_path + ".tmp", "w") as f:
            f.write(str(done + len(data)))
        os.replace(done_path + ".tmp", done_path)
    return send.count(b"\n")


def _send_lines(remote: Remote, data: bytes, time_ns: int | None = None) -> set[str]:
    """Store whole history lines as segments of about _SEGMENT bytes; their keys."""
    keys = set()
    sent = 0
    while sent < len(data):
        end = data.rfind(b"\n", sent, sent + _SEGMENT) + 1 or data.find(b"\n", sent) + 1
        payload = data[sent:end]
        key = PREFIX + segments.new_name(hash_bytes(payload).hex(), time_ns)
        remote.backend.put(key, codec.encode(codec.KIND_RECORD, payload))
        keys.add(key)
        sent = end
    return keys


def _dump(v: PathVersion) -> str:
    return json.dumps({"path": v.path, "id": v.oid.hex(), "kind": v.kind, "time": v.time}) + "\n"


def _not_forgotten(remote: Remote, data: bytes) -> bytes:
    """The history lines of ``data`` that were not forgotten (``zcas forget``): a version
    forgotten before it was pushed never leaves. (One pushed before stays on the remote.)"""
    forgotten = remote.repo.refs.forgotten()
    if not forgotten:
        return data
    kept = []
    for line in data.splitlines(keepends=True):
        try:
            d = json.loads(line)
            v = PathVersion(d["path"], from_hex(d["id"]), d["kind"], float(d["time"]))
        except (ValueError, KeyError, TypeError, ZcasError):
            kept.append(line)  # sent as before: the remote's reader skips what it cannot use
            continue
        if not forgotten.line(v):
            kept.append(line)
    return b"".join(kept)


def pull_refs(remote: Remote, warn: Warn, full: bool = False) -> tuple[int, int]:
    """(tags set here, history lines taken); ``full``: list every history segment, not
    only those after this repository's cursor."""
    return _pull_tags(remote, warn), _pull_history(remote, warn, full)


def _pull_tags(remote: Remote, warn: Warn) -> int:
    lin, repo = remote.lineage.lineage, remote.repo
    n = 0
    for key in remote.backend.list("refs/tags/"):
        name = key[len("refs/tags/") :]
        try:
            check_tag_name(name)
            oid = remote.remote_tag(name)
        except ZcasError as e:
            warn(f"remote {remote.spec.name}: tag {printable(name)!r} skipped: {printable(e)}")
            continue
        local = repo.refs.get_tag(name)
        if oid is None or local == oid:
            continue
        if local is not None:
            warn(f"tag {name} differs: here {local.hex()[:12]}, on remote {remote.spec.name} {oid.hex()[:12]}; "
                 "kept the one here")
        elif repo.db.has(oid):
            lin.set_tag(name, oid)
            n += 1
        else:
            warn(f"tag {name} on remote {remote.spec.name} names {oid.hex()[:12]}, which was not pulled; not set")
    return n


def _line(raw: bytes) -> PathVersion | str:
    """A history line from a remote as a PathVersion, or the reason it is refused."""
    try:
        d = json.loads(raw)
        path, kind, t = d["path"], d["kind"], d["time"]
        if not isinstance(path, str) or len(path) > 4096 or norm_path(path, "path") != path:
            return "not a plain path inside a repository"
        if kind not in _KINDS or isinstance(t, bool) or not isinstance(t, (int, float)) or not (0 <= t < 1e10):
            return "bad kind or time"
        if not math.isfinite(t):
            return "bad time"
        return PathVersion(path, from_hex(d["id"]), kind, float(t))
    except (ValueError, KeyError, TypeError, SpecError, ZcasError):
        return "not a history line"


def _segments(remote: Remote, cursor: int | None = None) -> Iterator[tuple[str, int | None]]:
    """(key, time of its name) of the history segments after ``cursor`` (None: all)."""
    for key in segments.listed(remote.backend, PREFIX, cursor):
        parsed = segments.parse(key[len(PREFIX) :])
        if parsed is not None:
            yield key, parsed[0]


def _lines(payload: bytes) -> tuple[list[PathVersion], list[str]]:
    """(the valid lines of a segment, why each other line was refused)."""
    good: list[PathVersion] = []
    bad: list[str] = []
    for raw in payload.splitlines():
        v = _line(raw)
        if isinstance(v, str):
            bad.append(v)
        else:
            good.append(v)
    return good, bad


def _pull_history(remote: Remote, warn: Warn, full: bool = False) -> int:
    seen_dir = _state(remote, "history-seen")
    os.makedirs(seen_dir, exist_ok=True)
    seen = set(os.listdir(seen_dir))
    cursor = segments.Cursor(_state(remote, "history-cursor"))
    taken = 0
    held: set[PathVersion] | None = None  # the lines taken before: read once, if a segment is new
    latest = None  # every segment listed is taken, or skipped for good, below
    for key, t in _segments(remote, None if full else cursor.get()):
        name = key[len(PREFIX) :]
        latest = t if latest is None or (t is not None and t > latest) else latest
        if name in seen:
            continue
        try:
            _, payload = codec.decode(key, get_bounded(remote.backend, key, _MAX_SEGMENT))
            if hash_bytes(payload).hex() != name[-64:]:
                raise ZcasError("its content does not match its name")
        except ObjectNotFoundError:
            continue  # folded by a gc since it was listed
        except ZcasError as e:
            warn(f"remote {remote.spec.name}: history segment {printable(key)} skipped: {printable(e)}")
            open(os.path.join(seen_dir, name), "w").close()
            continue
        good, bad = _lines(payload)
        if bad:
            warn(f"remote {remote.spec.name}: history segment {printable(key)}: {len(bad)} lines skipped ({bad[0]})")
        if held is None:
            held = _taken(remote)
        good = [v for v in dict.fromkeys(good) if v not in held]  # (a gc's rewrite repeats them all)
        held.update(good)
        if good:
            with open(_state(remote, "history.jsonl"), "a") as f:
                f.writelines(_dump(v) for v in good)
            remote.lineage.lineage.index_paths(good)
        open(os.path.join(seen_dir, name), "w").close()
        taken += len(good)
    if latest is not None:
        cursor.advance(latest)
    return taken


def _taken(remote: Remote) -> set[PathVersion]:
    try:
        with open(_state(remote, "history.jsonl"), "rb") as f:
            return {v for v in map(_line, f) if not isinstance(v, str)}
    except FileNotFoundError:
        return set()


# -- what gc over the remote reads and rewrites -------------------------------------------------


def remote_history(remote: Remote) -> tuple[list[str], list[PathVersion]]:
    """(segment keys, every valid history line on the remote). A segment that does not
    read raises: what it names is unknown, so gc must not act. Invalid lines name nothing
    (no reader ever takes them) and are left out."""
    keys: list[str] = []
    lines: list[PathVersion] = []
    for key, _ in _segments(remote):
        try:
            _, payload = codec.decode(key, get_bounded(remote.backend, key, _MAX_SEGMENT))
        except ObjectNotFoundError:
            continue
        except ZcasError as e:
            raise ZcasError(f"remote {remote.spec.name}: history segment {printable(key)} does not read "
                            f"({printable(e)})") from None
        keys.append(key)
        lines.extend(_lines(payload)[0])
    return keys, lines


def rewrite_history(remote: Remote, old: list[str], keep: list[PathVersion]) -> int:
    """Replace the segments ``old`` by segments holding ``keep`` (new ones first); returns
    how many segments were removed. The new ones are marked seen here."""
    data = "".join(_dump(v) for v in sorted(set(keep), key=lambda v: (v.time, v.path))).encode()
    times = [p[0] for k in old if (p := segments.parse(k[len(PREFIX) :])) is not None and p[0] is not None]
    new = _send_lines(remote, data, max(times, default=0))  # named as the newest it folds: not listed anew
    seen_dir = _state(remote, "history-seen")
    os.makedirs(seen_dir, exist_ok=True)
    for key in new:
        open(os.path.join(seen_dir, key[len(PREFIX) :]), "w").close()
    gone = [k for k in old if k not in new]
    for key in gone:
        remote.backend.delete(key)
    return len(gone)

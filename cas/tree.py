"""Trees: a directory as one object, and the rules that keep a checkout inside its folder.

Entries are sorted by name bytes, so the same directory always gives the same bytes and id.
Symlinks are stored as links (their target as a blob), never followed. Every decoded tree is
checked: a name that is empty, ``.``, ``..``, or holds ``/`` or NUL, duplicate or unsorted
names, and unknown modes are refused, since a tree may come from a shared, untrusted store.

Payload: ``ZTREE\\x01``, u32 count, then per entry: mode u8, id 32 bytes, u16 name length,
name bytes.
"""

from __future__ import annotations

import posixpath
import struct
from typing import NamedTuple

from .errors import IntegrityError, UnsafePathError

MAGIC = b"ZTREE\x01"
_COUNT = struct.Struct("<I")
_HEAD = struct.Struct("<B32sH")

MODE_FILE = 1
MODE_EXEC = 2
MODE_LINK = 3
MODE_TREE = 4
MODES = {MODE_FILE: "file", MODE_EXEC: "exec", MODE_LINK: "link", MODE_TREE: "tree"}


class TreeEntry(NamedTuple):
    name: bytes
    mode: int
    oid: bytes


def encode_tree(entries: list[TreeEntry]) -> bytes:
    entries = sorted(entries, key=lambda e: e.name)
    parts = [MAGIC, _COUNT.pack(len(entries))]
    prev = None
    for e in entries:
        check_name(e.name)
        if e.name == prev:
            raise UnsafePathError(e.name.decode("utf-8", "replace"), "duplicate name in tree")
        prev = e.name
        parts.append(_HEAD.pack(e.mode, e.oid, len(e.name)))
        parts.append(e.name)
    return b"".join(parts)


def encode_entries(entries: list[tuple[bytes, int, bytes]]) -> bytes:
    """Encode (name, mode, id) entries whose names came from the filesystem.

    A name from a directory listing is never empty, ``.``, ``..``, or holds ``/`` or NUL,
    and appears once, so the per-name checks of ``encode_tree`` are skipped here.
    """
    entries = sorted(entries)
    head = _HEAD.pack
    parts = [MAGIC, _COUNT.pack(len(entries))]
    for name, mode, oid in entries:
        parts.append(head(mode, oid, len(name)))
        parts.append(name)
    return b"".join(parts)


def check_name(name: bytes) -> None:
    shown = name.decode("utf-8", "replace")
    if not name:
        raise UnsafePathError(shown, "empty name")
    if name in (b".", b".."):
        raise UnsafePathError(shown, "name is . or ..")
    if b"/" in name or b"\0" in name:
        raise UnsafePathError(shown, "name contains / or NUL")


def decode_tree(tree_id: bytes | str, payload: bytes) -> list[TreeEntry]:
    """The entries of a tree's payload, refused (IntegrityError or UnsafePathError naming
    ``tree_id``, its id) unless it is exactly what ``encode_tree`` writes."""
    if not payload.startswith(MAGIC) or len(payload) < len(MAGIC) + 4:
        raise IntegrityError(tree_id, "not a tree")
    (count,) = _COUNT.unpack_from(payload, len(MAGIC))
    pos = len(MAGIC) + 4
    out: list[TreeEntry] = []
    prev = None
    for _ in range(count):
        if pos + _HEAD.size > len(payload):
            raise IntegrityError(tree_id, "tree is truncated")
        mode, oid, n = _HEAD.unpack_from(payload, pos)
        pos += _HEAD.size
        name = payload[pos : pos + n]
        pos += n
        if len(name) != n:
            raise IntegrityError(tree_id, "tree is truncated")
        if mode not in MODES:
            raise IntegrityError(tree_id, f"unknown entry mode {mode}")
        check_name(name)
        if prev is not None and name <= prev:
            raise UnsafePathError(name.decode("utf-8", "replace"), "duplicate or unsorted name in tree")
        prev = name
        out.append(TreeEntry(name, mode, oid))
    if pos != len(payload):
        raise IntegrityError(tree_id, "trailing bytes after tree entries")
    return out


_RESERVED = ".zcas"
# Code points case-insensitive filesystems (HFS+, APFS) ignore in names: ".zc\u200bas" is
# ".zcas" there, so they are dropped before comparing.
_IGNORABLE = dict.fromkeys([0x200B, 0x200C, 0x200D, 0x200E, 0x200F, 0x202A, 0x202B, 0x202C, 0x202D, 0x202E,
                            0x206A, 0x206B, 0x206C, 0x206D, 0x206E, 0x206F, 0xFEFF])


def is_reserved_name(name: bytes) -> bool:
    """Whether a name is, or on some filesystem would be, a repository's ``.zcas``.

    A tree holding one could plant config, objects or refs in whatever repository it is
    checked out into; on a case-insensitive filesystem ``.ZCAS`` (or a Unicode variant
    that folds to it) is the same folder, so every such spelling counts.
    """
    if len(name) < 5 or len(name) > 64:
        return False
    if name.lower() == b".zcas":
        return True
    if name.isascii():
        return False
    import unicodedata

    text = name.decode("utf-8", "replace").translate(_IGNORABLE)
    return unicodedata.normalize("NFKC", text).casefold() == _RESERVED


def check_link_target(rel_dir: str, name: str, target: bytes) -> None:
    """Refuse a symlink whose target, resolved lexically, leaves the checkout root.

    ``rel_dir`` is the link's folder relative to the root ("" at the top).
    """
    shown = posixpath.join(rel_dir, name)
    if not target or b"\0" in target:
        raise UnsafePathError(shown, "symlink target is empty or contains NUL")
    t = target.decode("utf-8", "surrogateescape")
    if t.startswith("/"):
        raise UnsafePathError(shown, f"symlink points to an absolute path {t!r}")
    depth = 0 if not rel_dir else len(rel_dir.split("/"))
    for part in t.split("/"):
        if part in ("", "."):
            continue
        depth = depth - 1 if part == ".." else depth + 1
        if depth < 0:
            raise UnsafePathError(shown, f"symlink target {t!r} points outside the checkout")

"""``REF/PATH``: what a ``zcas://`` URL names, parsed without touching the store.

The parse is purely syntactic so that it can be property-tested and so that a URL means
the same thing whatever the repository holds: REF is always exactly the first segment.
A path-history reference (``NAME@N``, as ``zcas log NAME --versions`` and ``zcas forget``
number versions) would otherwise be ambiguous when NAME holds ``/``; writing those ``/``
as ``%2F`` keeps REF one segment, so a file whose name happens to end in ``@2`` inside a
tagged tree still reads as a file. Tags and ids never contain ``@`` or ``%``.
"""

from __future__ import annotations

import re
from urllib.parse import quote, unquote

import attrs

from zcas.cas.errors import UsageError

PROTOCOL = "zcas"
_VERSION = re.compile(r"[1-9][0-9]{0,17}")
_PLAIN_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")  # a tag name or a hex id/prefix


class BadLocationError(UsageError):
    """A ``zcas://`` path that names nothing by its syntax alone (a ValueError too)."""

    def __init__(self, text: str, reason: str) -> None:
        self.text, self.reason = text, reason
        super().__init__(f"bad zcas:// path {text!r}: {reason}")


@attrs.frozen
class Location:
    """``ref`` is a tag, an id or prefix, or (with ``version``) a path in the history;
    ``path`` is '/'-joined names inside that object ("" for the object itself)."""

    ref: str
    version: int | None = None
    path: str = ""

    @property
    def parts(self) -> list[str]:
        return self.path.split("/") if self.path else []


def strip(text: str) -> str:
    """``text`` without the protocol and the slashes around it (fsspec's own form)."""
    for head in (PROTOCOL + "://", PROTOCOL + "::"):
        if text.startswith(head):
            text = text[len(head):]
            break
    return text.strip("/")


def parse(text: str) -> Location:
    """The Location a path names; BadLocationError (one line) for a path naming nothing.

    Empty segments collapse (``v1//a`` is ``v1/a``, as every filesystem reads it); ``.``
    and ``..`` are refused rather than resolved, since a stored tree never holds them and
    resolving them would let a URL climb above its REF."""
    body = strip(text)
    segments = [s for s in body.split("/") if s]
    if not segments:
        raise BadLocationError(text, "no REF (a tag, an id, or PATH@N)")
    for s in segments:
        if s in (".", ".."):
            raise BadLocationError(text, f"{s!r} is not a name inside a stored tree")
        if "\0" in s:
            raise BadLocationError(text, "a NUL in a name")
    head, rest = segments[0], "/".join(segments[1:])
    if "@" in head:
        name, _, n = head.rpartition("@")
        if not _VERSION.fullmatch(n):
            raise BadLocationError(text, f"version after '@' must be a number from 1 (got {n!r})")
        hist = unquote(name, errors="surrogateescape")
        if not hist or any(p in (".", "..") for p in hist.split("/")):
            raise BadLocationError(text, "PATH@N needs the PATH as history records it")
        return Location(hist, int(n), rest)
    if not _PLAIN_REF.fullmatch(head):
        raise BadLocationError(text, f"{head!r} is not a tag name or an id (write a history path as PATH@N, '/' as %2F)")
    return Location(head, None, rest)


def unparse(loc: Location) -> str:
    """The canonical path (without ``zcas://``) that parses back to ``loc``."""
    if loc.version is None:
        head = loc.ref
    else:
        head = f"{quote(loc.ref, safe='', errors='surrogateescape')}@{loc.version}"
    return f"{head}/{loc.path}" if loc.path else head

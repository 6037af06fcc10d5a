"""Error types of the object store.

Every error inherits from ``ZcasError`` and, where one fits, from a builtin too, so callers
can catch either zcas's type or the usual Python one. Each carries the fields a caller needs
to act on it; ``str()`` is a one-line message fit for a terminal.
"""

from __future__ import annotations

import errno


class ZcasError(Exception):
    """Root of every error zcas raises on purpose (the CLI prints these as one line)."""

    exit_code = 1


class UsageError(ZcasError, ValueError):
    """The caller asked for something malformed (a bad id, a bad name, a bad option)."""

    exit_code = 2


class NotARepositoryError(ZcasError, FileNotFoundError):
    def __init__(self, path: str):
        self.path = path
        super().__init__(f"not a zcas repository (or any parent up to /): {path}; run 'zcas init'")


class StoreError(ZcasError, OSError):
    """A failure of the store itself (I/O, backend, full disk)."""

    def __str__(self) -> str:
        return self.strerror if self.strerror else super().__str__()


def shown_id(oid: bytes | str) -> str:
    """An id as errors carry and print it: 64 hex characters (a key or name stays as is).
    Ids are bytes everywhere inside the store; this is the one place they become text for
    an error."""
    return oid.hex() if isinstance(oid, (bytes, bytearray)) else oid


def store_error(e: OSError, doing: str) -> StoreError:
    """A ``StoreError`` for an OS error met while ``doing`` something, in one line (a full
    disk and a file size limit are named as such)."""
    if e.errno == errno.ENOSPC:
        return StoreError(errno.ENOSPC, f"no space left on device while {doing}")
    if e.errno == errno.EFBIG:
        return StoreError(errno.EFBIG, f"file size limit exceeded while {doing}")
    return StoreError(e.errno or 0, f"{e.strerror or e} while {doing}")


class ObjectNotFoundError(StoreError, LookupError):
    """An object (``oid``: its id, or a store key, as hex text) is not in the store."""

    def __init__(self, oid: bytes | str, what: str = "object"):
        self.oid = shown_id(oid)
        super().__init__(f"{what} not found: {self.oid}")


class AmbiguousIdError(UsageError, LookupError):
    def __init__(self, prefix: str, count: int, at_least: bool = False):
        self.prefix = prefix
        self.count = count
        n = f"{count} or more" if at_least else str(count)
        super().__init__(f"ambiguous id prefix {prefix!r}: matches {n} objects; type more of it")


class IntegrityError(StoreError):
    """Stored bytes do not hash to their id, or do not decode as their header says."""

    def __init__(self, oid: bytes | str, reason: str, expected: bytes | str | None = None,
                 got: bytes | str | None = None):
        self.oid = shown_id(oid)  # hex (or the name of a pack, index or key)
        self.reason = reason
        self.expected = None if expected is None else shown_id(expected)
        self.got = None if got is None else shown_id(got)
        super().__init__(f"object {self.oid} is corrupt: {reason}")


class UnsafePathError(ZcasError, ValueError):
    """A stored tree names a path that would land outside the checkout folder."""

    def __init__(self, name: str, reason: str):
        self.name = name
        self.reason = reason
        super().__init__(f"refusing unsafe tree entry {name!r}: {reason}")


class ConflictError(ZcasError, FileExistsError):
    """Checkout would overwrite a file whose content differs from what is stored."""

    def __init__(self, path: str):
        self.path = path
        super().__init__(f"would overwrite changed file {path} (use --force to overwrite)")


class ChangedWhileReadingError(ZcasError, OSError):
    def __init__(self, path: str):
        self.path = path
        super().__init__(f"file changed while being added: {path}")


class InputPathError(ZcasError, OSError):
    """A path given to zcas cannot be read (missing, permission, special file)."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(self._message(path, reason))

    @staticmethod
    def _message(path: str, reason: str) -> str:
        return f"cannot read {path}: {reason}"


class RefusedInputError(InputPathError):
    """A path zcas could read but will not store, because no checkout could restore it
    (an absolute or escaping symlink, a folder spelled like ``.zcas``, a folder too large
    for one tree)."""

    @staticmethod
    def _message(path: str, reason: str) -> str:
        return f"refusing to add {path}: {reason}"


class GcRefusedError(ZcasError):
    """gc found objects that names reach but that are missing, corrupt or undecodable, so
    it cannot know what they keep alive: it deletes nothing until the store is repaired."""

    def __init__(self, damaged: dict[bytes, str] | dict[str, str]):
        self.damaged = {shown_id(o): why for o, why in damaged.items()}  # hex id -> reason
        oid, reason = next(iter(sorted(self.damaged.items())))
        n = len(self.damaged)
        super().__init__(
            f"gc deleted nothing: {n} object{'s' if n != 1 else ''} reachable from a name "
            f"{'are' if n != 1 else 'is'} missing or damaged (first {oid}: {reason}); run 'zcas fsck --repair' first"
        )

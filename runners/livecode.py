"""Whether the code running in this process is the code its source file has now.

A definition's digest is read from its file (``sourcedigest``), but what runs is the code
object the module got when it was imported. A file edited after the import (the usual
notebook workflow: edit a helper, call the step again without reloading) would give a key
that describes the new source while the old code runs: a result of the old code, cached
under the new code's key, handed back to a fresh process. So each reached function's live
code is compared with the code its file compiles to; when they differ, the key takes the
live code's bytecode instead of the source digest (``fingerprint.Walk.function``), and one
warning names the file.

The comparison is by a digest of each code object that leaves out line numbers (not in
``co_code``) and docstrings (a function's first constant), so comments, blank lines, moved
code and docstrings change nothing, as in source digests. Each file is compiled once per
content, and its digests kept beside its parse (``.zcas/defs``, by content hash and the
interpreter's bytecode version), so a new process compiles nothing for unchanged files.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading
import types

from zcas.cas.oid import hash_bytes

from . import sourcedigest

_CO_HAS_DOCSTRING = 0x4000000  # Python 3.14: a flag, the docstring then the first constant
_FUNCTION = 0x0001 | 0x0002  # CO_OPTIMIZED | CO_NEWLOCALS: a function's body, not a module's or class's
_MAGIC = importlib.util.MAGIC_NUMBER.hex()  # bytecode differs between interpreter versions

_by_hash: dict[bytes, dict[str, list[str]] | None] = {}  # content hash -> qualname -> code digests
_verdicts: dict[int, tuple[types.CodeType, bytes, bool]] = {}  # id(code) -> (code kept alive, content hash, same)
_warned: set[tuple[str, bytes]] = set()
_lock = threading.Lock()


def clear() -> None:
    with _lock:
        _by_hash.clear()
        _verdicts.clear()


def _consts(code: types.CodeType) -> tuple[object, ...]:
    consts = code.co_consts
    if code.co_flags & _CO_HAS_DOCSTRING:
        return consts[1:]
    if sys.version_info < (3, 14) and code.co_flags & _FUNCTION == _FUNCTION and consts \
            and isinstance(consts[0], (str, type(None))) and not code.co_name.startswith("<"):
        return consts[1:]  # before 3.14 a function's first constant is its docstring, or None
    return consts


def _const(x: object) -> str:
    """A constant as text: of its type, -0.0 not 0.0 (nor 1 True), a frozenset in one order."""
    if isinstance(x, types.CodeType):
        return "code:" + digest(x)
    if isinstance(x, tuple):
        return f"tuple:({','.join(map(_const, x))})"
    if isinstance(x, frozenset):
        return f"frozenset:{{{','.join(sorted(map(_const, x)))}}}"
    return f"{type(x).__name__}:{x!r}"


def digest(code: types.CodeType) -> str:
    """What ``code`` does, line numbers and docstrings aside, nested code included."""
    parts = [code.co_code.hex(), repr(code.co_names), repr(code.co_varnames), repr(code.co_freevars),
             repr(code.co_cellvars), str(code.co_flags & ~_CO_HAS_DOCSTRING),
             f"{code.co_argcount},{code.co_posonlyargcount},{code.co_kwonlyargcount}",
             *map(_const, _consts(code))]
    return hash_bytes("\n".join(parts).encode("utf-8", "surrogateescape")).hex()


def _compiled(data: bytes, path: str) -> dict[str, list[str]] | None:
    try:
        top = compile(data, path, "exec", dont_inherit=True)
    except (SyntaxError, ValueError):
        return None
    table: dict[str, list[str]] = {}
    todo = [top]
    while todo:
        c = todo.pop()
        table.setdefault(c.co_qualname, []).append(digest(c))
        todo.extend(x for x in c.co_consts if isinstance(x, types.CodeType))
    return table


def _table(path: str, h: bytes | None) -> tuple[bytes, dict[str, list[str]] | None] | None:
    """(content hash, {qualname: code digests}) of the file at ``path``: the content of hash
    ``h`` (what the source digests were read from) if known, else what is there now; None
    when there is no file."""
    with _lock:
        if h is not None and h in _by_hash:
            return h, _by_hash[h]
    if h is not None:
        table = _load(h)
        if table is not None:
            with _lock:
                _by_hash[h] = table
            return h, table
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    h = hash_bytes(data)
    table = _compiled(data, path)
    if table is not None:
        _save(h, table)
    with _lock:
        _by_hash[h] = table
    return h, table


def _disk_path(h: bytes) -> str | None:
    folder = sourcedigest.folder()
    return None if folder is None else os.path.join(folder, f"{h.hex()}.code-{_MAGIC}.json")


def _load(h: bytes) -> dict[str, list[str]] | None:
    """Digests kept on disk, or None (absent or not what was written: compiled again)."""
    path = _disk_path(h)
    if path is None:
        return None
    try:
        with open(path, "rb") as f:
            d = json.loads(f.read())
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, list)
                                          and all(isinstance(x, str) for x in v) for k, v in d.items()):
        return None
    return d


def _save(h: bytes, table: dict[str, list[str]]) -> None:
    path = _disk_path(h)
    if path is None:
        return
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(table, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:  # an accelerator: a read-only repository compiles every time
        try:
            os.unlink(tmp)
        except OSError:
            pass


def is_current(code: types.CodeType) -> bool:
    """Whether ``code`` is what its file compiles to (as ``sourcedigest`` last read it; True
    when there is no file to compare with: then the source digest, if any, came from
    linecache, which holds what ran)."""
    path = code.co_filename
    h = sourcedigest.content_hash(path)
    known = _verdicts.get(id(code))
    if known is not None and known[0] is code and h is not None and known[1] == h:
        return known[2]
    if h is None and not os.path.isfile(path):
        return True
    found = _table(path, h)
    if found is None:
        return True
    h, table = found
    ok = table is not None and digest(code) in table.get(code.co_qualname, ())
    with _lock:
        _verdicts[id(code)] = (code, h, ok)
    if not ok:
        _warn(path, h)
    return ok


def _warn(path: str, h: bytes) -> None:
    with _lock:
        if (path, h) in _warned:
            return
        _warned.add((path, h))
    print(f"zcas: warning: {os.path.basename(path)} changed on disk since it was imported; its key uses the code "
          "in memory — restart or reload to run the new code", file=sys.stderr)

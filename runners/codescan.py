"""What a function's code names, read from its bytecode: name chains such as ``mod.sub.f``.

Bytecode, not the syntax tree, because the compiler has already decided scope: a
``LOAD_GLOBAL`` is a module-level name, a ``LOAD_FAST`` a local, a ``LOAD_DEREF`` a captured
variable, so a local that shadows a global is never taken for it. A chain is a root load
followed by attribute loads; local imports (``import mod``, ``from pkg import f`` inside a
function) are followed through the local they bind.
"""

from __future__ import annotations

import dis
import importlib.util
import types
from typing import NamedTuple


class Chain(NamedTuple):
    kind: str  # "global" (root in the function's globals), "module" (root an imported module), "deref"
    names: tuple[str, ...]


_memo: dict[tuple[types.CodeType, str | None], tuple[Chain, ...]] = {}


def chains(code: types.CodeType, package: str | None) -> tuple[Chain, ...]:
    """Every chain ``code`` (and code nested in it) reads, in order of first appearance
    (kept per code object: decoding bytecode is most of a warm fingerprint's time)."""
    found = _memo.get((code, package))
    if found is None:
        out: dict[Chain, None] = {}
        _scan(code, package, frozenset(code.co_freevars), out)
        found = _memo[(code, package)] = tuple(out)
    return found


def clear() -> None:
    _memo.clear()


def _absolute(name: str, level: int, package: str | None) -> str | None:
    if not level:
        return name
    try:
        return importlib.util.resolve_name("." * level + name, package)
    except (ImportError, ValueError):
        return None


def _scan(code: types.CodeType, package: str | None, free: frozenset[str], out: dict[Chain, None]) -> None:
    aliases: dict[str, tuple[str, ...]] = {}  # a local bound by an import -> its module chain
    cur: list[str] = []
    kind = ""
    consts: list[object] = []  # the last two constants loaded: an import's level and names
    pending: tuple[str, ...] | None = None  # the module (or module + name) an import just loaded

    def end() -> None:
        nonlocal cur, kind
        if cur:
            out.setdefault(Chain(kind, tuple(cur)))
        cur, kind = [], ""

    for ins in dis.get_instructions(code):
        op, arg = ins.opname, ins.argval
        if op in ("LOAD_ATTR", "LOAD_METHOD") and cur:
            cur.append(arg)
            continue
        end()
        if op in ("LOAD_GLOBAL", "LOAD_NAME"):
            kind, cur = "global", [arg]
        elif op in ("LOAD_DEREF", "LOAD_CLASSDEREF") and arg in free:
            kind, cur = "deref", [arg]
        elif op.startswith("LOAD_FAST") and isinstance(arg, str) and arg in aliases:
            kind, cur = "module", list(aliases[arg])
        elif op == "IMPORT_NAME":
            level = consts[-2] if len(consts) >= 2 and isinstance(consts[-2], int) else 0
            absolute = _absolute(arg, level, package)
            pending = (absolute,) if absolute else None
            fromlist = consts[-1] if consts else None
            if pending and not fromlist and "." in pending[0]:
                pending = (pending[0].split(".")[0],)  # ``import a.b`` binds ``a``
        elif op == "IMPORT_FROM" and pending:
            mod = pending[0]
            out.setdefault(Chain("module", (mod, arg)))
            pending = (mod, arg)
            continue
        elif op in ("STORE_FAST", "STORE_NAME", "STORE_DEREF", "STORE_GLOBAL") and pending:
            aliases[arg] = pending
            out.setdefault(Chain("module", pending))
            pending = None
        elif op == "POP_TOP":
            pending = None
        if op == "LOAD_CONST":
            consts = [*consts[-1:], arg]
    end()
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            _scan(c, package, free & frozenset(c.co_freevars), out)

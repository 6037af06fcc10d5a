"""Digests of definitions from their source file, each file parsed once per content.

A definition's digest is its syntax tree, normalised: comments, blank lines, formatting and
line numbers are not in a tree, and docstrings are dropped, so none of them can change a
key. A class's digest leaves out the bodies of the functions and classes directly inside it:
those are definitions of their own (reached through the class), so ``why`` can name the method
that changed rather than the whole class.

Files are read by path, and their parse is kept by the hash of their bytes, in memory and
(``use_folder``) on disk: a second step, or a new process, reaching the same file does not
parse it again, and an edited file is never answered from an old parse.
"""

from __future__ import annotations

import ast
import json
import os
import threading
from typing import NamedTuple

from zcas.cas.oid import hash_bytes

_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_DYNAMIC_CALLS = {"getattr", "setattr", "hasattr", "delattr"}
_RUNTIME_CODE = {"eval", "exec", "compile", "__import__", "globals", "locals", "vars"}


class Def(NamedTuple):
    """One definition as its source file has it."""

    digest: str
    line: int  # the ``def``/``class`` line
    refs: tuple[tuple[str, ...], ...]  # name chains its decorators and constant getattr()s name
    dynamic: tuple[str, ...]  # what it does that cannot be resolved statically, in words


class FileDefs(NamedTuple):
    functions: dict[tuple[int, str], list[Def]]  # (first line, incl. decorators; name) -> defs
    classes: dict[str, list[Def]]  # qualname -> defs (several: defined conditionally)
    lambdas: dict[int, list[Def]]  # line -> lambdas on it


_by_hash: dict[bytes, FileDefs] = {}
_by_path: dict[str, tuple[tuple[int, int, int], bytes]] = {}  # path -> (stat signature, content hash)
_lock = threading.Lock()
_disk: str | None = None  # a folder keeping parses across processes: <content hash>.json


def use_folder(path: str | None) -> None:
    """Keep parses in ``path`` (a repository's ``.zcas/defs``), so a new process reaching
    unchanged files reads each one's digests instead of parsing it."""
    global _disk
    _disk = path


def folder() -> str | None:
    """The folder parses are kept in across processes (None: in memory only)."""
    return _disk


def clear() -> None:
    """Forget every parse (benchmarks measure a cold start with this)."""
    with _lock:
        _by_hash.clear()
        _by_path.clear()


def file_defs(path: str) -> FileDefs | None:
    """The definitions in the Python file at ``path`` (None: unreadable or not Python)."""
    try:
        st = os.stat(path)
    except OSError:
        return _from_linecache(path)
    sig = (st.st_mtime_ns, st.st_size, st.st_ino)
    with _lock:
        known = _by_path.get(path)
        if known is not None and known[0] == sig and known[1] in _by_hash:
            return _by_hash[known[1]]
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return None
    h = hash_bytes(data)
    with _lock:
        defs = _by_hash.get(h)
    if defs is None:
        defs = _load(h)
    if defs is None:
        defs = parse(data)
        if defs is None:
            return None
        _save(h, defs)
    with _lock:
        _by_hash[h] = defs
        _by_path[path] = (sig, h)
    return defs


def content_hash(path: str) -> bytes | None:
    """The hash of the content ``file_defs(path)`` last read (None: not read from a file)."""
    with _lock:
        known = _by_path.get(path)
    return None if known is None else known[1]


def _load(h: bytes) -> FileDefs | None:
    """A parse kept on disk, or None (none, or one that does not read back as a parse:
    the file is parsed again, so a damaged cache costs time, never a wrong key)."""
    if _disk is None:
        return None
    try:
        with open(os.path.join(_disk, h.hex() + ".json"), "rb") as f:
            d = json.loads(f.read())
        defs = FileDefs({}, {}, {})
        for (line, name), ds in d["functions"]:
            defs.functions[(int(line), str(name))] = [_def(x) for x in ds]
        for qual, ds in d["classes"]:
            defs.classes[str(qual)] = [_def(x) for x in ds]
        for line, ds in d["lambdas"]:
            defs.lambdas[int(line)] = [_def(x) for x in ds]
        return defs
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None


def _def(x: list) -> Def:
    digest, line, refs, dynamic = x
    if not isinstance(digest, str) or type(line) is not int:
        raise ValueError("not a definition")
    return Def(digest, line, tuple(tuple(str(n) for n in r) for r in refs), tuple(str(w) for w in dynamic))


def _save(h: bytes, defs: FileDefs) -> None:
    if _disk is None:
        return
    d = {"functions": [[list(k), v] for k, v in defs.functions.items()],
         "classes": list(defs.classes.items()), "lambdas": list(defs.lambdas.items())}
    path = os.path.join(_disk, h.hex() + ".json")
    tmp = f"{path}.{os.getpid()}.{threading.get_ident()}.tmp"
    try:
        os.makedirs(_disk, exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(d, f, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:  # an accelerator: a read-only repository just parses every time
        try:
            os.unlink(tmp)
        except OSError:
            pass


def _from_linecache(path: str) -> FileDefs | None:
    """Code with no file of its own (a notebook cell, ``python -c``) that the interpreter
    keeps in linecache."""
    import linecache

    lines = linecache.getlines(path)
    if not lines:
        return None
    data = "".join(lines).encode("utf-8", "surrogateescape")
    h = hash_bytes(data)
    with _lock:
        defs = _by_hash.get(h)
    if defs is None:
        defs = parse(data)
        if defs is not None:
            with _lock:
                _by_hash[h] = defs
    return defs


def parse(source: bytes | str) -> FileDefs | None:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    _strip_docstrings(tree)
    out = FileDefs({}, {}, {})
    _index(tree, "", out)
    return out


def _strip_docstrings(tree: ast.AST) -> None:
    for node in ast.walk(tree):
        if isinstance(node, (*_DEFS, ast.Module)):
            body = node.body
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = body[1:] or [ast.Pass()]


def _index(node: ast.AST, prefix: str, out: FileDefs) -> None:
    """Record every definition under ``node``; ``prefix`` is the qualname of its scope."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, _DEFS):
            qual = prefix + child.name
            first = min([child.lineno, *(d.lineno for d in child.decorator_list)])
            if isinstance(child, ast.ClassDef):
                d = Def(_digest(child), child.lineno, tuple(_refs(child)), ())  # its methods say their own
                out.classes.setdefault(qual, []).append(d)
                _index(child, qual + ".", out)
            else:
                d = Def(_digest(child), child.lineno, tuple(_refs(child)), tuple(_dynamic(child)))
                out.functions.setdefault((first, child.name), []).append(d)
                _index(child, qual + ".<locals>.", out)
        elif isinstance(child, ast.Lambda):
            out.lambdas.setdefault(child.lineno, []).append(Def(_digest(child), child.lineno, (), tuple(_dynamic(child))))
            _index(child, prefix, out)
        else:
            _index(child, prefix, out)


def _digest(node: ast.AST) -> str:
    if isinstance(node, ast.ClassDef):  # hollow: the definitions directly inside count on their own
        body: list[ast.stmt] = [ast.Expr(ast.Name(id=f"<def {b.name}>")) if isinstance(b, _DEFS) else b
                                for b in node.body]
        hollow = ast.ClassDef(name=node.name, bases=node.bases, keywords=node.keywords, body=body,
                              decorator_list=node.decorator_list)
        if hasattr(node, "type_params"):  # Python 3.12: class C[T]
            setattr(hollow, "type_params", node.type_params)  # noqa: B010 - absent from 3.11 stubs
        node = hollow
    return hash_bytes(ast.dump(node, annotate_fields=False, include_attributes=False).encode()).hex()


def chain(expr: ast.AST) -> tuple[str, ...] | None:
    """``a.b.c`` as ("a", "b", "c"); None for anything but names and attributes."""
    parts: list[str] = []
    while isinstance(expr, ast.Attribute):
        parts.append(expr.attr)
        expr = expr.value
    if not isinstance(expr, ast.Name):
        return None
    return (expr.id, *reversed(parts))


def _refs(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> list[tuple[str, ...]]:
    """Name chains of the decorators (their code shapes the result), and ``getattr(x, "name")``
    with a constant name inside the body, which bytecode shows only as a string."""
    out = []
    for d in node.decorator_list:
        c = chain(d.func if isinstance(d, ast.Call) else d)
        if c:
            out.append(c)
    if isinstance(node, ast.ClassDef):
        return out
    for sub in ast.walk(node):
        if (isinstance(sub, ast.Call) and isinstance(sub.func, ast.Name) and sub.func.id in _DYNAMIC_CALLS
                and len(sub.args) >= 2 and isinstance(sub.args[1], ast.Constant) and isinstance(sub.args[1].value, str)):
            base = chain(sub.args[0])
            if base:
                out.append((*base, sub.args[1].value))
    return out


def _dynamic(node: ast.AST) -> list[str]:
    """What in ``node`` names code or values only at run time, in words (no line numbers:
    these words are part of the key, and moving code must not change it)."""
    out = []
    for sub in ast.walk(node):
        if not isinstance(sub, ast.Call):
            continue
        f = chain(sub.func)
        if not f:
            continue
        name = f[-1]
        if name in _DYNAMIC_CALLS and len(f) == 1:
            if len(sub.args) < 2 or not (isinstance(sub.args[1], ast.Constant) and isinstance(sub.args[1].value, str)):
                out.append(f"{name}() with a computed attribute name")
        elif name in _RUNTIME_CODE and len(f) == 1:
            out.append(f"{name}()")
        elif f in (("importlib", "import_module"), ("import_module",)) and not (
                sub.args and isinstance(sub.args[0], ast.Constant)):
            out.append("import_module() with a computed module name")
        elif name in ("attrgetter", "methodcaller") and not (sub.args and isinstance(sub.args[0], ast.Constant)):
            out.append(f"{name}() with a computed name")
    return sorted(set(out))

"""Code fingerprints: what a Python step's result can depend on, as one hash.

The step's own syntax tree, normalised (comments, docstrings, formatting and line numbers
do not count), and, followed transitively, every user-code function and class it names,
and the values of module-level constants it reads. Installed packages count by name and
version, not by source; the standard library counts by Python's version. ``version=`` on
a step replaces all of this with a string the user controls.

What it cannot see is named in docs/python-api.md: values reached through ``getattr`` with
computed names, files read at run time (declare them as inputs), and mutable globals
changed at run time.
"""

from __future__ import annotations

import ast
import builtins
import functools
import inspect
import os
import sys
import sysconfig
import textwrap
import types
from collections.abc import Callable
from typing import Any

from zcas.cas.oid import hash_bytes

_CONST_TYPES = (int, float, str, bytes, bool, type(None), complex)
_INSTALLED_ROOTS = tuple(
    os.path.realpath(p) + os.sep
    for p in {sysconfig.get_paths().get(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")} | set(
        p for p in sys.path if p.endswith(("site-packages", "dist-packages"))
    )
    if p
)


def _strip_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Module)):
            body = node.body
            first = body[0] if body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _unwrap(obj: Any) -> Any:
    while hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__
    fn = getattr(obj, "fn", None)  # a zcas Step wraps the user's function
    return fn if callable(fn) and hasattr(obj, "is_zcas_step") else obj


def source_digest(obj: Any) -> str:
    """The normalised syntax tree of a function or class (decorators excluded)."""
    try:
        src = textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):
        code = getattr(obj, "__code__", None)
        return "bytecode:" + (hash_bytes(code.co_code).hex() if code else repr(obj))
    tree = _strip_docstrings(ast.parse(src))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            node.decorator_list = []
            break
    return hash_bytes(ast.dump(tree, annotate_fields=False, include_attributes=False).encode()).hex()


def is_user_module(mod: types.ModuleType | None) -> bool:
    f = getattr(mod, "__file__", None)
    if not f:
        return False  # builtins, frozen modules
    return not os.path.realpath(f).startswith(_INSTALLED_ROOTS)


@functools.cache
def _package_version(top: str) -> str:
    """name==version of an installed package, cheapest source first: the module's own
    __version__, its distribution of the same name, then the full map of distributions
    (which reads every installed package's metadata: a quarter of a second)."""
    # Imported here: importlib.metadata adds ~10 ms (measured) to the ~85 ms of importing
    # zcas.steps, and only a step whose code names an installed package gets this far.
    from importlib import metadata

    v = getattr(sys.modules.get(top), "__version__", None)
    if isinstance(v, str):
        return f"{top}=={v}"
    try:
        return f"{top}=={metadata.version(top)}"
    except metadata.PackageNotFoundError:
        pass
    try:
        dists = metadata.packages_distributions().get(top) or [top]
        return f"{dists[0]}=={metadata.version(dists[0])}"
    except Exception:  # noqa: BLE001 - a module with no distribution: stdlib or vendored
        return f"{top}@python{sys.version_info.major}.{sys.version_info.minor}"


def _names(code: types.CodeType) -> set[str]:
    """Global and attribute names the code (and code nested in it) reads."""
    out = set(code.co_names)
    for c in code.co_consts:
        if isinstance(c, types.CodeType):
            out |= _names(c)
    return out


def _describe(value: Any, name: str, parts: list[str], seen: set[int], mod_globals: dict[str, Any] | None) -> None:
    """Add what ``value`` (reached as ``name``) contributes to a fingerprint."""
    if id(value) in seen:
        return
    seen.add(id(value))
    value = _unwrap(value)
    if isinstance(value, _CONST_TYPES):
        parts.append(f"const {name}={type(value).__name__}:{value!r}")
    elif isinstance(value, (tuple, frozenset, list, dict, set)) and _plain(value):
        parts.append(f"const {name}={value!r}")
    elif isinstance(value, types.ModuleType):
        if is_user_module(value):
            parts.append(f"module {name}={value.__name__}")
        else:
            parts.append(f"package {_package_version(value.__name__.split('.')[0])}")
    elif isinstance(value, (types.FunctionType, type)):
        mod = sys.modules.get(getattr(value, "__module__", "") or "")
        if is_user_module(mod):
            parts.append(f"code {name}={source_digest(value)}")
            _follow(value, parts, seen)
        else:
            top = (getattr(value, "__module__", "") or "builtins").split(".")[0]
            parts.append(f"package {_package_version(top)}")
    elif callable(value) and hasattr(value, "__module__"):
        top = (value.__module__ or "builtins").split(".")[0]
        parts.append(f"package {_package_version(top)}")


def _plain(v: Any, depth: int = 0) -> bool:
    if depth > 20:
        return False
    if isinstance(v, _CONST_TYPES):
        return True
    if isinstance(v, (tuple, list, set, frozenset)):
        return all(_plain(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return all(_plain(k, depth + 1) and _plain(x, depth + 1) for k, x in v.items())
    return False


def _follow(obj: Any, parts: list[str], seen: set[int]) -> None:
    """Everything a user function or class names, recursively."""
    if isinstance(obj, type):
        for _, member in sorted(vars(obj).items()):
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if isinstance(member, types.FunctionType):
                _follow(member, parts, seen)
        return
    code = getattr(obj, "__code__", None)
    if code is None:
        return
    g = getattr(obj, "__globals__", {})
    names = _names(code)
    for name in sorted(names):
        if name in g:
            value = g[name]
            _describe(value, name, parts, seen, g)
            if isinstance(value, types.ModuleType) and is_user_module(value):
                for attr in sorted(names):  # module.attr: follow the attributes it reads
                    if attr in vars(value):
                        _describe(vars(value)[attr], f"{name}.{attr}", parts, seen, None)
        elif not hasattr(builtins, name):
            continue
    for cell_name, cell in zip(code.co_freevars, obj.__closure__ or (), strict=False):
        try:
            _describe(cell.cell_contents, cell_name, parts, seen, None)
        except ValueError:
            pass  # an empty cell


def fingerprint(fn: Callable[..., Any]) -> str:
    """The code fingerprint of a step function (cached: code does not change in a process)."""
    fn = _unwrap(fn)
    cached = _cache.get(fn)
    if cached is None:
        parts = [f"self {source_digest(fn)}"]
        _follow(fn, parts, {id(fn)})
        cached = _cache[fn] = hash_bytes("\n".join(parts).encode()).hex()
    return cached


_cache: dict[Any, str] = {}

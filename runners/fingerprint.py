"""Code fingerprints: everything a Python step's result can depend on, as one hash.

A stale result (a wrong value handed back without running) is the one failure a cache must
never have, so the walk starts from the step's function and follows every value its code
can reach in user code (anything not in an installed distribution), whatever the route:
globals and closures it reads, attribute chains on modules (``mod.f``, ``pkg.sub.CONST``),
local imports, default arguments, decorators and the functions they wrap (``__wrapped__``,
``partial``), classes whole (bases, metaclass, methods, properties, class attributes,
dataclass and attrs field defaults, enum members) and the instances of them it reads.
Installed code counts by distribution name and version; zcas itself by its version.

What a walk cannot resolve (``getattr`` with a computed name, ``eval``, a name not defined
yet, a value of a foreign type) is an entry of its own, ``unresolved``, so it is listed by
``explain`` and is part of the key, never silently left out.

Each entry's digest leaves out files and line numbers: moving code, or adding a blank line
above it, changes no key. A source digest is used only while the function's code in memory
is what its file compiles to now (``livecode``): a file edited after its import gives the
running code's bytecode instead, so a key never describes code other than what runs. The
manifest (entries with file and line) is what ``explain`` and ``why`` show.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import functools
import importlib
import re
import sys
import types
from collections.abc import Callable
from typing import Any, NamedTuple

from zcas.cas.oid import hash_bytes

from . import codescan, livecode, sourcedigest
from .codescan import Chain, chains
from .usercode import is_user_file, is_user_module, modname, package_version

_CONST_TYPES = (int, float, str, bytes, bool, type(None), complex)
_MAX_ITEMS = 1000  # items of one container walked one by one (a registry of functions, say)
_MAX_ENTRIES = 50_000
_SKIP_ATTRS = frozenset({
    "__module__", "__qualname__", "__doc__", "__dict__", "__weakref__", "__annotations__", "__dataclass_params__",
    "__parameters__", "__orig_bases__", "__firstlineno__", "__static_attributes__", "__abstractmethods__", "_abc_impl",
    "__match_args__", "__attrs_own_setattr__", "__hash__", "__init_subclass__", "__class_getitem__", "__slotnames__",
})


class Entry(NamedTuple):
    """One thing a key covers. ``kind``: code, const, package or unresolved."""

    kind: str
    name: str  # module.qualname of a definition, where a constant is read, a distribution
    digest: str  # what the key holds of it: a syntax-tree hash, a value, a version, words
    file: str = ""
    line: int = 0


def _plain(v: Any, depth: int = 0) -> bool:
    if depth > 20:
        return False
    if isinstance(v, _CONST_TYPES):
        return True
    if isinstance(v, (tuple, list, set, frozenset)):
        return len(v) <= 100_000 and all(_plain(x, depth + 1) for x in v)
    if isinstance(v, dict):
        return len(v) <= 100_000 and all(_plain(k, depth + 1) and _plain(x, depth + 1) for k, x in v.items())
    return False


def _const_text(v: Any) -> str:
    """A plain value as key text: short ones as they are, long ones by a hash with a preview."""
    if isinstance(v, (set, frozenset)):
        text = f"{type(v).__name__}:{sorted(map(repr, v))!r}"
    else:
        text = f"{type(v).__name__}:{v!r}"
    if len(text) <= 200:
        return text
    return f"{text[:60]}... b3:{hash_bytes(text.encode('utf-8', 'surrogateescape')).hex()[:32]}"


def bytecode_digest(code: types.CodeType) -> str:
    """For code without a source file (typed at a prompt, generated): its bytecode, the
    names it reads and its constants, nested code included."""
    parts = [code.co_code.hex(), repr(code.co_names)]
    for c in code.co_consts:
        parts.append(bytecode_digest(c) if isinstance(c, types.CodeType) else repr(c))
    return hash_bytes("\n".join(parts).encode("utf-8", "surrogateescape")).hex()


class Walk:
    """One fingerprint's walk: what it has reached (kept alive, so ids stay unique), and the
    entries so far."""

    def __init__(self) -> None:
        self.entries: dict[tuple[str, str], Entry] = {}
        self.seen: dict[int, Any] = {}
        # Definitions still to walk: a queue, not recursion, so a call chain 10,000 deep
        # through user code is no RecursionError.
        self.todo: list[tuple[str, Any, str]] = []
        # What the walk looked up, as (namespace, name, value seen, by attribute): a manifest
        # kept for a function holds only while each still gives the same object (a module
        # reloaded, a helper redefined in a notebook cell, a global rebound: walked again).
        self.witness: list[tuple[Any, str, Any, bool]] = []

    def run(self) -> None:
        while self.todo:
            kind, obj, name = self.todo.pop()
            if kind == "function":
                self.function(obj)
            elif kind == "class":
                self.klass(obj)
            elif kind == "container":
                self.container(obj, name)
            else:
                self.instance(obj, name)

    def add(self, e: Entry) -> None:
        if len(self.entries) < _MAX_ENTRIES:
            self.entries.setdefault((e.kind, e.name), e)
        else:
            self.entries[("unresolved", "<walk>")] = Entry("unresolved", "<walk>", f"more than {_MAX_ENTRIES} entries")

    def _first(self, v: Any) -> bool:
        if id(v) in self.seen:
            return False
        self.seen[id(v)] = v
        return True

    def package(self, module_name: str | None) -> None:
        top = (module_name or "builtins").split(".")[0]
        if top != "builtins":
            self.add(Entry("package", top, package_version(top)))

    # -- values ------------------------------------------------------------------------------

    def value(self, v: Any, name: str) -> None:
        """What ``v``, read as ``name``, adds to the key."""
        if isinstance(v, _CONST_TYPES):
            self.add(Entry("const", name, _const_text(v)))
            return
        if isinstance(v, re.Pattern):
            self.add(Entry("const", name, f"re:{v.pattern!r}/{v.flags}"))
            return
        if isinstance(v, (tuple, list, set, frozenset, dict)) and _plain(v):
            self.add(Entry("const", name, _const_text(v)))
            return
        if not self._first(v):
            return
        if isinstance(v, types.ModuleType):
            if not is_user_module(v):
                self.package(v.__name__)
        elif getattr(v, "is_zcas_step", False) and callable(getattr(v, "fn", None)):
            self.value(v.fn, name)
        elif isinstance(v, functools.partial):
            self.value(v.func, f"{name}.func")
            for i, a in enumerate(v.args):
                self.value(a, f"{name}.args[{i}]")
            for k, a in sorted(v.keywords.items()):
                self.value(a, f"{name}.keywords[{k!r}]")
        elif isinstance(v, types.MethodType):
            self.value(v.__func__, name)
            self.value(v.__self__, f"{name}.__self__")
        elif isinstance(v, types.FunctionType):
            f = v.__code__.co_filename
            if is_user_file(f) or (f.startswith("<") and is_user_module(sys.modules.get(v.__module__))):
                self.todo.append(("function", v, name))  # the second: made by exec in user code
            else:  # by the module that defines the code: functools.wraps copies the wrapped one's name
                self.package(v.__globals__.get("__name__") or v.__module__)
            if hasattr(v, "__wrapped__"):
                self.value(v.__wrapped__, f"{name}.__wrapped__")
            registry = getattr(v, "registry", None)  # functools.singledispatch: every implementation
            if isinstance(registry, types.MappingProxyType):
                for k, impl in sorted(registry.items(), key=lambda kv: repr(kv[0])):
                    self.value(impl, f"{name}.registry[{getattr(k, '__qualname__', repr(k))}]")
        elif isinstance(v, type):
            mod = sys.modules.get(v.__module__)
            if is_user_module(mod):
                self.todo.append(("class", v, name))
            else:
                self.package(v.__module__)
        elif hasattr(v, "__wrapped__") and callable(v):  # lru_cache and other installed wrappers
            self.package(type(v).__module__)
            self.value(v.__wrapped__, f"{name}.__wrapped__")
        elif isinstance(v, (types.BuiltinFunctionType, types.BuiltinMethodType, types.WrapperDescriptorType,
                            types.MethodDescriptorType, types.MethodWrapperType)):
            self.package(getattr(v, "__module__", None) or type(v).__module__)
            owner = getattr(v, "__self__", None)
            if owner is not None and not isinstance(owner, types.ModuleType):
                self.value(owner, f"{name}.__self__")
        elif isinstance(v, (tuple, list, set, frozenset, dict)):
            self.todo.append(("container", v, name))
        elif is_user_module(sys.modules.get(type(v).__module__)):
            self.todo.append(("instance", v, name))
        else:
            self.package(type(v).__module__)
            self.add(Entry("unresolved", name, f"a {type(v).__module__}.{type(v).__qualname__} value: "
                                               "only its package's version is covered"))

    def container(self, v: Any, name: str) -> None:
        items = list(v.items()) if isinstance(v, dict) else list(enumerate(v))
        if isinstance(v, (set, frozenset)):
            items = sorted(((repr(x), x) for x in v), key=lambda kv: kv[0])
        if len(items) > _MAX_ITEMS:
            self.add(Entry("unresolved", name, f"a {type(v).__name__} of {len(items)} items (more than {_MAX_ITEMS}):"
                                               " only its size is covered"))
            return
        self.add(Entry("const", f"{name}#len", f"{type(v).__name__}:{len(items)}"))
        for k, x in items:
            key = k if isinstance(k, _CONST_TYPES) else type(k).__name__
            if isinstance(v, dict) and not isinstance(k, _CONST_TYPES):
                self.value(k, f"{name}<key>")
            self.value(x, f"{name}[{key!r}]")

    def instance(self, v: Any, name: str) -> None:
        """An instance of a user class: its class, and its state, attribute by attribute."""
        self.value(type(v), name)
        if isinstance(v, enum.Enum):
            self.value(v.value, f"{name}.value")
            return
        state = dict(getattr(v, "__dict__", None) or {})
        for slot in getattr(type(v), "__slots__", ()) or ():
            if isinstance(slot, str) and hasattr(v, slot):
                state[slot] = getattr(v, slot)
        for attr, x in sorted(state.items(), key=lambda kv: str(kv[0])):
            self.value(x, f"{name}.{attr}")

    # -- definitions -------------------------------------------------------------------------

    def function(self, fn: types.FunctionType) -> None:
        code = fn.__code__
        g = fn.__globals__
        self.witness += [(fn, "__code__", code, True), (fn, "__defaults__", fn.__defaults__, True),
                         (fn, "__kwdefaults__", fn.__kwdefaults__, True)]
        # The code's own qualname and module: functools.wraps copies the wrapped function's
        # names onto a wrapper, which would make two definitions one entry.
        qual = f"{modname(g.get('__name__'), g.get('__file__'))}.{code.co_qualname}"
        defs = sourcedigest.file_defs(code.co_filename)
        found = None
        if defs is not None:
            found = (defs.lambdas.get(code.co_firstlineno) if code.co_name == "<lambda>"
                     else defs.functions.get((code.co_firstlineno, code.co_name)))
        if found and not livecode.is_current(code):
            found = None  # the file changed since the import: the key is the code that runs
        if found:
            self.add(Entry("code", qual, "+".join(d.digest for d in found), code.co_filename, found[0].line))
            for d in found:
                for ref in d.refs:
                    if ref[0] in g and ref[0] not in code.co_varnames:  # the tree does not know scope
                        self.chain(Chain("global", ref), g, qual, None)
                for words in d.dynamic:
                    self.add(Entry("unresolved", f"{qual}: {words}", words, code.co_filename, d.line))
        else:
            self.add(Entry("code", qual, "bytecode:" + bytecode_digest(code), code.co_filename, code.co_firstlineno))
        cells = dict(zip(code.co_freevars, fn.__closure__ or (), strict=False))
        for c in chains(code, g.get("__package__") or g.get("__name__")):
            self.chain(c, g, qual, cells)
        for free, cell in cells.items():
            try:
                self.value(cell.cell_contents, f"{qual}.<closure>.{free}")
                self.witness.append((cell, "cell_contents", cell.cell_contents, True))
            except ValueError:
                self.witness.append((cell, "cell_contents", _MISSING, True))  # assigned later, read only then
        self.annotations(fn, g, qual)
        for i, d in enumerate(fn.__defaults__ or ()):
            self.value(d, f"{qual}.<default {i}>")
        for k, d in sorted((fn.__kwdefaults__ or {}).items()):
            self.value(d, f"{qual}.<default {k}>")

    def annotations(self, fn: types.FunctionType, g: dict[str, Any], qual: str) -> None:
        """User classes named in the signature: an argument loaded from the store (an
        unpickled model, say) reaches its class's methods with no name in the body."""
        for pname, ann in sorted((getattr(fn, "__annotations__", None) or {}).items()):
            for t in _named_types(ann, g):
                if is_user_module(sys.modules.get(t.__module__)):
                    self.value(t, f"{qual}.<annotation {pname}>")

    def chain(self, c: Chain, g: dict[str, Any], qual: str, cells: dict[str, Any] | None) -> None:
        """Resolve ``root.a.b`` as far as modules go, then cover what it reaches."""
        root, *attrs = c.names
        if c.kind == "global":
            self.witness.append((g, root, g.get(root, _MISSING), False))
            if root in g:
                cur, where = g[root], f"{modname(g.get('__name__'), g.get('__file__'))}.{root}"
            elif hasattr(builtins, root):
                return
            else:
                self.add(Entry("unresolved", f"{qual}: {root}", f"name {root} is not defined when the key is made"))
                return
        elif c.kind == "module":
            try:
                cur = importlib.import_module(root)
            except Exception:  # noqa: BLE001 - whatever importing raises, the import is what is unknown
                self.add(Entry("unresolved", f"{qual}: import {root}", f"module {root} cannot be imported"))
                return
            where = root
            self.witness.append((sys.modules, root, cur, False))
        else:  # a closure cell: its value is covered; a chain on a captured module goes on
            cell = (cells or {}).get(root)
            try:
                cur = cell.cell_contents if cell is not None else None
            except ValueError:
                return
            where = f"{qual}.<closure>.{root}"
        for attr in attrs:
            if not isinstance(cur, types.ModuleType) or not is_user_module(cur):
                break
            where = f"{modname(cur.__name__, getattr(cur, '__file__', None))}.{attr}"
            ns = vars(cur)
            self.witness.append((ns, attr, ns.get(attr, _MISSING), False))
            if attr in ns:
                cur = ns[attr]
            elif f"{cur.__name__}.{attr}" in sys.modules:
                self.witness.append((sys.modules, f"{cur.__name__}.{attr}", sys.modules[f"{cur.__name__}.{attr}"], False))
                cur = sys.modules[f"{cur.__name__}.{attr}"]
            elif callable(vars(cur).get("__getattr__")):  # a module-level __getattr__ (PEP 562) answers
                self.value(vars(cur)["__getattr__"], f"{where}.<module __getattr__>")
                self.add(Entry("unresolved", f"{qual}: {cur.__name__}.{attr}",
                               f"{cur.__name__}.{attr} comes from the module's __getattr__"))
                return
            else:
                self.add(Entry("unresolved", f"{qual}: {cur.__name__}.{attr}",
                               f"{cur.__name__}.{attr} does not exist when the key is made"))
                return
        self.value(cur, where)

    def klass(self, cls: type) -> None:
        mod = sys.modules.get(cls.__module__)
        file = getattr(mod, "__file__", None)
        qual = f"{modname(cls.__module__, file)}.{cls.__qualname__}"
        defs = sourcedigest.file_defs(file) if file else None
        found = defs.classes.get(cls.__qualname__) if defs else None
        g = vars(mod) if mod is not None else {}
        if found:
            self.add(Entry("code", qual, "+".join(d.digest for d in found), file or "", found[0].line))
            for d in found:
                for ref in d.refs:
                    if ref[0] in g:
                        self.chain(Chain("global", ref), g, qual, None)
        else:
            self.add(Entry("unresolved", qual, "class source not found: covered by its attribute names",
                           file or "", 0))
            self.add(Entry("code", qual, "names:" + ",".join(sorted(map(str, vars(cls)))), file or ""))
        for base in cls.__mro__[1:]:
            if base is not object:
                self.value(base, f"{qual}.<base>")
        if type(cls) is not type:
            self.value(type(cls), f"{qual}.<metaclass>")
        self.members(cls, qual)

    def members(self, cls: type, qual: str) -> None:
        is_enum = isinstance(cls, enum.EnumMeta)
        generated = "__dataclass_fields__" in vars(cls) or "__attrs_attrs__" in vars(cls)
        self.witness += [(vars(cls), attr, member, False) for attr, member in vars(cls).items()]
        for attr, member in sorted(vars(cls).items(), key=lambda kv: str(kv[0])):
            if attr in _SKIP_ATTRS or (is_enum and attr.startswith("_") and attr.endswith("_")):
                continue
            if generated and _made_from_fields(member):
                continue  # __init__, __eq__, ... made from the fields, which are covered
            where = f"{qual}.{attr}"
            if isinstance(member, (staticmethod, classmethod)):
                self.value(member.__func__, where)
            elif isinstance(member, property):
                for f in (member.fget, member.fset, member.fdel):
                    if f is not None:
                        self.value(f, where)
            elif isinstance(member, functools.cached_property):
                self.value(member.func, where)
            elif attr == "__dataclass_fields__" and isinstance(member, dict):
                for fname, f in sorted(member.items()):
                    if f.default is not dataclasses.MISSING:
                        self.value(f.default, f"{qual}.<field {fname}>")
                    if f.default_factory is not dataclasses.MISSING:
                        self.value(f.default_factory, f"{qual}.<field {fname} factory>")
            elif attr == "__attrs_attrs__":
                self.attrs_fields(member, qual)
            elif isinstance(member, enum.Enum):
                self.value(member.value, where)
            else:
                self.value(member, where)

    def attrs_fields(self, fields: Any, qual: str) -> None:
        for a in fields:
            d = a.default
            factory = getattr(d, "factory", None)
            if factory is not None:
                self.value(factory, f"{qual}.<field {a.name} factory>")
            elif d is not None and type(d).__name__ != "_Nothing":
                self.value(d, f"{qual}.<field {a.name}>")
            for extra in ("converter", "validator"):
                x = getattr(a, extra, None)
                if x is not None:
                    self.value(x, f"{qual}.<field {a.name} {extra}>")


def _named_types(ann: Any, g: dict[str, Any], depth: int = 0) -> list[type]:
    """The classes an annotation names: ``Model``, ``list[Model]``, ``Model | None``, and
    the string form of each (``from __future__ import annotations``) when it is a plain
    dotted name in the module."""
    if depth > 5:
        return []
    if isinstance(ann, str):
        cur: Any = g
        for i, part in enumerate(ann.strip().split(".")):
            if not part.isidentifier():
                return []
            cur = cur.get(part) if i == 0 and isinstance(cur, dict) else getattr(cur, part, None)
            if cur is None:
                return []
        ann = cur
    if isinstance(ann, type) and not getattr(ann, "__args__", None):
        return [ann]
    import typing

    return [t for a in typing.get_args(ann) for t in _named_types(a, g, depth + 1)]


def _made_from_fields(member: Any) -> bool:
    fn = getattr(member, "__wrapped__", member)
    code = getattr(fn, "__code__", None)
    return code is not None and code.co_filename.startswith("<")


def manifest(fn: Callable[..., Any]) -> tuple[Entry, ...]:
    """Everything the key of a step calling ``fn`` covers, sorted (kept while every name the
    walk looked up still gives the same object: a reload or a redefinition walks again)."""
    if getattr(fn, "is_zcas_step", False):
        fn = getattr(fn, "fn", fn)
    cached = _cache.get(fn)
    if cached is None or not _holds(cached[1]):
        w = Walk()
        w.value(fn, "<step>")
        w.run()
        witness = list({(id(ns), name, attr): (ns, name, v, attr) for ns, name, v, attr in w.witness}.values())
        cached = _cache[fn] = (tuple(sorted(w.entries.values())), witness)
    return cached[0]


def _holds(witness: list[tuple[Any, str, Any, bool]]) -> bool:
    """Whether every lookup a walk made still gives the object it gave (see ``Walk.witness``)."""
    for ns, name, seen, attr in witness:
        try:
            now = getattr(ns, name, _MISSING) if attr else ns.get(name, _MISSING)
        except ValueError:  # an empty closure cell
            now = _MISSING
        if now is not seen:
            return False
    return True


def digest_of(entries: tuple[Entry, ...]) -> str:
    text = "\n".join(f"{e.kind}\t{e.name}\t{e.digest}" for e in entries)
    return hash_bytes(text.encode("utf-8", "surrogateescape")).hex()


def fingerprint(fn: Callable[..., Any]) -> str:
    """The code fingerprint of a step function: the hash of its manifest, files and lines left out."""
    return digest_of(manifest(fn))


def clear() -> None:
    """Forget every fingerprint and parse: what a new process starts with (for benchmarks)."""
    _cache.clear()
    sourcedigest.clear()
    livecode.clear()
    codescan.clear()
    is_user_file.cache_clear()


_cache: dict[Any, tuple[tuple[Entry, ...], list[tuple[Any, str, Any, bool]]]] = {}
_MISSING = object()

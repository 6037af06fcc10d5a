"""Imports flow one way, cas <- lineage <- runners <- zcas, and no modules import each other.

Every module under cas/, lineage/, runners/ and zcas/ is read as source (nothing is
imported), with its installed name: cas/x.py is ``zcas.cas.x`` (pyproject's package-dir).
An import counts wherever it stands, at module top or inside a function; relative imports
are resolved; ``from package import name`` is an import of the submodule when there is one.
"""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FOLDERS = {"cas": "zcas.cas", "lineage": "zcas.lineage", "runners": "zcas.runners", "zcas": "zcas"}
LAYERS = ("cas", "lineage", "runners")  # the subpackages; every other module is the zcas layer

# Which layers each layer may import. zcas._version is a leaf every layer may read.
MAY_IMPORT = {
    "cas": {"cas", "version"},
    "lineage": {"cas", "lineage", "version"},
    "runners": {"cas", "lineage", "runners", "version"},
    "zcas": {"cas", "lineage", "runners", "zcas", "version"},
}

# Import cycles known when this test was written, being removed in issue 12: a cycle among
# modules that all belong to one of these sets is tolerated for now, any other cycle fails.
# Delete each entry as its cycle goes; the list only shrinks.
KNOWN_CYCLES: list[frozenset[str]] = []


class Import:
    def __init__(self, target: str, line: int, type_only: bool):
        self.target, self.line, self.type_only = target, line, type_only


def _modules() -> dict[str, str]:
    """Installed module name -> source file, for every module of the package."""
    out = {}
    for folder, package in FOLDERS.items():
        top = os.path.join(ROOT, folder)
        for dirpath, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            rel = os.path.relpath(dirpath, top)
            pkg = package if rel == "." else package + "." + rel.replace(os.sep, ".")
            for f in sorted(files):
                if f.endswith(".py"):
                    out[pkg if f == "__init__.py" else f"{pkg}.{f[:-3]}"] = os.path.join(dirpath, f)
    return out


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _nodes(tree: ast.AST) -> Iterator[tuple[ast.AST, bool]]:
    """Every node, and whether it stands under ``if TYPE_CHECKING:`` (never run)."""
    todo: list[tuple[ast.AST, bool]] = [(tree, False)]
    while todo:
        node, type_only = todo.pop()
        yield node, type_only
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            todo.extend((n, True) for n in node.body)
            todo.extend((n, type_only) for n in node.orelse)
            continue
        todo.extend((n, type_only) for n in ast.iter_child_nodes(node))


def imports(module: str) -> list[Import]:
    """What ``module`` imports: absolute module names (of this package or not)."""
    path = MODULES[module]
    is_pkg = os.path.basename(path) == "__init__.py"
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    out: list[Import] = []
    for node, type_only in _nodes(tree):
        if isinstance(node, ast.Import):
            out.extend(Import(a.name, node.lineno, type_only) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".") if is_pkg else module.split(".")[:-1]
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.append(Import(sub if sub in MODULES else base, node.lineno, type_only))
    return out


def layer(module: str) -> str:
    parts = module.split(".")
    if module == "zcas._version":
        return "version"
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return "zcas"


def graph(type_only: bool = False) -> dict[str, set[str]]:
    """module -> the package's modules it imports when it runs (with ``type_only``: also
    those it imports for type checking only)."""
    return {m: {i.target for i in imports(m) if i.target in MODULES and i.target != m and (type_only or not i.type_only)}
            for m in MODULES}


def components(g: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, sorted (Tarjan, iteratively):
    each module of one is on a cycle with every other."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    sccs = []
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = len(index)
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(g[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                scc = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    scc.append(w)
                    if w == v:
                        break
                if len(scc) > 1:
                    sccs.append(sorted(scc))
    return sorted(sccs)


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each component, starting at its smallest name."""
    return [_a_cycle(g, set(scc)) for scc in components(g)]


def _a_cycle(g: dict[str, set[str]], scc: set[str]) -> list[str]:
    """A shortest cycle through the smallest module of a component (breadth-first)."""
    start = min(scc)
    prev: dict[str, str] = {}
    todo = [start]
    while todo:
        nxt = []
        for v in todo:
            for w in sorted(g[v] & scc):
                if w == start:
                    path = [v]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        todo = nxt
    raise AssertionError(f"no cycle through {start}")


def _show(cycle: list[str]) -> str:
    return " -> ".join(cycle)


# -- the tests ------------------------------------------------------------------------------


def test_every_module_is_read():
    assert {"zcas", "zcas.cas.oid", "zcas.lineage.graph", "zcas.runners", "zcas._version"} <= set(MODULES)
    assert not any(".cas." in m and not m.startswith("zcas.cas.") for m in MODULES)


@pytest.mark.parametrize("folder", sorted(FOLDERS))
def test_layers(folder):
    """Each layer imports only the layers below it (type-only imports too); nothing names
    the bare folders (``cas.x``): they exist only as ``zcas.cas.x``."""
    bad = []
    for m in sorted(MODULES):
        if not MODULES[m].startswith(os.path.join(ROOT, folder) + os.sep):
            continue
        for i in imports(m):
            top = i.target.split(".")[0]
            if top in LAYERS:
                bad.append(f"{m}:{i.line} imports bare {i.target}; use zcas.{i.target}")
            elif i.target in MODULES and layer(i.target) not in MAY_IMPORT[layer(m)]:
                bad.append(f"{m}:{i.line} ({layer(m)}) imports {i.target} ({layer(i.target)})")
    assert not bad, "\n".join(bad)


def test_no_import_cycles():
    """No two modules import each other, directly or through others, when they run (an
    import under ``if TYPE_CHECKING:`` never runs)."""
    g = graph()
    new = [scc for scc in components(g) if not any(set(scc) <= known for known in KNOWN_CYCLES)]
    assert not new, "import cycles:\n" + "\n".join(
        f"{_show(_a_cycle(g, set(scc)))}" + (f" (all of {', '.join(scc)} are on cycles)" if len(scc) > 2 else "")
        for scc in new)


def test_the_cycle_finder_finds_cycles():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"f"}, "f": {"e"}, "g": {"g"}}
    assert cycles(g) == [["a", "b", "c", "a"], ["e", "f", "e"]]
    assert components(g) == [["a", "b", "c"], ["e", "f"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_relative_and_in_function_imports_are_resolved():
    found = {i.target for i in imports("zcas.lineage.store")}
    assert {"zcas.lineage.graph", "zcas.lineage.serde", "zcas.cas.codec"} <= found  # from . import serde: in a function


def _imports(path):
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


def test_cas_imports_no_cattrs_or_lmdb():
    """The object store's dependencies stay its own: blake3 in oid, zstandard in codec."""
    for dirpath, _, files in os.walk(os.path.join(ROOT, "cas")):
        for f in files:
            if f.endswith(".py"):
                mods = {m.split(".")[0] for m in _imports(os.path.join(dirpath, f))}
                assert not mods & {"lmdb", "cattrs"}, f
                if "blake3" in mods:
                    assert f == "oid.py", f
                if "zstandard" in mods:
                    assert f == "codec.py", f

"""Imports flow one way: cas <- lineage <- runners, and nothing imports the bare folder names."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORBIDDEN = {"cas": {"lineage", "runners"}, "lineage": {"runners"}, "runners": set()}


def _imports(path):
    tree = ast.parse(open(path).read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layers(layer):
    for dirpath, _, files in os.walk(os.path.join(ROOT, layer)):
        for f in files:
            if not f.endswith(".py"):
                continue
            for mod in _imports(os.path.join(dirpath, f)):
                parts = mod.split(".")
                top = parts[1] if parts[0] == "zcas" and len(parts) > 1 else parts[0]
                assert top not in FORBIDDEN[layer], f"{layer}/{f} imports {mod}"
                assert parts[0] not in {"cas", "lineage", "runners"}, f"{layer}/{f} imports bare {mod}; use zcas.{mod}"


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

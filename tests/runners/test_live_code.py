"""A helper edited after its import (the notebook workflow): the key describes the code that
runs, never the file's new source (livecode.py)."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

from zcas.runners import livecode
from zcas.runners.fingerprint import manifest

FLOW = '''
import zcas, helpers

@zcas.step
def work(n: int) -> int:
    return helpers.scale(n)
'''

EDIT_THEN_CALL = '''
import sys, os
sys.path.insert(0, os.getcwd())
import flow
src = open("helpers.py").read().replace("x * 2", "x * 3")
open("helpers.py", "w").write(src)
print(flow.work(5))
'''

CALL = '''
import sys, os
sys.path.insert(0, os.getcwd())
import flow
print(flow.work(5))
'''


def _py(cwd, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_a_helper_edited_after_import_is_never_a_hit_for_a_fresh_process(repo_dir):
    (repo_dir / "flow.py").write_text(textwrap.dedent(FLOW))
    (repo_dir / "helpers.py").write_text("def scale(x):\n    return x * 2\n")
    stale = _py(repo_dir, EDIT_THEN_CALL)
    assert stale.returncode == 0, stale.stderr
    assert stale.stdout.split() == ["10"]  # the old code ran: it is what is in memory
    assert "helpers.py changed on disk since it was imported" in stale.stderr
    fresh = _py(repo_dir, CALL)
    assert fresh.returncode == 0, fresh.stderr
    assert fresh.stdout.split() == ["15"], fresh  # not the stale process's 10
    again = _py(repo_dir, CALL)
    assert again.stdout.split() == ["15"] and "changed on disk" not in again.stderr


def _load(tmp_path, monkeypatch, name, source):
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    sys.modules.pop(name, None)
    importlib.invalidate_caches()
    mod = importlib.import_module(name)
    monkeypatch.setitem(sys.modules, name, mod)
    return mod


def _code_digest(fn) -> str:
    return next(e.digest for e in manifest(fn) if e.kind == "code" and e.name.endswith(fn.__qualname__))


def test_comments_docstrings_and_moves_on_disk_keep_the_source_digest(tmp_path, monkeypatch, capsys):
    mod = _load(tmp_path, monkeypatch, "lc_same", '''
        def f(x):
            """One doc."""
            def g(y):
                return y + 1.5
            return g(x) * 2
    ''')
    (tmp_path / "lc_same.py").write_text(textwrap.dedent('''
        def f(x):
            """Another doc."""
            # a comment
            def g(y):

                return y + 1.5
            return g(x) * 2
    '''))
    assert livecode.is_current(mod.f.__code__)
    assert not _code_digest(mod.f).startswith("bytecode:")
    assert "changed on disk" not in capsys.readouterr().err


def test_a_changed_constant_or_signature_is_not_current(tmp_path, monkeypatch):
    mod = _load(tmp_path, monkeypatch, "lc_diff", '''
        def f(a, b):
            return a - b + 0.0
    ''')
    for edited in ("def f(a, b):\n    return a - b + -0.0\n", "def f(b, a):\n    return b - a + 0.0\n",
                   "def f(a, b):\n    return a - b - 0.0\n"):
        (tmp_path / "lc_diff.py").write_text(edited)
        assert not livecode.is_current(mod.f.__code__), edited
    (tmp_path / "lc_diff.py").write_text("def f(a, b):\n\n    return a - b + 0.0  # same\n")
    assert livecode.is_current(mod.f.__code__)


RELOAD_THEN_CALL = '''
import importlib, sys, os
sys.path.insert(0, os.getcwd())
import flow, helpers
print(flow.work(5))
src = open("helpers.py").read().replace("x * 2", "x * 3")
open("helpers.py", "w").write(src)
importlib.reload(helpers)
print(flow.work(5))
helpers.scale = lambda x: x * 4   # a helper redefined in memory (a notebook cell)
print(flow.work(5))
'''


def test_a_reloaded_or_redefined_helper_is_walked_again_never_a_stale_hit(repo_dir):
    (repo_dir / "flow.py").write_text(textwrap.dedent(FLOW))
    (repo_dir / "helpers.py").write_text("def scale(x):\n    return x * 2\n")
    r = _py(repo_dir, RELOAD_THEN_CALL)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["10", "15", "20"], r

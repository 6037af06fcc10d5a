"""What a key covers, shown (issue 20): ``zcas why STEP --explain``, ``Repository.explain``,
and ``why`` naming the definition (file, line) or constant that changed."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from tests.conftest import run_zcas

HELPERS = '''
import attrs

FACTOR = 3

def scale(x):
    return x * FACTOR
'''

FLOW = '''
import zcas
import helpers

@zcas.step
def s(n: int, name: str = "K") -> int:
    open("exec.log", "a").write("s\\n")
    extra = getattr(helpers, name, 0)
    return helpers.scale(n) + int(open("in.txt").read()) + (extra if isinstance(extra, int) else 0)

@zcas.pipeline
def main(n: int = 2):
    return s(n)
'''


@pytest.fixture
def proj(repo_dir):
    (repo_dir / "helpers.py").write_text(textwrap.dedent(HELPERS))
    (repo_dir / "flow.py").write_text(textwrap.dedent(FLOW))
    (repo_dir / "in.txt").write_text("1")
    r = run_zcas("run", "flow.py:main", cwd=repo_dir)
    assert r.code == 0, r
    return repo_dir


def test_why_explain_lists_definitions_constants_packages_params_and_files(proj):
    r = run_zcas("why", "flow.s", "--explain", cwd=proj)
    assert r.code == 0, r
    lines = [x.strip() for x in r.out.splitlines()]
    assert lines[0].startswith("flow.s: python step, key ")
    assert any(x.startswith("definition flow.s = ") and x.endswith("flow.py:6") for x in lines), r.out
    assert any(x.startswith("definition helpers.scale = ") and x.endswith("helpers.py:6") for x in lines), r.out
    assert "constant helpers.FACTOR = int:3" in lines
    assert "param n = 2" in lines and 'param name = "K"' in lines
    assert any(x.startswith("file read in.txt = ") for x in lines)
    assert any(x.startswith("unresolved flow.s: getattr() with a computed attribute name") and "flow.py:" in x
               for x in lines), r.out


def test_why_explain_json_and_a_package_version(proj):
    uses_attrs = "return x * FACTOR + len(attrs.__name__) * 0"
    (proj / "helpers.py").write_text(textwrap.dedent(HELPERS).replace("return x * FACTOR", uses_attrs))
    assert run_zcas("run", "flow.py:main", cwd=proj).code == 0
    r = run_zcas("why", "flow.s", "--explain", "--json", cwd=proj)
    res = json.loads(r.out)
    import attrs

    assert r.code == 0 and res["kind"] == "python" and len(res["key"]) == 64
    assert {"kind": "package", "name": "attrs", "value": f"attrs=={attrs.__version__}", "file": "", "line": 0} in res["covers"]


def test_why_names_the_definition_and_the_constant_that_changed(proj):
    (proj / "helpers.py").write_text(textwrap.dedent(HELPERS).replace("return x * FACTOR", "return x * FACTOR * 2"))
    assert run_zcas("run", "flow.py:main", cwd=proj).code == 0
    r = run_zcas("why", "flow.s", cwd=proj)
    assert r.code == 0 and "definition helpers.scale changed (helpers.py:6)" in r.out, r
    assert "code changed" not in r.out
    (proj / "helpers.py").write_text(textwrap.dedent(HELPERS).replace("FACTOR = 3", "FACTOR = 4"))
    assert run_zcas("run", "flow.py:main", cwd=proj).code == 0
    r = run_zcas("why", "flow.s", cwd=proj)
    assert r.code == 0 and "constant helpers.FACTOR changed: int:3 -> int:4" in r.out, r


def test_repository_explain_of_a_step_and_of_a_name(proj, monkeypatch):
    monkeypatch.chdir(proj)
    monkeypatch.syspath_prepend(str(proj))
    import zcas

    sys.modules.pop("flow", None)
    sys.modules.pop("helpers", None)
    import flow

    repo = zcas.Repository(proj)
    live = repo.explain(flow.s)
    assert {"kind": "definition", "name": "helpers.scale", "file": "helpers.py", "line": 6} in [
        {k: it[k] for k in ("kind", "name", "file", "line")} for it in live]
    assert any(it["kind"] == "file read" and it["name"] == "in.txt" for it in live)
    by_name = repo.explain("flow.s")
    assert [it for it in by_name if it["kind"] == "definition"] == [it for it in live if it["kind"] == "definition"]
    from zcas.cas.errors import UsageError

    with pytest.raises(UsageError, match="no executed run of a step named 'nope'"):
        repo.explain("nope")
    repo.close()


def test_why_explain_of_a_command_step_and_of_nothing(repo_dir):
    (repo_dir / "zcas.toml").write_text(textwrap.dedent('''
        [steps.copy]
        cmd = "cp in.txt out.txt"
        inputs = ["in.txt"]
        outputs = ["out.txt"]
        env = ["SECRET"]
    '''))
    (repo_dir / "in.txt").write_text("x")
    r = run_zcas("why", "copy", "--explain", cwd=repo_dir, env={"SECRET": "hunter2"})
    assert r.code == 0, r
    assert "input in.txt = " in r.out and "output outputs = " in r.out and "env SECRET = set" in r.out
    assert "hunter2" not in r.out
    r = run_zcas("why", "nope", "--explain", cwd=repo_dir)
    assert r.code == 2 and "no step named 'nope'" in r.err and "Traceback" not in r.err

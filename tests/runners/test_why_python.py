"""zcas why / zcas status for steps zcas.toml does not declare: Python steps (issue 13, point 6)."""

from __future__ import annotations

import json
import textwrap

from tests.conftest import run_zcas

FLOW = '''
import zcas

@zcas.step
def sq(x: int) -> int:
    return x * x

@zcas.pipeline
def main(x: int = 3):
    return sq(x)
'''


def test_why_and_status_explain_a_python_steps_last_execution(repo_dir):
    (repo_dir / "flow.py").write_text(textwrap.dedent(FLOW))
    assert run_zcas("run", "flow.py:main", cwd=repo_dir).code == 0
    r = run_zcas("why", "flow.sq", cwd=repo_dir)
    assert r.code == 0 and r.out.startswith("flow.sq: ran") and "its first run" in r.out, r
    assert run_zcas("run", "flow.py:main", "-p", "x=4", cwd=repo_dir).code == 0
    r = run_zcas("why", "flow.sq", "--json", cwd=repo_dir)
    row = json.loads(r.out)
    assert r.code == 0 and row["status"] == "ran" and row["kind"] == "python"
    assert any("x" in line and "3" in line and "4" in line for line in row["reasons"]), row  # the param that changed
    (repo_dir / "flow.py").write_text(textwrap.dedent(FLOW).replace("x * x", "x * x + 0"))
    assert run_zcas("run", "flow.py:main", "-p", "x=4", cwd=repo_dir).code == 0
    r = run_zcas("status", "flow.sq", "--json", cwd=repo_dir)
    [row] = json.loads(r.out)
    assert r.code == 0 and "definition flow.sq changed (flow.py:5)" in row["reasons"], row  # named, with file and line
    r = run_zcas("why", "flow.nope", cwd=repo_dir)
    assert r.code == 2 and "no step named 'flow.nope'" in r.err

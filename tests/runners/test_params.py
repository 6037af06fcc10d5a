"""Params from the command line: overrides for zcas.toml steps, and {placeholders} that name
no param (issue 13, point 5)."""

from __future__ import annotations

import json

from tests.conftest import run_zcas

TOML = '''
[steps.prep]
cmd = "echo {n} > prep.txt"
outputs = ["prep.txt"]
params = { n = 100 }

[steps.train]
cmd = "cat prep.txt > model.txt; echo {n} {depth} >> model.txt"
inputs = ["prep.txt"]
outputs = ["model.txt"]
params = { n = 100, depth = 3 }
'''


def _project(repo_dir, toml: str = TOML):
    (repo_dir / "zcas.toml").write_text(toml)
    return repo_dir


def test_step_param_override_for_one_run(repo_dir):
    p = _project(repo_dir)
    assert run_zcas("run", cwd=p).code == 0
    assert (p / "model.txt").read_text() == "100\n100 3\n"
    r = run_zcas("run", "-p", "train.depth=7", "--json", cwd=p)
    assert r.code == 0, r
    by = {x["name"]: x["status"] for x in json.loads(r.out)}
    assert by == {"prep": "cached", "train": "ran"} and (p / "model.txt").read_text() == "100\n100 7\n"
    shown = json.loads(run_zcas("show", json.loads(r.out)[1]["run"], "--json", cwd=p).out)
    assert shown["params"] == {"n": 100, "depth": 7}  # the value used is the one recorded
    r = run_zcas("run", "--json", cwd=p)  # without the override: the declared value, a hit
    assert {x["name"]: x["status"] for x in json.loads(r.out)} == {"prep": "cached", "train": "cached"}
    assert (p / "model.txt").read_text() == "100\n100 3\n"


def test_a_bare_key_overrides_every_step_that_has_it(repo_dir):
    p = _project(repo_dir)
    r = run_zcas("run", "-p", "n=5", cwd=p)
    assert r.code == 0, r
    assert (p / "prep.txt").read_text() == "5\n" and (p / "model.txt").read_text() == "5\n5 3\n"


def test_overrides_naming_nothing_are_usage_errors(repo_dir):
    p = _project(repo_dir)
    for arg, says in [("nostep.n=1", "no step named 'nostep'"), ("train.nokey=1", "step 'train' has no param 'nokey'"),
                      ("nokey=1", "no step in zcas.toml has a param 'nokey'"), ("train.n", "invalid param")]:
        r = run_zcas("run", "-p", arg, cwd=p)
        assert r.code == 2 and says in r.err and r.err.count("\n") == 1, (arg, r)
    assert not (p / "prep.txt").exists()  # nothing ran


def test_a_placeholder_naming_no_param_is_refused_before_anything_runs(repo_dir):
    p = _project(repo_dir, TOML.replace("{depth}", "{dpeth}"))
    r = run_zcas("run", cwd=p)
    assert r.code == 2 and "{dpeth} in the command names no param (params: depth, n)" in r.err, r
    assert not (p / "prep.txt").exists()


def test_shell_variables_and_doubled_braces_are_not_placeholders(repo_dir):
    p = _project(repo_dir, '[steps.s]\ncmd = "echo ${HOME} {{x}} {n} > o.txt"\noutputs = ["o.txt"]\nparams = { n = 1 }\n')
    r = run_zcas("run", cwd=p, env={"HOME": "/home/u"})
    assert r.code == 0, r
    assert (p / "o.txt").read_text() == "/home/u {{x}} 1\n"


def test_one_off_commands_check_placeholders_when_given_params(repo_dir):
    r = run_zcas("run", "-p", "x=1", "-o", "o.txt", "--", "sh", "-c", "echo {y} > o.txt", cwd=repo_dir)
    assert r.code == 2 and "{y} in the command names no param (params: x)" in r.err, r
    r = run_zcas("run", "-o", "o.txt", "--", "sh", "-c", "echo '{print}' > o.txt", cwd=repo_dir)
    assert r.code == 0 and (repo_dir / "o.txt").read_text() == "{print}\n", r  # no params: nothing to substitute

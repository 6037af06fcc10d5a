"""`zcas run`: what runs, what is restored, and what users are told."""

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import assert_one_line_error

COUNTER = """
import sys, pathlib
log = pathlib.Path(sys.argv[1])
with log.open("a") as f:
    f.write(sys.argv[2] + "\\n")
"""


def executions(repo_dir, name="exec.log"):
    p = repo_dir / name
    return p.read_text().split() if p.exists() else []


def setup_cmd(repo_dir):
    (repo_dir / "data.txt").write_text("1\n2\n3\n")
    (repo_dir / "double.py").write_text(textwrap.dedent("""
        import os, sys
        open("exec.log", "a").write("double\\n")
        factor = int(os.environ.get("ZCAS_PARAM_FACTOR", "2"))
        nums = [int(x) * factor for x in open(sys.argv[1]).read().split()]
        open(sys.argv[2], "w").write("\\n".join(map(str, nums)) + "\\n")
    """))


def test_command_cached_and_restored(repo_dir, zcas):
    setup_cmd(repo_dir)
    args = ["run", "-i", "data.txt", "-o", "out.txt", "-p", "factor=3", "--", sys.executable, "double.py", "data.txt", "out.txt"]
    r = zcas(*args, cwd=repo_dir)
    assert r.code == 0, r
    assert (repo_dir / "out.txt").read_text() == "3\n6\n9\n"
    assert "ran:" in r.out
    r = zcas(*args, cwd=repo_dir)
    assert r.code == 0 and "cached:" in r.out and " ago)" in r.out
    assert executions(repo_dir) == ["double"]
    os.unlink(repo_dir / "out.txt")
    r = zcas(*args, cwd=repo_dir)
    assert "cached:" in r.out and (repo_dir / "out.txt").read_text() == "3\n6\n9\n"
    assert executions(repo_dir) == ["double"]


def test_script_is_an_implicit_input(repo_dir, zcas):
    setup_cmd(repo_dir)
    args = ["run", "-o", "out.txt", "--", sys.executable, "double.py", "data.txt", "out.txt"]
    zcas(*args, cwd=repo_dir)
    with open(repo_dir / "double.py", "a") as f:
        f.write("# edited\n")
    r = zcas(*args, cwd=repo_dir)
    assert "ran:" in r.out, r
    (repo_dir / "data.txt").write_text("5\n")  # an argv token naming a file counts too
    r = zcas(*args, cwd=repo_dir)
    assert "ran:" in r.out and (repo_dir / "out.txt").read_text() == "10\n"
    assert executions(repo_dir) == ["double"] * 3


def test_params_env_and_placeholders(repo_dir, zcas):
    def args(v):
        return ["run", "-o", "o.txt", "-p", f"word={v}", "-e", "MYVAR", "--", "sh", "-c", "echo {word} $MYVAR > o.txt"]

    assert zcas(*args("hi"), cwd=repo_dir, env={"MYVAR": "a"}).code == 0
    assert (repo_dir / "o.txt").read_text() == "hi a\n"
    assert "cached:" in zcas(*args("hi"), cwd=repo_dir, env={"MYVAR": "a"}).out
    assert "ran:" in zcas(*args("hi"), cwd=repo_dir, env={"MYVAR": "b"}).out
    assert "ran:" in zcas(*args("yo"), cwd=repo_dir, env={"MYVAR": "b"}).out
    assert (repo_dir / "o.txt").read_text() == "yo b\n"
    # an undeclared variable does not count
    assert "cached:" in zcas(*args("yo"), cwd=repo_dir, env={"MYVAR": "b", "OTHER": "x"}).out


def test_failure_exit_code_and_nothing_cached(repo_dir, zcas):
    r = zcas("run", "-o", "x", "--", "sh", "-c", "echo partial > x; exit 7", cwd=repo_dir)
    assert r.code == 7 and "failed:" in r.out
    r = zcas("run", "-o", "x", "--", "sh", "-c", "echo partial > x; exit 7", cwd=repo_dir)
    assert r.code == 7 and "failed:" in r.out  # not cached: it ran again
    log = zcas("log", "--json", cwd=repo_dir)
    assert [x["status"] for x in json.loads(log.out)] == ["failed", "failed"]


def test_missing_declared_output(repo_dir, zcas):
    r = zcas("run", "-o", "never.txt", "--", "true", cwd=repo_dir)
    assert r.code == 1 and "declared output never.txt was not produced" in r.out


def test_command_not_found(repo_dir, zcas):
    r = zcas("run", "--", "no-such-program-zcas", cwd=repo_dir)
    assert r.code == 127 and "command not found: no-such-program-zcas" in r.out


def test_missing_objects_mean_rerun_not_failure(repo_dir, zcas):
    args = ["run", "-o", "o.txt", "--", "sh", "-c", "echo run >> exec.log; echo x > o.txt"]
    zcas(*args, cwd=repo_dir)
    # throw away every pack: the cache entry remains but its outputs are gone
    packs = repo_dir / ".zcas" / "objects" / "packs"
    for p in packs.iterdir():
        p.unlink()
    r = zcas(*args, cwd=repo_dir)
    assert r.code == 0 and "ran:" in r.out
    assert executions(repo_dir) == ["run", "run"]


PIPE = """
[steps.a]
cmd = "sh -c 'echo a >> exec.log; cat in.txt > a.txt; echo {n} >> a.txt'"
inputs = ["in.txt"]
outputs = ["a.txt"]
params = { n = 1 }

[steps.b]
cmd = "sh -c 'echo b >> exec.log; cat a.txt a.txt > b.txt'"
inputs = ["a.txt"]
outputs = ["b.txt"]

[steps.c]
cmd = "sh -c 'echo c >> exec.log; wc -c < in.txt > c.txt'"
inputs = ["in.txt"]
outputs = ["c.txt"]

[steps.d]
cmd = "sh -c 'echo d >> exec.log; cat b.txt c.txt > d.txt'"
inputs = ["b.txt", "c.txt"]
outputs = ["d.txt"]
"""


def pipeline(repo_dir, text=PIPE):
    (repo_dir / "zcas.toml").write_text(text)
    (repo_dir / "in.txt").write_text("hello\n")


def test_pipeline_runs_in_order_then_all_cached(repo_dir, zcas):
    pipeline(repo_dir)
    r = zcas("run", cwd=repo_dir)
    assert r.code == 0, r
    ex = executions(repo_dir)
    assert sorted(ex) == ["a", "b", "c", "d"] and ex.index("a") < ex.index("b") < ex.index("d")
    r = zcas("run", "--json", cwd=repo_dir)
    rows = json.loads(r.out)
    assert {x["name"]: x["status"] for x in rows} == dict.fromkeys("abcd", "cached")
    assert all(len(x["key"]) == 64 and len(x["run"]) == 64 for x in rows)
    assert len(executions(repo_dir)) == 4


def test_change_reruns_only_what_depends(repo_dir, zcas):
    pipeline(repo_dir)
    zcas("run", cwd=repo_dir)
    (repo_dir / "zcas.toml").write_text(PIPE.replace("n = 1", "n = 2"))
    r = zcas("status", cwd=repo_dir)
    assert "stale  a  (param n changed: 1 -> 2)" in r.out
    assert "stale  b  (upstream a is stale)" in r.out and "fresh  c" in r.out
    r = zcas("why", "d.txt", cwd=repo_dir)
    assert r.out.startswith("d: stale") and "upstream b is stale" in r.out
    zcas("run", cwd=repo_dir)
    assert executions(repo_dir)[4:] == ["a", "b", "d"]


def test_upstream_identical_output_keeps_dependents_cached(repo_dir, zcas):
    pipeline(repo_dir)
    zcas("run", cwd=repo_dir)
    # a's command changes but its output does not: b stays cached
    (repo_dir / "zcas.toml").write_text(PIPE.replace("echo a >> exec.log;", "echo a >> exec.log; true;"))
    r = zcas("run", cwd=repo_dir)
    assert "ran: a" in r.out and "cached: b" in r.out and "cached: d" in r.out


def test_run_selected_steps(repo_dir, zcas):
    pipeline(repo_dir)
    r = zcas("run", "b", cwd=repo_dir)
    assert r.code == 0 and sorted(executions(repo_dir)) == ["a", "b"]


def test_failed_branch_stops_dependents_only(repo_dir, zcas):
    pipeline(repo_dir, PIPE.replace("wc -c < in.txt > c.txt", "exit 3"))
    r = zcas("run", "-j", "1", cwd=repo_dir)
    assert r.code == 3
    assert "failed: c" in r.out and "skipped: d (upstream c failed)" in r.out
    assert "ran: b" in r.out
    pipeline(repo_dir)  # fix c: a and b come from the cache
    r = zcas("run", cwd=repo_dir)
    assert "cached: a" in r.out and "cached: b" in r.out and "ran: c" in r.out and "ran: d" in r.out


@pytest.mark.parametrize(
    "toml,msg",
    [
        ('[steps.x]\ncmd = "true"\ninputs = ["y.txt"]\noutputs = ["x.txt"]\n'
         '[steps.y]\ncmd = "true"\ninputs = ["x.txt"]\noutputs = ["y.txt"]\n', "dependency cycle"),
        ('[steps.x]\ncmd = "true"\noutputs = ["o"]\n[steps.y]\ncmd = "true"\noutputs = ["o"]\n', "both write 'o'"),
        ('[steps.x]\ncmd = "true"\nbogus = 1\n', "unknown key 'bogus'"),
        ('[steps.x]\ncmd = 5\n', "'cmd' must be a string or a list"),
        ('[steps.x]\ncmd = "true"\noutputs = ["../escape"]\n', "leaves the repository"),
        ("[steps.x\n", "zcas.toml"),
    ],
)
def test_bad_pipelines_refused_before_running(repo_dir, zcas, toml, msg):
    (repo_dir / "zcas.toml").write_text(toml)
    assert_one_line_error(zcas("run", cwd=repo_dir), msg)


def test_unknown_step(repo_dir, zcas):
    pipeline(repo_dir)
    # with a pipeline file, a word that is no step is a typo, never a command to run
    assert_one_line_error(zcas("run", "zz_nope", cwd=repo_dir), "no step named 'zz_nope'", "put it after --", code=2)
    assert_one_line_error(zcas("run", "a", "bb", cwd=repo_dir), "no step named 'bb'", "did you mean b?", code=2)
    (repo_dir / "touch-me").unlink(missing_ok=True)
    r = zcas("run", "touch", "touch-me", cwd=repo_dir)
    assert r.code == 2 and not (repo_dir / "touch-me").exists(), r
    assert zcas("run", "--", "touch", "touch-me", cwd=repo_dir).code == 0 and (repo_dir / "touch-me").exists()
    assert_one_line_error(zcas("status", "zz_nope", cwd=repo_dir), "unknown step 'zz_nope'")


def test_two_processes_same_key_run_once(repo_dir):
    cmd = [sys.executable, "-m", "zcas", "run", "-o", "o.txt", "--", "sh", "-c", "echo run >> exec.log; sleep 1; echo x > o.txt"]
    env = dict(os.environ)
    env.pop("ZCAS_DIR", None)
    procs = [subprocess.Popen(cmd, cwd=repo_dir, env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=60)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert executions(repo_dir) == ["run"]
    assert sorted("ran:" in o for o in outs) == [False, True]
    assert any("cached:" in o for o in outs)


def test_parallel_independent_steps(repo_dir, zcas):
    toml = "".join(f'[steps.p{i}]\ncmd = "sleep 0.5"\n' for i in range(4))
    (repo_dir / "zcas.toml").write_text(toml)
    t = time.time()
    assert zcas("run", "-j", "4", cwd=repo_dir).code == 0
    assert time.time() - t < 1.8  # four half-second steps at once, not 2 s in a row


def test_lineage_of_pipeline_output(repo_dir, zcas):
    pipeline(repo_dir)
    zcas("run", cwd=repo_dir)
    r = zcas("log", "d.txt", cwd=repo_dir)
    steps = [ln.split()[-1] for ln in r.out.splitlines() if not ln.startswith("source")]
    assert sorted(steps) == ["a", "b", "c", "d"]
    assert "source" in r.out and "in.txt" in r.out
    r = zcas("log", "in.txt", "--used-by", "--json", cwd=repo_dir)
    assert r.code == 0, r
    assert sorted(x["step"] for x in json.loads(r.out)["runs"]) == ["a", "b", "c", "d"]
    r = zcas("log", "a.txt", "--used-by", "--depth", "1", "--json", cwd=repo_dir)
    assert [x["step"] for x in json.loads(r.out)["runs"]] == ["b"]


def test_why_names_the_file_that_changed_in_a_folder_input(repo_dir, zcas):
    (repo_dir / "d").mkdir()
    for n in ("a.txt", "b.txt", "c.txt"):
        (repo_dir / "d" / n).write_text(n)
    (repo_dir / "zcas.toml").write_text('[steps.cat]\ncmd = "sh -c \'cat d/* > all.txt\'"\n'
                                        'inputs = ["d"]\noutputs = ["all.txt"]\n')
    assert zcas("run", cwd=repo_dir).code == 0
    (repo_dir / "d" / "b.txt").write_text("changed")
    (repo_dir / "d" / "new.txt").write_text("new")
    r = zcas("why", "cat", cwd=repo_dir)
    assert "input d changed" in r.out
    assert "d/b.txt changed" in r.out and "d/new.txt added" in r.out and "a.txt" not in r.out


def test_string_cmd_runs_in_a_shell_and_list_cmd_does_not(repo_dir, zcas):
    (repo_dir / "gen.sh").write_text("echo from-script\n")
    (repo_dir / "zcas.toml").write_text(
        '[steps.s]\ncmd = "sh gen.sh > out.txt && echo {msg} >> out.txt"\noutputs = ["out.txt"]\n'
        'params = { msg = "two words; echo injected" }\n'
        '[steps.l]\ncmd = ["echo", "a", ">", "b"]\noutputs = []\n')
    r = zcas("run", cwd=repo_dir)
    assert r.code == 0, r
    assert (repo_dir / "out.txt").read_text() == "from-script\ntwo words; echo injected\n"  # a param stays one word
    assert "a > b" in r.out and not (repo_dir / "b").exists()  # the list form: no shell
    assert "cached: s" in zcas("run", "s", cwd=repo_dir).out
    (repo_dir / "gen.sh").write_text("echo changed\n")  # a script named in shell code is an input
    r = zcas("run", "s", cwd=repo_dir)
    assert "ran: s" in r.out and (repo_dir / "out.txt").read_text().startswith("changed"), r


def test_status_of_a_folder_input_stores_nothing(repo_dir):
    """status and why name what is in the working tree; they must not store it (issue 12)."""
    from tests.conftest import run_zcas

    (repo_dir / "data").mkdir()
    (repo_dir / "data" / "a.txt").write_text("a")
    (repo_dir / "zcas.toml").write_text('[steps.s]\ncmd = "ls data > out.txt"\ninputs = ["data"]\noutputs = ["out.txt"]\n')
    packs = repo_dir / ".zcas" / "objects" / "packs"
    before = sorted(p.name for p in packs.iterdir()) if packs.exists() else []
    r = run_zcas("status", cwd=repo_dir)
    assert r.code == 0 and "never ran" in r.out, r
    assert (sorted(p.name for p in packs.iterdir()) if packs.exists() else []) == before

"""The Python API: the catalogue of what reruns and what stays cached, materializers, errors
and post-run queries. Each case runs the pipeline in a fresh process, as a user re-running
a script after an edit would, and asserts exactly which step bodies executed."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

BASE = '''
import os, zcas

SCALE = 3

def log(name):
    with open("exec.log", "a") as f:
        f.write(name + "\\n")

def helper(x):
    return x * SCALE

@zcas.step
def load(n: int) -> dict:
    """Load the numbers."""
    log("load")
    return {"values": list(range(n))}

@zcas.step
def transform(data: dict, offset: int = 1) -> dict:
    log("transform")
    return {"values": [helper(v) + offset for v in data["values"]]}

@zcas.step
def total(data: dict) -> int:
    log("total")
    return sum(data["values"])

@zcas.pipeline
def pipe(n: int = 5):
    return total(transform(load(n)))
'''

RUNNER = '''
import json, sys
sys.path.insert(0, ".")
import mod
run = mod.pipe(**json.loads(sys.argv[1]))
print(json.dumps(run.load()))
'''


class Project:
    def __init__(self, root):
        self.root = root
        (root / "runner.py").write_text(RUNNER)

    def write(self, source: str) -> None:
        (self.root / "mod.py").write_text(textwrap.dedent(source))

    def run(self, env=None, **kwargs):
        """Run the pipeline in a new process; (executed step bodies, result)."""
        log = self.root / "exec.log"
        if log.exists():
            log.unlink()
        e = dict(os.environ)
        e.pop("ZCAS_DIR", None)
        e.update(env or {})
        p = subprocess.run([sys.executable, "runner.py", json.dumps(kwargs)], cwd=self.root, env=e, capture_output=True,
                           text=True)
        assert p.returncode == 0, p.stderr
        executed = log.read_text().split() if log.exists() else []
        return executed, json.loads(p.stdout)


@pytest.fixture
def proj(repo_dir):
    p = Project(repo_dir)
    p.write(BASE)
    assert p.run() == (["load", "transform", "total"], 35)
    return p


def test_nothing_changed_nothing_runs(proj):
    assert proj.run() == ([], 35)


def test_step_body_edited(proj):
    proj.write(BASE.replace("helper(v) + offset", "helper(v) + offset + 1"))
    assert proj.run() == (["transform", "total"], 40)


def test_comment_blank_line_docstring_do_not_count(proj):
    edited = BASE.replace('"""Load the numbers."""', '"""Load the numbers, documented differently."""')
    edited = edited.replace("    log(\"transform\")", "    # a comment\n\n    log(\"transform\")  # trailing")
    proj.write(edited)
    assert proj.run() == ([], 35)


def test_helper_function_edited(proj):
    proj.write(BASE.replace("return x * SCALE", "return x * SCALE * 1 + 0"))
    assert proj.run() == (["transform"], 35)  # same result: total stays cached


def test_helper_change_with_new_result(proj):
    proj.write(BASE.replace("return x * SCALE", "return x * SCALE * 2"))
    assert proj.run() == (["transform", "total"], 65)


def test_module_constant_changed(proj):
    proj.write(BASE.replace("SCALE = 3", "SCALE = 4"))
    assert proj.run() == (["transform", "total"], 45)


def test_default_argument_changed(proj):
    proj.write(BASE.replace("offset: int = 1", "offset: int = 2"))
    assert proj.run() == (["transform", "total"], 40)


def test_param_changed(proj):
    assert proj.run(n=6) == (["load", "transform", "total"], 51)


def test_upstream_reruns_with_identical_output(proj):
    proj.write(BASE.replace('log("load")', 'log("load")\n    unused = 1'))
    assert proj.run() == (["load"], 35)


def test_input_data_changed(repo_dir):
    p = Project(repo_dir)
    p.write('''
        import pathlib, zcas
        @zcas.step
        def count(data: pathlib.Path) -> int:
            open("exec.log", "a").write("count\\n")
            return len(data.read_bytes())  # a stored file comes back as a checked-out path
        @zcas.pipeline
        def pipe():
            return count(zcas.Repository().put("data.bin"))
    ''')
    (repo_dir / "data.bin").write_bytes(b"12345")
    assert p.run() == (["count"], 5)
    assert p.run() == ([], 5)
    (repo_dir / "data.bin").write_bytes(b"123")
    assert p.run() == (["count"], 3)


def test_declared_environment_variable(repo_dir):
    p = Project(repo_dir)
    p.write('''
        import os, zcas
        @zcas.step(env=["MODE"])
        def which() -> str:
            open("exec.log", "a").write("which\\n")
            return os.environ.get("MODE", "none")
        @zcas.pipeline
        def pipe():
            return which()
    ''')
    assert p.run(env={"MODE": "a"}) == (["which"], "a")
    assert p.run(env={"MODE": "a", "OTHER": "x"}) == ([], "a")
    assert p.run(env={"MODE": "b"}) == (["which"], "b")


def test_back_to_earlier_code_is_a_hit(proj):
    proj.write(BASE.replace("SCALE = 3", "SCALE = 5"))
    assert proj.run()[0] == ["transform", "total"]
    proj.write(BASE)
    assert proj.run() == ([], 35)


def test_version_overrides_fingerprint(repo_dir):
    p = Project(repo_dir)
    src = '''
        import zcas
        @zcas.step(version="1")
        def f() -> int:
            open("exec.log", "a").write("f\\n")
            return BODY
        @zcas.pipeline
        def pipe():
            return f()
    '''
    p.write(src.replace("BODY", "1"))
    assert p.run() == (["f"], 1)
    p.write(src.replace("BODY", "2"))
    assert p.run() == ([], 1)  # the user said the version did not change
    p.write(src.replace("BODY", "2").replace('version="1"', 'version="2"'))
    assert p.run() == (["f"], 2)


# -- in-process API -------------------------------------------------------------------------


@pytest.fixture
def here(repo_dir, monkeypatch):
    monkeypatch.chdir(repo_dir)
    monkeypatch.delenv("ZCAS_DIR", raising=False)
    return repo_dir


def test_parameter_without_canonical_encoding_is_named(here):
    import zcas

    @zcas.step
    def f(x):
        return 1

    with pytest.raises(zcas.ZcasError, match="parameter 'x' has no canonical encoding: object"):
        f(object())
    with pytest.raises(zcas.ZcasError, match="parameter 'x'.* has no canonical encoding: float nan"):
        f({"a": float("nan")})


def test_type_without_materializer_is_named(here):
    import zcas

    class Model:
        pass

    @zcas.step
    def make():
        return Model()

    with pytest.raises(zcas.NoMaterializerError,
                       match=r"no materializer for .*Model: register one with @zcas.materializer\(.*Model\)"):
        make()


def test_pickle_opt_in(here):
    import zcas

    @zcas.step(pickle=True)
    def make():
        return {1, 2, 3}

    assert make() == {1, 2, 3}


def test_user_materializer(here):
    import zcas

    class Point:
        def __init__(self, x, y):
            self.x, self.y = x, y

    @zcas.materializer(Point, version="1")
    class PointMaterializer:
        @staticmethod
        def save(p):
            return f"{p.x},{p.y}".encode()

        @staticmethod
        def load(b):
            return Point(*map(int, b.decode().split(",")))

    @zcas.step
    def make(x: int):
        return Point(x, 2)

    p = make(7)
    assert (p.x, p.y) == (7, 2)
    run = zcas.Repository().runs(limit=1)[0]
    assert run.record["materializers"]["output"].startswith("user:")


def test_values_roundtrip(here):
    import numpy as np

    import zcas

    @zcas.step
    def values():
        return None, True, 3, 2.5, "s", b"\x00raw", [1, (2, 3)], {"k": (1, b"b")}, np.arange(6, dtype=np.int16).reshape(2, 3)

    @zcas.pipeline
    def pipe():
        return values()

    first = pipe().load()
    again = pipe()
    assert all(a.materializer for a in again.output)
    got = again.load()
    assert got[:8] == first[:8] == (None, True, 3, 2.5, "s", b"\x00raw", [1, (2, 3)], {"k": (1, b"b")})
    assert got[8].dtype == np.int16 and got[8].shape == (2, 3) and got[8].tolist() == [[0, 1, 2], [3, 4, 5]]


def test_path_outputs(here):
    import pathlib

    import zcas

    @zcas.step
    def write(n: int) -> pathlib.Path:
        d = pathlib.Path("made")
        d.mkdir(exist_ok=True)
        (d / "x.txt").write_text("x" * n)
        return d

    out = write(3)
    assert isinstance(out, pathlib.Path) and (out / "x.txt").read_text() == "xxx"
    import shutil

    shutil.rmtree("made")
    again = write(3)  # a hit: handed back as a checked-out copy
    assert (again / "x.txt").read_text() == "xxx" and again != pathlib.Path("made")


def test_queries_and_lineage(here):
    import zcas

    @zcas.step
    def a(n: int) -> list:
        return list(range(n))

    @zcas.step
    def b(xs: list) -> int:
        return sum(xs)

    @zcas.pipeline(name="qp")
    def qp(n: int = 4):
        return b(a(n))

    r1 = qp()
    r2 = qp()
    assert r1.load() == r2.load() == 6
    repo = zcas.Repository()
    [latest, first] = repo.runs(pipeline="qp")
    assert set(latest.steps) == {a.name, b.name}
    assert latest.steps[b.name].cached and not first.steps[b.name].cached
    assert first.steps[b.name].load() == 6 and first.steps[b.name].duration >= 0
    assert first.steps[a.name].params == {"n": 4}
    out = first.steps[b.name].outputs["output"]
    ups = repo.lineage_of(out).ancestors()
    assert [u.step for u in ups] == [b.name, a.name]
    downs = repo.lineage_of(first.steps[a.name].outputs["output"]).descendants()
    assert sorted((d.step, d.status) for d in downs) == [(b.name, "cached"), (b.name, "ran")]


def test_put_get_checkout_tag_history(here):
    import zcas

    repo = zcas.Repository()
    v = repo.put({"a": [1, 2]})
    assert repo.get(v.id) == {"a": [1, 2]} and repo.get(v.id[:10]) == {"a": [1, 2]}
    b = repo.put(b"raw bytes")
    assert repo.get(b.id) == b"raw bytes"
    (here / "f.txt").write_text("one")
    f1 = repo.put("f.txt")
    (here / "f.txt").write_text("two")
    f2 = repo.put("f.txt")
    assert [h.id for h in repo.history("f.txt")] == [f1.id, f2.id]
    repo.tag("first", f1.id)
    repo.checkout("first", here / "restored.txt")
    assert (here / "restored.txt").read_text() == "one"
    with pytest.raises(zcas.ZcasError, match="no such file"):
        repo.put("missing.txt")


def test_cli_runs_python_pipeline(repo_dir):
    from tests.conftest import run_zcas

    (repo_dir / "flow.py").write_text(textwrap.dedent('''
        import zcas
        @zcas.step
        def sq(x: int) -> int:
            return x * x
        @zcas.pipeline
        def main(x: int = 3):
            return sq(x)
    '''))
    r = run_zcas("run", "flow.py:main", "-p", "x=4", cwd=repo_dir)
    assert r.code == 0 and "ran: flow.sq" in r.out, r
    r = run_zcas("run", "flow.py:main", "--param", "x=4", cwd=repo_dir)
    assert "cached: flow.sq" in r.out
    r = run_zcas("log", "--json", cwd=repo_dir)
    recent = json.loads(r.out)[:2]  # the second call: the pipeline's run and its step's hit
    assert {x["step"]: x["status"] for x in recent} == {"flow.sq": "cached", "flow.main": "ran"}
    assert [x["params"] for x in recent if x["step"] == "flow.main"] == [{"x": 4}]  # a pipeline's params are recorded
    r = run_zcas("run", "flow.py:nothing", cwd=repo_dir)
    assert r.code != 0 and "has no 'nothing'" in r.err
    # a param the pipeline does not take: one line naming it and the params it does take
    r = run_zcas("run", "flow.py:main", "-p", "bogus=1", cwd=repo_dir)
    assert r.code == 2 and "bogus" in r.err and "its params: x" in r.err and "internal error" not in r.err, r
    assert len(r.err.strip().splitlines()) == 1, r


def test_numpy_scalars_in_plain_values_and_return_types_checked_first(here):
    """Issue 13: a dict of numpy scalars (what metrics code returns) stores as plain JSON;
    a return annotation no materializer handles fails before the step body runs."""
    import numpy as np

    import zcas

    ran = []

    @zcas.step
    def metrics() -> dict:
        ran.append(1)
        return {"acc": np.float64(0.75), "n": np.int64(4), "ok": np.bool_(True)}

    assert metrics() == {"acc": 0.75, "n": 4, "ok": True}

    class Model:
        pass

    @zcas.step
    def train() -> Model:
        ran.append("train")
        return Model()

    with pytest.raises(zcas.NoMaterializerError, match="Model"):
        train()
    assert "train" not in ran

    @zcas.step
    def bad() -> dict:
        return {"m": Model()}

    with pytest.raises(zcas.NoMaterializerError, match=r"no materializer for .*Model"):
        bad()  # the message names the value inside the dict, not dict


def test_script_and_zcas_run_share_step_names_and_cache(repo_dir):
    """Issue 13: `python flow.py` and `zcas run flow.py:main` name the steps alike
    (flow.sq, not __main__.sq), so one's results are the other's cache hits."""
    from tests.conftest import run_zcas

    (repo_dir / "flow.py").write_text(textwrap.dedent('''
        import zcas
        @zcas.step
        def sq(x: int) -> int:
            open("ran.log", "a").write("sq\\\\n")
            return x * x
        @zcas.pipeline
        def main(x: int = 3):
            return sq(x)
        if __name__ == "__main__":
            print(main().load())
    '''))
    e = dict(os.environ)
    e.pop("ZCAS_DIR", None)
    p = subprocess.run([sys.executable, "flow.py"], cwd=repo_dir, env=e, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.strip() == "9", p
    r = run_zcas("run", "flow.py:main", cwd=repo_dir)
    assert r.code == 0 and "cached: flow.sq" in r.out, r
    assert (repo_dir / "ran.log").read_text().count("sq") == 1  # ran once, by the script


def test_gc_clears_the_loaded_copies_of_path_artifacts(here):
    import zcas
    from tests.conftest import run_zcas

    repo = zcas.Repository()
    (here / "d").mkdir()
    (here / "d" / "x.txt").write_text("x")
    art = repo.put("d")
    loaded = repo.get(art.id)  # a folder comes back as a checked-out copy under .zcas/checkouts
    assert (loaded / "x.txt").read_text() == "x" and loaded.parent == here / ".zcas" / "checkouts"
    repo.close()
    r = run_zcas("gc", "--dry-run", "--json", cwd=here)
    assert json.loads(r.out)["checkouts_removed"] == 1 and loaded.exists()
    r = run_zcas("gc", cwd=here)
    assert r.code == 0 and "1 loaded copies of path artifacts" in r.out and not loaded.exists()
    assert zcas.Repository().get(art.id).joinpath("x.txt").read_text() == "x"  # loaded again on demand

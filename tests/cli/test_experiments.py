"""Experiments end to end: a 4-stage scikit-learn pipeline swept over one param, compared.

prepare -> featurize -> train -> evaluate over scikit-learn's bundled breast-cancer data (no
network), run three times with train.C = 0.01, 0.1, 1.0. The expected accuracies are computed
here, in the test process, with the same code, so a wrong row, a mixed-up param or a metric
from the wrong run fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import assert_one_line_error, run_zcas

pytest.importorskip("sklearn")

COMMON = textwrap.dedent('''
    import json, os, sys
    import numpy as np

    def split(X, y):
        n = len(y) * 3 // 4
        return X[:n], y[:n], X[n:], y[n:]

    def fit(C, X, y):
        from sklearn.linear_model import LogisticRegression
        return LogisticRegression(C=C, max_iter=2000).fit(X, y)
''')

PREPARE = textwrap.dedent('''
    import numpy as np
    from sklearn.datasets import load_breast_cancer
    d = load_breast_cancer()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(d.target))
    np.savez("data/raw.npz", X=d.data[order], y=d.target[order])
    print(f"prepared {len(order)} rows")
''')

FEATURIZE = textwrap.dedent('''
    import numpy as np
    raw = np.load("data/raw.npz")
    X = raw["X"]
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    np.savez("data/features.npz", X=X, y=raw["y"])
    print("featurized", X.shape[1], "columns")
''')

TRAIN = textwrap.dedent('''
    import os, sys, pickle, json
    from common import split, fit
    import numpy as np
    C = float(os.environ["ZCAS_PARAM_C"])
    f = np.load("data/features.npz")
    X, y, _, _ = split(f["X"], f["y"])
    model = fit(C, X, y)
    with open("model.pkl", "wb") as out:
        pickle.dump(model, out)
    with open("train.json", "w") as out:
        json.dump({"train": {"accuracy": float(model.score(X, y))}}, out)
    sys.stdout.buffer.write(b"training C=%s\\n\\xff\\xfe raw bytes, no newline at the end" % str(C).encode())
    sys.stderr.write(f"warning: C={C} on stderr\\n")
''')

EVALUATE = textwrap.dedent('''
    import pickle, csv
    from common import split
    import numpy as np
    f = np.load("data/features.npz")
    _, _, X, y = split(f["X"], f["y"])
    model = pickle.load(open("model.pkl", "rb"))
    acc = float(model.score(X, y))
    with open("eval.csv", "w", newline="") as out:
        w = csv.writer(out)
        w.writerow(["accuracy", "errors"])
        w.writerow([repr(acc), int(round((1 - acc) * len(y)))])
    print(f"accuracy {acc}")
''')

TOML = textwrap.dedent('''
    [steps.prepare]
    cmd = "python prepare.py"
    outputs = ["data/raw.npz"]

    [steps.featurize]
    cmd = "python featurize.py"
    inputs = ["data/raw.npz"]
    outputs = ["data/features.npz"]

    [steps.train]
    cmd = "python train.py"
    inputs = ["data/features.npz", "common.py"]
    outputs = ["model.pkl"]
    metrics = ["train.json"]
    params = { C = 1.0 }

    [steps.evaluate]
    cmd = "python evaluate.py"
    inputs = ["model.pkl", "data/features.npz", "common.py"]
    metrics = ["eval.csv"]
''')

SWEEP = (0.01, 0.1, 1.0)


def _expected() -> dict[float, dict[str, float]]:
    """What each run must report, computed here the same way the scripts do."""
    import numpy as np
    from sklearn.datasets import load_breast_cancer

    ns: dict = {}
    exec(COMMON, ns)
    d = load_breast_cancer()
    order = np.random.default_rng(0).permutation(len(d.target))
    X, y = d.data[order], d.target[order]
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    Xtr, ytr, Xte, yte = ns["split"](X, y)
    out = {}
    for C in SWEEP:
        m = ns["fit"](C, Xtr, ytr)
        acc = float(m.score(Xte, yte))
        out[C] = {"train.accuracy": float(m.score(Xtr, ytr)), "accuracy": acc, "errors": int(round((1 - acc) * len(yte)))}
    return out


def _zcas_raw(*args: str, cwd) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("ZCAS_DIR", "ZCAS_DEBUG")}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return subprocess.run([sys.executable, "-m", "zcas", *args], cwd=cwd, env=env, capture_output=True)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A repository whose pipeline ran once per value of train.C; the raw output of each run."""
    root = tmp_path_factory.mktemp("exp")
    for name, text in (("common.py", COMMON), ("prepare.py", PREPARE), ("featurize.py", FEATURIZE),
                       ("train.py", TRAIN), ("evaluate.py", EVALUATE), ("zcas.toml", TOML)):
        (root / name).write_text(text)
    (root / "data").mkdir()
    assert run_zcas("init", cwd=root).code == 0
    printed = {}
    for C in SWEEP:
        p = _zcas_raw("run", "-j", "1", "-p", f"train.C={C}", cwd=root)
        assert p.returncode == 0, p.stderr.decode()
        printed[C] = p
    return root, printed, _expected()


def _rows(root, *extra):
    r = run_zcas("exp", "show", "--json", *extra, cwd=root)
    assert r.code == 0, r.err
    return json.loads(r.out)


def test_exp_show_has_one_row_per_run_with_its_params_and_metrics(swept):
    root, _, expected = swept
    rows = _rows(root)
    assert len(rows) == 3
    assert [r["params"]["train.C"] for r in rows] == list(reversed(SWEEP))  # newest first
    for r in rows:
        want = expected[r["params"]["train.C"]]
        assert r["metrics"] == pytest.approx(want, rel=1e-12, abs=0)
        assert r["status"] == "ran" and len(r["runs"]) == 4
    # the sweep changes the result: otherwise the rows could not tell runs apart
    assert len({r["metrics"]["train.accuracy"] for r in rows}) == 3


def test_exp_show_sorts_filters_and_writes_csv(swept):
    root, _, expected = swept
    rows = _rows(root, "--sort-by", "train.accuracy", "--sort-order", "desc")
    accs = [r["metrics"]["train.accuracy"] for r in rows]
    assert accs == sorted(accs, reverse=True)
    only = _rows(root, "--filter", "train.C>=0.1")
    assert sorted(r["params"]["train.C"] for r in only) == [0.1, 1.0]
    r = run_zcas("exp", "show", "--csv", cwd=root)
    lines = r.out.splitlines()
    assert lines[0].split(",")[:4] == ["id", "name", "status", "started_ns"] and len(lines) == 4
    assert "train.C" in lines[0] and "accuracy" in lines[0]
    r = run_zcas("exp", "show", "--sort-by", "nosuch", cwd=root)
    assert_one_line_error(r, "nosuch", code=2)


def test_exp_show_of_one_step_lists_its_runs(swept):
    root, _, expected = swept
    rows = _rows(root, "train")
    assert [r["params"] for r in rows] == [{"C": c} for c in reversed(SWEEP)]
    assert [r["metrics"]["train.accuracy"] for r in rows] == pytest.approx(
        [expected[c]["train.accuracy"] for c in reversed(SWEEP)])
    # prepare ran once; its two cached runs report the same (restored) run
    prep = _rows(root, "prepare")
    assert [r["status"] for r in prep] == ["cached", "cached", "ran"]


def test_metrics_diff_gives_deltas_and_percent(swept):
    root, _, expected = swept
    r = run_zcas("metrics", "diff", "HEAD~2", "HEAD", "--json", cwd=root)
    assert r.code == 0, r.err
    got = {m["name"]: m for m in json.loads(r.out)["metrics"]}
    a, b = expected[SWEEP[0]], expected[SWEEP[2]]
    for name in ("accuracy", "train.accuracy"):
        if a[name] == b[name]:
            assert name not in got
            continue
        assert got[name]["old"] == pytest.approx(a[name]) and got[name]["new"] == pytest.approx(b[name])
        assert got[name]["change"] == pytest.approx(b[name] - a[name], abs=1e-9)
        assert got[name]["percent"] == pytest.approx((b[name] - a[name]) / a[name] * 100, abs=1e-6)
    text = run_zcas("metrics", "diff", "HEAD~2", "HEAD", cwd=root).out
    assert "train.accuracy" in text and "%" in text
    p = run_zcas("params", "diff", "HEAD~1", "HEAD", "--json", cwd=root)
    assert json.loads(p.out)["params"] == [{"name": "train.C", "old": SWEEP[1], "new": SWEEP[2]}]
    # the Python API gives the same comparison
    import zcas

    assert zcas.Repository(root).compare("HEAD~2", "HEAD")["metrics"] == json.loads(r.out)["metrics"]


def test_diff_of_a_run_id_and_too_far_back(swept):
    root, _, _ = swept
    newest = _rows(root, "train")[0]["id"]
    r = run_zcas("params", "diff", "train~2", newest[:10], "--json", cwd=root)
    assert json.loads(r.out)["params"] == [{"name": "C", "old": SWEEP[0], "new": SWEEP[2]}]
    r = run_zcas("metrics", "diff", "HEAD~7", "HEAD", cwd=root)
    assert_one_line_error(r, "HEAD~7", "3 experiments", code=2)


def test_logs_are_byte_identical_to_what_each_run_printed(swept):
    root, printed, _ = swept
    for row in _rows(root, "train"):
        C = row["params"]["C"]
        p = _zcas_raw("show", row["id"], "--log", cwd=root)
        assert p.returncode == 0, p.stderr
        want = b"training C=%s\n\xff\xfe raw bytes, no newline at the end" % str(C).encode()
        assert p.stdout == want
        assert p.stderr == f"warning: C={C} on stderr\n".encode()
        assert want in printed[C].stdout  # and it was shown live, as it ran
    # a cached run points at the log of the run it came from
    prep = _rows(root, "prepare")
    first = _zcas_raw("show", prep[-1]["id"], "--log", cwd=root)
    cached = _zcas_raw("show", prep[0]["id"], "--log", cwd=root)
    assert first.stdout == cached.stdout == b"prepared 569 rows\n"


def test_plot_writes_a_png_that_decodes(swept):
    root, _, _ = swept
    pytest.importorskip("matplotlib")
    r = run_zcas("plot", "train.accuracy", "--x", "train.C", "-o", "acc.png", cwd=root)
    assert r.code == 0, r.err
    data = (root / "acc.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image as mpimg

    img = mpimg.imread(str(root / "acc.png"))
    assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    assert (img[..., :3] < 0.9).any()  # something is drawn on the white
    r = run_zcas("plot", "accuracy", "-o", "acc.svg", cwd=root)
    assert r.code == 0 and (root / "acc.svg").read_text().lstrip().startswith("<?xml")
    r = run_zcas("plot", "accuracy", "-o", "acc.html", cwd=root)
    assert r.code == 0 and "<svg" in (root / "acc.html").read_text()
    r = run_zcas("plot", "nosuch", "-o", "x.png", cwd=root)
    assert_one_line_error(r, "nosuch", code=2)
    r = run_zcas("plot", "accuracy", "-o", "x.gif", cwd=root)
    assert_one_line_error(r, ".png", code=2)


# -- bad input: one line naming the file and key, a failed run, no metrics recorded --------------


@pytest.mark.parametrize("content,fragments", [
    ('{"loss": 0.5, "acc": "high"}', ["m.json", "'acc'", "not a number"]),
    ('{"loss": 0.5,', ["m.json", "not valid JSON"]),
    ('{"loss": NaN}', ["m.json", "NaN"]),
    (None, ["m.json", "was not produced"]),
])
def test_bad_metrics_file_fails_the_run_in_one_line(repo_dir, content, fragments):
    cmd = f"printf '%s' '{content}' > m.json" if content is not None else "echo no metrics"
    r = run_zcas("run", "-m", "m.json", "--", "sh", "-c", cmd, cwd=repo_dir)
    assert r.code == 1
    assert "Traceback" not in r.err
    failed = [line for line in (r.out + r.err).splitlines() if line.startswith("failed:")]
    assert len(failed) == 1 and all(f in failed[0] for f in fragments), failed
    runs = json.loads(run_zcas("log", "--json", cwd=repo_dir).out)
    assert [x["status"] for x in runs] == ["failed"]
    assert "metrics" not in runs[0] and runs[0]["outputs"] == {}


def test_bad_metrics_toml_spec_is_refused(repo_dir):
    (repo_dir / "zcas.toml").write_text('[steps.a]\ncmd = "true"\nmetrics = "m.json"\n')
    r = run_zcas("run", cwd=repo_dir)
    assert_one_line_error(r, "metrics", "list of strings", code=2)


def test_metrics_in_yaml_and_toml_and_a_hit_keeps_them(repo_dir):
    script = "printf 'a:\\n  b: 2\\nc: 0.5\\n' > m.yaml; printf '[x]\\ny = 3\\n' > m.toml"
    r = run_zcas("run", "-m", "m.yaml", "-m", "m.toml", "--", "sh", "-c", script, cwd=repo_dir)
    assert r.code == 0, r.err
    os.remove(repo_dir / "m.yaml")
    r = run_zcas("run", "-m", "m.yaml", "-m", "m.toml", "--", "sh", "-c", script, cwd=repo_dir)
    assert r.code == 0 and "cached:" in r.out
    assert (repo_dir / "m.yaml").exists()  # a metrics file is an output: restored on a hit
    rows = json.loads(run_zcas("log", "--json", cwd=repo_dir).out)
    assert [x["metrics"] for x in rows] == [{"a.b": 2, "c": 0.5, "x.y": 3}] * 2
    assert "log" not in rows[0] and "log" not in rows[1]  # it printed nothing: no empty objects named


def test_pulled_runs_show_in_exp_show(tmp_path):
    remote = tmp_path / "remote"
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        d.mkdir()
        assert run_zcas("init", cwd=d).code == 0
        assert run_zcas("remote", "add", "origin", str(remote), cwd=d).code == 0
    script = "echo '{\"score\": 0.75}' > s.json; echo teammate"
    r = run_zcas("run", "--name", "score", "-m", "s.json", "-p", "k=1", "--", "sh", "-c", script, cwd=a)
    assert r.code == 0, r.err
    assert run_zcas("push", cwd=a).code == 0
    assert run_zcas("pull", cwd=b).code == 0
    rows = json.loads(run_zcas("exp", "show", "score", "--json", cwd=b).out)
    assert [(x["params"], x["metrics"]) for x in rows] == [({"k": "1"}, {"score": 0.75})]
    p = _zcas_raw("show", rows[0]["id"], "--log", cwd=b)
    assert p.returncode == 0 and p.stdout == b"teammate\n"


def test_the_id_of_a_pipeline_row_names_the_row(swept):
    root, _, expected = swept
    rows = _rows(root)
    r = run_zcas("metrics", "diff", rows[2]["id"], rows[0]["id"][:12], "--json", "--all", cwd=root)
    got = {m["name"]: (m["old"], m["new"]) for m in json.loads(r.out)["metrics"]}
    assert got["accuracy"] == pytest.approx((expected[SWEEP[0]]["accuracy"], expected[SWEEP[2]]["accuracy"]))
    assert got["train.accuracy"] == pytest.approx((expected[SWEEP[0]]["train.accuracy"],
                                                   expected[SWEEP[2]]["train.accuracy"]))


def test_changed_columns_are_highlighted_on_a_terminal_only(swept):
    from tests.cli.test_terminal import run_tty

    root, _, _ = swept
    code, out = run_tty(["exp", "show"], root)
    assert code == 0
    header = out.splitlines()[0]
    assert b"\x1b[33m\x1b[1mtrain.C" in header  # swept: changed
    assert b"\x1b[1mstatus" in header and b"\x1b[33m\x1b[1mstatus" not in header  # the same in every row
    code, plain = run_tty(["exp", "show"], root, env={"NO_COLOR": "1"})
    assert code == 0 and b"\x1b[" not in plain and b"train.C" in plain
    piped = run_zcas("exp", "show", cwd=root)
    assert "\x1b[" not in piped.out and len(piped.out.splitlines()) == 4

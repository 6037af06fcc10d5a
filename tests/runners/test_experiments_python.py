"""Metrics and logs of Python steps: zcas.log_metric, -> zcas.Metrics, a pipeline's row,
print() captured per step (on the local runner and on threads), and the Python views."""

from __future__ import annotations

import json
import textwrap

import pytest

from tests.conftest import run_zcas
from zcas.repository import Repository

FLOW = textwrap.dedent('''
    import sys
    import zcas

    @zcas.step
    def train(lr: float) -> dict:
        print(f"training lr={lr}")
        print("a warning", file=sys.stderr)
        for epoch in range(3):
            zcas.log_metric("train.loss", 1.0 / (epoch + 1) * lr)
        zcas.log_metrics({"train": {"epochs": 3}})
        return {"weights": [lr, lr * 2]}

    @zcas.step
    def evaluate(model: dict) -> zcas.Metrics:
        print("evaluating")
        return {"eval": {"acc": 1 - model["weights"][0], "n": 10}}

    @zcas.step
    def bad(x: int) -> zcas.Metrics:
        return {"acc": "high"}

    @zcas.pipeline
    def main(lr: float = 0.1):
        return evaluate(train(lr))

    @zcas.pipeline
    def broken():
        return bad(1)
''')


@pytest.fixture
def flow(repo_dir):
    (repo_dir / "flow.py").write_text(FLOW)
    return repo_dir


def _run(root, *args):
    r = run_zcas("run", *args, cwd=root)
    assert r.code == 0, r.err
    return r


def test_logged_and_returned_metrics_land_in_step_and_pipeline_records(flow):
    for lr in (0.1, 0.5):
        _run(flow, "flow.py:main", "-p", f"lr={lr}")
    repo = Repository(flow)
    runs = repo.runs(pipeline="flow.main")
    assert [r.params for r in runs] == [{"lr": 0.5}, {"lr": 0.1}]
    assert runs[0].metrics == {"train.loss": pytest.approx(0.5 / 3), "train.epochs": 3, "eval.acc": 0.5, "eval.n": 10}
    assert repo.runs("flow.evaluate")[0].metrics == {"eval.acc": 0.5, "eval.n": 10}
    # the returned value is still the step's output, a plain dict
    assert repo.runs("flow.evaluate")[0].load() == {"eval": {"acc": 0.5, "n": 10}}
    rows = json.loads(run_zcas("exp", "show", "flow.main", "--json", cwd=flow).out)
    assert [r["metrics"]["eval.acc"] for r in rows] == [0.5, 0.9]
    df = runs.to_pandas()
    assert list(df["lr"]) == [0.5, 0.1] and list(df["eval.acc"]) == [0.5, 0.9]
    assert {"id", "step", "status", "started", "duration"} <= set(df.columns)
    cmp = repo.compare("flow.main~1", "flow.main")
    assert cmp["params"] == [{"name": "lr", "old": 0.1, "new": 0.5}]
    acc = next(m for m in cmp["metrics"] if m["name"] == "eval.acc")
    assert acc["change"] == pytest.approx(-0.4) and acc["percent"] == pytest.approx(-0.4 / 0.9 * 100)


def test_a_cached_pipeline_reports_the_metrics_and_log_of_its_source(flow):
    _run(flow, "flow.py:main")
    _run(flow, "flow.py:main")
    repo = Repository(flow)
    first, again = repo.runs("flow.train")[::-1]
    assert again.cached and again.metrics == first.metrics and again.log == first.log
    assert repo.runs(pipeline="flow.main")[0].metrics == repo.runs(pipeline="flow.main")[1].metrics


@pytest.mark.parametrize("runner", ["local", "threads"])
def test_print_of_each_step_is_its_own_log(flow, runner):
    if runner != "local":
        assert run_zcas("stack", "register", "t", "--runner", runner, cwd=flow).code == 0
    _run(flow, *(["--stack", "t"] if runner != "local" else []), "flow.py:main")
    repo = Repository(flow)
    train, evaluate = repo.runs("flow.train")[0], repo.runs("flow.evaluate")[0]
    blob = lambda oid: repo.cas.db.get_bytes(bytes.fromhex(oid))  # noqa: E731
    assert blob(train.log["stdout"]) == b"training lr=0.1\n"
    assert blob(train.log["stderr"]) == b"a warning\n"
    assert blob(evaluate.log["stdout"]) == b"evaluating\n" and "stderr" not in evaluate.log


def test_a_returned_metric_that_is_no_number_fails_the_step_naming_the_key(flow):
    r = run_zcas("run", "flow.py:broken", cwd=flow)
    assert r.code == 1 and "'acc'" in r.err and "not a number" in r.err and "Traceback" not in r.err
    runs = Repository(flow).runs("flow.bad")
    assert [x.status for x in runs] == ["failed"] and runs[0].metrics == {}


def test_log_metric_outside_a_step_is_an_error():
    import zcas
    from zcas.runners.metrics import MetricsError

    with pytest.raises(MetricsError, match="no step is executing"):
        zcas.log_metric("x", 1)


def test_a_command_in_a_pipeline_reports_its_metrics_file(repo_dir):
    (repo_dir / "cflow.py").write_text(textwrap.dedent(r'''
        import zcas

        @zcas.pipeline
        def main():
            zcas.command("echo training; echo '{\"rmse\": 2.5}' > m.json", metrics=["m.json"], name="fit")
    '''))
    _run(repo_dir, "cflow.py:main")
    repo = Repository(repo_dir)
    fit = repo.runs("fit")[0]
    assert fit.metrics == {"rmse": 2.5} and repo.runs(pipeline="cflow.main")[0].metrics == {"rmse": 2.5}
    assert repo.cas.db.get_bytes(bytes.fromhex(fit.log["stdout"])) == b"training\n"

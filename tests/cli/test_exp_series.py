"""A metric's series across the steps of a run: ``zcas.log_metric(name, value, step=i)``,
recorded in the run (schema 3), drawn by ``zcas plot METRIC --x step`` (one line per run, the
points in the file as well as in the picture)."""

from __future__ import annotations

import json
import re
import textwrap
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import assert_one_line_error, run_zcas
from zcas.repository import Repository

FLOW = textwrap.dedent('''
    import zcas

    @zcas.step
    def train(lr: float, epochs: int = 4) -> dict:
        for epoch in range(epochs):
            zcas.log_metric("train.loss", round(lr / (epoch + 1), 6), step=epoch)
        zcas.log_metrics({"val": {"acc": 0.5 + epoch * lr}}, step=10)
        return {"w": lr}

    @zcas.step
    def bad_step(x: int) -> dict:
        zcas.log_metric("loss", 1.0, step="one")
        return {}

    @zcas.step
    def bad_value(x: int) -> dict:
        zcas.log_metric("loss", float("nan"), step=1)
        return {}

    @zcas.pipeline
    def main(lr: float = 0.1):
        return train(lr)

    @zcas.pipeline
    def broken(which: str = "step"):
        return bad_step(1) if which == "step" else bad_value(1)
''')


def _losses(lr: float, epochs: int = 4) -> list[list]:
    return [[e, round(lr / (e + 1), 6)] for e in range(epochs)]


@pytest.fixture
def swept(repo_dir):
    pytest.importorskip("matplotlib")
    (repo_dir / "flow.py").write_text(FLOW)
    for lr in (0.1, 0.5):
        r = run_zcas("run", "flow.py:main", "-p", f"lr={lr}", cwd=repo_dir)
        assert r.code == 0, r.err
    return repo_dir


def test_the_series_is_in_the_run_record_and_its_last_point_is_the_metric(swept):
    repo = Repository(swept)
    new, old = repo.runs("flow.train")
    assert new.record["series"] == {"train.loss": _losses(0.5), "val.acc": [[10, 0.5 + 3 * 0.5]]}
    assert old.record["series"]["train.loss"] == _losses(0.1)
    assert new.metrics == {"train.loss": _losses(0.5)[-1][1], "val.acc": 2.0}
    assert new.record["schema"] == 3
    rows = json.loads(run_zcas("exp", "show", "flow.main", "--json", cwd=swept).out)
    assert [r["metrics"]["train.loss"] for r in rows] == [0.125, 0.025]


def _svg_series(path) -> tuple[list[dict], dict[str, int]]:
    """The points an SVG says it draws (its description), and the vertices of each series' line."""
    root = ET.parse(path).getroot()
    ns = {"svg": "http://www.w3.org/2000/svg", "dc": "http://purl.org/dc/elements/1.1/"}
    desc = root.find(".//dc:description", ns)
    assert desc is not None
    vertices = {}
    for g in root.iter("{http://www.w3.org/2000/svg}g"):
        gid = g.get("id", "")
        if gid.startswith("series-"):
            path_el = g.find("svg:path", ns)
            vertices[gid[7:]] = len(re.findall(r"[ML]\s*-?[\d.]+\s+-?[\d.]+", path_el.get("d")))
    return json.loads(desc.text), vertices


def test_plot_x_step_draws_each_runs_series(swept):
    repo = Repository(swept)
    new, old = [r.id for r in repo.runs("flow.train")]
    r = run_zcas("plot", "train.loss", "--x", "step", "-o", "loss.svg", cwd=swept)
    assert r.code == 0, r.err
    assert "train.loss 8 points in 2 series" in r.err
    data, vertices = _svg_series(swept / "loss.svg")
    assert data == [{"run": new, "points": _losses(0.5)}, {"run": old, "points": _losses(0.1)}]
    assert vertices == {new[:12]: 4, old[:12]: 4}  # each line drawn through its four points

    r = run_zcas("plot", "train.loss", "-o", "loss.html", "--runs", "1", cwd=swept)
    assert r.code == 0, r.err
    page = (swept / "loss.html").read_text()
    blob = re.search(r"<script type=application/json id=zcas-data>(.*?)</script>", page, re.S).group(1)
    assert json.loads(blob) == [{"run": new, "points": _losses(0.5)}]
    assert "<svg" in page and f"<tr><td>{new[:12]}<td>3<td>0.125" in page

    r = run_zcas("plot", "train.loss", "-o", "loss.png", cwd=swept)
    assert r.code == 0, r.err
    assert (swept / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_run_picks_the_experiments_and_a_cached_run_shows_its_sources_series(swept):
    r = run_zcas("run", "flow.py:main", "-p", "lr=0.1", cwd=swept)  # a hit: its record holds no series
    assert r.code == 0 and "cached: flow.train" in r.out, r.err
    repo = Repository(swept)
    hit = repo.runs("flow.train")[0]
    assert hit.cached and "series" not in hit.record
    r = run_zcas("plot", "train.loss", "--run", "HEAD", "--run", "HEAD~1", "-o", "two.svg", cwd=swept)
    assert r.code == 0, r.err
    data, _ = _svg_series(swept / "two.svg")
    assert [d["points"] for d in data] == [_losses(0.1), _losses(0.5)]
    assert data[0]["run"] == hit.record["cached_from"]


def test_without_series_x_step_is_the_metric_across_experiments_as_before(swept):
    r = run_zcas("plot", "val.acc", "--x", "run", "-o", "acc.svg", cwd=swept)
    assert r.code == 0 and "val.acc over 2 runs" in r.err, r.err
    data, vertices = _svg_series(swept / "acc.svg")
    assert data == [{"points": [[1, pytest.approx(0.8)], [2, 2.0]]}] and vertices == {}


@pytest.mark.parametrize("args,fragments", [
    (["plot", "train.loss", "--run", "HEAD", "--x", "time", "-o", "x.svg"], ["--x step"]),
    (["plot", "nosuch", "--run", "HEAD", "-o", "x.svg"], ["no series of 'nosuch'"]),
    (["plot", "train.loss", "--run", "nosuchrun", "-o", "x.svg"], ["nosuchrun"]),
])
def test_bad_plot_input_is_one_line(swept, args, fragments):
    assert_one_line_error(run_zcas(*args, cwd=swept), *fragments, code=2)


@pytest.mark.parametrize("which,fragments", [("step", ["step must be an integer", "str"]),
                                             ("value", ["'loss'", "not finite"])])
def test_a_bad_step_or_value_fails_the_run_in_one_line(swept, which, fragments):
    r = run_zcas("run", "flow.py:broken", "-p", f"which={which}", cwd=swept)
    assert r.code == 1 and "Traceback" not in r.err
    assert all(f in r.err for f in fragments), r.err
    runs = Repository(swept).runs(f"flow.bad_{which}")
    assert [x.status for x in runs] == ["failed"] and "series" not in runs[0].record

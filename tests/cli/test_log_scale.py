"""``zcas log`` as history grows: its default text view is bounded (the newest 100 runs,
with a note when there are more; --json and OpenLineage list every run), and a step's runs
come from their own index (the same runs, in the same order, as filtering every run by step)."""

from __future__ import annotations

import json
import random
import time

import pytest

from tests.conftest import run_zcas
from zcas.cas.repo import Repo
from zcas.lineage.records import Run
from zcas.lineage.store import Lineage


def _runs(n: int, seed: int = 3) -> list[Run]:
    rng = random.Random(seed)
    now = time.time_ns() - 10**12
    out = []
    for i in range(n):
        start = now + rng.randrange(10**11)
        out.append(Run(step=rng.choice(["a", "b", "c"]), kind="command", status=rng.choice(["ran", "cached", "failed"]),
                       started_ns=start, ended_ns=start + i))
    return out


@pytest.fixture
def many(repo_dir):
    repo = Repo(str(repo_dir))
    lin = Lineage(repo)
    lin.record_runs(_runs(130))
    every = [(rid.hex(), r) for rid, r in lin.runs()]
    lin.close()
    repo.close()
    return repo_dir, every


def _ids(out: str) -> list[str]:
    return [line.split()[0] for line in out.splitlines()]


def test_log_shows_the_newest_100_runs_and_says_there_are_more(many):
    root, every = many
    r = run_zcas("log", cwd=root)
    assert r.code == 0
    assert _ids(r.out) == [rid[:12] for rid, _ in every[:100]]
    assert "newest 100 runs shown" in r.err and "-n 0" in r.err
    js = run_zcas("log", "--json", cwd=root)  # a script's view: every run, unless it asks for fewer
    assert [x["id"] for x in json.loads(js.out)] == [rid for rid, _ in every] and js.err == ""
    js = run_zcas("log", "--json", "-n", "5", cwd=root)
    assert [x["id"] for x in json.loads(js.out)] == [rid for rid, _ in every[:5]]
    ol = run_zcas("log", "--format", "openlineage", cwd=root)
    assert ol.code == 0 and ol.err == "" and len(ol.out.strip().splitlines()) >= 130
    r = run_zcas("log", "-n", "0", cwd=root)
    assert _ids(r.out) == [rid[:12] for rid, _ in every] and r.err == ""
    r = run_zcas("log", "-n", "7", cwd=root)
    assert _ids(r.out) == [rid[:12] for rid, _ in every[:7]] and r.err == ""
    r = run_zcas("log", "--since", "1000d", cwd=root)  # a window asked for: every run in it
    assert len(_ids(r.out)) == 130 and r.err == ""


def test_log_step_lists_that_steps_runs_newest_first(many):
    root, every = many
    want = [rid[:12] for rid, rec in every if rec["step"] == "b"]
    assert _ids(run_zcas("log", "--step", "b", cwd=root).out) == want
    assert _ids(run_zcas("log", "--step", "b", "-n", "3", cwd=root).out) == want[:3]
    assert run_zcas("log", "--step", "nosuch", cwd=root).out == ""


def test_runs_of_a_step_from_its_index_match_a_filter_of_every_run(repo):
    lin = Lineage(repo)
    lin.record_runs(_runs(300, seed=11))
    every = lin.runs()
    since = sorted(r["started_ns"] for _, r in every)[150]
    for step in ("a", "b", "c", "zz"):
        for status in (None, "ran", "failed"):
            want = [(rid, r) for rid, r in every if r["step"] == step and (status is None or r["status"] == status)]
            assert lin.runs(step=step, status=status) == want
            assert lin.runs(step=step, status=status, limit=4) == want[:4]
            assert lin.runs(step=step, status=status, since_ns=since) == [x for x in want
                                                                          if x[1]["started_ns"] >= since]
    lin.close()


def _no_scan(monkeypatch):
    """Make every walk over all runs an error: what follows must use the indexes."""
    from zcas.lineage.graph import Graph

    def scan(*a, **k):
        raise AssertionError("walked every run")

    monkeypatch.setattr(Graph, "run_ids_newest", scan)
    monkeypatch.setattr(Graph, "all_run_ids", scan)


def test_status_why_and_log_step_read_no_list_of_every_run(repo_dir, monkeypatch, capsys):
    (repo_dir / "in.txt").write_text("x\n")
    (repo_dir / "zcas.toml").write_text('[steps.copy]\ncmd = "cp in.txt out.txt"\ninputs = ["in.txt"]\n'
                                        'outputs = ["out.txt"]\n')
    assert run_zcas("run", cwd=repo_dir).code == 0
    repo = Repo(str(repo_dir))
    lin = Lineage(repo)
    lin.record_runs(_runs(50))
    lin.close()
    repo.close()
    from zcas.cli import main

    monkeypatch.chdir(repo_dir)
    _no_scan(monkeypatch)
    for args, want in ((["status"], "fresh"), (["why", "copy"], "copy"), (["status", "b"], "b"),
                       (["log", "--step", "copy"], "copy")):
        try:
            main(args)
        except SystemExit as e:  # an error: main maps it to an exit code
            raise AssertionError(f"{args}: exit {e.code}: {capsys.readouterr()}") from None
        assert want in capsys.readouterr().out, args

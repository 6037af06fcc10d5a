"""One mixed pipeline (Python and command steps) through the one core on every runner.

Same keys, records and outputs on local, threads, processes and dask; a rerun is all hits;
a damaged output object makes its step rerun; two processes racing on one key execute it once.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest

from tests.runners import flow_mixed
from zcas.repository import Repository
from zcas.stacks import Stack, register

RUNNERS = ["local", "threads", "processes", "dask"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIELDS = ("step", "kind", "cache_key", "key_components", "inputs", "outputs", "params", "env", "materializers", "cmd", "code")


def _repo(path, runner: str) -> tuple[Repository, str | None]:
    repo = Repository.init(path)
    (path / "input.txt").write_text("hello world\n")
    if runner == "local":
        return repo, None
    register(repo.cas, Stack("r", None, runner, None))
    return repo, "r"


def _shape(run) -> dict:
    return {name: {f: v.record.get(f) for f in FIELDS} for name, v in run.steps.items()}


def _log(path) -> list[str]:
    return sorted(path.read_text().split()) if path.exists() else []


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The pipeline on the local runner: what every runner must agree with."""
    tmp = tmp_path_factory.mktemp("reference")
    os.environ["ZCAS_TEST_EXEC_LOG"] = str(tmp / "exec.log")
    repo, _ = _repo(tmp / "repo", "local")
    run = flow_mixed.mixed(repo=repo)
    out = (run.output.id, run.load(), _shape(run))
    repo.close()
    return out


def _damage(repo: Repository, oid_hex: str) -> None:
    """Zero the last bytes of an object's stored record (its payload), in its pack."""
    e = repo.cas.db.entry(bytes.fromhex(oid_hex))
    path = os.path.join(repo.cas.zdir, "objects", "packs", f"pack-{e.pack}.pack")
    repo.close()
    with open(path, "r+b") as f:
        f.seek(e.offset + e.length - 2)
        f.write(bytes(2))


@pytest.mark.parametrize("runner", RUNNERS)
def test_same_pipeline_same_records_on_every_runner(tmp_path, monkeypatch, runner, reference):
    ref_id, ref_value, ref_shape = reference
    log = tmp_path / "exec.log"
    monkeypatch.setenv("ZCAS_TEST_EXEC_LOG", str(log))
    repo, stack = _repo(tmp_path / "repo", runner)
    run = flow_mixed.mixed(repo=repo, stack=stack)
    assert run.output.id == ref_id and run.load() == ref_value == {"len": 10, "count": 12}
    assert _shape(run) == ref_shape  # keys, inputs, outputs, materializers: identical
    assert [r.status for r in run.steps.values()] == ["ran"] * 3
    assert _log(log) == ["command", "make", "measure"]

    again = flow_mixed.mixed(repo=repo, stack=stack)  # a rerun is all hits, on this runner too
    assert [r.status for r in again.steps.values()] == ["cached"] * 3 and again.load() == ref_value
    assert _log(log) == ["command", "make", "measure"]

    # a damaged output object: its step reruns (the same rule for either kind), the rest hit
    count_id = run.steps["count"].record["outputs"]["count.txt"]
    _damage(repo, run.output.id)
    repo = Repository(tmp_path / "repo")
    third = flow_mixed.mixed(repo=repo, stack=stack)
    status = {name.split(".")[-1]: r.status for name, r in third.steps.items()}
    assert status == {"make": "cached", "count": "cached", "measure": "ran"}
    assert third.load() == ref_value and _log(log) == ["command", "make", "measure", "measure"]

    count = tmp_path / "repo" / "count.txt"
    count.unlink()
    _damage(repo, count_id)
    repo = Repository(tmp_path / "repo")
    fourth = flow_mixed.mixed(repo=repo, stack=stack)
    status = {name.split(".")[-1]: r.status for name, r in fourth.steps.items()}
    assert status == {"make": "cached", "count": "ran", "measure": "cached"}
    assert count.read_text().strip() == "12"
    repo.close()


@pytest.mark.parametrize("runner", RUNNERS)
def test_two_processes_racing_execute_each_step_once(tmp_path, runner):
    repo, stack = _repo(tmp_path / "repo", runner)
    repo.close()
    log = tmp_path / "exec.log"
    env = {**os.environ, "ZCAS_TEST_EXEC_LOG": str(log), "ZCAS_TEST_STEP_SLEEP": "1.5",
           "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "tests.runners.flow_mixed"] + ([stack] if stack else [])
    procs = [subprocess.Popen(cmd, cwd=tmp_path / "repo", env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=240) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert [ast.literal_eval(o.strip().splitlines()[-1]) for o, _ in outs] == [{"len": 10, "count": 12}] * 2
    assert _log(log) == ["command", "make", "measure"]  # each step executed once, by one of them

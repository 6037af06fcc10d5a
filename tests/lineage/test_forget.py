"""Forgetting is durable and all-or-nothing: `.zcas/forgotten.jsonl` (cas.refs) and the
index rebuilt from it (Lineage.forget). A crash at any instant leaves the old state or the
new one; a rebuilt index never brings back what was forgotten."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import run_zcas
from zcas.cas.refs import Forgotten, PathVersion, Refs
from zcas.lineage import retention
from zcas.lineage.records import Run
from zcas.lineage.store import Lineage

A, B, C = ("aa" * 32, "bb" * 32, "cc" * 32)


@pytest.fixture
def lin(repo):
    lin = Lineage(repo)
    yield lin
    lin.close()


def _versions(lin: Lineage, path: str) -> list[str]:
    return [v.id for v in lin.history(path)]


def _history(lin: Lineage) -> None:
    lines = [PathVersion("p.txt", bytes.fromhex(x), "file", 1000.0 + i) for i, x in enumerate((A, B, C))]
    lin.repo.refs.record(lines)
    lin.index_paths(lines)


def test_a_failed_append_leaves_the_old_state_and_the_next_one_works(lin, monkeypatch):
    _history(lin)
    refs: Refs = lin.repo.refs
    refs.forget([], [("p.txt", bytes.fromhex(A), 1000 * 10**9, 1000 * 10**9)])
    real_write = os.write

    def torn(fd: int, data: bytes) -> int:
        real_write(fd, data[: len(data) // 2])  # half the line reaches the disk, then the crash
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("zcas.cas.refs.os.write", torn)
    with pytest.raises(OSError):
        refs.forget([], [("p.txt", bytes.fromhex(B), 1001 * 10**9, 1001 * 10**9)])
    monkeypatch.undo()
    f = refs.forgotten()
    assert f.version("p.txt", bytes.fromhex(A), 1000 * 10**9)
    assert not f.version("p.txt", bytes.fromhex(B), 1001 * 10**9)  # the torn request: none of it
    refs.forget([bytes.fromhex(C)], [("p.txt", bytes.fromhex(C), 1002 * 10**9, 1002 * 10**9)])
    f = refs.forgotten()  # the next request starts on a line of its own
    assert f.version("p.txt", bytes.fromhex(C), 1002 * 10**9) and bytes.fromhex(C) in f.runs
    assert not f.version("p.txt", bytes.fromhex(B), 1001 * 10**9)


def test_malformed_lines_are_skipped_whole(repo):
    refs = repo.refs
    good = {"v": 1, "time": 1.0, "runs": [A], "versions": []}
    bad = [
        {"v": 2, "runs": [B], "versions": []},  # a newer format: not understood, not used
        {"v": 1, "runs": [B, "../x"], "versions": []},  # one bad id: the whole request skipped
        {"v": 1, "runs": [], "versions": [{"path": "p", "id": B, "first_ns": 5, "last_ns": 1}]},
        {"v": 1, "runs": [], "versions": [{"path": "p", "id": B, "first_ns": True, "last_ns": 1}]},
        [1, 2],
    ]
    with open(refs.forgotten_path, "w") as fh:
        fh.write(json.dumps(good) + "\n" + "".join(json.dumps(b) + "\n" for b in bad) + "{\"v\": 1, \"ru")
    f = refs.forgotten()
    assert f.runs == {bytes.fromhex(A)} and not f.spans


def test_crash_between_recording_and_rebuilding_the_index(lin, monkeypatch):
    _history(lin)
    assert _versions(lin, "p.txt") == [A, B, C]

    def crash() -> None:
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(lin, "reindex", crash)
    with pytest.raises(KeyboardInterrupt):
        lin.forget([], [("p.txt", bytes.fromhex(B), 1001 * 10**9, 1001 * 10**9)])
    lin.close()
    again = Lineage(lin.repo)  # the index lost its completion mark: rebuilt on open
    try:
        assert _versions(again, "p.txt") == [A, C]
    finally:
        again.close()


def test_forgotten_runs_are_not_indexed_again(lin):
    run = Run(step="s", kind="command", status="ran", outputs={"o.txt": A}, started_ns=5, ended_ns=6)
    (rid,) = lin.record_runs([run])
    assert lin.graph.has_run(rid) and _versions(lin, "o.txt") == [A]
    lin.forget([rid], [])
    assert not lin.graph.has_run(rid) and _versions(lin, "o.txt") == []
    from zcas.lineage import serde

    lin.index_runs([(rid, serde.unstructure(run), serde.encode(run))])  # as a pull would
    assert not lin.graph.has_run(rid)
    assert rid not in lin.roots() and bytes.fromhex(A) not in lin.roots()


def test_retention_plan_rules(lin):
    lines = [PathVersion("p.txt", bytes.fromhex(x), "file", 1000.0 + 100 * i) for i, x in enumerate((A, B, C))]
    lin.repo.refs.record(lines)
    lin.index_paths(lines)
    plan = retention.plan
    assert plan(lin, retention.Rules(), []) == ([], [])
    assert [v.id for v in plan(lin, retention.Rules(keep_last=1), [])[0]] == [A, B]
    assert [v.id for v in plan(lin, retention.Rules(keep_last=1), [bytes.fromhex(A)])[0]] == [B]
    assert [v.id for v in plan(lin, retention.Rules(keep_within_ns=150 * 10**9), [])[0]] == [A]
    assert [v.id for v in plan(lin, retention.Rules(keep_tagged=True), [bytes.fromhex(B)])[0]] == [A, C]
    assert [v.number for v in plan(lin, retention.Rules(keep_last=2), [])[0]] == [1]


def test_union_and_line_matching():
    f = Forgotten()
    f.add_version("p", bytes.fromhex(A), 10, 20)
    g = Forgotten()
    g.add_run(bytes.fromhex(B))
    u = f.union(g)
    assert u.runs == {bytes.fromhex(B)} and u.version("p", bytes.fromhex(A), 15)
    assert not u.version("p", bytes.fromhex(A), 21) and not u.version("q", bytes.fromhex(A), 15)
    assert not f.runs  # union copies
    assert u.line(PathVersion("p", bytes.fromhex(A), "file", 15e-9))


@pytest.mark.parametrize("trial", range(6))
def test_kill_during_forget_leaves_old_or_new(tmp_path, trial):
    """SIGKILL `zcas forget` at a random moment: afterwards the path shows all its versions
    or all but the forgotten one, never anything else, and fsck is clean."""
    assert run_zcas("init", str(tmp_path)).code == 0
    ids = []
    for text in ("one\n", "two\n", "three\n"):
        (tmp_path / "d.txt").write_text(text)
        ids.append(run_zcas("add", "d.txt", cwd=tmp_path).out.split()[0])
    env = dict(os.environ)
    env.pop("ZCAS_DIR", None)
    p = subprocess.Popen([sys.executable, "-m", "zcas", "forget", "d.txt@2"], cwd=tmp_path, env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.Random(trial).uniform(0.05, 0.6))
    p.send_signal(signal.SIGKILL)
    p.wait()
    shown = [v["id"] for v in json.loads(run_zcas("log", "d.txt", "--versions", "--json", cwd=tmp_path).out)]
    assert shown in ([ids[2], ids[1], ids[0]], [ids[2], ids[0]]), shown
    recorded = Refs(str(tmp_path / ".zcas")).forgotten()
    assert (shown == [ids[2], ids[0]]) == bool(recorded)
    assert json.loads(run_zcas("fsck", "--json", cwd=tmp_path).out)["ok"]
    assert run_zcas("reindex", cwd=tmp_path).code == 0
    again = [v["id"] for v in json.loads(run_zcas("log", "d.txt", "--versions", "--json", cwd=tmp_path).out)]
    assert again == shown

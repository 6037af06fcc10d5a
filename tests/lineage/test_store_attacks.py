"""Malformed records in the local store, damaged refs, and hostile graph shapes never break
reindex, listing, walking, gc roots, or the commands built on them."""

import json
import os
import sys

import pytest

from tests.conftest import run_zcas
from zcas.cas import codec
from zcas.cas.oid import hash_bytes
from zcas.lineage import export, serde
from zcas.lineage.graph import LineageStoreError
from zcas.lineage.records import Run
from zcas.lineage.store import Lineage
from zcas.lineage.walk import ancestors, descendants

OUT = "cd" * 32


def good(i=1, **kw) -> Run:
    return Run(**{**dict(step=f"s{i}", kind="command", status="ran", outputs={f"o{i}.txt": OUT},
                         started_ns=i, ended_ns=i + 1), **kw})


def malformed() -> bytes:
    """Valid JSON, canonical, of a known type, but a path where an id belongs."""
    d = json.loads(serde.encode(good(99)))
    d["outputs"] = {"o.txt": "../../etc/passwd"}
    return serde.canonical(d)


@pytest.fixture
def lin(repo):
    lin = Lineage(repo)
    yield lin
    lin.close()


def test_attack_malformed_record_object_in_local_store_is_skipped_and_counted_by_reindex(repo, repo_dir):
    lin = Lineage(repo)
    lin.record_run(good(1))
    bad = repo.db.put(codec.KIND_RECORD, malformed())
    repo.db.put(codec.KIND_RECORD, b'{"type":"run","schema":1,"step":"x","kind":"shell","status":"ran"}')
    repo.db.flush()
    lin.close()
    lin = Lineage(repo, rebuild=True)
    try:
        assert lin.last_reindex["runs"] == 1 and lin.last_reindex["damaged"] == 2
        assert not lin.graph.has_run(bad)
        assert [r["step"] for _, r in lin.runs()] == ["s1"]
        assert set(lin.roots()) == {lin.graph.all_run_ids()[0], bytes.fromhex(OUT)}
        with pytest.raises(serde.RecordError):
            lin.run(bad)  # a refusal in one line, not a crash
    finally:
        lin.close()


def _put_raw(lin, rid: bytes, data: bytes, started_ns: int = 5) -> None:
    """What an index built by an older, laxer zcas could hold."""
    g = lin.graph
    g.write(lambda t: (t.put(rid, data, db=g.dbs["runs"]),
                       t.put(started_ns.to_bytes(8, "big") + rid, b"", db=g.dbs["time"])))


@pytest.mark.parametrize("data", [
    b"not json", b"[1]", b'{"step":"s"}', json.dumps({**json.loads(serde.encode(good(2))), "started_ns": "5"}).encode(),
    json.dumps({**json.loads(serde.encode(good(2))), "inputs": [1]}).encode(),
])
def test_attack_unreadable_run_in_index_is_absent_not_a_crash(lin, data):
    lin.record_run(good(1))
    rid = hash_bytes(data)
    _put_raw(lin, rid, data)
    assert lin.run_dict(rid) is None
    assert [r["step"] for _, r in lin.runs()] == ["s1"]
    lin.roots()
    with pytest.raises(serde.RecordError):
        lin.run(rid)


def test_attack_old_index_with_lax_records_is_rebuilt_strictly(repo):
    lin = Lineage(repo)
    rid = lin.record_run(good(1))
    bad = hash_bytes(malformed())
    _put_raw(lin, bad, malformed())
    g = lin.graph
    g.write(lambda t: (t.delete(b"indexed-v2", db=g.dbs["meta"]), t.put(b"indexed-v1", b"1", db=g.dbs["meta"])))
    lin.close()
    lin = Lineage(repo)  # a v1 index: rebuilt on open, from the objects alone
    try:
        assert lin.graph.has_run(rid) and not lin.graph.has_run(bad)
    finally:
        lin.close()


def test_attack_tag_name_beyond_lmdb_key_limit_is_refused(lin):
    for name in ("x" * 600, "a\0b", ""):
        with pytest.raises(LineageStoreError):
            lin.graph.set_tag(name, b"\1" * 32)
    with pytest.raises(LineageStoreError):
        lin.graph.set_tag("ok", b"short")
    lin.graph.set_tag("é" * 255, b"\1" * 32)  # 510 bytes: fits
    assert lin.graph.tags() == {"é" * 255: b"\1" * 32}


def test_attack_damaged_history_lines_and_tags_do_not_stop_reindex(repo, repo_dir):
    oid = "ab" * 32
    lines = [
        {"path": "ok.txt", "id": oid, "kind": "file", "time": 1.0},
        {"path": "neg.txt", "id": oid, "kind": "file", "time": -5},
        {"path": "huge.txt", "id": oid, "kind": "file", "time": 1e300},
        {"path": "nan.txt", "id": oid, "kind": "file", "time": "nan"},
        {"path": 5, "id": oid, "kind": "file", "time": 1.0},
        {"path": "\ud800", "id": oid, "kind": "file", "time": 1.0},
        {"path": "x" * 10000, "id": oid, "kind": "file", "time": 2.0},
        {"path": "a\u0000b", "id": oid, "kind": "file", "time": 2.0},
        {"path": "late.txt", "id": oid, "kind": "file", "time": 1e10},  # past int64 nanoseconds
        {"path": "kind.txt", "id": oid, "kind": "weird", "time": 3.0},
    ]
    (repo_dir / ".zcas" / "history.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    tags = repo_dir / ".zcas" / "refs" / "tags"
    tags.mkdir(parents=True, exist_ok=True)
    (tags / "good").write_text(oid + "\n")
    (tags / "damaged").write_text("../../etc/passwd\n")
    lin = Lineage(repo, rebuild=True)
    try:
        assert lin.last_reindex["paths"] == 2
        assert [v.id for v in lin.history("ok.txt")] == [oid]
        assert [v.kind for v in lin.history("kind.txt")] == ["file"]
        assert lin.history("x" * 10000) == [] and lin.history("late.txt") == []
        assert lin.graph.tags() == {"good": bytes.fromhex(oid)}
    finally:
        lin.close()


def test_attack_cycle_in_lineage_terminates(lin):
    """Runs are only records: a remote can claim X made Y and Y made X."""
    x, y = "11" * 32, "22" * 32
    a = lin.record_run(Run(step="a", kind="command", status="ran", inputs={"x": x}, outputs={"y": y}, started_ns=1))
    b = lin.record_run(Run(step="b", kind="command", status="ran", inputs={"y": y}, outputs={"x": x}, started_ns=2))
    for walk in (ancestors, descendants):
        g = walk(lin, bytes.fromhex(x))
        assert set(g.runs) == {a.hex(), b.hex()}
        export.tree(g, upstream=walk is ancestors)
        export.dot(g)
        export.mermaid(g)
    g = ancestors(lin, a, is_run=True)
    assert set(g.runs) == {a.hex(), b.hex()}


def test_deep_chain_of_2000_runs_walks_without_recursion(lin):
    n = 2000
    ids = [f"{i:064x}" for i in range(1, n + 2)]
    lin.record_runs([Run(step=f"s{i}", kind="command", status="ran", inputs={f"a{i}": ids[i]},
                         outputs={f"a{i + 1}": ids[i + 1]}, started_ns=i) for i in range(n)])
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(250)
    try:
        up = ancestors(lin, bytes.fromhex(ids[-1]))
        down = descendants(lin, bytes.fromhex(ids[0]))
        lines = export.tree(up)
    finally:
        sys.setrecursionlimit(old)
    assert len(up.runs) == n and len(down.runs) == n and len(lines) == 2 * n + 1
    assert len(ancestors(lin, bytes.fromhex(ids[-1]), depth=10).runs) == 10


def test_attack_huge_fan_out_is_walked_once(lin):
    src = "99" * 32
    outs = {f"o{i}": f"{i:064x}" for i in range(20000)}
    rid = lin.record_run(Run(step="fan", kind="python", status="ran", inputs={"src": src}, outputs=outs))
    users = lin.record_runs([Run(step=f"u{i}", kind="python", status="ran", inputs={"in": f"{i:064x}"},
                                 outputs={"out": f"{i + 1:064x}"}, started_ns=i) for i in range(50)])
    g = descendants(lin, bytes.fromhex(src))
    assert rid.hex() in g.runs and {u.hex() for u in users} <= set(g.runs)
    assert len(g.artifacts) == 20001


# -- the commands, with a malformed record in the local store --------------------------------


def test_attack_malformed_record_in_local_store_commands_keep_working(repo_dir):
    from zcas.cas.repo import Repo

    (repo_dir / "in.txt").write_text("hello\n")
    assert run_zcas("run", "-i", "in.txt", "-o", "out.txt", "--", "cp", "in.txt", "out.txt", cwd=repo_dir).code == 0
    repo = Repo(str(repo_dir))
    repo.db.put(codec.KIND_RECORD, malformed())
    repo.db.put(codec.KIND_RECORD, b"[" * 10000)
    repo.db.flush()
    repo.close() if hasattr(repo, "close") else repo.backend.close()
    for args in (["reindex"], ["log"], ["log", "out.txt"], ["log", "--json"], ["fsck"], ["gc", "--dry-run"],
                 ["run", "-i", "in.txt", "-o", "out.txt", "--", "cp", "in.txt", "out.txt"]):
        r = run_zcas(*args, cwd=repo_dir)
        assert "Traceback" not in r.err and "internal error" not in r.err, (args, r)
        assert len([ln for ln in r.err.splitlines() if ln.strip()]) <= 1, (args, r)
        assert r.code in (0, 1), (args, r)
    r = run_zcas("reindex", cwd=repo_dir)
    assert r.code == 0 and "2 damaged records skipped" in r.out, r
    assert "cached" in run_zcas("run", "-i", "in.txt", "-o", "out.txt", "--", "cp", "in.txt", "out.txt", cwd=repo_dir).out
    assert os.path.exists(repo_dir / "out.txt")

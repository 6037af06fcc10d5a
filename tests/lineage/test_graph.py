"""The LMDB lineage index: queries, rebuild from objects alone, growth, concurrent writers."""

import multiprocessing as mp
import os
import shutil

import pytest

from zcas.cas import codec
from zcas.cas.repo import Repo
from zcas.lineage.keyhash import key_of
from zcas.lineage.records import Run
from zcas.lineage.store import Lineage
from zcas.lineage.walk import ancestors, descendants, diff


def keyed(seed) -> dict:
    """cache_key and key_components of a run: the key is the hash of its components."""
    comps = {"schema": "zcas-key-1", "seed": str(seed)}
    return {"cache_key": key_of(comps).hex(), "key_components": comps}


def blob(repo, data: bytes) -> str:
    return repo.db.put(codec.KIND_BLOB, data).hex()


def chain(repo, lin, n=5):
    """raw -> s1 -> a1 -> s2 -> a2 ... ; returns (raw id, [artifact ids], [run ids])."""
    prev = blob(repo, b"raw data")
    raw = prev
    arts, rids = [], []
    for i in range(1, n + 1):
        out = blob(repo, f"artifact {i}".encode())
        rid = lin.record_run(Run(
            step=f"s{i}", kind="command", status="ran", **keyed(i),
            inputs={f"a{i - 1}.txt": prev}, outputs={f"a{i}.txt": out}, params={"i": i},
            started_ns=i * 10**9, ended_ns=i * 10**9 + 5,
        ))
        arts.append(out)
        rids.append(rid.hex())
        prev = out
    return raw, arts, rids


@pytest.fixture
def lin(repo):
    lin = Lineage(repo)
    yield lin
    lin.close()


def answers(lin, raw, arts, rids):
    g = lin.graph
    return {
        "cache": [g.cache_get(bytes.fromhex(keyed(i)["cache_key"])) for i in range(1, 6)],
        "anc": sorted(ancestors(lin, bytes.fromhex(arts[-1])).runs),
        "anc2": sorted(ancestors(lin, bytes.fromhex(arts[-1]), depth=2).runs),
        "desc": sorted(descendants(lin, bytes.fromhex(raw)).runs),
        "hist": lin.history("a3.txt"),
        "newest": list(g.run_ids_newest())[:3],
        "step": g.last_run("s4"),
    }


def test_queries(repo, lin):
    raw, arts, rids = chain(repo, lin)
    g = lin.graph
    assert g.cache_get(bytes.fromhex(keyed(3)["cache_key"])).hex() == rids[2]
    assert g.cache_get(b"\1" * 32) is None
    a = ancestors(lin, bytes.fromhex(arts[-1]))
    assert sorted(a.runs) == sorted(rids)
    assert raw in a.artifacts and a.artifacts[raw] == {"a0.txt"}
    assert sorted(ancestors(lin, bytes.fromhex(arts[-1]), depth=2).runs) == sorted(rids[-2:])
    assert sorted(descendants(lin, bytes.fromhex(arts[1])).runs) == sorted(rids[2:])
    assert [v.id for v in lin.history("a3.txt")] == [arts[2]]
    assert [r.hex() for r in g.run_ids_newest()] == list(reversed(rids))
    assert [r.hex() for r in g.run_ids_newest(since_ns=4 * 10**9)] == [rids[4], rids[3]]
    d = diff(lin.run_dict(bytes.fromhex(rids[0])), lin.run_dict(bytes.fromhex(rids[1])))
    assert ("params.i", 1, 2) in d


def test_run_record_is_an_object(repo, lin):
    _, _, rids = chain(repo, lin, 1)
    kind, data = repo.db.get(bytes.fromhex(rids[0]))
    assert kind == codec.KIND_RECORD and b'"step":"s1"' in data


def test_reindex_gives_same_answers(repo_dir, repo, lin):
    raw, arts, rids = chain(repo, lin)
    (repo_dir / "f").write_text("added by hand")
    repo.add([str(repo_dir / "f")])
    lin.index_paths(repo.refs.last_recorded)
    lin.set_tag("t1", bytes.fromhex(arts[0]))
    before = answers(lin, raw, arts, rids)
    before_hist = lin.history("f")
    lin.close()
    shutil.rmtree(repo_dir / ".zcas" / "lineage")
    lin2 = Lineage(Repo(str(repo_dir)))  # a missing index is rebuilt on open
    try:
        assert answers(lin2, raw, arts, rids) == before
        assert [v.id for v in lin2.history("f")] == [v.id for v in before_hist]
        assert lin2.graph.tags() == {"t1": bytes.fromhex(arts[0])}
    finally:
        lin2.close()


def test_map_grows_by_itself(repo, lin, monkeypatch):
    from zcas.lineage import graph as graph_mod

    lin.graph.env.set_mapsize(256 << 10)  # tiny: a few hundred runs overflow it
    runs = [Run(step="big", kind="command", status="ran", cache_key=os.urandom(32).hex(),
                params={"pad": "x" * 500}, started_ns=i) for i in range(2000)]
    lin.record_runs(runs)
    assert lin.graph.count("runs") == 2000
    assert lin.graph.env.info()["map_size"] > 256 << 10
    assert graph_mod  # the module is the only lmdb user


def _writer(root, who, n, q):
    try:
        repo = Repo(root)
        lin = Lineage(repo)
        for i in range(n):
            lin.record_run(Run(step=f"{who}", kind="command", status="ran", **keyed(os.urandom(16).hex()),
                               params={"i": i}, started_ns=i))
        lin.close()
        repo.close()
        q.put("ok")
    except BaseException as e:  # noqa: BLE001
        q.put(repr(e))


def test_two_processes_recording_lose_nothing(repo_dir):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(str(repo_dir), f"w{k}", 60, q)) for k in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [q.get(timeout=5) for _ in procs] == ["ok"] * 3
    lin = Lineage(Repo(str(repo_dir)))
    try:
        assert lin.graph.count("runs") == 180
        assert lin.graph.count("cache") == 180
    finally:
        lin.close()
    # and the records are all in the object store: a rebuild finds every one
    lin = Lineage(Repo(str(repo_dir)), rebuild=True)
    try:
        assert lin.last_reindex["runs"] == 180
    finally:
        lin.close()


def test_a_late_opener_of_a_new_index_does_not_clear_it(repo_dir, monkeypatch):
    """Processes that open a new repository at once all find the index missing: one that
    gets to rebuild it late must not clear what an early one rebuilt and indexed since (its
    view of the store, loaded earlier, would miss those runs)."""
    from zcas.lineage import store as store_mod

    late_repo = Repo(str(repo_dir))
    assert not late_repo.db.has(b"\0" * 32)  # its view of the store: loaded now
    early = Lineage(Repo(str(repo_dir)))
    rid = early.record_run(Run(step="s", kind="command", status="ran", started_ns=1))
    exists = os.path.exists
    monkeypatch.setattr(store_mod.os.path, "exists", lambda p: not str(p).endswith("data.mdb") and exists(p))
    late = Lineage(late_repo)  # as if it had looked before the early one created the index
    try:
        assert late.graph.has_run(rid) and late.graph.count("runs") == 1
    finally:
        late.close()
        early.close()


def test_attack_run_whose_key_does_not_match_its_components_is_no_cache_entry(repo, lin):
    """A record can reach the object store from a remote's packs and be indexed by reindex:
    only a run whose key is the hash of its components answers for that key."""
    honest = keyed("victim")
    forged = lin.record_run(Run(step="evil", kind="command", status="ran", cache_key=honest["cache_key"],
                                key_components={"schema": "zcas-key-1", "seed": "other"}, outputs={"o": "ee" * 32}))
    assert lin.graph.has_run(forged)
    assert lin.graph.cache_get(bytes.fromhex(honest["cache_key"])) is None
    lin.reindex()
    assert lin.graph.has_run(forged) and lin.graph.cache_get(bytes.fromhex(honest["cache_key"])) is None
    real = lin.record_run(Run(step="ok", kind="command", status="ran", **honest))
    assert lin.graph.cache_get(bytes.fromhex(honest["cache_key"])) == real


def test_folder_outputs_are_indexed_as_trees(repo_dir, repo, lin):
    """A command's paths are indexed into path history as what they hold: a folder as a
    "tree", a file as a "file" (a record names ids only: the object store knows which)."""
    (repo_dir / "d").mkdir()
    (repo_dir / "d" / "x.txt").write_text("x")
    (repo_dir / "f.txt").write_text("f")
    (tree, _, kind), (f, _, _) = repo.add([str(repo_dir / "d"), str(repo_dir / "f.txt")])
    assert kind == "tree"
    absent = "cd" * 32  # a pulled run's output, never fetched: nothing says what it is
    rid = lin.record_run(Run(step="s", kind="command", status="ran", inputs={"in": tree.hex()},
                             outputs={"out": tree.hex(), "out.txt": f.hex(), "gone": absent},
                             started_ns=1, ended_ns=2))
    expect = {"in": ("tree", None), "out": ("tree", rid.hex()), "out.txt": ("file", rid.hex()), "gone": ("file", rid.hex())}
    assert {p: [(v.kind, v.run) for v in lin.history(p)] for p in expect} == {p: [e] for p, e in expect.items()}
    lin.reindex()
    assert {p: [(v.kind, v.run) for v in lin.history(p)] for p in expect} == {p: [e] for p, e in expect.items()}


def test_path_versions_have_one_form(repo_dir, repo, lin):
    """The history file's lines (bytes ids, float seconds) become lineage's PathVersion in
    one place; the index returns that same type (the old tuples are derived from it)."""
    from zcas.cas.refs import PathVersion as HistoryLine
    from zcas.lineage.records import PathVersion, RecordError, from_history_line

    (repo_dir / "run.sh").write_text("#!/bin/sh\n")
    (repo_dir / "run.sh").chmod(0o755)
    [(oid, _, kind)] = repo.add([str(repo_dir / "run.sh")])
    assert kind == "exec"  # the history file keeps a tree mode; path history knows files
    assert lin.index_paths(repo.refs.last_recorded) == 1
    [v] = lin.history("run.sh")
    assert isinstance(v, PathVersion) and v == lin.graph.versions("run.sh")[0]
    assert (v.id, v.kind, v.run) == (oid.hex(), "file", None)
    assert v.time_ns == int(repo.refs.last_recorded[0].time * 1e9)
    assert from_history_line(HistoryLine("l", oid, "link", 1.5)) == PathVersion(path="l", id=oid.hex(), time_ns=1_500_000_000,
                                                                               kind="link")
    for bad in (HistoryLine("p", oid, "file", -1.0), HistoryLine("p", b"short", "file", 1.0),
                HistoryLine("p", oid, "file", float("nan")), HistoryLine("a\0b", oid, "file", 1.0)):
        with pytest.raises(RecordError):
            from_history_line(bad)

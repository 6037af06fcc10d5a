"""The view against hostile or unusual input: planted manifests, oversized images, bad
query values, redirects off the site, a widely shared input."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("starlette", reason="the ui extra (pip install 'zcas[ui]') is not installed")
pytest.importorskip("httpx2", reason="Starlette's test client needs httpx2")

from starlette.testclient import TestClient  # noqa: E402

import zcas  # noqa: E402
from zcas.cas import codec  # noqa: E402
from zcas.cas.errors import IntegrityError  # noqa: E402
from zcas.cas.manifest import encode_manifest  # noqa: E402
from zcas.cas.oid import hasher  # noqa: E402
from zcas.ui.app import create_app  # noqa: E402
from zcas.ui.source import Source  # noqa: E402


@pytest.fixture
def repo(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = zcas.Repository.init(tmp_path)
    yield r
    r.close()


def _planted(repo) -> bytes:
    """A chunked file's id whose manifest lists another file's chunks (same size)."""
    db = repo.cas.db
    a, b = os.urandom(64 << 10), os.urandom(64 << 10)
    db.put(codec.KIND_BLOB, a)
    ib = db.put(codec.KIND_BLOB, b)
    h = hasher()
    h.update(a * 8)
    oid = h.digest()
    db.put(codec.KIND_CHUNKED, encode_manifest(8 * len(b), [(ib, len(b))] * 8), oid=oid, size=8 * len(a))
    db.flush()
    return oid


def test_a_planted_manifest_is_never_previewed(repo):
    """A preview reads a file's first bytes only: they are shown only once the whole file
    is proven to hash to its id."""
    oid = _planted(repo)
    src = Source(repo)
    with pytest.raises(IntegrityError, match="hash mismatch"):
        src.head(oid, 100)
    with TestClient(create_app(src), base_url="http://127.0.0.1") as c:
        r = c.get(f"/api/artifacts/{oid.hex()}")
    assert r.status_code != 200 and "hash mismatch" in r.json()["error"]


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _counting_reads(monkeypatch) -> list[int]:
    """Blocks handed out by Source.read, per call: what a route held or sent."""
    counts: list[int] = []
    plain = Source.read

    def counted(self, oid):
        counts.append(0)
        at = len(counts) - 1
        for block in plain(self, oid):
            counts[at] += 1
            yield block

    monkeypatch.setattr(Source, "read", counted)
    return counts


def test_image_route_reads_only_the_head_to_decide(repo, tmp_path, monkeypatch):
    """A large file that is no image is refused after its first bytes (not loaded whole), one
    over the cap before any byte is read, and an image under it is streamed as it is."""
    from zcas.ui import api

    (tmp_path / "big.bin").write_bytes(os.urandom(6 << 20))
    (tmp_path / "pic.png").write_bytes(PNG_MAGIC + os.urandom(6 << 20))
    big, pic = repo.put(str(tmp_path / "big.bin")).id, repo.put(str(tmp_path / "pic.png")).id
    counts = _counting_reads(monkeypatch)
    with TestClient(create_app(Source(repo)), base_url="http://127.0.0.1") as c:
        r = c.get(f"/api/artifacts/{big}/image")
        assert r.status_code == 415 and counts == [1], counts  # only the first block was read
        counts.clear()
        r = c.get(f"/api/artifacts/{pic}/image")
        assert r.status_code == 200 and r.headers["content-type"] == "image/png"
        assert r.content == (tmp_path / "pic.png").read_bytes()
        counts.clear()
        monkeypatch.setattr(api, "MAX_IMAGE", 1 << 20)
        r = c.get(f"/api/artifacts/{pic}/image")
        assert r.status_code == 413 and "MiB" in r.json()["error"] and counts == []


@pytest.mark.parametrize(("query", "status"), [
    ("until=99999999999999999999999", 400), ("since=9223372036854775808", 400), ("page=99999999999999999999", 400),
    ("page=1000001", 400), ("until=9999-12-31", 200), ("since=9999-12-31T23:59", 200), ("since=0001-01-01", None),
    ("until=0001-01-01T00:00%2B00:00", 200), ("since=1000000000000000000000000000000000000d", 200),
])
def test_out_of_range_parameters_are_400_json(repo, query, status):
    """Numbers past 64 bits are refused; a date or duration past either end of what 64 bits
    of ns hold means that end (or, where no clock converts it, is refused): never a 500."""
    with TestClient(create_app(Source(repo)), base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        r = c.get(f"/api/runs?{query}")
    assert r.status_code == (status or r.status_code) and r.status_code in (200, 400), (query, r.status_code, r.text)
    assert ("error" if r.status_code == 400 else "runs") in r.json()


def test_a_stray_value_error_is_400_json(repo, monkeypatch):
    """A parameter no query checks, that makes Python raise ValueError or OverflowError deep
    in a query, is the request's fault: a 400 with a message, never a 500."""
    from zcas.ui import queries

    def boom(src, **kw):
        raise OverflowError("Python int too large to convert to C ssize_t")

    monkeypatch.setattr(queries, "runs", boom)
    with TestClient(create_app(Source(repo)), base_url="http://127.0.0.1", raise_server_exceptions=False) as c:
        r = c.get("/api/runs")
    assert r.status_code == 400 and "too large" in r.json()["error"]


@pytest.mark.parametrize(("path", "location"), [
    ("//evil.com/", "/evil.com/"), ("///evil.com/x", "/evil.com/x"), ("/%5Cevil.com/", "/%5Cevil.com/"),
    ("/%09/evil.com/", "/evil.com/"), ("/runs", "/runs"),  # (URL parsing drops the tab, as a browser would)
])
def test_the_token_redirect_stays_on_the_site(repo, path, location):
    """Opening the printed address drops the token with a redirect to the same path: a path
    that starts with // (or what a browser reads as //) must not send the browser elsewhere."""
    token = "t" * 8 + "0123456789abcdef"
    with TestClient(create_app(Source(repo), token=token), base_url="http://10.1.2.3:8080") as c:
        r = c.get(f"http://10.1.2.3:8080{path}?token={token}&x=1", follow_redirects=False)  # the path as given
    assert r.status_code == 303 and r.headers["location"] == f"{location}?x=1", r.headers.get("location")


def _shared(repo, n: int) -> tuple[str, list[str]]:
    """``n`` command runs that all read one input (data/shared.csv); each writes its own
    output, which one more run (``down``) reads from the first of them. The input's id,
    and the outputs'."""
    from zcas.lineage.records import Run

    db = repo.cas.db
    shared = db.put(codec.KIND_BLOB, b"shared input").hex()
    outs = [db.put(codec.KIND_BLOB, f"out {i}".encode()).hex() for i in range(n)]
    t0 = 1_700_000_000 * 10**9
    runs = [Run(step="use", kind="command", status="ran", cache_key=os.urandom(32).hex(), cmd=["x"],
                inputs={"data/shared.csv": shared}, outputs={f"out/{i}.txt": o},
                started_ns=t0 + i * 10**6, ended_ns=t0 + i * 10**6 + 5) for i, o in enumerate(outs)]
    runs.append(Run(step="down", kind="command", status="ran", cache_key=os.urandom(32).hex(), cmd=["y"],
                    inputs={"out/0.txt": outs[0]}, outputs={"final.txt": db.put(codec.KIND_BLOB, b"final").hex()},
                    started_ns=t0 + n * 10**6, ended_ns=t0 + n * 10**6 + 5))
    for at in range(0, len(runs), 1000):
        repo.lineage.record_runs(runs[at : at + 1000])
    return shared, outs


def _connected(g: dict) -> bool:
    near: dict[str, set[str]] = {}
    for e in g["edges"]:
        near.setdefault(e["from"], set()).add(e["to"])
        near.setdefault(e["to"], set()).add(e["from"])
    seen, todo = {g["root"]}, [g["root"]]
    while todo:
        for o in near.get(todo.pop(), ()):
            if o not in seen:
                seen.add(o)
                todo.append(o)
    return seen == {n["id"] for n in g["nodes"]}


def test_a_widely_shared_input_costs_a_page_not_every_run(repo, monkeypatch):
    """An input read by 3,000 runs: its page reads 200 of their records (and says how many
    there are), its lineage graph stops at the node cap, connected, nearest first, and the
    path index is read once for many pages, not once a page."""
    from zcas.ui import graphs, queries

    shared, outs = _shared(repo, 3000)
    src = Source(repo)
    reads: list[bytes] = []
    plain = src.lineage.run_dict
    monkeypatch.setattr(src.lineage, "run_dict", lambda rid: reads.append(rid) or plain(rid))
    scans: list[int] = []
    all_paths = src.lineage.graph.all_paths
    monkeypatch.setattr(src.lineage.graph, "all_paths", lambda: scans.append(1) or all_paths())
    monkeypatch.setattr(graphs, "MAX_NODES", 400)
    with TestClient(create_app(src), base_url="http://127.0.0.1") as c:
        a = c.get(f"/api/artifacts/{shared}").json()
        assert (a["used_by_count"], a["used_by_more"], len(a["used_by"])) == (3000, True, queries.RELATED)
        assert (a["produced_by_count"], a["produced_by_more"], a["produced_by"]) == (0, False, [])
        assert a["names"] == ["data/shared.csv"] and len(reads) <= queries.RELATED + 5
        starts = [r["started_ns"] for r in a["used_by"]]
        assert starts == sorted(starts, reverse=True)
        for o in outs[:5]:  # more pages: the path index is not read again (nothing was written)
            assert c.get(f"/api/artifacts/{o}").json()["names"] == [f"out/{outs.index(o)}.txt"]
        assert len(scans) == 1
        reads.clear()
        g = c.get(f"/api/lineage/{shared}?depth=1").json()
        assert g["truncated"] and len(g["nodes"]) <= 400 and _connected(g)
        assert len(reads) <= 400
        g = c.get(f"/api/lineage/{outs[0]}?depth=3").json()  # up to the shared input, down to final.txt
        assert not g["truncated"] and {n["label"] for n in g["nodes"] if n["type"] == "run"} == {"use", "down"}
        assert _connected(g)

"""The JSON API over a real repository (tests/ui/conftest.py): what each page is built from,
bad input as 4xx JSON, and the security rules (token, Host, CSP, nothing outside the store)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("starlette", reason="the ui extra (pip install 'zcas[ui]') is not installed")
pytest.importorskip("httpx2", reason="Starlette's test client needs httpx2")

from starlette.testclient import TestClient  # noqa: E402

from tests.conftest import run_zcas  # noqa: E402
from tests.ui.conftest import CSV, SECRET  # noqa: E402
from zcas.repository import Repository  # noqa: E402
from zcas.ui.app import CSP, create_app  # noqa: E402
from zcas.ui.source import Source  # noqa: E402

TOKEN = "t" * 8 + "0123456789abcdef"


@pytest.fixture(scope="module")
def repository(scene):
    repo = Repository(scene.root)
    yield repo
    repo.close()


@pytest.fixture(scope="module")
def source(repository):
    return Source(repository)


@pytest.fixture(scope="module")
def client(source):
    with TestClient(create_app(source), base_url="http://127.0.0.1") as c:
        yield c


def get(client, url, status=200):
    r = client.get(url)
    assert r.status_code == status, (url, r.status_code, r.text[:500])
    return r.json()


# -- runs ------------------------------------------------------------------------------------


def test_runs_newest_first_with_every_run(client, scene):
    res = get(client, "/api/runs")
    assert [r["id"] for r in res["runs"]] == [r["id"] for r in scene.runs]
    starts = [r["started_ns"] for r in res["runs"]]
    assert starts == sorted(starts, reverse=True)
    assert res["latest"] == scene.runs[0]["id"] and res["more"] is False
    assert {"shout", "clean", "count", "bad", "flow.train", "flow.main"} <= {r["step"] for r in res["runs"]}


def test_runs_filters(client, scene):
    failed = get(client, "/api/runs?status=failed")["runs"]
    assert [(r["step"], r["exit_status"]) for r in failed] == [("bad", 3)]
    assert {r["step"] for r in get(client, "/api/runs?step=clean")["runs"]} == {"clean"}
    piped = get(client, "/api/runs?pipeline=flow.main")["runs"]
    assert {r["step"] for r in piped} == {"flow.main", "flow.prepare", "flow.train"}
    assert len(piped) == 12  # four calls of the pipeline, each a pipeline run and two steps
    assert get(client, "/api/runs?since=2999-01-01")["runs"] == []
    assert get(client, "/api/runs?until=2000-01-01")["runs"] == []
    mid = scene.runs[5]["started_ns"]
    until = get(client, f"/api/runs?until={mid}")["runs"]
    assert [r["id"] for r in until] == [r["id"] for r in scene.runs if r["started_ns"] <= mid]
    assert len(get(client, "/api/runs?since=1d")["runs"]) == len(scene.runs)
    names = get(client, "/api/steps")
    assert "flow.main" in names["pipelines"] and "flow.main" not in names["steps"] and "clean" in names["steps"]


def test_runs_paged(client, scene):
    p1 = get(client, "/api/runs?per_page=3")
    p2 = get(client, "/api/runs?per_page=3&page=2")
    assert p1["more"] and len(p1["runs"]) == 3 and len(p2["runs"]) == 3
    assert [r["id"] for r in p1["runs"] + p2["runs"]] == [r["id"] for r in scene.runs[:6]]
    last = get(client, f"/api/runs?per_page=3&page={(len(scene.runs) + 2) // 3}")
    assert last["more"] is False and last["runs"]
    filtered = get(client, "/api/runs?step=flow.train&per_page=1&page=2")["runs"]
    assert [r["id"] for r in filtered] == [scene.run("flow.train", nth=1)["id"]]


@pytest.mark.parametrize("query, fragment", [
    ("status=done", "status: expected one of ran, cached, failed"),
    ("since=soon", "since: expected a date"),
    ("page=0", "page must be between 1 and"),
    ("per_page=many", "per_page: expected a whole number"),
    ("per_page=100000", "per_page between 1 and 500"),
])
def test_runs_bad_input_is_400_json(client, query, fragment):
    assert fragment in get(client, f"/api/runs?{query}", 400)["error"]


# -- one run ---------------------------------------------------------------------------------


def test_command_run(client, scene):
    rid = scene.run("clean")["id"]
    r = get(client, f"/api/runs/{rid[:10]}")
    assert r["id"] == rid and r["status"] == "ran" and r["kind"] == "command"
    assert r["cmd"] == ["sh", "-c", "sh -c 'mkdir -p out && head -n 4 data/raw.csv > out/clean.csv'"]
    [inp] = r["inputs"]
    assert inp["name"] == "data/raw.csv" and inp["id"] == _b3(CSV.encode()) and inp["where"] == "here"
    assert [o["name"] for o in r["outputs"]] == ["out/clean.csv"]
    assert r["env"] == {"UI_TEST_SECRET": "set"} and r["key_components"]["env:UI_TEST_SECRET"] == "set"
    assert r["why"]["kind"] == "first"
    assert "metrics" not in r and "log" not in r  # none recorded: the sections are left out


def test_no_environment_value_or_digest_anywhere(client, scene):
    from zcas.lineage.redact import env_digest

    text = client.get(f"/api/runs/{scene.run('clean')['id']}").text
    assert SECRET not in text and env_digest(SECRET) not in text and env_digest(SECRET)[3:] not in text


def test_failed_run(client, scene):
    r = get(client, f"/api/runs/{scene.run('bad')['id']}")
    assert (r["status"], r["exit_status"], r["outputs"]) == ("failed", 3, [])


def test_why_a_step_reran_and_a_hit(client, scene):
    newest_ran = scene.run("flow.train", "ran")  # lr=0.3, after lr=0.2
    r = get(client, f"/api/runs/{newest_ran['id']}")
    assert r["params"] == {"lr": 0.3}
    assert r["why"]["kind"] == "rerun" and r["why"]["previous"] == scene.run("flow.train", "ran", nth=1)["id"]
    assert r["why"]["lines"] == ["param lr changed: 0.2 -> 0.3"]
    first = get(client, f"/api/runs/{scene.run('flow.train', 'ran', nth=2)['id']}")
    assert first["why"]["kind"] == "first" and "no earlier run of this step" in first["why"]["lines"][0]
    hit = get(client, f"/api/runs/{scene.run('flow.train', 'cached')['id']}")
    assert hit["why"]["kind"] == "cached" and hit["why"]["from"] == scene.run("flow.train", "ran", nth=1)["id"]


def test_pipeline_run_names_its_steps(client, scene):
    r = get(client, f"/api/runs/{scene.run('flow.main')['id']}")
    assert {s["name"]: s["status"] for s in r["steps"]} == {"flow.prepare": "cached", "flow.train": "cached"}


def test_pulled_run(client, scene):
    pulled = scene.run("shout")
    r = get(client, f"/api/runs/{pulled['id']}")
    assert [o["name"] for o in r["outputs"]] == ["loud.txt"] and r["outputs"][0]["where"] == "here"


def test_metrics_and_log_shown_when_a_record_has_them(client, scene, source, monkeypatch):
    """Records of issue 15 carry ``metrics`` and ``log`` (stream -> object id): shown as they are."""
    lin = source.lineage
    plain = lin.run_dict
    rid = scene.run("count")["id"]
    log_id = scene.run("clean")["outputs"]["out/clean.csv"]

    def with_fields(oid):
        rec = plain(oid)
        if rec is not None and oid.hex() == rid:
            rec = dict(rec, metrics={"rows": 3, "score": 0.5}, log={"stdout": log_id})
        return rec

    monkeypatch.setattr(lin, "run_dict", with_fields)
    r = get(client, f"/api/runs/{rid}")
    assert r["metrics"] == {"rows": 3, "score": 0.5}
    assert r["log"] == [{"name": "stdout", "id": log_id, "where": "here", "text": "city,temp\nOslo,3\nLima,19\n<b>Bold</b>,7\n",
                         "truncated": False}]


@pytest.mark.parametrize("ref, status, fragment", [
    ("zz-not-hex", 400, "not a hex object id"),
    ("ab", 400, "too short"),
    ("0" * 64, 404, "no run"),
])
def test_bad_run_ids(client, ref, status, fragment):
    assert fragment in get(client, f"/api/runs/{ref}", status)["error"]


# -- artifacts -------------------------------------------------------------------------------


def test_csv_artifact(client, scene):
    oid = scene.run("clean")["outputs"]["out/clean.csv"]
    a = get(client, f"/api/artifacts/{oid}")
    assert (a["kind"], a["names"], a["where"]) == ("file", ["out/clean.csv"], "here")
    assert a["size"] == len("".join(CSV.splitlines(True)[:4]))
    assert [r["id"] for r in a["produced_by"]] == [scene.run("clean")["id"]]
    assert [r["id"] for r in a["used_by"]] == [scene.run("count")["id"]]
    p = a["preview"]
    assert (p["type"], p["columns"]) == ("table", ["city", "temp"])
    assert p["rows"] == [["Oslo", "3"], ["Lima", "19"], ["<b>Bold</b>", "7"]]
    [h] = a["history"]
    assert h["path"] == "out/clean.csv" and [v["id"] for v in h["versions"]] == [oid]


def test_download_is_the_exact_bytes(client, scene):
    oid = scene.run("clean")["inputs"]["data/raw.csv"]
    r = client.get(f"/api/artifacts/{oid}/raw")
    assert r.status_code == 200 and r.content == CSV.encode()
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"] == 'attachment; filename="raw.csv"'
    assert r.headers["x-content-type-options"] == "nosniff"


def test_image_preview_only_for_real_images(client, scene):
    from tests.ui.conftest import PNG

    png, csv = _b3(PNG), _b3(CSV.encode())
    a = get(client, f"/api/artifacts/{png}?name=pixel.png")
    assert a["preview"] == {"type": "image", "mime": "image/png"}
    r = client.get(f"/api/artifacts/{png}/image")
    assert r.status_code == 200 and r.headers["content-type"] == "image/png" and r.content == PNG
    assert "is not a PNG" in get(client, f"/api/artifacts/{csv}/image", 415)["error"]


def test_json_and_text_previews(client, scene):
    out = scene.run("flow.train", "ran")["outputs"]["output"]
    p = get(client, f"/api/artifacts/{out}")["preview"]
    assert p["type"] == "json" and json.loads(p["text"]) == {"loss": pytest.approx(3.0)}
    count = scene.run("count")["outputs"]["out/count.txt"]
    assert get(client, f"/api/artifacts/{count}")["preview"] == {"type": "text", "text": "4\n", "truncated": False}


def test_folder_by_tag_and_tree(client, scene):
    a = get(client, "/api/artifacts/dataset")
    assert a["kind"] == "folder" and a["tags"] == ["dataset"]
    assert sorted(e["name"] for e in a["entries"]) == ["pixel.png", "raw.csv"]
    t = get(client, f"/api/trees/{a['id']}")
    assert {e["name"]: e["id"] for e in t["entries"]}["raw.csv"] == _b3(CSV.encode())
    assert "no stored folder" in get(client, f"/api/trees/{_b3(CSV.encode())}", 404)["error"]


def test_a_run_id_is_not_an_artifact(client, scene):
    assert "is a run" in get(client, f"/api/artifacts/{scene.run('clean')['id']}", 404)["error"]


# -- lineage, experiments, data --------------------------------------------------------------


def test_lineage_of_a_run(client, scene):
    count = scene.run("count")
    g = get(client, f"/api/lineage/{count['id']}?depth=3")
    runs = {n["label"]: n["status"] for n in g["nodes"] if n["type"] == "run"}
    arts = {n["label"] for n in g["nodes"] if n["type"] == "artifact"}
    assert runs == {"clean": "ran", "count": "ran"} and arts == {"data/raw.csv", "out/clean.csv", "out/count.txt"}
    assert {"from": count["inputs"]["out/clean.csv"], "to": count["id"], "kind": "input"} in g["edges"]
    up = get(client, f"/api/lineage/{count['id']}?direction=down")
    assert {n["label"] for n in up["nodes"] if n["type"] == "run"} == {"count"}
    one = get(client, f"/api/lineage/{count['inputs']['out/clean.csv']}?depth=1&direction=up")
    assert {n["label"] for n in one["nodes"] if n["type"] == "run"} == {"clean"}


def test_pipeline_dag(client, scene):
    first = scene.run("flow.main", nth=3)  # the first call: both steps ran
    g = get(client, f"/api/lineage/{first['id']}")
    assert g["pipeline"]["step"] == "flow.main"
    assert {n["label"]: n["status"] for n in g["nodes"] if n["type"] == "run"} == {"flow.prepare": "ran", "flow.train": "ran"}
    assert len(g["edges"]) == 3  # prepare -> data -> train -> output


@pytest.mark.parametrize("query, fragment", [("depth=0", "depth must be"), ("direction=sideways", "direction:"),
                                             ("depth=x", "depth: expected a whole number")])
def test_lineage_bad_input(client, scene, query, fragment):
    assert fragment in get(client, f"/api/lineage/{scene.run('count')['id']}?{query}", 400)["error"]


def test_experiments(client, scene):
    x = get(client, "/api/experiments?step=flow.train")
    assert [r["params"]["lr"] for r in x["rows"]] == [0.2, 0.3, 0.2, 0.1]
    assert x["params"] == ["lr"] and x["changed"]["params"] == ["lr"] and x["metrics"] == []
    assert "no runs of a step" in get(client, "/api/experiments?step=nope", 404)["error"]
    assert "name a step" in get(client, "/api/experiments", 400)["error"]


def test_data_versions(client, scene):
    d = get(client, "/api/data")
    assert {t["name"]: t["kind"] for t in d["tags"]} == {"dataset": "folder"}
    paths = {p["path"]: p for p in d["paths"]}
    assert {"data", "data/raw.csv", "out/clean.csv", "loud.txt"} <= set(paths)
    assert paths["data"]["latest"]["kind"] == "tree"
    assert [p["path"] for p in get(client, "/api/data?q=clean")["paths"]] == ["out/clean.csv"]
    h = get(client, "/api/history?path=out/clean.csv")
    assert [v["number"] for v in h["versions"]] == [1] and h["versions"][0]["run"] == scene.run("clean")["id"]
    assert "no recorded versions" in get(client, "/api/history?path=../../etc/passwd", 404)["error"]


# -- the web layer ---------------------------------------------------------------------------


def test_pages_and_headers(client, scene):
    for url in ("/", "/runs", f"/runs/{scene.run('clean')['id']}", "/experiments", "/data", "/artifacts/dataset",
                f"/lineage/{scene.run('clean')['id']}"):
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-security-policy"] == CSP, url
        assert "<script src=\"/static/app.js" in r.text
    assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
    assert client.get("/api/runs").headers["content-security-policy"] == CSP


def test_nothing_outside_the_store_and_no_writes(client, scene):
    assert client.get("/static/app.js").status_code == 200
    for url in ("/static/../queries.py", "/static/..%2fqueries.py", "/static/%2e%2e/app.py", "/static/vendor/../../api.py"):
        assert client.get(url).status_code == 404, url
    assert "no API route" in get(client, "/api/artifacts/..%2F..%2Fetc%2Fpasswd", 404)["error"]
    assert "not a hex object id" in get(client, "/api/artifacts/%2e%2e", 400)["error"]
    assert get(client, "/api/nothing/here", 404)["error"].startswith("no API route")
    assert client.get("/runs/<script>").status_code == 404
    for method in ("post", "put", "delete", "patch"):
        assert getattr(client, method)("/api/runs").status_code == 405


def test_foreign_host_refused_without_token(source):
    with TestClient(create_app(source), base_url="http://evil.example") as c:
        r = c.get("/api/runs")
        assert r.status_code == 403 and "answers only to localhost" in r.json()["error"]


def test_token_checked_on_every_request(source):
    with TestClient(create_app(source, token=TOKEN), base_url="http://10.1.2.3:8080") as c:
        for url in ("/", "/api/runs", "/static/app.js"):
            r = c.get(url)
            assert r.status_code == 401 and "a token is needed" in r.json()["error"], url
        assert c.get("/api/runs", headers={"Authorization": "Bearer wrong" + TOKEN}).status_code == 401
        assert c.get("/api/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        r = c.get(f"/runs?status=failed&token={TOKEN}", follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/runs?status=failed"  # the token leaves the address
        assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()
        assert c.get("/api/runs").status_code == 200  # with the cookie the first page set
        assert c.get(r.headers["location"]).status_code == 200


# -- a remote -----------------------------------------------------------------------------


def test_remote_view_reads_objects_from_the_remote_and_keeps_none(scene, tmp_path):
    assert run_zcas("init", cwd=tmp_path).code == 0
    assert run_zcas("remote", "add", "origin", scene.remote_url, cwd=tmp_path).code == 0
    with Repository(tmp_path) as repo:
        src = Source(repo, remote="origin")
        with TestClient(create_app(src), base_url="http://127.0.0.1") as c:
            runs = get(c, "/api/runs")["runs"]
            assert [r["step"] for r in runs] == ["shout"]
            out = get(c, f"/api/runs/{runs[0]['id']}")["outputs"][0]
            assert out["where"] == "remote"
            assert c.get(f"/api/artifacts/{out['id']}/raw").content == b"FROM A TEAMMATE\n"
            assert get(c, f"/api/artifacts/{out['id']}")["preview"]["text"] == "FROM A TEAMMATE\n"
        assert not repo.cas.db.has(bytes.fromhex(out["id"]))  # read, verified, not kept


def test_unknown_remote_is_one_clear_error(scene):
    from zcas.cas.errors import ZcasError

    with Repository(scene.root) as repo, pytest.raises(ZcasError, match="no remote named nope"):
        Source(repo, remote="nope")


def _b3(data: bytes) -> str:
    from zcas.cas.oid import hash_bytes

    return hash_bytes(data).hex()




def test_streamed_download_is_the_same_bytes(client, scene, monkeypatch):
    from zcas.ui import api

    monkeypatch.setattr(api, "WHOLE_BEFORE_SENDING", 0)  # every file takes the block-by-block path
    oid = scene.run("clean")["inputs"]["data/raw.csv"]
    r = client.get(f"/api/artifacts/{oid}/raw")
    assert r.status_code == 200 and r.content == CSV.encode() and r.headers["content-length"] == str(len(CSV))


def test_parquet_preview(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    assert run_zcas("init", cwd=tmp_path).code == 0
    pq.write_table(pa.table({"id": list(range(80)), "name": [f"row {i}" for i in range(80)]}), tmp_path / "t.parquet")
    oid = run_zcas("add", "t.parquet", cwd=tmp_path).out.split()[0]
    with Repository(tmp_path) as repo, TestClient(create_app(Source(repo)), base_url="http://127.0.0.1") as c:
        a = get(c, f"/api/artifacts/{oid}")  # known by its recorded path: no name hint needed
    p = a["preview"]
    assert a["names"] == ["t.parquet"] and [h["path"] for h in a["history"]] == ["t.parquet"]
    assert (p["type"], p["format"], p["columns"]) == ("table", "parquet", ["id", "name"])
    assert (p["total_rows"], p["truncated"]) == (80, True)
    assert p["rows"][:2] == [["0", "row 0"], ["1", "row 1"]] and len(p["rows"]) == 50


def test_experiments_take_metrics_when_records_have_them(client, scene, source, monkeypatch):
    lin = source.lineage
    plain = lin.run_dict
    loss = {r["id"]: 1.0 + i for i, r in enumerate(r for r in scene.runs if r["step"] == "flow.train")}

    def with_metrics(oid):
        rec = plain(oid)
        if rec is not None and oid.hex() in loss:
            rec = dict(rec, metrics={"eval": {"loss": loss[oid.hex()], "n": 5}})
        return rec

    monkeypatch.setattr(lin, "run_dict", with_metrics)
    x = get(client, "/api/experiments?step=flow.train")
    assert x["metrics"] == ["eval.loss", "eval.n"] and x["changed"]["metrics"] == ["eval.loss"]
    assert [r["metrics"]["eval.loss"] for r in x["rows"]] == [1.0, 2.0, 3.0, 4.0]


def test_real_metrics_and_log(tmp_path):
    """A run recorded with metrics and captured output (issue 15): both shown as recorded."""
    assert run_zcas("init", cwd=tmp_path).code == 0
    cmd = 'echo hello out; echo oops >&2; echo \'{"acc": 0.9, "loss": {"val": 0.1}}\' > m.json'
    r = run_zcas("run", "-m", "m.json", "-o", "m.json", "--", "sh", "-c", cmd, cwd=tmp_path)
    if r.code != 0 and "no such option" in r.err:
        pytest.skip("this zcas records no metrics (issue 15 not here)")
    assert r.code == 0, r
    with Repository(tmp_path) as repo, TestClient(create_app(Source(repo)), base_url="http://127.0.0.1") as c:
        [run] = get(c, "/api/runs")["runs"]
        shown = get(c, f"/api/runs/{run['id']}")
    assert shown["metrics"] == {"acc": 0.9, "loss.val": 0.1}
    assert {(x["name"], x["text"], x["where"]) for x in shown["log"]} == {("stdout", "hello out\n", "here"),
                                                                           ("stderr", "oops\n", "here")}


def test_remote_view_takes_records_in_under_the_repository_lock(scene, tmp_path, monkeypatch):
    """Taking a teammate's run records in writes a pack and the index here: it holds the
    repository's shared lock while it does (gc, holding it exclusive, cannot run meanwhile),
    and only then."""
    import fcntl
    import os

    from zcas.remotes import Remote

    assert run_zcas("init", cwd=tmp_path).code == 0
    assert run_zcas("remote", "add", "origin", scene.remote_url, cwd=tmp_path).code == 0
    lock_path = tmp_path / ".zcas" / "lock"
    held: list[bool] = []

    def gc_could_run() -> bool:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        finally:
            os.close(fd)  # (closing releases a lock taken)
        return True

    plain = Remote.sync_lineage
    monkeypatch.setattr(Remote, "sync_lineage", lambda self, *a, **k: held.append(not gc_could_run()) or plain(self, *a, **k))
    with Repository(tmp_path) as repo:
        src = Source(repo, remote="origin")
        assert held == [True] and gc_could_run()  # held while taking records in, released after
        assert src.lineage.graph.count("runs") == 1  # the teammate's run, taken in

"""OpenLineage export: every event validates against the official schema pinned in
tests/data/openlineage/ (and every facet against its own), runs have a START before their
COMPLETE or FAIL, steps link to their pipeline run, failures say so, datasets are named for
the data; --emit posts them to an endpoint (a stub server on 127.0.0.1)."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import threading
from collections import Counter

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tests.conftest import assert_one_line_error, run_zcas
from zcas.lineage import export

HERE = os.path.dirname(os.path.abspath(__file__))
PINNED = os.path.join(HERE, "..", "data", "openlineage")
OURS = os.path.join(HERE, "..", "..", "docs", "openlineage")

FLOW = '''
import zcas

@zcas.step
def load(n: int) -> dict:
    return {"values": list(range(n))}

@zcas.step
def scale(data: dict, k: int = 3) -> dict:
    return {"values": [v * k for v in data["values"]]}

@zcas.step
def boom(data: dict) -> dict:
    raise ValueError("no")

@zcas.pipeline
def main(n: int = 4):
    return scale(load(n))

@zcas.pipeline
def bad(n: int = 4):
    return boom(load(n))
'''

TOML = '''
[steps.copy]
cmd = "cp raw.txt copy.txt"
inputs = ["raw.txt"]
outputs = ["copy.txt"]

[steps.fails]
cmd = "sh -c 'exit 3'"
'''


def _registry() -> Registry:
    resources = []
    for folder in (PINNED, OURS):
        for name in os.listdir(folder):
            if name.endswith(".json"):
                with open(os.path.join(folder, name)) as f:
                    doc = json.load(f)
                resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


REGISTRY = _registry()


def _validator(url: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": url}, registry=REGISTRY, format_checker=Draft202012Validator.FORMAT_CHECKER)


def check_event(ev: dict) -> None:
    """The event against RunEvent, then every facet against the schema its _schemaURL names."""
    _validator(ev["schemaURL"]).validate(ev)
    assert ev["schemaURL"] == "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
    dt.datetime.fromisoformat(ev["eventTime"])  # (date-time is not checked without an extra package)
    facets = list(ev["run"]["facets"].values())
    facets += [f for d in ev.get("inputs", []) + ev.get("outputs", []) for f in d["facets"].values()]
    for facet in facets:
        assert facet["_schemaURL"].count("#/$defs/") == 1, facet["_schemaURL"]
        _validator(facet["_schemaURL"]).validate(facet)


@pytest.fixture(scope="module")
def events(tmp_path_factory):
    root = tmp_path_factory.mktemp("ol")
    assert run_zcas("init", cwd=root).code == 0
    (root / "flow.py").write_text(FLOW)
    (root / "zcas.toml").write_text(TOML)
    (root / "raw.txt").write_text("raw\n")
    assert run_zcas("run", "flow.py:main", cwd=root).code == 0
    assert run_zcas("run", "flow.py:main", cwd=root).code == 0  # all cached the second time
    assert run_zcas("run", "flow.py:bad", cwd=root).code != 0
    assert run_zcas("run", cwd=root).code != 0
    res = run_zcas("log", "--format", "openlineage", cwd=root)
    assert res.code == 0, res
    return root, [json.loads(line) for line in res.out.splitlines()]


def test_every_event_and_facet_validates_against_the_pinned_schemas(events):
    _, evs = events
    assert len(evs) >= 20
    for ev in evs:
        check_event(ev)


def test_the_validator_does_reject(events):
    """(So the test above can fail.)"""
    _, evs = events
    bad = json.loads(json.dumps(evs[0]))
    bad["run"]["runId"] = "not-a-uuid"
    with pytest.raises(Exception, match="uuid"):
        check_event(bad)
    bad = json.loads(json.dumps(evs[-1]))
    bad["run"]["facets"]["zcas"]["status"] = "exploded"
    with pytest.raises(Exception, match="exploded"):
        check_event(bad)


def test_one_start_then_one_end_per_run(events):
    _, evs = events
    seen: dict[str, list[str]] = {}
    for ev in evs:
        seen.setdefault(ev["run"]["runId"], []).append(ev["eventType"])
    assert seen and all(kinds in (["START", "COMPLETE"], ["START", "FAIL"]) for kinds in seen.values()), seen
    times = [ev["eventTime"] for ev in evs]
    assert times == sorted(times)


def test_step_runs_name_their_pipeline_run(events):
    _, evs = events
    pipelines = {ev["run"]["runId"]: ev["job"]["name"] for ev in evs if ev["run"]["facets"]["zcas"]["kind"] == "pipeline"}
    assert sorted(Counter(pipelines.values())) == ["flow.bad", "flow.main"] and len(pipelines) == 3
    for ev in evs:
        kind = ev["run"]["facets"]["zcas"]["kind"]
        parent = ev["run"]["facets"].get("parent")
        if kind == "python":
            assert parent is not None and pipelines[parent["run"]["runId"]] == parent["job"]["name"]
            assert parent["job"]["namespace"] == ev["job"]["namespace"]
        else:
            assert parent is None  # a pipeline has none; command steps of zcas.toml ran in no pipeline run


def test_failures_carry_an_error_message(events):
    _, evs = events
    fails = {ev["job"]["name"]: ev["run"]["facets"]["errorMessage"] for ev in evs if ev["eventType"] == "FAIL"}
    assert set(fails) == {"flow.boom", "flow.bad", "fails"}
    assert fails["fails"]["message"] == "command exited with status 3" and fails["fails"]["programmingLanguage"] == "shell"
    assert fails["flow.boom"]["programmingLanguage"] == "python"
    assert not any("errorMessage" in ev["run"]["facets"] for ev in evs if ev["eventType"] != "FAIL")


def test_datasets_are_named_for_the_data_not_the_argument_slot(events):
    _, evs = events
    done = [ev for ev in evs if ev["eventType"] in ("COMPLETE", "FAIL")]
    outs = {(ev["job"]["name"], d["name"]) for ev in done for d in ev["outputs"]}
    assert ("flow.load", "flow.load/output") in outs and ("flow.scale", "flow.scale/output") in outs
    assert ("copy", "copy.txt") in outs
    # scale's input is the dataset load wrote: same name and version, so the graph connects
    scale = next(ev for ev in done if ev["job"]["name"] == "flow.scale")
    load = next(ev for ev in done if ev["job"]["name"] == "flow.load")
    assert [(d["name"], d["facets"]["version"]["datasetVersion"]) for d in scale["inputs"]] == \
        [(d["name"], d["facets"]["version"]["datasetVersion"]) for d in load["outputs"]]
    names = [d["name"] for ev in done for d in ev["outputs"]]
    assert "output" not in names and "data" not in names


def test_an_input_made_outside_the_export_is_named_by_its_producer(events):
    root, _ = events
    res = run_zcas("log", "--format", "openlineage", "--step", "flow.scale", cwd=root)
    evs = [json.loads(line) for line in res.out.splitlines()]
    assert evs and all(d["name"] == "flow.load/output" for ev in evs for d in ev["inputs"])
    assert all("parent" in ev["run"]["facets"] for ev in evs)  # the pipeline run looked up, not exported
    assert {ev["job"]["name"] for ev in evs} == {"flow.scale"}


def test_export_of_unlinked_records_still_validates():
    rid = "ab" * 32
    r = {"step": "s", "kind": "python", "status": "failed", "cache_key": "cd" * 32, "inputs": {"x": "ef" * 32},
         "outputs": {}, "started_ns": 10**18, "ended_ns": 10**18 - 5, "exit_status": 1, "session": "ff" * 16}
    evs = export.openlineage_events({rid: r}, "file:///x")
    assert [e["eventType"] for e in evs] == ["START", "FAIL"]
    assert evs[0]["inputs"][0]["name"] == "objects/" + "ef" * 32
    for ev in evs:
        check_event(ev)


class _Stub(http.server.BaseHTTPRequestHandler):
    received: list[tuple[str, dict, dict]] = []
    status = 200

    def do_POST(self):  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, dict(self.headers), json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"nope" if type(self).status >= 400 else b"")

    def log_message(self, *args):
        pass


@pytest.fixture
def stub():
    _Stub.received, _Stub.status = [], 200
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield server, f"http://127.0.0.1:{server.server_address[1]}/api/v1/lineage"
    server.shutdown()
    server.server_close()


def test_emit_posts_every_event_in_order(events, stub):
    root, evs = events
    _, url = stub
    res = run_zcas("log", "--emit", url, cwd=root, env={"OPENLINEAGE_API_KEY": "k3y"})
    assert res.code == 0 and res.out == "" and f"sent {len(evs)} OpenLineage events" in res.err, res
    got = _Stub.received
    assert [p for p, _, _ in got] == ["/api/v1/lineage"] * len(evs)
    assert [e for _, _, e in got] == evs
    assert all(h["Content-Type"] == "application/json" and h["Authorization"] == "Bearer k3y" for _, h, _ in got)


def test_emit_failures_are_one_line(events, stub):
    root, _ = events
    _, url = stub
    _Stub.status = 500
    res = run_zcas("log", "--emit", url, cwd=root)
    assert_one_line_error(res, "refused event 1 of", "HTTP 500")
    assert len(_Stub.received) == 1  # stops at the first refusal
    assert_one_line_error(run_zcas("log", "--emit", "ftp://x/y", cwd=root), "http:// or https://")
    assert_one_line_error(run_zcas("log", "--emit", url, "--format", "dot", cwd=root), "--emit")
    assert_one_line_error(run_zcas("log", "--emit", "http://127.0.0.1:9/api/v1/lineage", cwd=root), "cannot reach")


def test_cached_runs_complete_and_name_the_run_they_restored(events):
    _, evs = events
    ends = [ev for ev in evs if ev["eventType"] == "COMPLETE" and ev["job"]["name"] == "flow.scale"]
    ran = [ev for ev in ends if ev["run"]["facets"]["zcas"]["status"] == "ran"]
    cached = [ev for ev in ends if ev["run"]["facets"]["zcas"]["status"] == "cached"]
    assert len(ran) == 1 and len(cached) == 1
    assert cached[0]["run"]["facets"]["zcas"]["cachedFrom"] == ran[0]["run"]["facets"]["zcas"]["runId"]
    assert cached[0]["outputs"] == ran[0]["outputs"]  # the same dataset, the same version


class _Elsewhere(http.server.BaseHTTPRequestHandler):
    """Records every request it gets, with its Authorization header."""

    seen: list[tuple[str, str | None]] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).seen.append((self.command, self.headers.get("Authorization")))
        self.send_response(200)
        self.end_headers()

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
def test_emit_refuses_a_redirect_and_sends_the_key_nowhere_else(events, code):
    """A collector answering the POST with a redirect to another host: one-line error, the
    event not counted as sent, and nothing (least of all the API key) sent to that host."""
    root, _ = events
    _Elsewhere.seen = []
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Elsewhere)

    class Mover(http.server.BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(code)
            self.send_header("Location", f"http://localhost:{other.server_address[1]}/steal")
            self.end_headers()

        def log_message(self, *args):
            pass

    mover = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Mover)
    for s in (other, mover):
        threading.Thread(target=s.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{mover.server_address[1]}/api/v1/lineage"
        res = run_zcas("log", "--emit", url, cwd=root, env={"OPENLINEAGE_API_KEY": "ol-secret-key"})
        assert_one_line_error(res, "redirect", f"HTTP {code}")
        assert "sent 0 of" in res.err and "ol-secret-key" not in res.err + res.out
        assert _Elsewhere.seen == []
    finally:
        for s in (other, mover):
            s.shutdown()
            s.server_close()


def test_emit_url_with_credentials_is_refused_without_echoing_them(events, stub):
    root, _ = events
    _, url = stub
    bad = url.replace("http://", "http://alice:hunter2pass@")
    res = run_zcas("log", "--emit", bad, cwd=root)
    assert_one_line_error(res, "credentials")
    assert "hunter2pass" not in res.err + res.out and _Stub.received == []

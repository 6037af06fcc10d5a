"""zcas log and show: every output format, for scripts and for people."""

import json

import pytest

from tests.conftest import assert_one_line_error

PIPE = """
[steps.a]
cmd = "sh -c '(cat raw.txt; echo a) > a.txt'"
inputs = ["raw.txt"]
outputs = ["a.txt"]

[steps.b]
cmd = "sh -c 'cat a.txt a.txt > b.txt'"
inputs = ["a.txt"]
outputs = ["b.txt"]

[steps.bad]
cmd = "sh -c 'exit 4'"
"""


@pytest.fixture
def ran(repo_dir, zcas):
    (repo_dir / "zcas.toml").write_text(PIPE)
    (repo_dir / "raw.txt").write_text("raw\n")
    zcas("run", cwd=repo_dir)
    return repo_dir


def test_log_lines_and_filters(ran, zcas):
    lines = zcas("log", cwd=ran).out.splitlines()
    assert len(lines) == 3 and {ln.split()[-1] for ln in lines} == {"a", "b", "bad"}
    assert len(lines[0].split()[0]) == 12
    assert zcas("log", "-n", "1", cwd=ran).out.count("\n") == 1
    assert [ln.split()[-1] for ln in zcas("log", "--step", "b", cwd=ran).out.splitlines()] == ["b"]
    assert zcas("log", "--since", "1h", cwd=ran).out.count("\n") == 3
    assert_one_line_error(zcas("log", "--since", "soon", cwd=ran), "invalid duration")


def test_provenance_formats(ran, zcas):
    g = json.loads(zcas("log", "b.txt", "--json", cwd=ran).out)
    assert sorted(r["step"] for r in g["runs"]) == ["a", "b"]
    assert {"raw.txt"} in [set(a["paths"]) for a in g["artifacts"]]
    dot = zcas("log", "b.txt", "--format", "dot", cwd=ran).out
    assert dot.startswith("digraph lineage {") and dot.rstrip().endswith("}") and dot.count("->") == 4
    mm = zcas("log", "b.txt", "--format", "mermaid", cwd=ran).out
    assert mm.startswith("flowchart LR") and mm.count("-->") == 4
    tree = zcas("log", "b.txt", "--graph", cwd=ran).out
    assert tree.splitlines()[0].startswith("b.txt (") and "raw.txt" in tree and "(source: no run produced it)" in tree
    used = json.loads(zcas("log", "raw.txt", "--used-by", "--json", cwd=ran).out)
    assert sorted(r["step"] for r in used["runs"]) == ["a", "b"]


def test_openlineage_events(ran, zcas):
    events = [json.loads(ln) for ln in zcas("log", "--format", "openlineage", cwd=ran).out.splitlines()]
    assert {e["eventType"] for e in events} == {"START", "COMPLETE", "FAIL"}  # a START before each end
    by_job = {e["job"]["name"]: e for e in events if e["eventType"] != "START"}
    a = by_job["a"]
    assert a["schemaURL"].endswith("#/$defs/RunEvent") and a["producer"].startswith("https://")
    assert a["job"]["namespace"].startswith("file://")
    assert [d["name"] for d in a["inputs"]] == ["raw.txt"] and [d["name"] for d in a["outputs"]] == ["a.txt"]
    a_txt = zcas("add", "--json", "a.txt", cwd=ran)
    assert a["outputs"][0]["facets"]["version"]["datasetVersion"] == json.loads(a_txt.out)[0]["id"]
    assert by_job["bad"]["eventType"] == "FAIL"
    import uuid

    uuid.UUID(a["run"]["runId"])  # a valid UUID


def test_show(ran, zcas):
    rid = json.loads(zcas("log", "--json", "--step", "a", cwd=ran).out)[0]["id"]
    out = zcas("show", rid[:10], cwd=ran).out
    assert f"run       {rid}" in out and "step      a (command)" in out and "raw.txt" in out
    j = json.loads(zcas("show", "--json", rid, cwd=ran).out)
    assert j["id"] == rid and j["status"] == "ran"
    art = json.loads(zcas("show", "--json", "a.txt", cwd=ran).out)
    assert art["produced_by"] == [rid] and len(art["used_by"]) == 1
    assert_one_line_error(zcas("show", "nosuchthing", cwd=ran), "unknown tag or id")


def test_versions_of_a_path_tag_a_path_and_add_with_a_tag(repo_dir, zcas):
    """Issue 13: `log PATH --versions`, `tag NAME PATH` (its latest version), `add --tag`."""
    import json

    f = repo_dir / "data.csv"
    f.write_text("v1\n")
    v1 = zcas("add", "data.csv", "--tag", "first", cwd=repo_dir).out.split()[0]
    f.write_text("v2\n")
    v2 = zcas("add", "data.csv", cwd=repo_dir).out.split()[0]
    rows = zcas("log", "data.csv", "--versions", cwd=repo_dir).out.splitlines()
    assert [r.split()[0] for r in rows] == [v2[:12], v1[:12]] and all("added" in r for r in rows), rows
    js = json.loads(zcas("log", "data.csv", "--versions", "--json", "-n", "1", cwd=repo_dir).out)
    assert [v["id"] for v in js] == [v2]
    assert zcas("tag", "latest", "data.csv", cwd=repo_dir).code == 0
    assert zcas("cat", "latest", cwd=repo_dir).out == "v2\n" and zcas("cat", "first", cwd=repo_dir).out == "v1\n"
    r = zcas("add", "data.csv", "other", "--tag", "x", cwd=repo_dir)
    assert r.code == 2 and "one PATH" in r.err, r
    r = zcas("log", "nothing.csv", "--versions", cwd=repo_dir)
    assert r.code == 1 and "no recorded versions" in r.err, r


def test_lineage_of_a_path_follows_the_run_behind_its_latest_version(repo_dir, zcas):
    """Issue 13: two runs wrote the same bytes to one path; its lineage is that of the run
    that wrote the version there now (--all: both)."""
    import json

    (repo_dir / "x.txt").write_text("x\n")
    (repo_dir / "y.txt").write_text("y\n")
    for src in ("x.txt", "y.txt"):
        r = zcas("run", "-i", src, "-o", "m.json", "--", "sh", "-c", f"cat {src} > /dev/null; echo same > m.json", cwd=repo_dir)
        assert r.code == 0, r
    g = json.loads(zcas("log", "m.json", "--json", cwd=repo_dir).out)
    assert [r["cmd"][-1] for r in g["runs"]] == ["cat y.txt > /dev/null; echo same > m.json"], g
    assert g["root"] in {a["id"] for a in g["artifacts"]}
    graph = zcas("log", "--graph", "m.json", cwd=repo_dir).out
    assert graph.splitlines()[0].startswith("m.json (") and "y.txt" in graph and "x.txt" not in graph, graph
    g = json.loads(zcas("log", "m.json", "--json", "--all", cwd=repo_dir).out)
    assert sorted(r["cmd"][-1] for r in g["runs"]) == ["cat x.txt > /dev/null; echo same > m.json",
                                                       "cat y.txt > /dev/null; echo same > m.json"]

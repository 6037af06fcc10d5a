"""Issue 13 point 8: forgetting versions and runs (`zcas forget`, `zcas gc --keep-*`).

Through the real CLI: exit codes, what is printed, and the bytes left in the store."""

from __future__ import annotations

import hashlib
import json
import os

from tests.conftest import assert_one_line_error


def _add_versions(zcas, repo_dir, name: str, contents: list[str]) -> list[str]:
    ids = []
    for text in contents:
        (repo_dir / name).write_text(text)
        r = zcas("add", name, cwd=repo_dir)
        assert r.code == 0, r
        ids.append(r.out.split()[0])
    return ids


def _stored(zcas, repo_dir, oid: str) -> bool:
    r = zcas("cat", oid, cwd=repo_dir)
    if r.code == 0:
        return True
    assert "object not found" in r.err, r
    return False


def _versions(zcas, repo_dir, path: str) -> list[dict]:
    r = zcas("log", path, "--versions", "--json", cwd=repo_dir)
    return json.loads(r.out) if r.code == 0 else []


def _store_state(repo_dir) -> dict[str, str]:
    """Every file under .zcas but locks, by content hash."""
    out = {}
    for top, _dirs, files in os.walk(repo_dir / ".zcas"):
        for f in files:
            p = os.path.join(top, f)
            if "lock" in f or f.endswith(".mdb"):
                continue
            out[os.path.relpath(p, repo_dir)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def test_forget_a_version_then_gc_removes_only_its_object(repo_dir, zcas):
    ids = _add_versions(zcas, repo_dir, "data.csv", ["v1\n", "v2\n", "v3\n"])
    rows = zcas("log", "data.csv", "--versions", cwd=repo_dir).out.splitlines()
    assert [r.split()[-1] for r in rows] == ["@3", "@2", "@1"], rows
    assert [v["number"] for v in _versions(zcas, repo_dir, "data.csv")] == [3, 2, 1]

    r = zcas("forget", "data.csv@1", cwd=repo_dir)
    assert r.code == 0, r
    assert r.out.startswith(f"forgot data.csv@1  {ids[0][:12]}") and "added" in r.out, r
    assert [v["id"] for v in _versions(zcas, repo_dir, "data.csv")] == [ids[2], ids[1]]
    assert _stored(zcas, repo_dir, ids[0])  # forgetting deletes nothing by itself

    r = zcas("gc", "--grace", "0", "--json", cwd=repo_dir)
    assert r.code == 0 and json.loads(r.out)["objects_removed"] == 1, r
    assert not _stored(zcas, repo_dir, ids[0])
    assert zcas("cat", ids[1], cwd=repo_dir).out == "v2\n"
    assert zcas("checkout", ids[1], str(repo_dir / "back.csv"), cwd=repo_dir).code == 0
    assert (repo_dir / "back.csv").read_text() == "v2\n"
    assert (repo_dir / "data.csv").read_text() == "v3\n"  # the working tree is never touched

    # reindex rebuilds from the store and the refs: the forgotten version does not come back
    assert zcas("reindex", cwd=repo_dir).code == 0
    assert [v["id"] for v in _versions(zcas, repo_dir, "data.csv")] == [ids[2], ids[1]]
    fsck = json.loads(zcas("fsck", "--json", cwd=repo_dir).out)
    assert fsck["ok"] and not fsck["missing"] and not fsck["dangling"], fsck

    # the same content recorded again later is a new version, not forgotten
    (repo_dir / "data.csv").write_text("v1\n")
    assert zcas("add", "data.csv", cwd=repo_dir).code == 0
    assert [v["id"] for v in _versions(zcas, repo_dir, "data.csv")] == [ids[0], ids[2], ids[1]]


def test_forget_the_only_version_of_a_file_in_the_working_tree(repo_dir, zcas):
    (oid,) = _add_versions(zcas, repo_dir, "only.bin", ["bytes\n"])
    r = zcas("forget", oid[:10], "--json", cwd=repo_dir)
    assert r.code == 0, r
    js = json.loads(r.out)
    assert [v["id"] for v in js["versions"]] == [oid] and js["runs"] == [] and not js["versions"][0]["still_named"]
    assert zcas("gc", "--grace", "0", cwd=repo_dir).code == 0
    assert not _stored(zcas, repo_dir, oid)
    assert (repo_dir / "only.bin").read_text() == "bytes\n"
    assert_one_line_error(zcas("log", "only.bin", "--versions", cwd=repo_dir), "no recorded versions", code=1)


def test_forget_a_tagged_version_keeps_the_object(repo_dir, zcas):
    ids = _add_versions(zcas, repo_dir, "t.txt", ["a\n", "b\n"])
    assert zcas("tag", "first", ids[0], cwd=repo_dir).code == 0
    r = zcas("forget", "t.txt@1", cwd=repo_dir)
    assert r.code == 0 and "still named" in r.out, r
    assert zcas("gc", "--grace", "0", cwd=repo_dir).code == 0
    assert zcas("cat", "first", cwd=repo_dir).out == "a\n"


def _pipeline(repo_dir) -> None:
    (repo_dir / "zcas.toml").write_text(
        '[steps.make]\ncmd = "echo {n} > out.txt"\noutputs = ["out.txt"]\nparams = { n = 1 }\n'
    )


def _run(zcas, repo_dir, n: int) -> tuple[str, str]:
    """(status line, run id) of `zcas run -p n=N`."""
    r = zcas("run", "-p", f"n={n}", "--json", cwd=repo_dir)
    assert r.code == 0, r
    (step,) = json.loads(r.out)
    return step["status"], step["run"]


def _out_id(zcas, repo_dir, rid: str) -> str:
    return json.loads(zcas("show", rid, "--json", cwd=repo_dir).out)["outputs"]["out.txt"]


def test_forget_a_run_makes_its_outputs_collectable(repo_dir, zcas):
    _pipeline(repo_dir)
    _, run1 = _run(zcas, repo_dir, 1)
    out1 = _out_id(zcas, repo_dir, run1)
    _, run2 = _run(zcas, repo_dir, 2)
    out2 = _out_id(zcas, repo_dir, run2)
    # its path version too: otherwise the version (written by the run) keeps nothing alive
    # by itself, but the run does
    r = zcas("forget", run1, cwd=repo_dir)
    assert r.code == 0 and f"forgot run {run1[:12]}" in r.out and "make" in r.out, r
    assert run1 not in zcas("log", "--json", cwd=repo_dir).out
    assert zcas("gc", "--grace", "0", cwd=repo_dir).code == 0
    assert not _stored(zcas, repo_dir, out1)
    assert not _stored(zcas, repo_dir, run1)  # the record itself
    assert _stored(zcas, repo_dir, out2)
    assert zcas("reindex", cwd=repo_dir).code == 0
    assert run1 not in zcas("log", "--json", cwd=repo_dir).out
    assert json.loads(zcas("fsck", "--json", cwd=repo_dir).out)["ok"]
    status, _ = _run(zcas, repo_dir, 1)
    assert status == "ran"  # its cache entry went with it
    status, _ = _run(zcas, repo_dir, 2)
    assert status == "cached"


def test_reindex_before_gc_does_not_resurrect_a_forgotten_run(repo_dir, zcas):
    _pipeline(repo_dir)
    _, run1 = _run(zcas, repo_dir, 1)
    _run(zcas, repo_dir, 2)
    assert zcas("forget", run1, cwd=repo_dir).code == 0
    assert zcas("reindex", cwd=repo_dir).code == 0  # the record is still in the store
    assert run1 not in zcas("log", "--json", cwd=repo_dir).out
    assert _run(zcas, repo_dir, 1)[0] == "ran"


def test_gc_keep_last_keeps_the_newest_and_the_tagged(repo_dir, zcas):
    ids = _add_versions(zcas, repo_dir, "d.txt", ["1\n", "2\n", "3\n", "4\n"])
    assert zcas("tag", "keep-me", ids[0], cwd=repo_dir).code == 0
    r = zcas("gc", "--keep-last", "2", "--grace", "0", "--json", cwd=repo_dir)
    assert r.code == 0, r
    js = json.loads(r.out)
    assert js["versions_forgotten"] == 1 and js["runs_forgotten"] == 0, js
    assert [v["id"] for v in js["forgotten"]["versions"]] == [ids[1]]
    assert [_stored(zcas, repo_dir, i) for i in ids] == [True, False, True, True]
    assert [v["id"] for v in _versions(zcas, repo_dir, "d.txt")] == [ids[3], ids[2], ids[0]]
    # --keep-tagged alone keeps only what is tagged
    r = zcas("gc", "--keep-tagged", "--grace", "0", cwd=repo_dir)
    assert r.code == 0 and "forgot 2 path versions and 0 runs" in r.out, r
    assert [v["id"] for v in _versions(zcas, repo_dir, "d.txt")] == [ids[0]]
    assert [_stored(zcas, repo_dir, i) for i in ids] == [True, False, False, False]
    assert (repo_dir / "d.txt").read_text() == "4\n"


def test_gc_keep_last_keeps_the_cache_hit_of_the_latest_run(repo_dir, zcas):
    _pipeline(repo_dir)
    _, first = _run(zcas, repo_dir, 1)
    _run(zcas, repo_dir, 2)
    status, latest = _run(zcas, repo_dir, 1)
    assert status == "cached"
    r = zcas("gc", "--keep-last", "1", "--grace", "0", "--json", cwd=repo_dir)
    assert r.code == 0, r
    js = json.loads(r.out)
    assert js["runs_forgotten"] == 1, js  # the run of n=2; the hit and the run it came from stay
    left = {x["id"] for x in json.loads(zcas("log", "--json", cwd=repo_dir).out)}
    assert left == {first, latest}, left
    assert _run(zcas, repo_dir, 1)[0] == "cached"
    assert _run(zcas, repo_dir, 2)[0] == "ran"
    assert (repo_dir / "out.txt").read_text() == "2\n"


def test_gc_keep_within_counts_back_from_the_newest_version(repo_dir, zcas):
    ids = _add_versions(zcas, repo_dir, "w.txt", ["old\n", "mid\n", "new\n"])
    hist = repo_dir / ".zcas" / "history.jsonl"
    lines = [json.loads(x) for x in hist.read_text().splitlines()]
    day = 86400.0
    base = lines[-1]["time"] - 400 * day  # the newest version itself is a year old
    for line, age in zip(lines, (40, 20, 0), strict=True):
        line["time"] = base - age * day
    hist.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert zcas("reindex", cwd=repo_dir).code == 0
    r = zcas("gc", "--keep-within", "30d", "--dry-run", "--grace", "0", cwd=repo_dir)
    assert r.code == 0, r
    assert f"would forget w.txt@1  {ids[0][:12]}" in r.out and "would forget 1 path versions and 0 runs" in r.out, r
    assert "would remove 1 objects" in r.out, r
    assert len(_versions(zcas, repo_dir, "w.txt")) == 3


def test_dry_runs_change_nothing(repo_dir, zcas):
    ids = _add_versions(zcas, repo_dir, "d.txt", ["1\n", "2\n", "3\n"])
    _pipeline(repo_dir)
    _run(zcas, repo_dir, 1)
    _run(zcas, repo_dir, 2)
    before = _store_state(repo_dir)
    log_before = zcas("log", "--json", cwd=repo_dir).out
    r = zcas("gc", "--keep-last", "1", "--dry-run", "--grace", "0", "--json", cwd=repo_dir)
    js = json.loads(r.out)
    assert js["dry_run"] and js["versions_forgotten"] >= 2 and js["runs_forgotten"] == 1 and js["objects_removed"] > 0
    r = zcas("forget", "d.txt@1", "d.txt@2", "--dry-run", cwd=repo_dir)
    assert r.code == 0 and r.out.count("would forget d.txt@") == 2, r
    assert _store_state(repo_dir) == before
    assert not (repo_dir / ".zcas" / "forgotten.jsonl").exists()
    assert zcas("log", "--json", cwd=repo_dir).out == log_before
    assert all(_stored(zcas, repo_dir, i) for i in ids)


def test_default_gc_forgets_nothing(repo_dir, zcas):
    ids = _add_versions(zcas, repo_dir, "d.txt", ["1\n", "2\n", "3\n"])
    _pipeline(repo_dir)
    _run(zcas, repo_dir, 1)
    _run(zcas, repo_dir, 2)
    runs = zcas("log", "--json", cwd=repo_dir).out
    r = zcas("gc", "--grace", "0", "--json", cwd=repo_dir)
    js = json.loads(r.out)
    assert js["objects_removed"] == 0 and js["versions_forgotten"] == 0 and js["runs_forgotten"] == 0, js
    assert js["forgotten"] == {"versions": [], "runs": []}
    r = zcas("gc", "--grace", "0", cwd=repo_dir)
    assert r.out.startswith("removed 0 objects") and "forgot" not in r.out, r
    assert all(_stored(zcas, repo_dir, i) for i in ids)
    assert zcas("log", "--json", cwd=repo_dir).out == runs
    assert not (repo_dir / ".zcas" / "forgotten.jsonl").exists()


def test_forget_bad_input_is_one_line(repo_dir, zcas):
    _add_versions(zcas, repo_dir, "d.txt", ["1\n", "2\n"])
    assert_one_line_error(zcas("forget", "d.txt@0", cwd=repo_dir), "start at 1", code=2)
    assert_one_line_error(zcas("forget", "d.txt@5", cwd=repo_dir), "has 2 recorded versions: no @5", code=1)
    assert_one_line_error(zcas("forget", "nope.txt@1", cwd=repo_dir), "no recorded versions", code=1)
    assert_one_line_error(zcas("forget", "abc", cwd=repo_dir), "too short", code=2)
    assert_one_line_error(zcas("forget", "ffffffff", cwd=repo_dir), "nothing recorded under", code=1)
    assert_one_line_error(zcas("forget", "no-such-tag", cwd=repo_dir), "unknown tag or id", code=1)
    assert zcas("forget", cwd=repo_dir).code == 2
    assert zcas("gc", "--keep-last", "0", cwd=repo_dir).code == 2
    assert_one_line_error(zcas("gc", "--keep-within", "soon", cwd=repo_dir), "invalid duration", code=2)
    assert len(_versions(zcas, repo_dir, "d.txt")) == 2
    assert not (repo_dir / ".zcas" / "forgotten.jsonl").exists()

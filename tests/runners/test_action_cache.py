"""Issue 19: remote lookups through the action cache (``ac/<key>``), at any remote size.

Requests are counted at the object-store backend (every remote request goes through
``ObstoreBackend``), so "one GET per missing key" is asserted, not assumed."""

from __future__ import annotations

import collections
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import run_zcas
from zcas.cas import codec
from zcas.cas.objstore import ObstoreBackend
from zcas.lineage import actions

CMD = ["sh", "-c", "echo hello > out.txt; echo x >> ran.log"]


def _repo(path, url):
    path.mkdir(parents=True, exist_ok=True)
    assert run_zcas("init", cwd=path).code == 0
    assert run_zcas("remote", "add", "origin", url, cwd=path).code == 0
    return path


def _ran(path) -> int:
    log = path / "ran.log"
    return len(log.read_text().split()) if log.exists() else 0


@pytest.fixture
def remote(tmp_path):
    return tmp_path / "remote", f"file://{tmp_path / 'remote'}"


_COUNTED = """
import json, os, sys
from zcas.cas.objstore import ObstoreBackend
log = []
for name in ("get", "get_range", "get_ranges", "get_bounded", "stream", "put", "put_path", "delete", "list", "info",
             "list_after"):
    orig = getattr(ObstoreBackend, name)
    def counted(self, *a, _orig=orig, _name=name, **kw):
        log.append((_name, a[0] if a else kw.get("key", kw.get("prefix", ""))))
        return _orig(self, *a, **kw)
    setattr(ObstoreBackend, name, counted)
from zcas.cli import main
sys.argv = ["zcas", *sys.argv[2:]]
try:
    main()
finally:
    with open(os.environ["ZCAS_TEST_REQUESTS"], "w") as f:
        json.dump(log, f)
"""


def _counted(tmp_path, *args, cwd):
    """Run zcas in a subprocess, as ``run_zcas`` does, and return (result, requests made
    to remotes as [method, key])."""
    out = tmp_path / f"requests-{os.urandom(4).hex()}.json"
    p = subprocess.run([sys.executable, "-c", _COUNTED, "-", *args], cwd=cwd, capture_output=True, text=True,
                       env=dict(os.environ, ZCAS_TEST_REQUESTS=str(out), PYTHONPATH=os.pathsep.join(sys.path)))
    return p, [tuple(x) for x in json.loads(out.read_text())]


def _seed_segments(url: str, n: int) -> None:
    """A remote whose lineage has ``n`` segments (written through the library, as pushes
    would: each a valid segment of one valid record)."""
    from zcas.lineage.remote import _pack, _seg_key

    b = ObstoreBackend(url)
    for i in range(n):
        payload = _pack([_run_bytes(f"seed-{i}", i + 1)])
        b.put(_seg_key(payload), codec.encode(codec.KIND_RECORD, payload))


def _run_bytes(step: str, started_ns: int) -> bytes:
    """A valid run record (no cache key: it answers no lookup, and only lineage reads it)."""
    from zcas.lineage import serde
    from zcas.lineage.records import Run

    run = Run(step=step, kind="command", status="ran", started_ns=started_ns, ended_ns=started_ns + 1)
    return serde.canonical(dict(serde.unstructure(run), type="run"))


def test_a_miss_is_one_get_whatever_the_remote_holds(tmp_path, remote):
    _, url = remote
    _seed_segments(url, 300)
    b = _repo(tmp_path / "b", url)
    r, requests = _counted(tmp_path, "run", "-o", "out.txt", "--", *CMD, cwd=b)
    assert r.returncode == 0 and "ran:" in r.stdout, r
    assert [m for m, _ in requests] == ["get_bounded"], requests  # ac/<key>, nothing listed
    assert requests[0][1].startswith("ac/")
    # a three-step pipeline of misses: one request per key
    (b / "zcas.toml").write_text(
        '[steps.a]\ncmd = "echo a > a.txt"\noutputs = ["a.txt"]\n'
        '[steps.b]\ncmd = "cat a.txt > b.txt"\ninputs = ["a.txt"]\noutputs = ["b.txt"]\n'
        '[steps.c]\ncmd = "cat b.txt > c.txt"\ninputs = ["b.txt"]\noutputs = ["c.txt"]\n')
    r, requests = _counted(tmp_path, "run", cwd=b)
    assert r.returncode == 0, r
    assert collections.Counter(m for m, _ in requests) == {"get_bounded": 3}, requests


def test_a_hit_reads_its_entry_and_the_outputs_where_it_says_without_loading_indexes(tmp_path, remote):
    _, url = remote
    a = _repo(tmp_path / "a", url)
    assert run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    b = _repo(tmp_path / "b", url)
    r, requests = _counted(tmp_path, "run", "-o", "out.txt", "--", *CMD, cwd=b)
    assert r.returncode == 0 and "cached:" in r.stdout and _ran(b) == 0, r
    assert (b / "out.txt").read_text() == "hello\n"
    assert not any(m == "list" for m, _ in requests), requests  # no pack index was loaded
    assert [m for m, _ in requests] == ["get_bounded", "get_ranges"], requests  # the entry, the output's record
    # the teammate's run is indexed here: the next lookup is local
    os.unlink(b / "out.txt")
    r, requests = _counted(tmp_path, "run", "-o", "out.txt", "--", *CMD, cwd=b)
    assert "cached:" in r.stdout and requests == [], (r, requests)


def test_stale_hints_fall_back_to_the_indexes(tmp_path, remote):
    """After the pack a hint names is gone (a gc rewrote it), the hit still works."""
    root, url = remote
    a = _repo(tmp_path / "a", url)
    assert run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    (key,) = actions.keys(ObstoreBackend(url))
    b = ObstoreBackend(url)
    data = actions.get(b, key)
    _, _, raw, where = actions.decode(key, data)
    bogus = {o: e._replace(pack="0" * 64) for o, e in where.items()}
    b.delete(actions.entry_key(key))
    actions.put(b, key, raw, bogus)
    c = _repo(tmp_path / "c", url)
    r = run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=c)
    assert r.code == 0 and "cached:" in r.out and (c / "out.txt").read_text() == "hello\n", r


_PUSH = """
import subprocess, sys
repo = sys.argv[1]
r = subprocess.run([sys.executable, "-m", "zcas", "push"], cwd=repo, capture_output=True, text=True)
sys.exit(r.returncode and r.stderr)
"""


def test_two_pushes_of_one_key_at_once_both_succeed_and_a_third_repository_hits(tmp_path, remote):
    _, url = remote
    repos = [_repo(tmp_path / n, url) for n in ("a", "b")]
    for r in repos:
        assert run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=r).code == 0
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    procs = [subprocess.Popen([sys.executable, "-c", _PUSH, str(r)], env=env) for r in repos]
    assert [p.wait() for p in procs] == [0, 0]
    assert len(actions.keys(ObstoreBackend(url))) == 1  # one entry: the first push's
    c = _repo(tmp_path / "c", url)
    r = run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=c)
    assert r.code == 0 and "cached:" in r.out and _ran(c) == 0, r
    assert (c / "out.txt").read_text() == "hello\n"


def _entry_of_one_push(tmp_path, url):
    a = _repo(tmp_path / "a", url)
    assert run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    b = ObstoreBackend(url)
    (key,) = actions.keys(b)
    return b, key


@pytest.mark.parametrize("how", ["other-key", "not-json", "no-run", "not-a-record-object", "oversize", "failed-run"])
def test_attack_hostile_action_cache_entry_is_no_hit(tmp_path, remote, how):
    """An entry that does not validate is ignored, with one warning, and the step reruns;
    nothing is written outside the step's outputs."""
    _, url = remote
    b, key = _entry_of_one_push(tmp_path, url)
    _, rec, raw, where = actions.decode(key, actions.get(b, key))
    if how == "other-key":  # a valid entry of another command's run, under this step's key
        a = tmp_path / "a"
        assert run_zcas("run", "-o", "out.txt", "--", "sh", "-c", "echo evil > out.txt", cwd=a).code == 0
        assert run_zcas("push", cwd=a).code == 0
        (other,) = set(actions.keys(b)) - {key}
        b.delete(actions.entry_key(key))
        b.put(actions.entry_key(key), actions.get(b, other))
    else:
        b.delete(actions.entry_key(key))
        if how == "not-json":
            b.put(actions.entry_key(key), codec.encode(codec.KIND_RECORD, b"{not json"))
        elif how == "no-run":
            b.put(actions.entry_key(key), codec.encode(codec.KIND_RECORD, json.dumps({"v": 1}).encode()))
        elif how == "not-a-record-object":
            b.put(actions.entry_key(key), codec.encode(codec.KIND_BLOB, raw))
        elif how == "oversize":
            b.put(actions.entry_key(key), b"\0" * (actions.MAX_ENTRY + 1))
        elif how == "failed-run":
            from zcas.lineage import serde

            bad = serde.canonical(dict(json.loads(raw), status="failed"))
            actions.put(b, key, bad, where)
    c = _repo(tmp_path / "c", url)
    r = run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=c)
    assert r.code == 0 and "ran:" in r.out and _ran(c) == 1, r
    assert "action cache entry" in r.err and len(r.err.strip().splitlines()) == 1, r.err
    assert (c / "out.txt").read_text() == "hello\n"


def test_a_pull_lists_only_segments_named_after_its_cursor(tmp_path, remote):
    """The second pull asks for lineage and history keys after its cursor and reads no
    segment; one named long before the cursor (a writer whose clock is days behind) is
    read by ``pull --full``; a segment in the old name format is read by a first pull."""
    from zcas.cas.oid import hash_bytes
    from zcas.lineage.remote import _pack

    _, url = remote
    _seed_segments(url, 50)
    a = _repo(tmp_path / "a", url)
    (a / "data.csv").write_text("x\n")
    assert run_zcas("add", "data.csv", cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0  # a history segment too
    b = _repo(tmp_path / "b", url)
    r, requests = _counted(tmp_path, "pull", "--json", cwd=b)
    assert r.returncode == 0 and json.loads(r.stdout)["runs"] == 50, r
    assert json.loads(r.stdout)["history"] == 1, r
    r, requests = _counted(tmp_path, "pull", "--json", cwd=b)
    assert r.returncode == 0 and json.loads(r.stdout)["runs"] == 0, r
    listed = [(m, k) for m, k in requests if m.startswith("list")]
    assert ("list_after", "lineage/") in listed and ("list_after", "history/") in listed, listed
    assert ("list", "lineage/") not in listed and ("list", "history/") not in listed, listed
    assert not any(k.startswith("lineage/") for m, k in requests if not m.startswith("list")), requests

    backend = ObstoreBackend(url)

    def segment(step: str, name: str) -> None:
        payload = _pack([_run_bytes(step, 7)])
        backend.put(f"lineage/{name.format(hash_bytes(payload).hex())}", codec.encode(codec.KIND_RECORD, payload))

    segment("late-clock", "t-0000000000000001-{}")  # named in 1970: before the cursor's window
    segment("old-format", "seg-{}")
    assert json.loads(run_zcas("pull", "--json", cwd=b).out)["runs"] == 0
    assert json.loads(run_zcas("pull", "--full", "--json", cwd=b).out)["runs"] == 2
    steps = {x["step"] for x in json.loads(run_zcas("log", "--json", cwd=b).out)}
    assert {"late-clock", "old-format"} <= steps
    c = _repo(tmp_path / "c", url)  # a first pull lists everything
    assert json.loads(run_zcas("pull", "--json", cwd=c).out)["runs"] == 52
    # gc folds every segment, old format included, into new ones named by time
    assert run_zcas("gc", "--remote", "origin", "--grace", "0", cwd=c).code == 0
    names = os.listdir(tmp_path / "remote" / "lineage")
    assert names and all(n.startswith("t-") for n in names), names
    d = _repo(tmp_path / "d", url)
    assert json.loads(run_zcas("pull", "--json", cwd=d).out)["runs"] == 52


def test_a_push_of_named_objects_writes_entries_only_for_runs_whose_outputs_went(tmp_path, remote):
    _, url = remote
    cmd = ["sh", "-c", "echo hello > out.txt"]
    a = _repo(tmp_path / "a", url)
    assert run_zcas("run", "-o", "out.txt", "--", *cmd, cwd=a).code == 0
    (a / "data.csv").write_text("d\n")
    oid = run_zcas("add", "data.csv", cwd=a).out.split()[0]
    assert run_zcas("tag", "d1", oid, cwd=a).code == 0
    assert run_zcas("push", "d1", cwd=a).code == 0  # the run's record travels, its output does not
    assert actions.keys(ObstoreBackend(url)) == []  # so no lookup is sent after an absent output
    assert run_zcas("gc", "--remote", "origin", "--grace", "0", cwd=a).code == 0
    assert actions.keys(ObstoreBackend(url)) == []  # nor does a gc of the remote write one
    # a later run of the step (a hit here) is pushed with every pack: now there is an entry
    os.unlink(a / "out.txt")
    assert "cached:" in run_zcas("run", "-o", "out.txt", "--", *cmd, cwd=a).out
    assert run_zcas("push", cwd=a).code == 0
    assert len(actions.keys(ObstoreBackend(url))) == 1
    c = _repo(tmp_path / "c", url)
    r = run_zcas("run", "-o", "out.txt", "--", *cmd, cwd=c)
    assert r.code == 0 and "cached:" in r.out and (c / "out.txt").read_text() == "hello\n", r


def test_attack_a_segment_named_in_the_far_future_does_not_blind_later_pulls(tmp_path, remote):
    """One object named t-7fff... (or a writer whose clock runs years ahead) must not move
    the cursor past what is pushed afterwards."""
    root, url = remote
    a = _repo(tmp_path / "a", url)
    (a / "x.txt").write_text("1\n")
    assert run_zcas("add", "x.txt", cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    for prefix in ("lineage", "history", "packlog"):
        (root / prefix).mkdir(exist_ok=True)
        (root / prefix / f"t-7fffffffffffffff-{'0' * 64}").write_bytes(b"junk")
    b = _repo(tmp_path / "b", url)
    assert run_zcas("pull", cwd=b).code == 0
    (a / "y.txt").write_text("2\n")
    assert run_zcas("add", "y.txt", cwd=a).code == 0
    assert run_zcas("run", "-o", "z.txt", "--", "sh", "-c", "echo z > z.txt", cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    r = run_zcas("pull", "--json", cwd=b)
    assert r.code == 0, r
    got = json.loads(r.out)
    assert got["runs"] == 1 and got["history"] >= 1 and got["packs"] >= 1, got
    (version,) = json.loads(run_zcas("log", "y.txt", "--versions", "--json", cwd=b).out)
    assert run_zcas("cat", version["id"], cwd=b).out == "2\n"


def test_a_wrong_hint_below_a_folder_falls_back_for_what_is_still_missing(tmp_path, remote):
    """The tree comes through its (good) hint, its files' hints name a pack that is gone:
    the hit must still fetch the files, not fail the step."""
    _, url = remote
    cmd = ["sh", "-c", "mkdir -p out && echo a > out/a.txt && echo b > out/b.txt"]
    a = _repo(tmp_path / "a", url)
    assert run_zcas("run", "-o", "out", "--", *cmd, cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    b = ObstoreBackend(url)
    (key,) = actions.keys(b)
    _, rec, raw, where = actions.decode(key, actions.get(b, key))
    tree = bytes.fromhex(rec["outputs"]["out"])
    assert len(where) == 3 and tree in where
    bad = {o: (e if o == tree else e._replace(pack="0" * 64)) for o, e in where.items()}
    b.delete(actions.entry_key(key))
    actions.put(b, key, raw, bad)
    c = _repo(tmp_path / "c", url)
    r = run_zcas("run", "-o", "out", "--", *cmd, cwd=c)
    assert r.code == 0 and "cached:" in r.out, r
    assert (c / "out" / "a.txt").read_text() == "a\n" and (c / "out" / "b.txt").read_text() == "b\n"


def test_a_pull_with_a_cursor_asks_the_pack_log_not_every_pack(tmp_path, remote):
    """After a first pull, packs come from the log entries pushed since: the packs/ folder is
    not listed; a pack pushed by a zcas that wrote no log entry is found by --full."""
    root, url = remote
    a = _repo(tmp_path / "a", url)
    (a / "x.txt").write_text("1\n")
    assert run_zcas("add", "x.txt", cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    b = _repo(tmp_path / "b", url)
    assert run_zcas("pull", cwd=b).code == 0
    (a / "y.txt").write_text("2\n")
    y = run_zcas("add", "y.txt", cwd=a).out.split()[0]
    assert run_zcas("push", cwd=a).code == 0
    r, requests = _counted(tmp_path, "pull", "--json", cwd=b)
    assert r.returncode == 0 and json.loads(r.stdout)["packs"] == 1, r
    assert ("list", "packs/") not in requests and ("list_after", "packlog/") in requests, requests
    assert run_zcas("cat", y, cwd=b).out == "2\n"
    # a pack that arrived without a log entry (an older zcas's push): only --full sees it
    (a / "z.txt").write_text("3\n")
    z = run_zcas("add", "z.txt", cwd=a).out.split()[0]
    assert run_zcas("push", cwd=a).code == 0
    for entry in (root / "packlog").iterdir():
        entry.unlink()
    assert json.loads(run_zcas("pull", "--json", cwd=b).out)["packs"] == 0
    assert json.loads(run_zcas("pull", "--full", "--json", cwd=b).out)["packs"] == 1
    assert run_zcas("cat", z, cwd=b).out == "3\n"

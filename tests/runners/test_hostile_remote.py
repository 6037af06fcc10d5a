"""A hostile remote and careless local use, as the runner and the command line meet them.

Each test names the attack it covers (docs/reliability.md has the table). The remote is a
``file://`` folder: the attacker controls every byte in it.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
import threading

import pytest

from tests.conftest import assert_one_line_error, run_zcas

CMD = ["sh", "-c", "echo hello > out.txt; echo x >> ran.log"]


def _remote(tmp_path):
    return tmp_path / "remote", f"file://{tmp_path / 'remote'}"


def _repo(path, url):
    path.mkdir(parents=True, exist_ok=True)
    assert run_zcas("init", cwd=path).code == 0
    assert run_zcas("remote", "add", "origin", url, cwd=path).code == 0
    return path


def _publish_records(url: str, records: list[dict]) -> None:
    """Serve run records from the remote as a push would: in a lineage segment (what pull
    and log read) and as the action cache entry of each one's key (what a lookup reads),
    replacing whatever entry the key had: the attacker controls every byte."""
    from zcas.cas import codec
    from zcas.cas.objstore import ObstoreBackend
    from zcas.lineage import actions, serde
    from zcas.lineage.remote import _pack, _seg_key

    backend = ObstoreBackend(url)
    datas = [serde.canonical(dict(r, type="run")) for r in records]
    payload = _pack(datas)
    backend.put(_seg_key(payload), codec.encode(codec.KIND_RECORD, payload))
    for r, data in zip(records, datas, strict=True):
        if isinstance(r.get("cache_key"), str) and len(r["cache_key"]) == 64:
            backend.delete(actions.entry_key(r["cache_key"]))
            actions.put(backend, r["cache_key"], data, {})


def _record_of_last_run(path) -> dict:
    runs = json.loads(run_zcas("log", "--json", cwd=path).out)
    rec = dict(next(r for r in runs if r["status"] == "ran"))
    rec.pop("id")
    return rec


def _ran(path) -> int:
    log = path / "ran.log"
    return len(log.read_text().split()) if log.exists() else 0


@pytest.fixture
def poisoned(tmp_path):
    """Repository A ran the command and pushed its objects; the remote's lineage is then
    replaced by whatever record the test serves."""
    remote_dir, url = _remote(tmp_path)
    a = _repo(tmp_path / "a", url)
    assert run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    rec = _record_of_last_run(a)
    shutil.rmtree(remote_dir / "lineage")
    shutil.rmtree(remote_dir / "ac")
    return a, url, rec


@pytest.mark.parametrize("bad_name", ["../evil.txt", "/tmp/zcas-evil-abs.txt", ".zcas/config.toml", "sub/../../evil.txt"])
def test_attack_record_restores_outside_declared_outputs(tmp_path, poisoned, bad_name):
    """A record naming outputs the step does not declare is not a hit: nothing is written
    there, the step reruns, and fsck names the record."""
    a, url, rec = poisoned
    oid = rec["outputs"]["out.txt"]
    _publish_records(url, [dict(rec, outputs={"out.txt": oid, bad_name: oid}, started_ns=rec["started_ns"] + 1)])
    b = _repo(tmp_path / "b", url)
    config_before = (b / ".zcas" / "config.toml").read_bytes()
    r = run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=b)
    assert r.code == 0, r
    assert "ran:" in r.out and _ran(b) == 1
    assert (b / "out.txt").read_text() == "hello\n"
    assert not (tmp_path / "evil.txt").exists() and not os.path.exists("/tmp/zcas-evil-abs.txt")
    assert (b / ".zcas" / "config.toml").read_bytes() == config_before
    assert run_zcas("log", "--remote", "origin", cwd=b).code == 0  # the remote's lineage, taken in
    r = run_zcas("fsck", cwd=b)
    assert "unsafe run" in r.out and bad_name in r.out, r


def test_attack_record_with_renamed_output_is_not_a_hit(tmp_path, poisoned):
    """Same key, but the record's output is another (safe-looking) path: still a rerun."""
    a, url, rec = poisoned
    oid = rec["outputs"]["out.txt"]
    _publish_records(url, [dict(rec, outputs={"other.txt": oid}, started_ns=rec["started_ns"] + 1)])
    b = _repo(tmp_path / "b", url)
    assert run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=b).code == 0
    assert _ran(b) == 1 and not (b / "other.txt").exists()


def test_a_genuine_remote_record_is_still_a_hit(tmp_path, poisoned):
    """The control for the two attacks above: the untampered record is used."""
    a, url, rec = poisoned
    _publish_records(url, [rec])
    b = _repo(tmp_path / "b", url)
    r = run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=b)
    assert r.code == 0 and "cached:" in r.out, r
    assert _ran(b) == 0 and (b / "out.txt").read_text() == "hello\n"
    assert "unsafe run" not in run_zcas("fsck", cwd=b).out


# -- pickle ----------------------------------------------------------------------------------


class _Boom:
    """Unpickling this writes a marker file: the stand-in for arbitrary code."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('pwned')",))


def test_attack_remote_record_names_pickle_for_non_pickle_step(tmp_path, monkeypatch):
    import zcas

    monkeypatch.delenv("ZCAS_DIR", raising=False)
    remote_dir, url = _remote(tmp_path)
    a, b = _repo(tmp_path / "a", url), _repo(tmp_path / "b", url)
    marker = str(tmp_path / "pwned")
    calls = []

    @zcas.step
    def make() -> dict:
        calls.append(1)
        return {"v": 1}

    @zcas.pipeline
    def pipe():
        return make()

    with zcas.Repository(a) as ra:
        assert pipe(repo=ra).load() == {"v": 1}
        rec = dict(ra.runs(step=make.name)[0].record)
        evil = ra.put(pickle.dumps(_Boom(marker))).id
    assert run_zcas("push", cwd=a).code == 0
    shutil.rmtree(remote_dir / "lineage")
    _publish_records(url, [dict(rec, outputs={"output": evil}, materializers={"output": "pickle@1"},
                                started_ns=rec["started_ns"] + 1)])
    calls.clear()
    with zcas.Repository(b) as rb:
        assert pipe(repo=rb).load() == {"v": 1}
        assert calls == [1]  # the poisoned hit was refused: the step ran
        assert not os.path.exists(marker)
        # the hostile record names pickle for that blob: get() refuses without the opt-in
        assert run_zcas("pull", "--all", cwd=b).code == 0
        with pytest.raises(zcas.ZcasError, match="refusing to unpickle"):
            rb.get(evil)
        assert not os.path.exists(marker)
        rb.get(evil, allow_pickle=True)  # the caller's explicit opt-in: it really was code
        assert os.path.exists(marker)


def test_pickle_step_still_round_trips_from_the_cache(tmp_path, monkeypatch):
    import zcas

    monkeypatch.chdir(tmp_path)
    assert run_zcas("init", cwd=tmp_path).code == 0

    @zcas.step(pickle=True)
    def make():
        return {1, 2}

    assert make() == {1, 2}
    assert make() == {1, 2}  # a hit, loaded with the step's own opt-in
    with zcas.Repository(tmp_path) as r:
        run = r.runs(step=make.name, status="cached")[0]
        with pytest.raises(zcas.ZcasError, match="refusing to unpickle"):
            run.load()
        assert run.load(allow_pickle=True) == {1, 2}


# -- secrets ---------------------------------------------------------------------------------

SECRET = "s3cr3t-Value-9f2d"


def _leaks(root, secret: str) -> list[str]:
    """Every file under ``root`` whose bytes, or whose decoded objects, hold ``secret``."""
    from zcas.cas import codec
    from zcas.cas.pack import decode_index

    found = []
    needle = secret.encode()
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            data = open(path, "rb").read()
            if needle in data:
                found.append(path)
            if name.endswith(".idx"):
                pack = open(path[:-4] + ".pack", "rb").read()
                for oid, off, length, _kind, _size in decode_index(name, data):
                    if needle in codec.decode(oid.hex(), pack[off : off + length])[1]:
                        found.append(f"{path}:{oid.hex()}")
            if name.startswith("seg-") and os.path.basename(dirpath) == "lineage":  # a remote's segment
                if needle in codec.decode(name, data)[1]:
                    found.append(path)
    return found


def test_attack_env_secret_never_stored_or_printed(tmp_path):
    remote_dir, url = _remote(tmp_path)
    a = _repo(tmp_path / "a", url)
    (a / "zcas.toml").write_text('[steps.s]\ncmd = "sh -c \'echo ok > o.txt\'"\noutputs = ["o.txt"]\nenv = ["TOKEN"]\n')
    env = {"TOKEN": SECRET}
    assert run_zcas("run", cwd=a, env=env).code == 0
    assert run_zcas("run", "-e", "TOKEN", "-o", "p.txt", "--", "sh", "-c", "echo p > p.txt", cwd=a, env=env).code == 0
    outs = [run_zcas(*args, cwd=a, env=env) for args in (
        ("log", "--json"), ("log", "--format", "openlineage"), ("log", "o.txt", "--json"), ("status",),
        ("status", "--json"), ("why", "s"), ("show", "o.txt"))]
    rid = json.loads(outs[0].out)[0]["id"]
    outs.append(run_zcas("show", rid, cwd=a, env=env))
    outs.append(run_zcas("show", rid, "--json", cwd=a, env=env))
    assert "TOKEN" in outs[-2].out
    for r in outs:
        assert r.code == 0 and SECRET not in r.out + r.err, r
    assert run_zcas("push", cwd=a).code == 0
    assert _leaks(a / ".zcas", SECRET) == [] and _leaks(remote_dir, SECRET) == []
    # a changed value reruns, and why says which variable changed, not to what
    r = run_zcas("why", "s", cwd=a, env={"TOKEN": SECRET + "2"})
    assert "environment variable TOKEN changed" in r.out and SECRET not in r.out, r
    r = run_zcas("run", cwd=a, env={"TOKEN": SECRET + "2"})
    assert "ran: s" in r.out, r
    assert _leaks(a / ".zcas", SECRET) == []


def test_attack_env_secret_of_python_step_never_stored(tmp_path, monkeypatch):
    import zcas

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOKEN", SECRET)
    assert run_zcas("init", cwd=tmp_path).code == 0

    @zcas.step(env=["TOKEN"])
    def f() -> int:
        return len(os.environ["TOKEN"])

    assert f() == len(SECRET)
    zcas.Repository(tmp_path).lineage.close()
    assert _leaks(tmp_path / ".zcas", SECRET) == []
    monkeypatch.setenv("TOKEN", SECRET + "x")
    assert f() == len(SECRET) + 1  # a new value is a new key


def test_attack_credentials_in_urls_never_stored(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    assert run_zcas("init", cwd=d).code == 0
    cfg = d / ".zcas" / "config.toml"
    for args in (("remote", "add", "x", "s3://bucket/p", "--endpoint", "http://user:pa55word@127.0.0.1:9000"),
                 ("remote", "add", "y", "s3://user:pa55word@bucket/p")):
        r = run_zcas(*args, cwd=d)
        assert_one_line_error(r, "holds credentials")
        assert "pa55word" not in r.err + r.out and "pa55word" not in cfg.read_text()
    r = run_zcas("init", "n", "--store", "s3://bucket/p", "--endpoint", "http://u:pa55word@127.0.0.1:9", cwd=tmp_path)
    assert_one_line_error(r, "holds credentials")
    assert "pa55word" not in r.err and not (tmp_path / "n" / ".zcas").exists()
    # a hand-edited config holding them is refused with the secret masked
    cfg.write_text(cfg.read_text() + '\n[remote.z]\nurl = "s3://b/p"\nendpoint = "http://u:pa55word@127.0.0.1:9"\n')
    for args in (("push", "z"), ("config", "list")):
        r = run_zcas(*args, cwd=d)
        assert_one_line_error(r, "credentials")
        assert "pa55word" not in r.err + r.out


# -- careless local use ----------------------------------------------------------------------


@pytest.mark.parametrize("args, fragment", [
    (("-o", "."), "repository root"),
    (("-o", ".zcas/objects"), "inside .zcas"),
    (("-o", "sub/.zcas"), "inside .zcas"),
    (("-i", "data", "-o", "data/out.txt"), "overlaps input"),
    (("-i", "data/in.txt", "-o", "data"), "overlaps input"),
    (("-i", "x.txt", "-o", "x.txt"), "overlaps input"),
])
def test_attack_output_clobbers_repository_or_input(repo_dir, args, fragment):
    (repo_dir / "data").mkdir()
    (repo_dir / "data" / "in.txt").write_text("in")
    (repo_dir / "x.txt").write_text("x")
    r = run_zcas("run", *args, "--", "sh", "-c", "echo ran > ran.log", cwd=repo_dir)
    assert_one_line_error(r, fragment, code=2)
    assert not (repo_dir / "ran.log").exists()
    (repo_dir / "zcas.toml").write_text(
        "[steps.s]\ncmd = \"sh -c 'echo ran > ran.log'\"\n"
        + "".join(f'{"inputs" if k == "-i" else "outputs"} = ["{v}"]\n' for k, v in zip(args[::2], args[1::2], strict=True)))
    assert_one_line_error(run_zcas("run", cwd=repo_dir), fragment, code=2)
    assert not (repo_dir / "ran.log").exists()


def test_attack_push_moves_a_teammates_remote_tag(tmp_path):
    _, url = _remote(tmp_path)
    a, b = _repo(tmp_path / "a", url), _repo(tmp_path / "b", url)
    (a / "f").write_text("mine")
    (b / "f").write_text("theirs")
    for repo in (a, b):
        assert run_zcas("add", "f", cwd=repo).code == 0
        assert run_zcas("tag", "v1", run_zcas("add", "f", cwd=repo).out.split()[0], cwd=repo).code == 0
    assert run_zcas("push", "v1", cwd=a).code == 0
    r = run_zcas("push", "v1", cwd=b)
    assert_one_line_error(r, "tag v1 on remote origin points to", "--force")
    c = _repo(tmp_path / "c", url)
    assert run_zcas("pull", "v1", cwd=c).code == 0
    assert run_zcas("cat", "v1", cwd=c).out == "mine"
    assert run_zcas("push", "v1", cwd=a).code == 0  # the same id again: nothing to refuse
    assert run_zcas("push", "--force", "v1", cwd=b).code == 0
    d = _repo(tmp_path / "d", url)
    assert run_zcas("pull", "v1", cwd=d).code == 0 and run_zcas("cat", "v1", cwd=d).out == "theirs"


def test_attack_concurrent_pushes_of_one_tag_cannot_both_succeed(tmp_path):
    from zcas.cas.errors import ZcasError
    from zcas.cas.repo import Repo
    from zcas.lineage.store import Lineage
    from zcas.remotes import Remote, pick

    _, url = _remote(tmp_path)
    a = _repo(tmp_path / "a", url)
    repo = Repo(str(a))
    lin = Lineage(repo)
    try:
        for trial in range(20):
            remotes = [Remote(repo, lin, pick(repo, None)) for _ in range(2)]
            barrier = threading.Barrier(2)
            results: list = [None, None]

            def push(i, barrier=barrier, remotes=remotes, trial=trial, results=results):
                barrier.wait()
                try:
                    remotes[i].push_tag(f"t{trial}", bytes([i]) * 32)
                    results[i] = "ok"
                except ZcasError as e:
                    results[i] = str(e)

            threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert results.count("ok") == 1, results
            winner = results.index("ok")
            assert remotes[0].remote_tag(f"t{trial}") == bytes([winner]) * 32
    finally:
        lin.close()
        repo.close()


def test_attack_damaged_remote_tag(tmp_path):
    remote_dir, url = _remote(tmp_path)
    a = _repo(tmp_path / "a", url)
    (remote_dir / "refs" / "tags").mkdir(parents=True)
    (remote_dir / "refs" / "tags" / "v1").write_bytes(b"\xff\xfe not an id")
    assert_one_line_error(run_zcas("pull", "v1", cwd=a), "tag v1 on remote origin is damaged")
    for bad in ("../../etc/passwd", "a/b", "\x1b[2Jx"):
        r = run_zcas("pull", bad, cwd=a)
        assert_one_line_error(r)
        assert "\x1b" not in r.err


# -- terminal injection and malformed local files -----------------------------------------


def test_attack_terminal_escape_in_names(tmp_path):
    remote_dir, url = _remote(tmp_path)
    a = _repo(tmp_path / "a", url)
    evil = "evil\x1b]0;pwned\x07\x1b[2J.txt"
    (a / "d").mkdir()
    (a / "d" / evil).write_text("x")
    tree = run_zcas("add", "d", cwd=a).out.split()[0]
    r = run_zcas("ls", tree, cwd=a)
    assert r.code == 0 and "\x1b" not in r.out and "\\x1b" in r.out, r
    # a run record from the remote whose step name and host carry escapes
    assert run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=a).code == 0
    rec = _record_of_last_run(a)
    _publish_records(url, [dict(rec, step="x\x1b[2J\x1b]0;owned\x07", host="h\x1b[31m", started_ns=1)])
    b = _repo(tmp_path / "b", url)
    assert run_zcas("pull", cwd=b).code == 0
    for args in (("log",), ("log", "--graph", "out.txt"), ("fsck",)):
        r = run_zcas(*args, cwd=b)
        assert "\x1b" not in r.out + r.err, (args, r)
    rid = json.loads(run_zcas("log", "--json", cwd=b).out)[0]["id"]
    r = run_zcas("show", rid, cwd=b)
    assert r.code == 0 and "\x1b" not in r.out and "\\x1b" in r.out, r


@pytest.mark.parametrize("content, fragment", [
    (b"\xff\xfe\x00garbage", "UTF-8"),
    (b"[core]\nformat = 1\n[store]\nurl = 5\n", "url"),
    (b'[core]\nformat = "one"\n', "format"),
    (b"store = 3\n[core]\nformat = 1\n", "store"),
])
def test_attack_malformed_repository_config(repo_dir, content, fragment):
    (repo_dir / ".zcas" / "config.toml").write_bytes(content)
    for args in (("log",), ("fsck",), ("run", "--", "true")):
        assert_one_line_error(run_zcas(*args, cwd=repo_dir), fragment)


def test_attack_worker_unpickles_an_input_without_opt_in(tmp_path):
    """A task on another process or worker enforces the same rule as the client."""
    from zcas.cas.chunking import store_buffer
    from zcas.cas.errors import ZcasError
    from zcas.cas.repo import Repo, init
    from zcas.runners.tasks import ArtifactRef, python_task

    init(str(tmp_path))
    repo = Repo(str(tmp_path))
    marker = str(tmp_path / "pwned")
    oid = store_buffer(repo.db, pickle.dumps(_Boom(marker))).hex()
    repo.db.flush()
    spec = {"objects": str(tmp_path / ".zcas" / "objects")}
    with pytest.raises(ZcasError, match="refusing to unpickle"):
        python_task(spec, len, [ArtifactRef((oid, "pickle@1", False))], {}, False, True, [])
    assert not os.path.exists(marker)
    python_task(spec, lambda v: 1, [ArtifactRef((oid, "pickle@1", True))], {}, False, True, [])
    assert os.path.exists(marker)  # with the opt-in it loads (and so runs) the pickle
    repo.close()


def test_attack_old_record_with_plaintext_env_never_leaves_in_a_whole_pack_push(tmp_path):
    """A record an older zcas wrote holds the value; it lives in a local pack, and a push of
    whole packs must still leave it here (the pack's other objects travel)."""
    from zcas.cas.repo import Repo
    from zcas.lineage.records import Run
    from zcas.lineage.store import Lineage

    remote_dir, url = _remote(tmp_path)
    a = _repo(tmp_path / "a", url)
    (a / "f.txt").write_text("data")
    fid = run_zcas("add", "f.txt", cwd=a).out.split()[0]
    repo = Repo(str(a))
    lin = Lineage(repo)
    lin.record_run(Run(step="old", kind="command", status="ran", env={"TOKEN": SECRET}, started_ns=1, ended_ns=2))
    lin.close()
    repo.close()
    assert _leaks(a / ".zcas" / "objects", SECRET)  # the old record is in a local pack
    r = run_zcas("push", cwd=a)
    assert r.code == 0, r
    assert _leaks(remote_dir, SECRET) == []
    b = _repo(tmp_path / "b", url)
    assert run_zcas("pull", cwd=b).code == 0
    assert run_zcas("cat", fid, cwd=b).out == "data"
    assert run_zcas("push", cwd=a).code == 0 and _leaks(remote_dir, SECRET) == []  # and again


def test_gc_after_indexing_a_remote_whose_outputs_were_never_fetched(tmp_path):
    """Runs indexed from a remote name outputs this repository never fetched: absent, not
    damaged, so gc still runs (it refuses only when something stored is damaged)."""
    _, url = _remote(tmp_path)
    a, b = _repo(tmp_path / "a", url), _repo(tmp_path / "b", url)
    assert run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    assert run_zcas("run", "-o", "other.txt", "--", "sh", "-c", "echo o > other.txt", cwd=b).code == 0
    assert len(json.loads(run_zcas("log", "--json", cwd=b).out)) == 1  # a lookup pulls no lineage
    assert len(json.loads(run_zcas("log", "--remote", "origin", "--json", cwd=b).out)) == 2  # now a's run is here
    r = run_zcas("gc", "--grace", "0", cwd=b)
    assert r.code == 0, r
    assert run_zcas("cat", _record_of_last_run(b)["outputs"]["other.txt"], cwd=b).out == "o\n"
    r = run_zcas("fsck", "--json", cwd=b)  # and fsck does not call them missing either
    rep = json.loads(r.out)
    assert r.code == 0 and rep["missing"] == [] and rep["absent"] >= 1, r


def test_attack_user_config_not_utf8_or_holding_credentials(repo_dir, tmp_path):
    user = tmp_path / "user.toml"
    user.write_bytes(b"[run]\njobs = 2\n\xff\xfe")
    assert_one_line_error(run_zcas("config", "list", cwd=repo_dir, env={"ZCAS_CONFIG": str(user)}), "not valid UTF-8")
    user.write_text('[store]\nurl = "s3://u:pa55word@bucket/p"\n')
    r = run_zcas("config", "list", cwd=repo_dir, env={"ZCAS_CONFIG": str(user)})
    assert_one_line_error(r, "store.url", "credentials")
    assert "pa55word" not in r.err


def test_why_names_env_changes_without_values_and_explains_the_upgrade():
    from zcas.lineage.redact import env_digest
    from zcas.runners.keys import explain

    old_zcas = {"env:TOKEN": json.dumps(SECRET)}  # records before digests held the value
    now = {"env:TOKEN": json.dumps(env_digest(SECRET))}
    lines = explain(old_zcas, now)
    assert lines == ["environment variable TOKEN is now keyed by a digest of its value (a one-time rerun after upgrading zcas)"]
    lines = explain(now, {"env:TOKEN": json.dumps(env_digest(SECRET + "x"))})
    assert lines == ["environment variable TOKEN changed"]
    assert explain(now, {"env:TOKEN": "null"}) == ["environment variable TOKEN changed (set -> unset)"]
    assert explain({}, now) == ["environment variable TOKEN added"]
    assert all(SECRET not in x for x in explain(old_zcas, {"env:TOKEN": "null"}))


def test_attack_huge_remote_tag_is_refused_without_reading_it(tmp_path):
    remote_dir, url = _remote(tmp_path)
    a = _repo(tmp_path / "a", url)
    (remote_dir / "refs" / "tags").mkdir(parents=True)
    with open(remote_dir / "refs" / "tags" / "v1", "wb") as f:
        f.truncate(1500 << 20)  # sparse: 1.5 GB that costs no disk
    probe = ("import resource, subprocess, sys; p = subprocess.run([sys.executable, '-m', 'zcas', 'pull', 'v1'],"
             " capture_output=True, text=True); print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
             " print(p.stderr, end='')")
    out = subprocess.run([sys.executable, "-c", probe], cwd=a, capture_output=True, text=True).stdout.splitlines()
    code, maxrss_kb = map(int, out[0].split())
    assert code == 1 and "tag v1 on remote origin is damaged" in out[1], out
    assert maxrss_kb < 400_000, maxrss_kb


def test_pull_looks_again_at_a_pack_it_refused_but_not_at_one_it_copied(tmp_path):
    """A pack copied object by object (it held objects already here) is remembered, so later
    pulls do not download it again; a pack with a refused record is not."""
    remote_dir, url = _remote(tmp_path)
    a, b = _repo(tmp_path / "a", url), _repo(tmp_path / "b", url)
    for repo in (a, b):
        (repo / "same.txt").write_text("shared")
        assert run_zcas("add", "same.txt", cwd=repo).code == 0
    (a / "new.txt").write_text("only in a")
    assert run_zcas("add", "new.txt", cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    r = run_zcas("pull", "--json", cwd=b)
    assert json.loads(r.out)["objects"] >= 1, r
    again = json.loads(run_zcas("pull", "--json", cwd=b).out)
    assert again["packs"] == 0 and again["bytes"] == 0, again
    # a pack whose record is damaged on the remote: refused, and looked at again next time
    c = _repo(tmp_path / "c", url)
    pack = next((remote_dir / "packs").glob("*.pack"))
    data = bytearray(pack.read_bytes())
    data[-3] ^= 0xFF
    pack.write_bytes(bytes(data))
    first = run_zcas("pull", "--json", cwd=c)
    assert "zcas: warning:" in first.err and json.loads(first.out)["rejected"] >= 1, first
    second = run_zcas("pull", "--json", cwd=c)
    assert json.loads(second.out)["packs"] >= 1 and "zcas: warning:" in second.err, second


# -- issue 13.1: a leftover output is never recorded as a fresh result -------------------------


@pytest.mark.parametrize("cmd, code", [(["sh", "-c", "true"], 1), (["sh", "-c", "echo partial > out.txt; exit 3"], 3)])
def test_stale_output_is_not_recorded_and_comes_back_when_the_step_fails(repo_dir, cmd, code):
    (repo_dir / "out.txt").write_text("stale\n")
    r = run_zcas("run", "-o", "out.txt", "--", *cmd, cwd=repo_dir)
    assert r.code == code and "failed:" in r.out, r
    assert (repo_dir / "out.txt").read_text() == "stale\n"  # the user's file is back
    assert [x["status"] for x in json.loads(run_zcas("log", "--json", cwd=repo_dir).out)] == ["failed"]


def test_stale_output_is_replaced_by_what_the_step_writes(repo_dir):
    (repo_dir / "out.txt").write_text("stale\n")
    (repo_dir / "d").mkdir()
    (repo_dir / "d" / "old.txt").write_text("old")
    cmd = ["sh", "-c", "mkdir -p d; test ! -e out.txt && test ! -e d/old.txt && echo hello > out.txt && echo n > d/new.txt"]
    r = run_zcas("run", "-o", "out.txt", "-o", "d", "--", *cmd, cwd=repo_dir)
    assert r.code == 0 and "ran:" in r.out, r
    assert (repo_dir / "out.txt").read_text() == "hello\n" and sorted(os.listdir(repo_dir / "d")) == ["new.txt"]
    # the hand-made bytes were kept: a version of the path that gc does not collect
    assert run_zcas("gc", "--grace", "0", cwd=repo_dir).code == 0
    import zcas

    with zcas.Repository(repo_dir) as repo:
        ids = {v.id for v in repo.history(repo_dir / "out.txt")}
    assert "stale\n" in {run_zcas("cat", i, cwd=repo_dir).out for i in ids}, ids
    os.unlink(repo_dir / "out.txt")
    r = run_zcas("run", "-o", "out.txt", "-o", "d", "--", *cmd, cwd=repo_dir)
    assert "cached:" in r.out and (repo_dir / "out.txt").read_text() == "hello\n", r


# -- issue 13.2 (in part): an unreachable remote is a warning, not a failed run ---------------


def test_unreachable_remote_warns_once_and_runs_locally(repo_dir):
    env = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_REGION": "us-east-1"}
    assert run_zcas("remote", "add", "origin", "s3://nobucket/p", "--endpoint", "http://127.0.0.1:9",
                    "--allow-http", cwd=repo_dir).code == 0
    (repo_dir / "zcas.toml").write_text(
        "[steps.a]\ncmd = \"sh -c 'echo a > a.txt'\"\noutputs = [\"a.txt\"]\n"
        "[steps.b]\ncmd = \"sh -c 'cat a.txt > b.txt'\"\ninputs = [\"a.txt\"]\noutputs = [\"b.txt\"]\n")
    r = run_zcas("run", cwd=repo_dir, env=env)
    assert r.code == 0 and "ran: a" in r.out and "ran: b" in r.out, r
    warnings = [ln for ln in r.err.splitlines() if ln.strip()]
    assert len(warnings) == 1 and warnings[0].startswith("zcas: warning: remote origin cannot be reached"), r
    (repo_dir / "a.txt").unlink()
    (repo_dir / ".zcas" / "config.toml").write_text(
        (repo_dir / ".zcas" / "config.toml").read_text() + "\n[run]\nremote_cache = false\n")
    os.unlink(repo_dir / "b.txt")
    (repo_dir / "zcas.toml").write_text((repo_dir / "zcas.toml").read_text().replace("echo a", "echo A"))
    r = run_zcas("run", cwd=repo_dir, env=env)
    assert r.code == 0 and r.err == "", r  # switched off: the remote is not even asked


def test_missing_credentials_are_named_without_probing_a_metadata_service(repo_dir):
    no_creds = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_WEB_IDENTITY_TOKEN_FILE": ""}
    assert run_zcas("remote", "add", "origin", "s3://bucket/p", cwd=repo_dir).code == 0
    assert_one_line_error(run_zcas("push", cwd=repo_dir, env=no_creds), "no credentials for remote origin",
                          "AWS_ACCESS_KEY_ID")
    r = run_zcas("run", "-o", "o.txt", "--", "sh", "-c", "echo o > o.txt", cwd=repo_dir, env=no_creds)
    assert r.code == 0 and "ran:" in r.out, r
    assert r.err.count("no credentials for remote origin") == 1 and len(r.err.strip().splitlines()) == 1, r
    assert run_zcas("remote", "add", "vm", "s3://bucket/q", "--instance-credentials", cwd=repo_dir).code == 0
    assert json.loads(run_zcas("remote", "list", "--json", cwd=repo_dir).out)["vm"]["instance_credentials"] is True


def test_attack_junk_pack_index_on_the_remote_does_not_break_named_pulls_or_hits(tmp_path, poisoned):
    a, url, rec = poisoned
    remote_dir = tmp_path / "remote"
    _publish_records(url, [rec])
    (remote_dir / "packs" / ("pack-" + "0" * 63 + "1.idx")).write_bytes(b"garbage")
    b = _repo(tmp_path / "b", url)
    r = run_zcas("run", "-o", "out.txt", "--", *CMD, cwd=b)
    assert r.code == 0 and "cached:" in r.out, r  # the hit still comes from the good pack
    assert "pack index" in r.err and len(r.err.strip().splitlines()) == 1, r
    oid = rec["outputs"]["out.txt"]
    c = _repo(tmp_path / "c", url)
    r = run_zcas("pull", oid, cwd=c)
    assert r.code == 0 and run_zcas("cat", oid, cwd=c).out == "hello\n", r


def test_plain_http_endpoint_needs_allow_http_at_remote_add(repo_dir):
    r = run_zcas("remote", "add", "x", "s3://b/p", "--endpoint", "http://127.0.0.1:9000", cwd=repo_dir,
                 env={"AWS_ALLOW_HTTP": ""})
    assert_one_line_error(r, "plain HTTP", "--allow-http", code=2)
    assert run_zcas("remote", "add", "x", "s3://b/p", "--endpoint", "http://127.0.0.1:9000", "--allow-http",
                    cwd=repo_dir).code == 0


def test_remote_modify_changes_settings_and_checks_them_like_add(repo_dir):
    assert run_zcas("remote", "add", "origin", "s3://b/p", cwd=repo_dir).code == 0
    r = run_zcas("remote", "add", "origin", "s3://b/q", cwd=repo_dir)
    assert_one_line_error(r, "already exists", "zcas remote modify origin")
    assert run_zcas("remote", "modify", "origin", "--url", "s3://b/q", "--region", "eu-west-1", cwd=repo_dir).code == 0
    listed = json.loads(run_zcas("remote", "list", "--json", cwd=repo_dir).out)
    assert listed["origin"] == {"url": "s3://b/q", "region": "eu-west-1"}
    assert_one_line_error(run_zcas("remote", "modify", "origin", "--endpoint", "http://u:pa55@127.0.0.1:9", cwd=repo_dir),
                          "holds credentials")
    assert_one_line_error(run_zcas("remote", "modify", "nope", "--url", "s3://b/q", cwd=repo_dir), "no remote named nope")
    assert "pa55" not in (repo_dir / ".zcas" / "config.toml").read_text()


# -- issue 13.7: tags and path history travel -------------------------------------------------


def test_push_and_pull_carry_tags_and_path_history(tmp_path):
    remote_dir, url = _remote(tmp_path)
    a, b = _repo(tmp_path / "a", url), _repo(tmp_path / "b", url)
    (a / "data.csv").write_text("v1\n")
    assert run_zcas("add", "data.csv", "--tag", "data-v1", cwd=a).code == 0
    (a / "data.csv").write_text("v2\n")
    assert run_zcas("add", "data.csv", "--tag", "data-v2", cwd=a).code == 0
    r = run_zcas("push", cwd=a)
    assert r.code == 0 and "2 tags, 2 path versions" in r.out, r
    r = run_zcas("pull", cwd=b)
    assert r.code == 0 and "2 tags, 2 path versions" in r.out and r.err == "", r
    assert run_zcas("cat", "data-v1", cwd=b).out == "v1\n" and run_zcas("cat", "data-v2", cwd=b).out == "v2\n"
    assert len(run_zcas("log", "data.csv", "--versions", cwd=b).out.splitlines()) == 2
    assert run_zcas("reindex", cwd=b).code == 0  # pulled history survives a rebuilt index
    assert len(run_zcas("log", "data.csv", "--versions", cwd=b).out.splitlines()) == 2
    again = run_zcas("push", cwd=a)
    assert "0 tags, 0 path versions" in again.out, again  # nothing sent twice
    # a tag that differs is reported and kept, both ways
    (b / "other").write_text("b's own\n")
    mine = run_zcas("add", "other", cwd=b).out.split()[0]
    assert run_zcas("tag", "-f", "data-v2", mine, cwd=b).code == 0
    r = run_zcas("push", cwd=b)
    assert r.code == 0 and "tag data-v2 on remote origin points to" in r.err and "not moved" in r.err, r
    r = run_zcas("pull", cwd=b)
    assert r.code == 0 and run_zcas("cat", "data-v2", cwd=b).out == "b's own\n", r
    assert run_zcas("cat", "data-v2", cwd=a).out == "v2\n"


def test_attack_hostile_history_segment_lines_are_skipped(tmp_path):
    from zcas.cas import codec
    from zcas.cas.objstore import ObstoreBackend
    from zcas.cas.oid import hash_bytes

    remote_dir, url = _remote(tmp_path)
    a = _repo(tmp_path / "a", url)
    good = {"path": "ok.txt", "id": "ab" * 32, "kind": "file", "time": 1.0}
    lines = [good, dict(good, path="../../etc/passwd"), dict(good, path="/abs"), dict(good, id="zz"),
             dict(good, kind="fifo"), dict(good, time=float("1e300")), "not json", dict(good, path="a\x00b")]
    payload = b"".join((x if isinstance(x, str) else json.dumps(x)).encode() + b"\n" for x in lines)
    ObstoreBackend(url).put(f"history/seg-{hash_bytes(payload).hex()}", codec.encode(codec.KIND_RECORD, payload))
    ObstoreBackend(url).put("history/seg-x", b"junk")  # not a segment name: ignored
    r = run_zcas("pull", cwd=a)
    assert r.code == 0 and "1 path versions" in r.out, r
    assert "7 lines skipped" in r.err and len(r.err.strip().splitlines()) == 1, r
    out = run_zcas("log", "ok.txt", "--versions", "--json", cwd=a).out
    assert [v["id"] for v in json.loads(out)] == ["ab" * 32]
    assert run_zcas("gc", "--grace", "0", cwd=a).code == 0  # a pulled version's absent object is no damage
    assert run_zcas("pull", cwd=a).err == ""  # said once


def test_the_history_of_an_executable_travels_with_push_and_pull(tmp_path):
    remote_dir, url = _remote(tmp_path)
    a, b = _repo(tmp_path / "a", url), _repo(tmp_path / "b", url)
    (a / "run.sh").write_text("#!/bin/sh\necho hi\n")
    os.chmod(a / "run.sh", 0o755)
    assert run_zcas("add", "run.sh", cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    r = run_zcas("pull", cwd=b)
    assert r.code == 0 and "1 path versions" in r.out and r.err == "", r  # an "exec" line is no hostile line
    assert len(run_zcas("log", "run.sh", "--versions", cwd=b).out.splitlines()) == 1

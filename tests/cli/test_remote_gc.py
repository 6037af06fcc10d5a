"""Issue 13 point 8, over a remote: `zcas gc --remote NAME`, its rules, and its lock.

Everything through the real CLI against a file:// remote: exit codes, what is printed,
and which files are left on the remote."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from tests.conftest import assert_one_line_error
from zcas.cas.local import LocalBackend
from zcas.cas.storelock import StoreLock


def _repo(zcas, path, url):
    path.mkdir()
    assert zcas("init", cwd=path).code == 0
    assert zcas("remote", "add", "origin", url, cwd=path).code == 0
    return path


def _add(zcas, repo, name, text):
    (repo / name).write_text(text)
    r = zcas("add", name, cwd=repo)
    assert r.code == 0, r
    return r.out.split()[0]


def _files(root) -> dict[str, str]:
    out = {}
    for top, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(top, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def _has(zcas, repo, oid) -> bool:
    """Does the remote hold ``oid``? (asked by fetching it into ``repo``)."""
    r = zcas("pull", "origin", oid, cwd=repo)
    return r.code == 0


@pytest.fixture
def remote(tmp_path):
    return tmp_path / "remote", f"file://{tmp_path}/remote"


def test_keep_last_on_remote_forgets_old_versions_and_collects_only_their_objects(tmp_path, zcas, remote):
    root, url = remote
    a = _repo(zcas, tmp_path / "a", url)
    ids = [_add(zcas, a, "data.csv", f"v{i}\n") for i in range(1, 4)]
    tagged = _add(zcas, a, "model.bin", "tagged\n")
    assert zcas("tag", "keep-me", tagged, cwd=a).code == 0
    _add(zcas, a, "model.bin", "newer\n")
    assert zcas("push", cwd=a).code == 0
    before = _files(root)

    r = zcas("gc", "--remote", "origin", "--grace", "0", "--keep-last", "1", "--dry-run", cwd=a)
    assert r.code == 0, r
    assert "would forget data.csv@1" in r.out and "would forget data.csv@2" in r.out
    assert "data.csv@3" not in r.out and "model.bin@1" not in r.out  # newest, and tagged
    assert _files(root) == before  # a dry run changes nothing

    r = zcas("gc", "--remote", "origin", "--grace", "0", "--keep-last", "1", "--json", cwd=a)
    assert r.code == 0, r
    rep = json.loads(r.out)
    assert rep["versions_forgotten"] == 2 and rep["objects_removed"] == 2 and rep["remote"] == "origin"
    assert not any(k.startswith("locks/") for k in _files(root))

    b = _repo(zcas, tmp_path / "b", url)
    assert zcas("pull", cwd=b).code == 0
    versions = json.loads(zcas("log", "data.csv", "--versions", "--json", cwd=b).out)
    assert [v["id"] for v in versions] == [ids[2]]
    assert not _has(zcas, b, ids[0]) and not _has(zcas, b, ids[1])
    assert zcas("cat", ids[2], cwd=b).out == "v3\n"
    assert zcas("cat", "keep-me", cwd=b).out == "tagged\n"
    assert zcas("fsck", cwd=b).code == 0
    # the local repository is untouched by a gc of the remote
    assert zcas("cat", ids[0], cwd=a).out == "v1\n"
    assert len(json.loads(zcas("log", "data.csv", "--versions", "--json", cwd=a).out)) == 3


def test_remote_retention_of_runs_collects_outputs_of_forgotten_runs(tmp_path, zcas, remote):
    root, url = remote
    a = _repo(zcas, tmp_path / "a", url)
    outs = []
    for i in range(3):
        (a / "in.txt").write_text(f"input {i}\n")
        r = zcas("run", "-i", "in.txt", "-o", "out.txt", "--", "sh", "-c", "tr a-z A-Z < in.txt > out.txt", cwd=a)
        assert r.code == 0, r
        outs.append(zcas("add", "out.txt", cwd=a).out.split()[0])
    assert zcas("push", cwd=a).code == 0
    r = zcas("gc", "--remote", "origin", "--grace", "0", "--keep-last", "1", "--json", cwd=a)
    assert r.code == 0, r
    rep = json.loads(r.out)
    assert rep["runs_forgotten"] == 2 and rep["actions_removed"] == 2, rep
    assert len(os.listdir(root / "ac")) == 1  # the kept run's action cache entry alone

    b = _repo(zcas, tmp_path / "b", url)
    assert zcas("pull", cwd=b).code == 0
    assert len(json.loads(zcas("log", "--json", cwd=b).out)) == 1  # only the kept run travelled
    assert not _has(zcas, b, outs[0]) and zcas("cat", outs[2], cwd=b).out == "INPUT 2\n"
    # the kept run is still a hit for a teammate; the forgotten one reruns
    (b / "in.txt").write_text("input 2\n")
    r = zcas("run", "-i", "in.txt", "-o", "out.txt", "--", "sh", "-c", "tr a-z A-Z < in.txt > out.txt", cwd=b)
    assert r.code == 0 and "cached" in r.out, r
    (b / "in.txt").write_text("input 0\n")
    r = zcas("run", "-i", "in.txt", "-o", "out.txt", "--", "sh", "-c", "tr a-z A-Z < in.txt > out.txt", cwd=b)
    assert r.code == 0 and "ran" in r.out, r


def test_push_after_remote_gc_does_not_send_collected_packs_again(tmp_path, zcas, remote):
    root, url = remote
    a = _repo(zcas, tmp_path / "a", url)
    old = _add(zcas, a, "data.csv", "old\n")
    _add(zcas, a, "data.csv", "new\n")
    assert zcas("push", cwd=a).code == 0
    assert zcas("gc", "--remote", "origin", "--grace", "0", "--keep-last", "1", cwd=a).code == 0
    after_gc = _files(root)
    r = zcas("push", "--json", cwd=a)
    assert r.code == 0 and json.loads(r.out)["packs"] == 0, r
    assert _files(root) == after_gc
    b = _repo(zcas, tmp_path / "b", url)
    assert not _has(zcas, b, old)


def test_push_sends_again_an_object_gc_dropped_once_a_new_run_names_it(tmp_path, zcas, remote):
    """The pack holding it was collected on the remote and is not sent whole: the object a
    new run's output shares with it must still reach the remote."""
    root, url = remote
    a = _repo(zcas, tmp_path / "a", url)
    old = _add(zcas, a, "data.csv", "same bytes\n")
    _add(zcas, a, "data.csv", "new\n")
    assert zcas("push", cwd=a).code == 0
    assert zcas("gc", "--remote", "origin", "--grace", "0", "--keep-last", "1", cwd=a).code == 0
    b = _repo(zcas, tmp_path / "b", url)
    assert not _has(zcas, b, old)
    r = zcas("run", "-o", "copy.txt", "--", "sh", "-c", "printf 'same bytes\\n' > copy.txt", cwd=a)
    assert r.code == 0, r
    r = zcas("push", "--json", cwd=a)
    assert r.code == 0 and json.loads(r.out)["objects"] >= 1, r
    c = _repo(zcas, tmp_path / "c", url)
    r = zcas("run", "-o", "copy.txt", "--", "sh", "-c", "printf 'same bytes\\n' > copy.txt", cwd=c)
    assert r.code == 0 and "cached" in r.out, r
    assert (c / "copy.txt").read_text() == "same bytes\n"


def test_gc_refuses_while_a_push_holds_the_remote_and_push_refuses_while_gc_does(tmp_path, zcas, remote):
    root, url = remote
    a = _repo(zcas, tmp_path / "a", url)
    _add(zcas, a, "data.csv", "v1\n")
    _add(zcas, a, "data.csv", "v2\n")
    assert zcas("push", cwd=a).code == 0
    before = _files(root)
    with StoreLock(LocalBackend(str(root)), "push", False, "remote origin"):
        r = zcas("gc", "--remote", "origin", "--grace", "0", "--keep-last", "1", cwd=a)
        assert_one_line_error(r, "remote origin is in use: push from")
    assert _files(root) == before  # nothing forgotten, nothing collected, no lock left
    _add(zcas, a, "data.csv", "v3\n")
    with StoreLock(LocalBackend(str(root)), "gc", True, "remote origin"):
        r = zcas("push", cwd=a)
        assert_one_line_error(r, "remote origin is garbage-collected: gc from")
    assert _files(root) == before  # nothing of the refused push was written
    assert zcas("push", cwd=a).code == 0


def test_gc_of_a_remote_with_an_unreadable_segment_changes_nothing(tmp_path, zcas, remote):
    root, url = remote
    a = _repo(zcas, tmp_path / "a", url)
    _add(zcas, a, "data.csv", "v1\n")
    _add(zcas, a, "data.csv", "v2\n")
    assert zcas("push", cwd=a).code == 0
    (root / "history" / ("seg-" + "0" * 64)).write_bytes(b"garbage")
    before = _files(root)
    r = zcas("gc", "--remote", "origin", "--grace", "0", "--keep-last", "1", cwd=a)
    assert_one_line_error(r, "gc of remote origin changed nothing", "history segment")
    assert _files(root) == before


def test_unknown_remote_is_one_line(repo_dir, zcas):
    r = zcas("gc", "--remote", "nowhere", cwd=repo_dir)
    assert_one_line_error(r, "no remote named nowhere")


_PUSHER = """
import os, subprocess, sys
repo, n = sys.argv[1], int(sys.argv[2])
name = f"data-{os.path.basename(repo)}.csv"  # a path of its own: keep-last counts versions per path
for i in range(n):
    with open(os.path.join(repo, name), "w") as f:
        f.write(f"{os.path.basename(repo)} {i}\\n")
    subprocess.run([sys.executable, "-m", "zcas", "add", name], cwd=repo, check=True, capture_output=True)
    r = subprocess.run([sys.executable, "-m", "zcas", "push"], cwd=repo, capture_output=True, text=True)
    ok = r.returncode == 0
    if not ok and "remote origin is garbage-collected" not in r.stderr:
        sys.exit("unexpected push failure: " + r.stderr)
    print("ok" if ok else "busy", flush=True)
"""


def test_concurrent_pushes_and_remote_gc_lose_nothing_pushed(tmp_path, zcas, remote):
    """Two teammates push in a loop while gc --grace 0 runs again and again: every push
    reported as done is whole on the remote at the end (a fresh clone pulls and verifies
    everything, and every newest version is there)."""
    root, url = remote
    repos = [_repo(zcas, tmp_path / n, url) for n in ("a", "b")]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    pushers = [subprocess.Popen([sys.executable, "-c", _PUSHER, str(r), "6"], stdout=subprocess.PIPE, text=True,
                                env=env) for r in repos]
    gcs = busy = 0
    while any(p.poll() is None for p in pushers):
        r = subprocess.run([sys.executable, "-m", "zcas", "gc", "--remote", "origin", "--grace", "0", "--keep-last",
                            "2"], cwd=repos[0], capture_output=True, text=True, env=env)
        assert r.returncode == 0 or "remote origin is in use" in r.stderr, r.stderr
        gcs += r.returncode == 0
        busy += r.returncode != 0
    results = [p.communicate()[0].split() for p in pushers]
    assert all(p.returncode == 0 for p in pushers), results
    assert gcs >= 1
    for r in repos:  # a last push of each: it must succeed now that nothing else runs
        assert zcas("push", cwd=r).code == 0
    c = _repo(zcas, tmp_path / "c", url)
    assert zcas("pull", cwd=c).code == 0
    assert zcas("fsck", cwd=c).code == 0
    for r in repos:
        newest = json.loads(zcas("log", f"data-{r.name}.csv", "--versions", "--json", cwd=r).out)[0]["id"]
        assert _has(zcas, c, newest)
        assert zcas("cat", newest, cwd=c).out == f"{r.name} 5\n"


def test_gc_on_an_s3_remote(tmp_path, s3_env, s3_url):
    """The same through an S3-protocol server: lock objects, mtimes and deletes as S3 does them."""
    from tests.conftest import run_zcas

    a = tmp_path / "a"
    a.mkdir()
    assert run_zcas("init", cwd=a).code == 0
    assert run_zcas("remote", "add", "origin", s3_url, cwd=a, env=s3_env).code == 0
    ids = []
    for text in ("one\n", "two\n", "three\n"):
        (a / "data.csv").write_text(text)
        ids.append(run_zcas("add", "data.csv", cwd=a).out.split()[0])
    assert run_zcas("push", cwd=a, env=s3_env).code == 0
    r = run_zcas("gc", "--remote", "origin", "--grace", "0", "--keep-last", "1", "--json", cwd=a, env=s3_env)
    assert r.code == 0, r
    assert json.loads(r.out)["objects_removed"] == 2
    b = tmp_path / "b"
    b.mkdir()
    assert run_zcas("init", cwd=b).code == 0
    assert run_zcas("remote", "add", "origin", s3_url, cwd=b, env=s3_env).code == 0
    assert run_zcas("pull", cwd=b, env=s3_env).code == 0
    assert run_zcas("cat", ids[2], cwd=b).out == "three\n"
    assert run_zcas("pull", "origin", ids[0], cwd=b, env=s3_env).code != 0
    assert run_zcas("push", "--json", cwd=a, env=s3_env).code == 0  # the lock was released


def test_a_teammate_does_not_take_the_remote_history_again_after_each_gc(tmp_path, zcas, remote):
    root, url = remote
    a = _repo(zcas, tmp_path / "a", url)
    b = _repo(zcas, tmp_path / "b", url)
    for i in range(3):
        _add(zcas, a, f"f{i}.txt", f"{i}\n")
        assert zcas("push", cwd=a).code == 0
        assert zcas("pull", cwd=b).code == 0
        assert zcas("gc", "--remote", "origin", "--grace", "0", cwd=a).code == 0
        assert zcas("pull", cwd=b).code == 0
    lines = (b / ".zcas" / "remotes" / "origin" / "history.jsonl").read_text().splitlines()
    assert len(lines) == 3, lines  # each version once, however many times gc rewrote the segments


def test_a_local_repack_does_not_bring_back_what_remote_gc_removed(tmp_path, zcas, remote):
    """Packs made by a local repack of packs already pushed are not sent whole (they would
    carry every version the remote's gc dropped); what a later run names of them still goes."""
    from zcas.repository import Repository

    root, url = remote
    a = _repo(zcas, tmp_path / "a", url)
    ids = [_add(zcas, a, "data.bin", os.urandom(20_000).hex()) for _ in range(5)]
    assert zcas("push", cwd=a).code == 0
    assert zcas("gc", "--remote", "origin", "--grace", "0", "--keep-last", "1", cwd=a).code == 0
    size_after_gc = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root / "packs") for f in fs)
    repo = Repository(str(a))
    try:
        assert repo.cas.db.repack(min_packs=2) >= 2  # the pushed packs, folded into a new one here
    finally:
        repo.close()
    r = zcas("push", "--json", cwd=a)
    assert r.code == 0 and json.loads(r.out)["packs"] == 0, r
    size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root / "packs") for f in fs)
    assert size <= size_after_gc + 4096, (size, size_after_gc)
    b = _repo(zcas, tmp_path / "b", url)
    assert not _has(zcas, b, ids[0])
    # a new run whose output is an old version's bytes: that object goes, on its own
    old = zcas("cat", ids[0], cwd=a).out
    (a / "old.txt").write_text(old)
    r = zcas("run", "-i", "old.txt", "-o", "copy.bin", "--", "cp", "old.txt", "copy.bin", cwd=a)
    assert r.code == 0, r
    assert zcas("push", cwd=a).code == 0
    c = _repo(zcas, tmp_path / "c", url)
    (c / "old.txt").write_text(old)
    r = zcas("run", "-i", "old.txt", "-o", "copy.bin", "--", "cp", "old.txt", "copy.bin", cwd=c)
    assert r.code == 0 and "cached:" in r.out and (c / "copy.bin").read_text() == old, r


def test_gc_drops_a_hostile_oversize_action_cache_entry_and_goes_on(tmp_path, zcas, remote):
    from zcas.lineage import actions

    root, url = remote
    a = _repo(zcas, tmp_path / "a", url)
    _add(zcas, a, "data.csv", "v1\n")
    assert zcas("push", cwd=a).code == 0
    (root / "ac").mkdir(exist_ok=True)
    (root / "ac" / ("e" * 64)).write_bytes(b"\0" * (actions.MAX_ENTRY + 1))
    r = zcas("gc", "--remote", "origin", "--grace", "0", "--json", cwd=a)
    assert r.code == 0 and json.loads(r.out)["actions_removed"] == 1, r
    assert not (root / "ac" / ("e" * 64)).exists()

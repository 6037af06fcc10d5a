"""Crash safety: SIGKILL `zcas add`, `zcas run`, a Python pipeline and `zcas push` at random
moments; after each kill fsck is clean, nothing partial is visible, no run record names a
missing object, and the next run completes with the same results as an undisturbed one.

ZCAS_TORTURE_TRIALS sets the trials per command (20 by default; 200 for a long run).
"""

import json
import os
import random
import time

from blake3 import blake3

from .harness import TRIALS, fsck_clean, kill_at, note, ok, zcas_cmd

PIPE = """
[steps.gen]
cmd = ["{py}", "-c", "import os; open('gen.bin','wb').write(os.urandom(3_000_000)); open('small.txt','w').write('x' * 5000)"]
outputs = ["gen.bin", "small.txt"]
params = {{ trial = {t} }}

[steps.digest]
cmd = ["{py}", "-c", "import hashlib; open('digest.txt','w').write(hashlib.sha256(open('gen.bin','rb').read()).hexdigest())"]
inputs = ["gen.bin"]
outputs = ["digest.txt"]
"""

FLOW = """
import zcas

@zcas.step
def make(trial: int) -> bytes:
    import os
    return os.urandom(2_000_000) + str(trial).encode()

@zcas.step
def size(b: bytes) -> int:
    return len(b)

@zcas.pipeline
def main(trial: int = 0):
    return size(make(trial))
"""


def _timed(cmd, cwd) -> float:
    t = time.perf_counter()
    ok(cmd, cwd)
    return time.perf_counter() - t


def _tree_files(root):
    out = {}
    for d, _, fs in os.walk(root):
        for f in fs:
            p = os.path.join(d, f)
            out[os.path.relpath(p, root)] = open(p, "rb").read()
    return out


def test_kill_add(repo_dir):
    rnd = random.Random(1)
    data = repo_dir / "data"
    data.mkdir()
    for i in range(150):
        (data / f"f{i:03}.txt").write_text(f"row {i}\n" * rnd.randint(10, 300))
    big = data / "big.bin"
    big.write_bytes(os.urandom(6 << 20))
    span = _timed(zcas_cmd("add", "data"), repo_dir)
    for t in range(TRIALS):
        (data / f"new{t}.bin").write_bytes(os.urandom(rnd.randint(1, 400_000)))
        big.write_bytes(os.urandom(6 << 20))
        kill_at(zcas_cmd("add", "data"), repo_dir, rnd.uniform(0, span * 1.2))
        fsck_clean(repo_dir)
        tree = json.loads(ok(zcas_cmd("add", "--json", "data"), repo_dir).stdout)[0]["id"]
        ok(zcas_cmd("checkout", tree, f"out{t}"), repo_dir)
        assert _tree_files(repo_dir / f"out{t}") == _tree_files(data)
        assert (repo_dir / f"out{t}" / "big.bin").read_bytes() == big.read_bytes()
        note("zcas add", trials=1, kills=1)
    fsck_clean(repo_dir)


def test_kill_run(repo_dir):
    import sys

    rnd = random.Random(2)
    (repo_dir / "zcas.toml").write_text(PIPE.format(py=sys.executable, t=-1))
    span = _timed(zcas_cmd("run"), repo_dir)
    for t in range(TRIALS):
        (repo_dir / "zcas.toml").write_text(PIPE.format(py=sys.executable, t=t))
        kill_at(zcas_cmd("run"), repo_dir, rnd.uniform(0, span * 1.2))
        fsck_clean(repo_dir)  # includes every object a recorded run names
        out = json.loads(ok(zcas_cmd("run", "--json"), repo_dir).stdout)
        assert {r["name"] for r in out} == {"gen", "digest"} and all(r["status"] in ("ran", "cached") for r in out)
        import hashlib

        gen = (repo_dir / "gen.bin").read_bytes()
        assert (repo_dir / "digest.txt").read_text() == hashlib.sha256(gen).hexdigest()
        again = json.loads(ok(zcas_cmd("run", "--json"), repo_dir).stdout)
        assert all(r["status"] == "cached" for r in again)
        note("zcas run", trials=1, kills=1)


def test_kill_python_pipeline(repo_dir):
    rnd = random.Random(3)
    (repo_dir / "flow.py").write_text(FLOW)
    span = _timed(zcas_cmd("run", "flow.py:main", "-p", "trial=-1"), repo_dir)
    for t in range(TRIALS):
        kill_at(zcas_cmd("run", "flow.py:main", "-p", f"trial={t}"), repo_dir, rnd.uniform(0, span * 1.2))
        fsck_clean(repo_dir)
        p = ok(zcas_cmd("run", "flow.py:main", "-p", f"trial={t}"), repo_dir)
        assert "pipeline flow.main" in p.stdout
        p = ok(zcas_cmd("run", "flow.py:main", "-p", f"trial={t}"), repo_dir)
        assert p.stdout.count("cached:") == 2
        note("python pipeline", trials=1, kills=1)


def test_kill_push(repo_dir, tmp_path):
    from zcas.cas.db import ObjectDB
    from zcas.cas.fsck import fsck
    from zcas.cas.objstore import ObstoreBackend
    from zcas.cas.transfer import remote_packs

    rnd = random.Random(4)
    url = f"file://{tmp_path}/remote"
    ok(zcas_cmd("remote", "add", "origin", url), repo_dir)
    span = 0.3
    for t in range(TRIALS):
        for k in range(3):
            (repo_dir / f"f{t}-{k}.bin").write_bytes(os.urandom(rnd.randint(1000, 3_000_000)))
            ok(zcas_cmd("add", f"f{t}-{k}.bin"), repo_dir)
        if t == 0:
            span = _timed(zcas_cmd("push"), repo_dir)
            continue
        kill_at(zcas_cmd("push"), repo_dir, rnd.uniform(0, span * 1.5))
        remote = ObjectDB(ObstoreBackend(url))
        rep = fsck(remote, [])
        assert rep.ok, rep.corrupt  # whatever arrived is whole
        ok(zcas_cmd("push"), repo_dir)
        local = ObjectDB(ObstoreBackend(f"file://{repo_dir}/.zcas/objects"))
        assert local.packs() <= remote_packs(ObstoreBackend(url))
        note("zcas push", trials=1, kills=1)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    ok(zcas_cmd("init"), fresh)
    ok(zcas_cmd("remote", "add", "origin", url), fresh)
    ok(zcas_cmd("pull"), fresh)
    import subprocess

    from .harness import env

    for f in repo_dir.glob("f*.bin"):
        p = subprocess.run(zcas_cmd("cat", blake3(f.read_bytes()).hexdigest()), cwd=fresh, env=env(), capture_output=True)
        assert p.returncode == 0 and p.stdout == f.read_bytes()
    fsck_clean(fresh)

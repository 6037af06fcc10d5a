"""Distributed runs through the store (issue 14): a Dask scheduler and two workers started as
separate processes on 127.0.0.1, each in a folder of its own, and the S3 test server. The
client's repository is in a folder the workers are never told about; every step records
where it ran, and none may have run inside the client's tree.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests import s3server
from tests.conftest import run_zcas
from tests.runners import flow_distributed

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
FAN = 20
SHARED = 2_000_000  # bytes of the input every step of the fan-out reads


SKEW = "import zcas\n\n@zcas.step\ndef hello(n: int) -> int:\n    return n + {n}\n\n" \
       "@zcas.pipeline\ndef main(n: int = 1):\n    return hello(n)\n"


class Cluster:
    """A scheduler and workers, each its own process group, started and stopped by us."""

    def __init__(self, tmp, endpoint: str):
        self.tmp = tmp
        self.file = str(tmp / "scheduler.json")
        self.signal = tmp / "signal"
        self.signal.mkdir()
        mods = tmp / "workermods"  # modules only the workers have (an older version of one)
        mods.mkdir()
        (mods / "skewflow.py").write_text(SKEW.format(n=1))
        self.env = {**os.environ, **s3server.env_for(endpoint), "PYTHONPATH": f"{ROOT}{os.pathsep}{mods}",
                    "ZCAS_TEST_SIGNAL": str(self.signal)}
        self.env.pop("ZCAS_TEST_STEP_SLEEP", None)
        (tmp / "scheduler").mkdir()
        self.scheduler = subprocess.Popen(
            [f"{BIN}/dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", self.file], cwd=tmp / "scheduler", env=self.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.workers: dict[str, subprocess.Popen] = {}
        self.dirs: dict[str, str] = {}
        deadline = time.time() + 60
        while not os.path.exists(self.file):
            assert time.time() < deadline and self.scheduler.poll() is None, "the scheduler did not start"
            time.sleep(0.1)
        with open(self.file) as f:
            self.address = json.load(f)["address"]

    def start_worker(self, name: str) -> None:
        assert name not in self.workers
        where = self.tmp / name
        where.mkdir(exist_ok=True)
        self.dirs[name] = str(where)
        self.workers[name] = subprocess.Popen(
            [f"{BIN}/dask", "worker", self.address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
             "--no-dashboard", "--name", name, "--local-directory", str(where)],
            cwd=where, env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)

    def client(self):
        import distributed

        return distributed.Client(self.address, timeout="30s")

    def wait_for(self, n: int) -> None:
        with self.client() as c:
            c.wait_for_workers(n, timeout=60)

    def transitions(self) -> int:
        """Tasks' state changes the scheduler has seen: unchanged means nothing was submitted."""
        with self.client() as c:
            return c.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)

    def worker_stats(self) -> dict[str, dict[str, int]]:
        from zcas.runners.workercache import stats

        with self.client() as c:
            got = c.run(stats)
            names = {a: w["name"] for a, w in c.scheduler_info(n_workers=-1)["workers"].items()}
        return {names[a]: s for a, s in got.items()}

    def kill(self, name: str) -> None:
        p = self.workers.pop(name)
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()

    def stop(self) -> None:
        for p in [*self.workers.values(), self.scheduler]:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
        for p in [*self.workers.values(), self.scheduler]:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, s3_endpoint):
    c = Cluster(tmp_path_factory.mktemp("cluster"), s3_endpoint)
    try:
        c.start_worker("w1")
        c.start_worker("w2")
        c.wait_for(2)
        yield c
    finally:
        c.stop()


def _toml(n: int) -> str:
    steps = []
    for i in range(n):
        steps.append(f"""[steps.c{i}]
cmd = "mkdir -p out where; sha256sum shared.bin > out/c{i}.txt; echo {i} >> out/c{i}.txt; pwd > where/c{i}.txt"
inputs = ["shared.bin"]
outputs = ["out/c{i}.txt", "where/c{i}.txt"]
""")
    ins = ", ".join(f'"out/c{i}.txt"' for i in range(n))
    steps.append(f"""[steps.join]
cmd = "mkdir -p where; cat {' '.join(f'out/c{i}.txt' for i in range(n))} > all.txt; pwd > where/join.txt"
inputs = [{ins}]
outputs = ["all.txt", "where/join.txt"]
""")
    return "\n".join(steps)


def _noise(n: int, seed: bytes) -> bytes:
    """Bytes that do not compress (the store's figures are then the input's), the same every time."""
    return b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(n // 32 + 1))[:n]


def _client_repo(path, store: str | None, scheduler: str | None) -> None:
    path.mkdir()
    assert run_zcas("init", cwd=path).code == 0
    (path / "shared.bin").write_bytes(_noise(SHARED, b"shared"))
    (path / "big.bin").write_bytes(_noise(400_000, b"big"))
    (path / "zcas.toml").write_text(_toml(FAN))
    if store:
        res = run_zcas("stack", "register", "d", "--store", store, "--runner", "dask", "--scheduler", scheduler,
                       cwd=path)
        assert res.code == 0, res.err
        assert run_zcas("stack", "set", "d", cwd=path).code == 0


def _zrun(path, env, *args: str):
    res = run_zcas("run", "-j", "8", "--json", *args, cwd=path, env=env)
    return res, (json.loads(res.out) if res.out.strip().startswith("[") else None)


@pytest.fixture(scope="module")
def client(tmp_path_factory, cluster, s3_endpoint):
    """The client's repository, in a folder of the test's: no worker is told of it."""
    tmp = tmp_path_factory.mktemp("client")
    url = f"s3://{s3server.BUCKET}/dist-{os.urandom(6).hex()}"
    _client_repo(tmp / "repo", url, cluster.address)
    return tmp / "repo", {**s3server.env_for(s3_endpoint), "ZCAS_NO_REMOTE_CACHE": "1"}


def _under(path: str, folders) -> bool:
    return any(os.path.realpath(path).startswith(os.path.realpath(f) + os.sep) for f in folders)


def test_steps_run_on_workers_never_in_the_client_tree(cluster, client):
    repo, env = client
    res, rows = _zrun(repo, env)
    assert res.code == 0, res.err
    assert [r["status"] for r in rows] == ["ran"] * (FAN + 1)
    assert "on dask" in res.err
    wheres = [(repo / "where" / f"c{i}.txt").read_text().strip() for i in range(FAN)]
    wheres.append((repo / "where" / "join.txt").read_text().strip())
    for w in wheres:  # each ran in a scratch folder inside a worker's own folder, none in ours
        assert not _under(w, [repo]) and _under(w, cluster.dirs.values()), w
    assert len(set(wheres)) == FAN + 1  # a private folder each
    assert {n for n, d in cluster.dirs.items() for w in wheres if _under(w, [d])} == {"w1", "w2"}
    digest = hashlib.sha256((repo / "shared.bin").read_bytes()).hexdigest()
    assert (repo / "out" / "c3.txt").read_text() == f"{digest}  shared.bin\n3\n"
    assert (repo / "all.txt").read_text() == "".join(f"{digest}  shared.bin\n{i}\n" for i in range(FAN))
    # every scratch folder is gone
    for d in cluster.dirs.values():
        assert not [p for _, ds, _ in os.walk(d) for p in ds if p.startswith("zcas-step-")]

    # a rerun: all hits, and nothing is submitted to the cluster
    before = cluster.transitions()
    res, rows = _zrun(repo, env)
    assert res.code == 0 and [r["status"] for r in rows] == ["cached"] * (FAN + 1)
    assert cluster.transitions() == before


def test_python_steps_on_workers_and_the_worker_cache(cluster, client, monkeypatch):
    from zcas.repository import Repository

    repo_dir, env = client
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    loaded = {n: s["downloaded"] for n, s in cluster.worker_stats().items()}
    repo = Repository(repo_dir)
    try:
        run = flow_distributed.spread(FAN, repo=repo, stack="d")
        joined, cwds, cut_where = run.load()
        assert joined["n"] == FAN and len(set(joined["digests"])) == FAN
        assert all(s.status == "ran" for s in run.steps.values()) and len(run.steps) == FAN + 2
        for w in [*cwds, cut_where.decode().strip()]:
            assert not _under(w, [repo_dir]) and _under(w, cluster.dirs.values()), w
        # the 300 kB input of the fan-out is fetched once per worker, not once per step (about
        # ten a worker: 3 MB); the worker that cut it fetched big.bin (400 kB) too
        got = {n: s["downloaded"] - loaded.get(n, 0) for n, s in cluster.worker_stats().items()}
        assert all(b < 400_000 + 2 * 300_000 + 150_000 for b in got.values()) and sum(got.values()) >= 300_000, got
        before = cluster.transitions()
        again = flow_distributed.spread(FAN, repo=repo, stack="d")
        assert all(s.status == "cached" for s in again.steps.values())
        assert again.load()[0] == joined and cluster.transitions() == before
    finally:
        repo.close()


def test_same_outputs_and_keys_as_local(cluster, client, tmp_path, monkeypatch):
    repo, env = client
    local = tmp_path / "local"
    _client_repo(local, None, None)
    res, local_rows = _zrun(local, env)
    assert res.code == 0, res.err
    res, dask_rows = _zrun(repo, env)
    assert res.code == 0, res.err
    assert {r["name"]: r["key"] for r in local_rows} == {r["name"]: r["key"] for r in dask_rows}
    for rel in [*(f"out/c{i}.txt" for i in range(FAN)), "all.txt"]:
        assert (local / rel).read_bytes() == (repo / rel).read_bytes(), rel

    from zcas.repository import Repository

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    runs = {}
    for name, path, stack in (("local", local, None), ("dask", repo, "d")):
        r = Repository(path)
        try:
            run = flow_distributed.spread(FAN, repo=r, stack=stack)
            runs[name] = {n: (s.record["cache_key"], {o: i for o, i in s.record["outputs"].items() if o != "output.1"
                                                      and not o.endswith(".where")})
                          for n, s in run.steps.items()}
        finally:
            r.close()
    assert runs["local"] == runs["dask"]


def test_no_checkout_leaves_the_tree_alone(cluster, client, tmp_path):
    repo, env = client
    other = tmp_path / "other"
    _client_repo(other, f"s3://{s3server.BUCKET}/nc-{os.urandom(6).hex()}", cluster.address)
    res, rows = _zrun(other, env, "--no-checkout")
    assert res.code == 0, res.err
    assert [r["status"] for r in rows] == ["ran"] * (FAN + 1)  # the join planned from its inputs' ids
    assert not (other / "out").exists() and not (other / "all.txt").exists()
    res, rows = _zrun(other, env)  # without it: hits, restored
    assert [r["status"] for r in rows] == ["cached"] * (FAN + 1)
    assert (other / "all.txt").read_bytes() == (repo / "all.txt").read_bytes()
    # on a stack whose steps run in the working tree it is refused
    res = run_zcas("run", "--stack", "default", "--no-checkout", cwd=other, env=env)
    assert res.code == 2 and res.err.count("\n") == 1 and "--no-checkout needs a stack" in res.err


def test_a_module_the_workers_cannot_import_or_have_another_version_of(cluster, client):
    repo, env = client
    (repo / "localflow.py").write_text(SKEW.format(n=1))
    res = run_zcas("run", "localflow.py:main", cwd=repo, env=env)
    assert res.code == 1
    last = res.err.strip().splitlines()[-1]
    assert last.startswith("zcas: error: step localflow.hello: module 'localflow' cannot be imported on worker")
    assert "Traceback" not in res.err
    # the workers' skewflow adds 1, the client's 2: its results must not go under the client's key
    (repo / "skewflow.py").write_text(SKEW.format(n=2))
    res = run_zcas("run", "skewflow.py:main", cwd=repo, env=env)
    assert res.code == 1 and "Traceback" not in res.err
    last = res.err.strip().splitlines()[-1]
    assert last.startswith("zcas: error: step skewflow.hello: the code of module 'skewflow' on worker ")
    assert last.endswith("deploy the same version to the workers")
    (repo / "skewflow.py").write_text(SKEW.format(n=1))  # the same version: it runs there
    res = run_zcas("run", "--json", "skewflow.py:main", cwd=repo, env=env)
    assert res.code == 0 and "ran: skewflow.hello" in res.err and "on dask" in res.err


def test_a_worker_killed_mid_run(cluster, tmp_path, s3_endpoint):
    """Steps that wait a moment: once one is seen running on w1, w1 is killed; the run still
    completes (its steps retried on w2) and every output is the step's own."""
    repo = tmp_path / "kill"
    _client_repo(repo, f"s3://{s3server.BUCKET}/kill-{os.urandom(6).hex()}", cluster.address)
    steps = "".join(f"""[steps.s{i}]
cmd = "pwd > $ZCAS_TEST_SIGNAL/s{i}-$$; sleep 1; echo {i} > s{i}.txt"
inputs = ["shared.bin"]
outputs = ["s{i}.txt"]
""" for i in range(6))
    (repo / "zcas.toml").write_text(steps)
    env = {**s3server.env_for(s3_endpoint), "ZCAS_NO_REMOTE_CACHE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "zcas", "run", "-j", "6"], cwd=repo, env={**os.environ, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    try:
        while True:
            seen = [p.read_text().strip() for p in cluster.signal.iterdir() if p.name.startswith("s")]
            if any(_under(w, [cluster.dirs["w1"]]) for w in seen):
                break
            assert time.time() < deadline and proc.poll() is None, "no step started on w1"
            time.sleep(0.05)
        cluster.kill("w1")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        if "w1" not in cluster.workers:
            cluster.start_worker("w1")  # back to two for whatever runs next
    assert proc.returncode == 0, err
    assert [out.count(f"ran: s{i} (") for i in range(6)] == [1] * 6, out
    assert [(repo / f"s{i}.txt").read_text() for i in range(6)] == [f"{i}\n" for i in range(6)]
    res = run_zcas("run", cwd=repo, env=env)  # recorded once each, with outputs that read back
    assert res.code == 0 and res.out.count("cached: ") == 6


def test_a_store_that_goes_away_mid_run_is_one_line_and_nothing_is_recorded(cluster, tmp_path, s3_endpoint):
    """The store is a server of this test's own, stopped while a step runs on a worker: the
    worker cannot publish (nor, on Dask's retries, fetch), the run fails in one line, and
    no run of that step is recorded."""
    proc, endpoint = s3server.start()
    try:
        s3server.make_bucket(endpoint)
        repo = tmp_path / "gone"
        _client_repo(repo, None, None)
        env = {**s3server.env_for(s3_endpoint), "ZCAS_NO_REMOTE_CACHE": "1"}
        for args in (("remote", "add", "private", f"s3://{s3server.BUCKET}/gone", "--endpoint", endpoint,
                      "--allow-http"),
                     ("stack", "register", "d", "--store", "private", "--runner", "dask", "--scheduler", cluster.address),
                     ("stack", "set", "d")):
            assert run_zcas(*args, cwd=repo, env=env).code == 0
        (repo / "zcas.toml").write_text('[steps.slow]\ncmd = "pwd > $ZCAS_TEST_SIGNAL/slow-$$; sleep 0.5; '
                                        'cat shared.bin shared.bin > out.bin"\ninputs = ["shared.bin"]\noutputs = ["out.bin"]\n')
        run = subprocess.Popen([sys.executable, "-m", "zcas", "run"], cwd=repo, env={**os.environ, **env},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 60
        while not any(p.name.startswith("slow-") for p in cluster.signal.iterdir()):
            assert time.time() < deadline and run.poll() is None, run.communicate()
            time.sleep(0.05)
        proc.terminate()
        proc.wait(10)
        out, err = run.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert run.returncode == 1, (out, err)
    failed = [line for line in out.splitlines() if line.startswith("failed: slow")]
    assert len(failed) == 1 and "the store failed on worker" in failed[0], (out, err)
    assert "Traceback" not in err and not (repo / "out.bin").exists()
    from zcas.repository import Repository

    r = Repository(repo)
    try:
        assert r.lineage.graph.last_run("slow") is None  # nothing recorded
    finally:
        r.close()

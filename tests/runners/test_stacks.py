"""Stacks, layered configuration, and the threads, processes and dask runners."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import assert_one_line_error, run_zcas


def test_config_layers_and_origins(repo_dir, tmp_path):
    user = tmp_path / "user.toml"
    user.write_text("[run]\njobs = 3\nverify = true\n")
    (repo_dir / ".zcas" / "config.toml").write_text("[core]\nformat = 1\n[run]\njobs = 5\n")
    env = {"ZCAS_CONFIG": str(user)}
    r = run_zcas("config", "list", "--show-origin", cwd=repo_dir, env=env)
    lines = dict(ln.split("\t")[::-1] for ln in r.out.splitlines())
    assert lines["run.jobs=5"].endswith("config.toml") and ".zcas" in lines["run.jobs=5"]
    assert lines["run.verify=true"] == str(user)
    assert lines["gc.grace=14d"] == "default"
    r = run_zcas("config", "list", "--show-origin", cwd=repo_dir, env={**env, "ZCAS_RUN_JOBS": "7"})
    assert "env:ZCAS_RUN_JOBS\trun.jobs=7" in r.out
    assert run_zcas("config", "get", "run.jobs", cwd=repo_dir, env=env).out == "5\n"


@pytest.mark.parametrize(
    "text,msg",
    [
        ("[run]\njobs = 'many'\n", "run.jobs: expected a whole number of at least 1, got 'many'"),
        ("[run]\nfrobs = 1\n", "unknown key 'run.frobs'"),
        ("[stack.x]\nrunner = 'gpu'\n", "stack.x.runner: expected one of local, threads, processes, dask"),
        ("[run\n", "user.toml"),
    ],
)
def test_bad_config_names_file_key_problem(repo_dir, tmp_path, text, msg):
    user = tmp_path / "user.toml"
    user.write_text(text)
    r = run_zcas("config", "list", cwd=repo_dir, env={"ZCAS_CONFIG": str(user)})
    assert_one_line_error(r, str(user), msg, code=2)


def test_stack_commands(repo_dir, zcas):
    assert zcas("stack", "list", cwd=repo_dir).out.startswith("* default\tstore=(repository) runner=local")
    assert zcas("stack", "register", "fast", "--runner", "threads", cwd=repo_dir).code == 0
    assert_one_line_error(zcas("stack", "register", "fast", cwd=repo_dir), "already exists")
    assert zcas("stack", "set", "fast", cwd=repo_dir).code == 0
    r = zcas("stack", "show", "--json", cwd=repo_dir)
    assert json.loads(r.out)["runner"] == "threads"
    assert_one_line_error(zcas("stack", "set", "nope", cwd=repo_dir), "unknown stack 'nope'")
    assert_one_line_error(zcas("stack", "delete", "default", cwd=repo_dir), "built in")
    assert_one_line_error(zcas("run", "--stack", "nope", "--", "true", cwd=repo_dir), "unknown stack 'nope'")
    assert zcas("stack", "delete", "fast", cwd=repo_dir).code == 0
    assert zcas("stack", "show", "--json", cwd=repo_dir).out.count('"default"') >= 1


def test_command_pipeline_on_threads_and_processes(repo_dir, zcas):
    (repo_dir / "zcas.toml").write_text("".join(
        f'[steps.s{i}]\ncmd = "sh -c \'echo {i} > o{i}.txt\'"\noutputs = ["o{i}.txt"]\n' for i in range(4)))
    zcas("stack", "register", "t", "--runner", "threads", cwd=repo_dir)
    zcas("stack", "register", "p", "--runner", "processes", cwd=repo_dir)
    r = zcas("run", "--stack", "p", cwd=repo_dir)
    assert r.code == 0 and r.out.count("on processes") == 4, r
    assert (repo_dir / "o3.txt").read_text() == "3\n"
    r = zcas("run", "--stack", "t", cwd=repo_dir)
    assert r.out.count("cached:") == 4


def _flow_env(repo_dir):
    env = dict(os.environ)
    env.pop("ZCAS_DIR", None)
    env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return env


def test_python_pipeline_on_processes_matches_local(tmp_path):
    from tests.runners import flow_fanout
    from zcas.repository import Repository

    ids = {}
    for runner in ("local", "processes"):
        d = tmp_path / runner
        d.mkdir()
        repo = Repository.init(d)
        if runner != "local":
            from zcas.stacks import Stack, register

            register(repo.cas, Stack("s", None, runner))
        run = flow_fanout.fanout(repo=repo, stack=None if runner == "local" else "s")
        ids[runner] = run.output.id
        assert run.load() == flow_fanout.gather.fn(*[flow_fanout.work.fn(i) for i in range(6)])
        repo.close()
    assert ids["local"] == ids["processes"]


@pytest.fixture(scope="module")
def cluster(s3_endpoint):
    """Two worker processes on 127.0.0.1, started with the test server's credentials in
    their environment (workers read the store themselves)."""
    import distributed

    from tests import s3server

    saved = {k: os.environ.get(k) for k in s3server.env_for(s3_endpoint)}
    os.environ.update(s3server.env_for(s3_endpoint))
    c = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None)
    yield c.scheduler_address
    c.close()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_dask_runner_with_s3_store(tmp_path, cluster, s3_env, s3_url):
    from tests.runners import flow_fanout
    from zcas.repository import Repository
    from zcas.stacks import Stack, register

    local = Repository.init(tmp_path / "local")
    expected = flow_fanout.fanout(repo=local).output.id
    local.close()

    repo = Repository.init(tmp_path / "dask")
    register(repo.cas, Stack("cluster", s3_url, "dask", cluster))
    run = flow_fanout.fanout(repo=repo, stack="cluster")
    assert run.output.id == expected  # same ids on the local runner and on dask
    assert [r.status for r in run.steps.values()] == ["ran"] * 7
    # a rerun is all hits: nothing is sent to the cluster
    again = flow_fanout.fanout(repo=repo, stack="cluster")
    assert again.output.id == expected
    assert all(r.cached for r in again.steps.values())
    # a worker killed mid-step: the step is retried elsewhere
    marker = tmp_path / "marker"
    out = flow_fanout.killer(str(marker), repo=repo, stack="cluster")
    assert out.load() == "survived" and marker.exists()
    repo.close()


def test_dask_missing_is_a_clear_error(tmp_path):
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from zcas.runners.executors import make\n"
        "try:\n    make('dask')\nexcept Exception as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.startswith("ZcasError the dask runner needs") and "pip install 'zcas[dask]'" in out

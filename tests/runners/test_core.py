"""The one execution core and the façade around it: key locks, settings that are honoured,
and the defects issue 12 named (each test reproduces one)."""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time

import pytest

from tests.conftest import run_zcas
from zcas.repository import Repository
from zcas.runners.keylock import KeyLocks
from zcas.stacks import Stack, register


def test_keys_in_one_stripe_are_held_at_once_by_one_process(tmp_path):
    """A pipeline holds a key until its step is recorded, then asks for another key: the
    same stripe must not make it wait on itself."""
    locks = KeyLocks(str(tmp_path / "locks"))
    a, b = bytes.fromhex("abc0" + "0" * 60), bytes.fromhex("abc1" + "1" * 60)  # one stripe: "abc"
    first = locks.acquire(a, lambda: pytest.fail("waited"))
    second = locks.acquire(b, lambda: pytest.fail("waited"))
    first.release()
    second.release()
    assert locks._stripes == {}


def test_threads_wanting_one_key_take_turns(tmp_path):
    locks = KeyLocks(str(tmp_path / "locks"))
    key = bytes(32)
    inside, seen, waited = [], [], []

    def work(n: int) -> None:
        held = locks.acquire(key, lambda: waited.append(n))
        inside.append(n)
        seen.append(len(inside))
        time.sleep(0.05)
        inside.remove(n)
        held.release()

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert seen == [1, 1, 1, 1] and waited  # never two at once; the others were told they wait


def test_put_and_get_start_no_pool_on_a_processes_stack(tmp_path):
    repo = Repository.init(tmp_path)
    register(repo.cas, Stack("procs", None, "processes", None))
    (tmp_path / ".zcas" / "config.toml").write_text(
        (tmp_path / ".zcas" / "config.toml").read_text() + '\n[stack]\nactive = "procs"\n')
    repo.close()
    repo = Repository(tmp_path)
    a = repo.put({"x": 1})
    assert repo.get(a.id) == {"x": 1} and repo.artifact(a.id).load() == {"x": 1}
    assert multiprocessing.active_children() == [] and repo._executors == {}
    repo.close()


def test_remote_names_are_the_names_config_accepts(repo_dir, tmp_path):
    before = (repo_dir / ".zcas" / "config.toml").read_text()
    r = run_zcas("remote", "add", "my.remote", f"file://{tmp_path}/r", cwd=repo_dir)
    assert r.code == 2 and r.err.count("\n") == 1 and "invalid remote name 'my.remote'" in r.err
    assert (repo_dir / ".zcas" / "config.toml").read_text() == before
    assert run_zcas("log", cwd=repo_dir).code == 0  # nothing broken for later commands


def test_gc_grace_setting_is_honoured(repo_dir):
    repo = Repository(repo_dir)
    repo.cas.db.put(1, b"named by nothing")  # a blob no tag, history or run reaches
    repo.cas.db.flush()
    repo.close()
    assert json.loads(run_zcas("gc", "--json", cwd=repo_dir).out)["objects_removed"] == 0  # 14d by default
    env = {"ZCAS_GC_GRACE": "0"}
    r = run_zcas("gc", "--json", cwd=repo_dir, env=env)
    assert r.code == 0 and json.loads(r.out)["objects_removed"] == 1


@pytest.mark.parametrize("runner", ["local", "threads", "processes"])
def test_a_command_that_cannot_be_executed_exits_126_on_every_runner(repo_dir, runner):
    script = repo_dir / "job.sh"
    script.write_text("#!/bin/sh\necho hi > out.txt\n")
    os.chmod(script, 0o644)  # not executable
    args = [] if runner == "local" else ["--stack", "r"]
    if runner != "local":
        repo = Repository(repo_dir)
        register(repo.cas, Stack("r", None, runner, None))
        repo.close()
    r = run_zcas("run", *args, "-o", "out.txt", "--", "./job.sh", cwd=repo_dir)
    assert r.code == 126 and "failed: ./job.sh (permission denied: ./job.sh)" in r.out, r


def test_a_stacks_remote_is_the_one_its_runs_ask(repo_dir, tmp_path):
    repo = Repository(repo_dir)
    for name in ("origin", "team"):
        assert run_zcas("remote", "add", name, f"file://{tmp_path}/{name}", cwd=repo_dir).code == 0
    register(repo.cas, Stack("s", None, "local", None, remote="team"))
    repo._config = None  # read the settings just written
    assert repo.remote_for(None).spec.name == "origin" and repo.remote_for("s").spec.name == "team"
    repo.close()


@pytest.mark.parametrize("runner", ["local", "processes"])
def test_a_stack_with_its_own_store_keeps_outputs_there_and_hits(repo_dir, tmp_path, runner):
    """Outputs go to the stack's store, where hits are looked for (and restored from)."""
    store = tmp_path / "far"
    assert run_zcas("stack", "register", "far", "--store", str(store), "--runner", runner, cwd=repo_dir).code == 0
    cmd = ["run", "--stack", "far", "--json", "-o", "big.bin", "--", "sh", "-c",
           "head -c 3000000 /dev/urandom > big.bin"]  # not deterministic: only a hit gives the same bytes
    r = run_zcas(*cmd, cwd=repo_dir)
    assert r.code == 0 and json.loads(r.out)[0]["status"] == "ran", r
    first = (repo_dir / "big.bin").read_bytes()
    assert any(store.rglob("*.pack"))  # the output is in the stack's store
    (repo_dir / "big.bin").unlink()
    r = run_zcas(*cmd, cwd=repo_dir)
    assert r.code == 0 and json.loads(r.out)[0]["status"] == "cached", r
    assert (repo_dir / "big.bin").read_bytes() == first


def test_processes_crossing_keys_on_a_pool_runner_do_not_deadlock(repo_dir):
    """Each holds a pending step's key and then wants the other's: it records what it holds
    before it waits, so both finish (and each step executes once)."""
    import subprocess
    import sys
    import textwrap

    (repo_dir / "flows.py").write_text(textwrap.dedent('''
        import os, sys, time, zcas

        @zcas.step
        def a(n: int) -> int:
            open(os.environ["LOG"], "a").write("a\\n"); time.sleep(1.5); return n

        @zcas.step
        def b(n: int) -> int:
            open(os.environ["LOG"], "a").write("b\\n"); time.sleep(1.5); return n

        @zcas.pipeline
        def x():
            return a(1), b(1)

        @zcas.pipeline
        def y():
            return b(1), a(1)

        if __name__ == "__main__":
            print(getattr(sys.modules[__name__], sys.argv[1])(stack="t").load())
    '''))
    repo = Repository(repo_dir)
    register(repo.cas, Stack("t", None, "threads", None))
    repo.close()
    env = {**os.environ, "LOG": str(repo_dir / "exec.log")}
    env.pop("ZCAS_DIR", None)
    procs = [subprocess.Popen([sys.executable, "flows.py", which], cwd=repo_dir, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for which in ("x", "y")]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    assert sorted((repo_dir / "exec.log").read_text().split()) == ["a", "b"]


def test_a_runner_that_cannot_start_moves_nothing_of_the_users(repo_dir):
    (repo_dir / "out.txt").write_text("my precious edits")
    assert run_zcas("stack", "register", "bad", "--runner", "dask", "--scheduler", "tcp://127.0.0.1:9",
                    cwd=repo_dir).code == 0
    r = run_zcas("run", "--stack", "bad", "-o", "out.txt", "--", "sh", "-c", "echo new > out.txt", cwd=repo_dir)
    assert r.code != 0 and "cannot reach the dask scheduler" in r.out + r.err, r
    assert (repo_dir / "out.txt").read_text() == "my precious edits"


def test_an_interrupt_while_a_runner_works_is_not_recorded_as_a_failure(here_repo):
    """Ctrl-C while waiting on a pool: it propagates, nothing is recorded, the key is free."""
    from concurrent.futures import Future

    import zcas
    from zcas.steps import session

    class Interrupted:
        name = "fake"

        def submit(self, fn, *args):
            f: Future = Future()
            f.set_exception(KeyboardInterrupt())
            return f

        def close(self) -> None:
            pass

    @zcas.step
    def slow(n: int) -> int:
        return n

    repo = Repository(here_repo)
    repo.executor = lambda stack=None: Interrupted()  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt), session(repo, out=None):
        slow(1).id  # noqa: B018 - waits for it
    assert [r.status for r in repo.runs(step=slow.name)] == []  # no "failed" run for an interrupt
    repo.executor = lambda stack=None: None  # type: ignore[method-assign]
    with session(repo, out=None):
        assert slow(1).load() == 1  # the key is free again: runs here at once
    repo.close()


@pytest.fixture
def here_repo(repo_dir, monkeypatch):
    monkeypatch.chdir(repo_dir)
    monkeypatch.delenv("ZCAS_DIR", raising=False)
    return repo_dir

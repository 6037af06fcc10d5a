"""The pieces of distributed runs, without a cluster: the worker's bounded cache, scratch
folders and what is checked out there, and the client's side (a stand-in for Dask that runs
tasks on a thread, over a file:// store)."""

from __future__ import annotations

import os
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

from zcas.cas import codec
from zcas.cas.db import ObjectDB
from zcas.cas.errors import IntegrityError, UsageError
from zcas.cas.local import LocalBackend
from zcas.cas.oid import hash_bytes
from zcas.runners import scratch, workercache
from zcas.runners.scratch import StoreFailed, materialise, safe_rel, store_command_task
from zcas.runners.spec import StepSpec
from zcas.runners.workercache import BlockCaching, BoundedDir, Counting


def test_bounded_dir_evicts_the_least_recently_used(tmp_path):
    d = BoundedDir(str(tmp_path / "c"), 100)
    assert d.put("k/a", b"a" * 40) and d.put("k/b", b"b" * 40)
    assert d.get("k/a") == b"a" * 40  # a is now the most recently used
    assert d.put("k/c", b"c" * 40)  # 120 > 100: b goes
    assert sorted(d.list("k/")) == ["k/a", "k/c"] and d.used == 80 and d.evicted == 1
    assert not os.path.exists(tmp_path / "c" / "k" / "b")
    assert d.put("k/big", b"x" * 101) is False and not d.exists("k/big")  # larger than the bound: not kept
    key = "cache/0123456789abcdef/" + "e" * 64 + "/b0"  # only names a cache writes are adopted
    assert d.put(key, b"e" * 30)
    again = BoundedDir(str(tmp_path / "c"), 50)  # a restarted worker adopts what is there, within its bound
    assert again.used <= 50 and list(again.list()) == [key]
    assert workercache.parse_size("4GiB") == 4 << 30 and workercache.parse_size("500MB") == 500_000_000
    with pytest.raises(UsageError, match="ZCAS_WORKER_CACHE"):
        workercache.parse_size("lots")


def _stores(tmp_path, block: int = workercache.BLOCK, remote=None):
    """(a writer's ObjectDB on a 'remote' folder, a worker's: the remote behind a bounded cache)."""
    writer = ObjectDB(LocalBackend(str(tmp_path / "remote")))
    counted = Counting(remote or LocalBackend(str(tmp_path / "remote")))
    cache = BoundedDir(str(tmp_path / "cache"), 64 << 20)
    return writer, counted, cache, ObjectDB(BlockCaching(counted, cache, block=block), tmp_dir=cache.tmp_dir())


def test_worker_cache_serves_repeat_reads_and_refetches_a_damaged_copy(tmp_path):
    writer, counted, cache, worker = _stores(tmp_path)
    data = os.urandom(50_000)
    oid = writer.put(codec.KIND_BLOB, data)
    writer.flush()
    assert worker.get_bytes(oid) == data
    first = counted.read
    assert first >= 50_000
    assert worker.get_bytes(oid) == data and counted.read == first  # from the cache: nothing downloaded
    ranges = [k for k in cache.list() if not k.endswith("/idx")]
    assert len(ranges) == 1
    path = os.path.join(cache.root, *ranges[0].split("/"))
    with open(path, "r+b") as f:  # the cached copy damaged on the worker's disk
        f.seek(100)
        f.write(b"\0" * 16)
    fresh = ObjectDB(BlockCaching(counted, cache), tmp_dir=cache.tmp_dir())  # a new process: nothing in memory
    assert fresh.get_bytes(oid) == data  # dropped and read again from the store
    assert counted.read > first


class Slow(LocalBackend):
    """A store that takes its time answering: readers overlap."""

    def get_range(self, key: str, start: int, length: int) -> bytes:
        time.sleep(0.05)
        return super().get_range(key, start, length)


def test_a_large_file_is_fetched_once_in_blocks_however_many_read_it_at_once(tmp_path):
    from zcas.cas.ingest import Ingester
    from zcas.cas.statcache import StatCache

    big = os.urandom(3_000_000)
    (tmp_path / "big.bin").write_bytes(big)
    writer, counted, cache, worker = _stores(tmp_path, block=256 << 10, remote=Slow(str(tmp_path / "remote")))
    oid = Ingester(writer, StatCache(None)).add(str(tmp_path / "big.bin"))[0]
    writer.flush()
    assert writer.entry(oid).kind == codec.KIND_CHUNKED  # chunks read one by one, across block edges
    caching = worker.backend
    dbs = [ObjectDB(caching, tmp_dir=cache.tmp_dir()) for _ in range(4)]  # four tasks of one worker
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda db: db.get_bytes(oid), dbs))
    assert got == [big] * 4
    indexes = sum(len(writer.index_bytes(n)) for n in writer.packs())
    assert len(big) <= counted.read <= len(big) * 1.02 + indexes  # once, not four times
    blocks = [k for k in cache.list() if k.rsplit("/", 1)[1].startswith("b")]
    assert len(blocks) == -(-(counted.read - indexes) // (256 << 10))  # 256 KiB a request


def test_a_damaged_object_in_the_store_is_refused(tmp_path):
    writer, _, _, worker = _stores(tmp_path)
    oid = writer.put(codec.KIND_BLOB, os.urandom(5000))
    writer.flush()
    e = writer.entry(oid)
    with open(tmp_path / "remote" / "packs" / f"pack-{e.pack}.pack", "r+b") as f:
        f.seek(e.offset + e.length - 8)
        f.write(b"\0" * 8)
    with pytest.raises(IntegrityError):
        worker.get_bytes(oid)


@pytest.mark.parametrize("bad", ["../x", "/etc/passwd", "a/../../b", "a/./b", "a//b", ".zcas/objects", "a/.ZCAS",
                                 "", "a\\..\\b", "x\0y"])
def test_paths_that_would_leave_the_scratch_folder_are_refused(tmp_path, bad):
    with pytest.raises(UsageError, match="refusing input path"):
        safe_rel(bad, "input path")
    writer, _, _, worker = _stores(tmp_path)
    oid = writer.put(codec.KIND_BLOB, b"payload")
    writer.flush()
    root = tmp_path / "scratch" / "repo"
    root.mkdir(parents=True)
    with pytest.raises(UsageError):
        materialise(worker, str(root), {bad: oid.hex()})
    assert not (tmp_path / "x").exists() and not (tmp_path / "scratch" / "x").exists()
    assert safe_rel("data/raw.csv", "input path") == "data/raw.csv"


def test_the_whole_repository_as_an_input(tmp_path):
    from zcas.cas.ingest import Ingester
    from zcas.cas.statcache import StatCache

    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "f.txt").write_text("x")
    writer, _, _, worker = _stores(tmp_path)
    oid = Ingester(writer, StatCache(None)).add(str(tmp_path / "tree"))[0]
    writer.flush()
    root = tmp_path / "scratch" / "repo"
    root.mkdir(parents=True)
    materialise(worker, str(root), {".": oid.hex()})
    assert (root / "sub" / "f.txt").read_text() == "x"


def _file_spec(tmp_path) -> dict:
    return {"url": f"file://{tmp_path / 'store'}", "worker": True}


def test_a_command_task_runs_in_its_own_folder_with_its_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("ZCAS_WORKER_CACHE_DIR", str(tmp_path / "wcache"))
    monkeypatch.setattr(scratch, "_base", lambda: str(tmp_path / "worker"))
    (tmp_path / "worker").mkdir()
    spec = _file_spec(tmp_path)
    from zcas.runners.tasks import open_store

    db = open_store(spec)
    oid = db.put(codec.KIND_BLOB, b"hello\n")
    db.flush()
    code, err, ids, _, _, _, _, _, found = store_command_task(
        spec, "s", ["sh", "-c", 'cat ../data/in.txt > ../out/got.txt; echo "$ZCAS_PARAM_N $PWD" >> ../out/got.txt'],
        "sub", {"ZCAS_PARAM_N": "7"}, {"data/in.txt": oid.hex()}, ["out/got.txt"], [])
    assert (code, err) == (0, "exit 0"), found
    got = db.get_bytes(bytes.fromhex(ids["out/got.txt"])).decode().splitlines()
    assert got[0] == "hello" and got[1].startswith(f"7 {tmp_path / 'worker'}/zcas-step-") and got[1].endswith("/repo/sub")
    assert os.listdir(tmp_path / "worker") == []  # the scratch folder is gone
    code, err, ids, *_ = store_command_task(spec, "s", ["true"], "", {}, {}, ["never.txt"], [])
    assert (code, err, ids) == (1, "declared output never.txt was not produced", {})


def test_an_unreachable_store_is_one_line(tmp_path, s3_env):
    spec = {"url": "s3://zcas-test/gone", "endpoint": "http://127.0.0.1:9", "allow_http": True, "worker": True}
    with pytest.raises(StoreFailed) as e:
        store_command_task(spec, "s", ["true"], "", {}, {"a.txt": "00" * 32}, ["a.txt"], [])
    text = str(e.value)
    assert "\n" not in text and text.startswith("step s: the store failed on worker") and "testing" not in text


class FakeDask:
    """Dask as the core sees it (a name and ``submit``), on a thread: the task functions are
    the real ones; ``fail`` makes a task raise instead."""

    name = "dask"

    def __init__(self) -> None:
        self.pool = ThreadPoolExecutor(2)
        self.fail: BaseException | None = None
        self.submitted = 0
        self.sent: list = []

    def submit(self, fn, *args) -> Future:
        self.submitted += 1
        self.sent.append((fn, args))
        if self.fail is not None:
            err = self.fail

            def fn(*_):  # noqa: ANN202 - the worker's failure
                raise err

        return self.pool.submit(fn, *args)

    def close(self) -> None:
        self.pool.shutdown()


@pytest.fixture
def through(tmp_path, monkeypatch):
    """A repository whose stack has a file:// store and 'dask': (repository, fake dask, core factory)."""
    yield from through_stack(tmp_path, monkeypatch)


def through_stack(tmp_path, monkeypatch):
    """``through``, for other test modules' fixtures."""
    from zcas.repository import Repository
    from zcas.stacks import Stack, register

    monkeypatch.setenv("ZCAS_WORKER_CACHE_DIR", str(tmp_path / "wcache"))
    monkeypatch.setenv("ZCAS_NO_REMOTE_CACHE", "1")
    repo = Repository.init(tmp_path / "repo")
    register(repo.cas, Stack("d", f"file://{tmp_path / 'store'}", "dask", "tcp://nowhere:1"))
    fake = FakeDask()

    def core():
        c = repo.core("d", out=None)
        c._executor_factory = lambda: fake
        return c

    yield repo, fake, core
    fake.close()
    repo.close()


def _spec(name, cmd, inputs, outputs) -> StepSpec:
    return StepSpec(name=name, cmd=("sh", "-c", cmd), inputs=tuple(inputs), outputs=tuple(outputs), params={}, env=(),
                    cwd="")


def test_no_checkout_plans_downstream_from_ids_and_leaves_the_tree(through):
    from zcas.runners.command import run_command
    from zcas.runners.instore import no_checkout

    repo, fake, core = through
    root = repo.root
    with open(os.path.join(root, "in.txt"), "w") as f:
        f.write("abc\n")
    with open(os.path.join(root, "b.txt"), "w") as f:
        f.write("stale, by hand\n")
    a = _spec("a", "mkdir -p d; tr a-z A-Z < in.txt > d/a.txt", ["in.txt"], ["d"])
    b = _spec("b", "cat d/a.txt d/a.txt > b.txt", ["d/a.txt"], ["b.txt"])
    with no_checkout():
        c = core()
        ra, rb = run_command(c, a), run_command(c, b)
        c.close()
    assert (ra.status, rb.status) == ("ran", "ran")
    assert not os.path.exists(os.path.join(root, "d"))
    with open(os.path.join(root, "b.txt")) as f:
        assert f.read() == "stale, by hand\n"  # the tree is not touched at all
    assert repo.store("d")[0].get_bytes(bytes.fromhex(rb.outputs["b.txt"])) == b"ABC\nABC\n"
    # the same steps without --no-checkout: hits, restored (the hand-made file kept, not lost)
    c = core()
    assert run_command(c, a).status == "cached"
    assert run_command(c, b).status == "cached"
    c.close()
    with open(os.path.join(root, "b.txt")) as f:
        assert f.read() == "ABC\nABC\n"
    assert repo.cas.db.has(hash_bytes(b"stale, by hand\n"))
    assert fake.submitted == 2
    assert str(root) not in repr(fake.sent)  # no path of the client's travels with a task
    # a folder above an output kept in the store cannot be hashed from the tree: refused
    c_step = _spec("c", "mkdir -p e; cat d/a.txt > e/c.txt", ["d"], ["e/c.txt"])  # a folder input, known by id
    above = _spec("above", "ls e > above.txt", ["e"], ["above.txt"])
    with no_checkout():
        c = core()
        assert run_command(c, c_step).status == "ran"
        with pytest.raises(UsageError, match="declare e/c.txt itself as the input"):
            run_command(c, above)
        c.close()
    assert not os.path.exists(os.path.join(root, "e"))


def test_a_store_failure_on_the_worker_is_not_recorded(through):
    from zcas.runners.command import run_command

    repo, fake, core = through
    with open(os.path.join(repo.root, "out.txt"), "w") as f:
        f.write("mine\n")
    fake.fail = StoreFailed(0, "step s: the store failed on worker w: unreachable")
    c = core()
    with pytest.raises(StoreFailed, match="unreachable"):
        run_command(c, _spec("s", "echo new > out.txt", [], ["out.txt"]))
    c.close()
    assert repo.lineage.graph.last_run("s") is None  # nothing recorded
    with open(os.path.join(repo.root, "out.txt")) as f:
        assert f.read() == "mine\n"  # what was set aside is back


def test_python_steps_pass_folders_through_the_store(through, monkeypatch):
    from tests.runners import flow_distributed

    repo, fake, _ = through
    monkeypatch.setattr(scratch, "_base", lambda: str(repo.cas.zdir + "-worker"))
    os.makedirs(repo.cas.zdir + "-worker")
    monkeypatch.setattr(repo, "executor", lambda stack=None: fake)
    here = os.getcwd()
    run = flow_distributed.folders(3, repo=repo, stack="d")
    got = run.load()
    assert got["files"] == {"0.txt": "0", "1.txt": "1", "2.txt": "2"}
    assert got["cwd"].startswith(repo.cas.zdir + "-worker/zcas-step-") and got["at"].startswith(got["cwd"][:-4])
    assert fake.submitted == 2 and os.getcwd() == here  # the folder a step ran in is given back
    import pickle

    shipped = pickle.dumps(fake.sent)  # what would travel to the cluster: no path of the client's
    assert os.fsencode(repo.root) not in shipped and os.fsencode(flow_distributed.__file__) not in shipped
    assert os.listdir(repo.cas.zdir + "-worker") == []  # and removed
    assert not os.path.exists(os.path.join(repo.root, "made"))

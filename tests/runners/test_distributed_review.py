"""Regression tests for defects a review found in distributed runs (issue 14), each named
after its defect; without a cluster (a stand-in for Dask runs the real tasks on a thread)."""

from __future__ import annotations

import os
import threading

import pytest

from zcas.cas import codec
from zcas.cas.db import ObjectDB
from zcas.cas.errors import StoreError, UsageError
from zcas.cas.local import LocalBackend
from zcas.cas.oid import hash_bytes
from zcas.runners import scratch, tasks, workercache
from zcas.runners.command import run_command
from zcas.runners.instore import no_checkout
from zcas.runners.scratch import StoreFailed, store_command_task
from zcas.runners.workercache import BlockCaching, BoundedDir, Counting

from .test_distributed_units import _spec, through_stack


@pytest.fixture
def through(tmp_path, monkeypatch):
    """(repository, fake dask, core factory): a stack with a file:// store and 'dask'."""
    yield from through_stack(tmp_path, monkeypatch)


def _write(root, rel: str, data: bytes) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _read(root, rel: str) -> bytes:
    with open(os.path.join(root, rel), "rb") as f:
        return f.read()


def test_a_hand_made_file_at_an_output_path_is_kept_when_a_hit_after_no_checkout_writes_over_it(through):
    repo, _, core = through
    root = repo.root
    _write(root, "in.txt", b"abc\n")
    mine = b"stale, by hand\n"
    _write(root, "b.txt", mine)
    b = _spec("b", "tr a-z A-Z < in.txt > b.txt", ["in.txt"], ["b.txt"])
    with no_checkout():
        c = core()
        assert run_command(c, b).status == "ran"
        c.close()
    assert _read(root, "b.txt") == mine  # --no-checkout touches nothing
    c = core()
    assert run_command(c, b).status == "cached"
    c.close()
    assert _read(root, "b.txt") == b"ABC\n"
    assert repo.cas.db.has(hash_bytes(mine))  # the hand-made bytes are in the store ...
    assert hash_bytes(mine).hex() in [v.id for v in repo.lineage.graph.versions("b.txt")]  # ... and the history


def test_a_hand_edited_output_is_kept_when_a_hit_restores_over_it_on_the_local_runner(tmp_path):
    from zcas.repository import Repository

    repo = Repository.init(tmp_path / "repo")
    root = repo.root
    _write(root, "in.txt", b"abc\n")
    b = _spec("b", "tr a-z A-Z < in.txt > b.txt", ["in.txt"], ["b.txt"])
    c = repo.core(None, out=None)
    assert run_command(c, b).status == "ran"
    c.close()
    mine = b"edited by hand\n"
    _write(root, "b.txt", mine)
    c = repo.core(None, out=None)
    assert run_command(c, b).status == "cached"
    c.close()
    assert _read(root, "b.txt") == b"ABC\n" and repo.cas.db.has(hash_bytes(mine))
    assert hash_bytes(mine).hex() in [v.id for v in repo.lineage.graph.versions("b.txt")]
    repo.close()


def test_a_step_writing_inside_an_earlier_steps_output_folder_does_not_leave_readers_keyed_by_the_old_id(tmp_path):
    from zcas.repository import Repository

    repo = Repository.init(tmp_path / "repo")
    root = repo.root
    _write(root, "in.txt", b"abc\n")
    a = _spec("a", "mkdir -p d; cp in.txt d/a.txt", ["in.txt"], ["d"])
    c = _spec("c", "cat d/b.txt > c.txt", ["d"], ["c.txt"])
    seen = []
    for word in ("first", "second"):
        b = _spec("b", f"echo {word} > d/b.txt", ["in.txt"], ["d/b.txt"])  # b's command changes
        core = repo.core(None, out=None)
        seen.append([run_command(core, s).status for s in (a, b, c)])
        core.close()
    assert seen[1] == ["cached", "ran", "ran"]
    assert _read(root, "c.txt") == b"second\n"
    repo.close()


def test_no_checkout_a_step_writing_inside_an_earlier_output_folder_refuses_readers_of_that_folder(through):
    repo, _, core = through
    root = repo.root
    _write(root, "in.txt", b"abc\n")
    a = _spec("a", "mkdir -p d; cp in.txt d/a.txt", ["in.txt"], ["d"])
    b = _spec("b", "echo more > d/b.txt", ["in.txt"], ["d/b.txt"])
    with no_checkout():
        c = core()
        assert [run_command(c, s).status for s in (a, b)] == ["ran", "ran"]
        for reads in (["d"], ["d/a.txt"]):  # d's held id is a's: without b.txt
            with pytest.raises(UsageError, match="a later step wrote into"):
                run_command(c, _spec("r", "cat d/a.txt > r.txt", reads, ["r.txt"]))
        assert run_command(c, _spec("r2", "cat d/b.txt > r2.txt", ["d/b.txt"], ["r2.txt"])).status == "ran"
        c.close()


def test_no_checkout_refuses_an_input_inside_an_output_folder_that_the_folder_does_not_hold(through):
    repo, fake, core = through
    root = repo.root
    _write(root, "in.txt", b"abc\n")
    _write(root, "d/old.txt", b"stale\n")  # left in the tree by an older version of step a
    a = _spec("a", "rm -rf d; mkdir d; cp in.txt d/a.txt", ["in.txt"], ["d"])
    b = _spec("b", "cat d/old.txt > b.txt", ["d/old.txt"], ["b.txt"])
    with no_checkout():
        c = core()
        assert run_command(c, a).status == "ran"
        with pytest.raises(UsageError, match=r"^step b: input d/old.txt is not in d, an output kept in the store"):
            run_command(c, b)
        c.close()
    assert fake.submitted == 1


def _worker(tmp_path, monkeypatch) -> dict:
    monkeypatch.setenv("ZCAS_WORKER_CACHE_DIR", str(tmp_path / "wcache"))
    monkeypatch.setattr(scratch, "_base", lambda: str(tmp_path / "worker"))
    (tmp_path / "worker").mkdir()
    return {"url": f"file://{tmp_path / 'store'}", "worker": True}


def _in_store(tmp_path, oid_hex: str) -> bool:
    return ObjectDB(LocalBackend(str(tmp_path / "store"))).has(bytes.fromhex(oid_hex))


def test_one_tasks_store_failure_does_not_drop_another_tasks_finished_outputs(tmp_path, monkeypatch):
    spec = _worker(tmp_path, monkeypatch)
    a_ingested, b_done = threading.Event(), threading.Event()
    real_ing = scratch.Ingester

    class Ing(real_ing):  # A's output ingested (pending), then B fails before A publishes
        def add(self, path, *a, **k):
            r = real_ing.add(self, path, *a, **k)
            if path.endswith("a.txt"):
                a_ingested.set()
                b_done.wait(10)
            return r

    monkeypatch.setattr(scratch, "Ingester", Ing)
    backend = type(tasks.open_store(spec).backend)
    real_put_file = backend.put_file

    def put_file(self, key, path):
        if threading.current_thread().name == "B":
            a_ingested.wait(10)
            raise StoreError(0, "connection reset")  # B's upload fails: its flush aborts its pack
        return real_put_file(self, key, path)

    monkeypatch.setattr(backend, "put_file", put_file)
    failed = {}

    def run_b():
        try:
            store_command_task(spec, "b", ["sh", "-c", "echo b > b.txt"], "", {}, {}, ["b.txt"], [])
        except StoreFailed as e:
            failed["b"] = str(e)
        finally:
            b_done.set()

    tb = threading.Thread(target=run_b, name="B")
    tb.start()
    code, _, ids, *_, found = store_command_task(spec, "a", ["sh", "-c", "echo unique-a > a.txt"], "", {}, {},
                                                 ["a.txt"], [])
    tb.join()
    assert "connection reset" in failed["b"] and code == 0
    assert _in_store(tmp_path, ids["a.txt"]) and found["packs"]


def test_a_long_lived_worker_writes_again_an_output_gc_removed_between_tasks(tmp_path, monkeypatch):
    spec = _worker(tmp_path, monkeypatch)
    monkeypatch.setattr(tasks, "RELIST_AFTER", 0.0)  # the next task starts later than that after the listing
    cmd = ["sh", "-c", "echo the-same-output > o.txt"]
    _, _, ids1, *_ = store_command_task(spec, "s", cmd, "", {}, {}, ["o.txt"], [])
    for f in os.listdir(tmp_path / "store" / "packs"):  # gc --remote collected it (its run forgotten)
        os.unlink(tmp_path / "store" / "packs" / f)
    code, _, ids2, *_ = store_command_task(spec, "s", cmd, "", {}, {}, ["o.txt"], [])  # same worker process
    assert code == 0 and ids2 == ids1 and _in_store(tmp_path, ids2["o.txt"])


def test_the_client_records_nothing_when_a_worker_returns_ids_the_store_does_not_hold(through):
    repo, fake, core = through
    _write(repo.root, "out.txt", b"mine\n")
    real = fake.pool.submit

    def submit(fn, *args):
        def lost(*a):  # the task "succeeds" but its writes never reached the store
            code, err, ids, *rest = fn(*a)
            return (code, err, {k: "ab" * 32 for k in ids}, *rest)

        return real(lost, *args)

    fake.pool.submit = submit
    c = core()
    with pytest.raises(StoreError, match=r"^step s: the worker returned abababababab but the store does not hold it"):
        run_command(c, _spec("s", "echo new > out.txt", [], ["out.txt"]))
    c.close()
    assert repo.lineage.graph.last_run("s") is None
    assert _read(repo.root, "out.txt") == b"mine\n"  # what was set aside is back


def test_the_client_loads_only_the_packs_a_step_published_not_a_listing_of_the_store(through):
    repo, _, core = through
    _write(repo.root, "in.txt", b"abc\n")
    c = core()
    assert run_command(c, _spec("warm", "cp in.txt w.txt", ["in.txt"], ["w.txt"])).status == "ran"
    backend = c.db.backend
    listed = []
    real = backend.list

    def counting(prefix=""):
        listed.append(prefix)
        return real(prefix)

    backend.list = counting
    r = run_command(c, _spec("s", "tr a-z A-Z < in.txt > out.txt", ["in.txt"], ["out.txt"]))
    c.close()
    assert r.status == "ran" and _read(repo.root, "out.txt") == b"ABC\n"
    assert listed == []


def test_an_executable_script_input_keeps_its_mode_on_a_worker(through):
    from zcas.runners.spec import StepSpec

    repo, fake, core = through
    _write(repo.root, "run.sh", b"#!/bin/sh\necho hi > out.txt\n")
    os.chmod(os.path.join(repo.root, "run.sh"), 0o755)
    c = core()
    r = run_command(c, StepSpec(name="s", cmd=("./run.sh",), inputs=(), outputs=("out.txt",), params={}, env=(),
                                cwd=""))
    c.close()
    assert (r.status, r.reason) == ("ran", "") and fake.submitted == 1
    assert _read(repo.root, "out.txt") == b"hi\n"


def test_a_symlink_input_is_a_link_on_a_worker_and_one_pointing_out_of_the_scratch_is_refused(through, tmp_path):
    repo, fake, core = through
    _write(repo.root, "real.txt", b"the data\n")
    os.symlink("real.txt", os.path.join(repo.root, "lnk"))
    c = core()
    r = run_command(c, _spec("s", "test -L lnk && cat lnk > out.txt", ["lnk", "real.txt"], ["out.txt"]))
    c.close()
    assert r.status == "ran" and _read(repo.root, "out.txt") == b"the data\n"
    worker = tmp_path / "w"
    worker.mkdir()
    db = ObjectDB(LocalBackend(str(tmp_path / "objs")))
    for target in (b"../../secret", b"/etc/passwd", b"sub/../../x", b".zcas/objects"):
        oid = db.put(codec.KIND_BLOB, target)
        with pytest.raises(UsageError, match="refusing input l: a link to"):
            scratch.materialise(db, str(worker), {"l": oid.hex()}, {"l": "link"})
        assert not os.path.lexists(worker / "l")
    ok = db.put(codec.KIND_BLOB, b"sub/../real.txt")
    scratch.materialise(db, str(worker), {"d/l": ok.hex()}, {"d/l": "link"})
    assert os.readlink(worker / "d" / "l") == "sub/../real.txt"


def _disk(root) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs)


def test_the_worker_cache_never_adopts_counts_or_removes_files_it_did_not_write(tmp_path, monkeypatch):
    data = tmp_path / "data"  # ZCAS_WORKER_CACHE_DIR=/mnt/ssd: a disk holding other things
    (data / "results").mkdir(parents=True)
    for i in range(5):
        (data / "results" / f"run{i}.csv").write_bytes(b"x" * 1000)
    (data / "my notes.txt").write_bytes(b"x" * 1000)  # a name no cache key has
    monkeypatch.setenv("ZCAS_WORKER_CACHE_DIR", str(data))
    monkeypatch.setenv("ZCAS_WORKER_CACHE", "2500")
    backend, _ = workercache.open_backend(LocalBackend(str(tmp_path / "store")))
    assert len(os.listdir(data / "results")) == 5 and (data / "my notes.txt").exists()
    assert backend.cache.used == 0 and backend.cache.root.startswith(str(data / "zcas-worker-cache") + "/")
    # a marked folder of ours, holding a stray file: only cache keys are adopted
    (tmp_path / "c").mkdir()
    d = BoundedDir(str(tmp_path / "c"), 100)
    d.put("cache/0123456789abcdef/" + "a" * 64 + "/b0", b"y" * 40)
    (tmp_path / "c" / "notes with space.txt").write_bytes(b"z" * 90)
    again = BoundedDir(str(tmp_path / "c"), 100)
    assert again.used == 40 and (tmp_path / "c" / "notes with space.txt").exists()


def test_worker_processes_sharing_a_cache_dir_each_hold_a_folder_of_their_own(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ZCAS_WORKER_CACHE_DIR", "rel")  # relative: resolved once, a step's chdir does not move it
    first, second = workercache._folder(), workercache._folder()  # two processes' claims (two open locks)
    assert first != second and os.path.isabs(first) and first.startswith(str(tmp_path / "rel") + "/")
    (tmp_path / "c" / "tmp").mkdir(parents=True)
    BoundedDir(str(tmp_path / "c"), 100)
    (tmp_path / "c" / "tmp" / "pack-half-built").write_bytes(b"p" * 500)  # a killed worker's
    BoundedDir(str(tmp_path / "c"), 100)
    assert os.listdir(tmp_path / "c" / "tmp") == []


def test_a_key_evicted_while_it_is_written_is_not_left_on_disk_uncounted(tmp_path, monkeypatch):
    d = BoundedDir(str(tmp_path / "c"), 100)
    reserved, evicted = threading.Event(), threading.Event()
    real = workercache.tempfile.mkstemp

    def mkstemp(*a, **k):
        if threading.current_thread().name == "slow":
            reserved.set()
            evicted.wait(5)  # another task's put runs meanwhile
        return real(*a, **k)

    monkeypatch.setattr(workercache.tempfile, "mkstemp", mkstemp)
    t = threading.Thread(target=d.put, args=("k/a", b"a" * 80), name="slow")
    t.start()
    reserved.wait(5)
    d.put("k/b", b"b" * 80)  # evicts k/a, whose file is not written yet
    evicted.set()
    t.join()
    for i in range(5):
        d.put(f"k/c{i}", bytes([i]) * 80)
    assert _disk(d.root) - os.path.getsize(os.path.join(d.root, workercache.MARKER)) <= d.limit


class ShortOnce(LocalBackend):
    """A store whose first answer for a pack range is cut short (a dropped connection read as EOF)."""

    cut = 1

    def get_range(self, key, start, length):
        data = super().get_range(key, start, length)
        if ShortOnce.cut and key.endswith(".pack"):
            ShortOnce.cut -= 1
            return data[: len(data) // 2]
        return data


def test_a_short_read_is_not_cached_as_a_block_poisoning_the_worker(tmp_path):
    writer = ObjectDB(LocalBackend(str(tmp_path / "remote")))
    data = os.urandom(50_000)
    oid = writer.put(codec.KIND_BLOB, data)
    writer.flush()
    remote = Counting(ShortOnce(str(tmp_path / "remote")))
    cache = BoundedDir(str(tmp_path / "cache"), 64 << 20)
    caching = BlockCaching(remote, cache)
    with pytest.raises(StoreError):
        ObjectDB(caching, tmp_dir=cache.tmp_dir()).get_bytes(oid)  # the blip: refused
    assert ObjectDB(caching, tmp_dir=cache.tmp_dir()).get_bytes(oid) == data  # a later task of the worker
    assert ObjectDB(BlockCaching(remote, cache), tmp_dir=cache.tmp_dir()).get_bytes(oid) == data  # a restart


def test_a_damaged_block_that_matches_its_own_hash_is_dropped_and_read_again(tmp_path, monkeypatch):
    spec = _worker(tmp_path, monkeypatch)
    writer = ObjectDB(LocalBackend(str(tmp_path / "store")))
    oid = writer.put(codec.KIND_BLOB, os.urandom(5000))
    writer.flush()
    cmd = ["sh", "-c", "cat in.bin > out.bin"]
    assert store_command_task(spec, "s", cmd, "", {}, {"in.bin": oid.hex()}, ["out.bin"], [])[0] == 0
    caching = tasks.open_store(spec).backend
    [block] = [k for k in caching.cache.list() if k.rsplit("/", 1)[1].startswith("b")]
    path = os.path.join(caching.cache.root, *block.split("/"))
    with open(path, "rb") as f:
        body = bytearray(f.read()[:-32])
    body[100:116] = b"\0" * 16  # damaged in transit, then cached with its own (matching) hash
    with open(path, "wb") as f:
        f.write(bytes(body) + hash_bytes(bytes(body)))
    caching._mem.clear()  # a restarted worker: nothing in memory
    code, _, ids, *_ = store_command_task(spec, "s", cmd, "", {}, {"in.bin": oid.hex()}, ["out.bin"], [])
    assert code == 0 and ids["out.bin"] == oid.hex()


def test_scratch_cleanup_never_chmods_through_a_link_and_removes_an_unreadable_folder(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("mine")
    os.chmod(outside, 0o640)
    top = tmp_path / "scratch"
    (top / "locked" / "deep").mkdir(parents=True)
    (top / "locked" / "deep" / "f").write_text("x")
    os.symlink(outside, top / "lnk")
    scratch._again(os.unlink, str(top / "lnk"), None)  # as rmtree calls it when unlinking failed
    assert oct(os.stat(outside).st_mode & 0o777) == oct(0o640) and not os.path.lexists(top / "lnk")
    os.chmod(top / "locked", 0)
    scratch._again(os.scandir, str(top / "locked"), None)  # a mode-000 folder rmtree could not list
    assert not (top / "locked").exists()


def test_a_worker_disk_failure_is_not_recorded_as_the_steps_failure(tmp_path, monkeypatch):
    import errno

    spec = _worker(tmp_path, monkeypatch)

    def full(self, db):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(scratch.Logs, "store", full)
    with pytest.raises(StoreFailed, match=r"^step s: worker .* failed: \[Errno 28\] No space left on device$"):
        store_command_task(spec, "s", ["sh", "-c", "echo hi; echo x > o.txt"], "", {}, {}, ["o.txt"], [])
    assert os.listdir(tmp_path / "worker") == []


def test_attack_a_chain_of_link_inputs_cannot_lead_out_of_the_scratch(tmp_path):
    """Each link's text stays inside (``k2 -> k1/..``), but followed one through another they
    lead out: refused in one line, and no input is written through them."""
    worker = tmp_path / "w" / "repo"
    worker.mkdir(parents=True)
    db = ObjectDB(LocalBackend(str(tmp_path / "objs")))
    links = {"a/k1": b"..", "a/k2": b"k1/..", "a/k3": b"k2/..", "a/k4": b"k3/.."}
    ins = {r: db.put(codec.KIND_BLOB, t).hex() for r, t in links.items()}
    ins["a/k4/x.txt"] = db.put(codec.KIND_BLOB, b"written outside\n").hex()
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(UsageError, match=r"refusing input a/k\d: a link that resolves out of the repository"):
        scratch.materialise(db, str(worker), ins, {r: "link" for r in links})
    assert sorted(os.listdir(tmp_path)) == before and os.listdir(tmp_path / "w") == ["repo"]
    assert not os.path.lexists(worker / "a" / "k2")
    # a file input below a link that was refused the same way (placed first: a real folder
    # then; placed after: never reached) and a link inside, followed: both fine
    ok = {"a/k1": ins["a/k1"], "b/c.txt": db.put(codec.KIND_BLOB, b"in\n").hex()}
    scratch.materialise(db, str(worker), ok, {"a/k1": "link"})
    assert (worker / "a" / "k1" / "b" / "c.txt").read_bytes() == b"in\n"

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
from zcas.runners import scratch, tasks
from zcas.runners.command import run_command
from zcas.runners.instore import no_checkout
from zcas.runners.scratch import StoreFailed, store_command_task

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

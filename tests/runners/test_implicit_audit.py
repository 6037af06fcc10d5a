"""The audit hook's record of what a step opens (runners/fileaudit.py): which opens count as
reads and writes of which repository paths, whatever way the path was spelled, from which
thread, and that many plain opens sorted together give what each gives alone."""

from __future__ import annotations

import os
import threading

import pytest

from zcas.runners import fileaudit


@pytest.fixture
def tree(tmp_path, monkeypatch):
    root = tmp_path / "repo"
    for d in ("data", "sub", ".zcas", "pkg/__pycache__"):
        (root / d).mkdir(parents=True)
    for f in ("data/a.csv", "data/b.csv", "sub/c.txt", ".zcas/x", "pkg/m.py", "pkg/__pycache__/m.pyc", ".env"):
        (root / f).write_text("x")
    (tmp_path / "outside.txt").write_text("x")
    os.symlink(root, tmp_path / "link")  # the same folder by another name
    monkeypatch.chdir(root)
    return root


def test_opens_are_sorted_into_reads_and_writes_of_repository_paths(tree):
    with fileaudit.recording(str(tree)) as rec:
        open("data/a.csv").close()
        open(tree / "data" / "b.csv", "rb").close()
        open(tree.parent / "link" / "sub" / "c.txt").close()  # through the link
        open("./data/../sub/c.txt").close()
        open(".env").close()
        open(tree.parent / "outside.txt").close()
        for f in (".zcas/x", "pkg/m.py", "pkg/__pycache__/m.pyc"):
            open(f).close()
        with open("data/new.csv", "w") as f:
            f.write("y")
        os.close(os.open("data/raw.bin", os.O_WRONLY | os.O_CREAT))
        os.listdir("data")
        os.chdir("sub")
        open("c.txt").close()
        open("../data/a.csv", "a").close()
    assert rec.reads == {"data/a.csv", "data/b.csv", "sub/c.txt", ".env", "data/"}
    assert rec.writes == {"data/new.csv", "data/raw.bin", "data/a.csv"}


def test_many_plain_opens_with_odd_ones_among_them_sort_as_each_alone(tree):
    """Plain paths of one kind are sorted together (one pass over them all); each odd one
    among them must still be sorted as it would be alone."""
    plain = [f"data/f{i}.csv" for i in range(300)] + [f"{tree}/data/g{i}.csv" for i in range(300)]
    odd = ["./data/h.csv", "data//i.csv", "data/.hidden", ".zcas/objects/y", "data/__pycache__/z.pyc", "tool.py",
           "data/lib.so", "site-packages/w", "", "data/", f"{tree}/", f"{tree}", f"{tree}//k.csv", f"{tree}/.git/HEAD",
           "/etc/hosts", "a\0b", b"data/bytes.csv", 7, "data/arr.npy", "sub/../data/f1.csv"]
    modes = [("r", 524288), ("w", 524288), (fileaudit._LISTED, 0)]

    def sort(events):
        rec = fileaudit.Recorder(str(tree))
        rec.opened.extend(events)
        return rec.reads, rec.writes

    for mode, flags in modes:
        for extra in odd:
            events = [(p, mode, flags) for p in [*plain, extra]]
            reads, writes = set(), set()
            for e in events:
                r, w = sort([e])
                reads |= r
                writes |= w
            assert sort(events) == (reads, writes), (mode, extra)
    assert sort([(p, "r", 0) for p in plain])[0] == {p.removeprefix(f"{tree}/") for p in plain}


def test_opens_go_to_the_step_recording_in_their_thread_or_the_only_one(tree):
    def opener(path, done):
        open(path).close()
        done.set()

    with fileaudit.recording(str(tree)) as rec:
        done = threading.Event()
        threading.Thread(target=opener, args=("data/a.csv", done)).start()  # a step's helper thread
        assert done.wait(10)
    assert rec.reads == {"data/a.csv"}

    results = {}
    ready, go = threading.Barrier(2), threading.Event()

    def step(name, path):
        with fileaudit.recording(str(tree)) as r:
            ready.wait()
            open(path).close()
            go.wait(10)  # both are recording until the helper below has opened its file
        results[name] = r.reads

    threads = [threading.Thread(target=step, args=(n, p)) for n, p in (("one", "data/a.csv"), ("two", "data/b.csv"))]
    for t in threads:
        t.start()
    while len(fileaudit._active) < 2:
        pass
    done = threading.Event()
    threading.Thread(target=opener, args=("sub/c.txt", done)).start()  # two recording: it is neither's
    assert done.wait(10)
    go.set()
    for t in threads:
        t.join()
    assert results == {"one": {"data/a.csv"}, "two": {"data/b.csv"}}


def test_events_of_another_shape_never_fail_the_open_and_count_when_they_name_a_path(tree):
    with fileaudit.recording(str(tree)) as rec:
        fileaudit._hook("open", ("data/a.csv",))  # too few arguments: nothing to sort
        fileaudit._hook("open", ("data/b.csv", "r", 0, "more"))
        fileaudit._hook("open", ([], "r", 0))  # not hashable: kept as its text
        fileaudit._hook("open", ("sub/c.txt", {"odd": "mode"}, 0))
    assert rec.reads == {"data/b.csv", "sub/c.txt", "[]"}
    with fileaudit.recording(str(tree)) as rec:  # the odd mode alone, and past a fold
        for _ in range(fileaudit._FOLD + 1):
            fileaudit._hook("open", ("sub/c.txt", {"odd": "mode"}, 0))
        fileaudit._hook("open", ("data/a.csv", "r", 0))
    assert rec.reads == {"data/a.csv", "sub/c.txt"}

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


def test_a_chdir_that_fails_leaves_later_opens_in_the_folder_the_process_is_in(tree):
    """The ``os.chdir`` event comes before the call: a call that then failed moved the
    recorder to the folder it named, and ``data/a.csv`` read after it was taken for
    ``missing/data/a.csv`` (never an input: a stale hit once it changed)."""
    with fileaudit.recording(str(tree)) as rec:
        with pytest.raises(FileNotFoundError):
            os.chdir("missing")
        open("data/a.csv").close()
        with pytest.raises(NotADirectoryError):
            os.chdir(tree / "data" / "b.csv")
        open("sub/c.txt").close()
    assert rec.reads == {"data/a.csv", "sub/c.txt"}


def test_an_fchdir_moves_later_opens_to_its_folder(tree):
    """``os.fchdir`` raises the ``os.chdir`` event with a file descriptor: the recorder
    kept the old folder, and ``c.txt`` read in ``sub`` was taken for ``c.txt`` at the root."""
    fd = os.open(tree / "sub", os.O_RDONLY)
    try:
        with fileaudit.recording(str(tree)) as rec:
            os.fchdir(fd)
            open("c.txt").close()
            os.chdir("..")
            open("data/a.csv").close()
    finally:
        os.close(fd)
    assert rec.reads - {"sub"} == {"sub/c.txt", "data/a.csv"}


def test_opens_after_the_folder_is_removed_name_no_file(tree):
    (tree / "gone").mkdir()
    with fileaudit.recording(str(tree)) as rec:
        os.chdir("gone")
        os.rmdir(tree / "gone")
        with pytest.raises(FileNotFoundError):
            open("x.txt")
        open(tree / "data" / "a.csv").close()
    assert rec.reads == {"data/a.csv"}


def test_events_whose_flags_cannot_be_a_key_are_sorted_not_an_error(tree):
    """Events a C extension might raise, sorted before any fold (one by one, as their mode
    is not a string): the memo of which flags write took the flags as a dict key and the
    step failed with a TypeError after it ran."""
    with fileaudit.recording(str(tree)) as rec:
        fileaudit._hook("open", ("data/a.csv", None, [1]))
        fileaudit._hook("open", ("sub/c.txt", {"x": 1}, [0]))
        fileaudit._hook("open", ("data/b.csv", None, {"flags": os.O_WRONLY}))
    assert rec.reads == {"data/a.csv", "sub/c.txt", "data/b.csv"} and rec.writes == set()


class _OpensWhenShown:
    """An event argument that cannot be hashed, whose text is made by opening a file."""

    __hash__ = None  # type: ignore[assignment]

    def __init__(self, path):
        self.path = path

    def __repr__(self):
        with open(self.path) as f:
            return f.read()


def test_a_fold_entered_again_by_its_own_thread_does_not_hang(tree):
    """A fold keeps unhashable events as their text (``repr``), under the recorder's lock;
    a ``repr`` (or a signal handler) that opens a file there made the hook fold again in
    the same thread, waiting for the lock it held: the step hung for ever."""
    done = threading.Event()
    got: list = []

    def step():
        with fileaudit.recording(str(tree)) as rec:
            fileaudit._hook("open", (_OpensWhenShown(str(tree / "data" / "a.csv")), "r", 0))
            for _ in range(fileaudit._FOLD):
                fileaudit._hook("open", ("sub/c.txt", "r", 0))
            open("data/b.csv").close()  # opened while the fold is under way
        got.append(rec.reads)
        done.set()

    t = threading.Thread(target=step, daemon=True)  # hung, it must not hold the test run
    t.start()
    t.join(60)
    assert done.is_set(), "the hook waited for a lock its own thread held"
    assert {"sub/c.txt", "data/a.csv", "data/b.csv"} <= got[0]


def test_a_file_read_after_a_failed_chdir_is_an_input_of_its_step(repo_dir, monkeypatch):
    """End to end: the file really read must key the step, or editing it gives a stale hit."""
    import zcas

    monkeypatch.chdir(repo_dir)
    monkeypatch.delenv("ZCAS_DIR", raising=False)
    (repo_dir / "data.txt").write_text("one")

    @zcas.step
    def read() -> str:
        try:
            os.chdir("missing_dir")
        except OSError:
            pass
        with open("data.txt") as f:
            return f.read()

    @zcas.pipeline
    def pipe():
        return read()

    assert pipe().load() == "one"
    (repo_dir / "data.txt").write_text("two")
    assert pipe().load() == "two"


class _NoText:
    def __repr__(self):
        raise RuntimeError("no text")


class _NoPath(os.PathLike):
    def __fspath__(self):
        raise RuntimeError("no path")


def test_odd_objects_in_listing_and_database_events_never_raise_into_the_call(tree):
    """The hook raises into the code whose call raised the event: an object whose text or
    path cannot be made failed the user's listing or ``sqlite3.connect``."""
    with fileaudit.recording(str(tree)) as rec:
        fileaudit._hook("os.listdir", (_NoText(),))
        fileaudit._hook("sqlite3.connect", (_NoPath(),))
        fileaudit._hook("os.scandir", ("data",))
    assert rec.reads == {"data/"}

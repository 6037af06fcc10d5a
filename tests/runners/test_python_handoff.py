"""A value a step returns reaches the steps downstream in the same process as loading it
from the store gives it, never as the object the step returned: a step's first run must see
what every later run (its input then loaded from the store) sees, or its cached result
stands for an input it never had."""

from __future__ import annotations

import pathlib
import pickle

import numpy as np
import pytest

import zcas
from zcas.runners.python import Artifact


@pytest.fixture
def here(repo_dir, monkeypatch):
    monkeypatch.chdir(repo_dir)
    monkeypatch.delenv("ZCAS_DIR", raising=False)
    return repo_dir


def test_a_dict_reaches_downstream_as_loading_gives_it(here):
    @zcas.step
    def make() -> dict:
        return {"b": 1, "a": (2, 3), "n": np.float64(0.5)}

    @zcas.step
    def look(d: dict) -> list:
        return [list(d), type(d["a"]).__name__, type(d["n"]).__name__]

    @zcas.pipeline
    def pipe():
        made = make()
        return made, look(made)

    made, seen = pipe().output
    loaded = zcas.Repository(here).get(made.id)
    assert seen.load() == [list(loaded), "tuple", "float"] == [["a", "b", "n"], "tuple", "float"]


@pytest.mark.parametrize("n", [12, 1 << 19])  # np.save's path, and the direct one (>= 1 MiB)
def test_an_array_reaches_downstream_writable_and_contiguous(here, n):
    @zcas.step
    def make(k: int) -> np.ndarray:
        raw = np.arange(2 * k, dtype=np.int32).tobytes()
        return np.frombuffer(raw, dtype=np.int32).reshape(2, k)[:, ::2]  # read-only, not contiguous

    @zcas.step
    def bump(a: np.ndarray) -> list:
        flags = [type(a).__name__, a.flags.writeable, a.flags.c_contiguous, a.shape]
        a += 1  # a loaded array is the step's own: this works on every run
        return [*flags, int(a.sum())]

    @zcas.pipeline
    def pipe(k: int):
        return bump(make(k))

    expected = int((np.arange(2 * n, dtype=np.int64).reshape(2, n)[:, ::2] + 1).sum())
    assert pipe(k=n).load() == ["ndarray", True, True, (2, n // 2), expected]


def test_changing_what_a_step_returned_does_not_reach_downstream(here):
    kept: list[int] = []

    @zcas.step
    def make() -> list:
        kept.append(1)
        return kept  # the caller's own list, changed again below

    @zcas.step
    def count(xs: list) -> int:
        return len(xs)

    @zcas.pipeline
    def pipe():
        made = make()
        kept.extend([2, 3])  # after the step returned: not what was stored under its id
        return count(made)

    assert pipe().load() == 1


def test_a_path_reaches_downstream_as_the_stored_copy(here):
    @zcas.step
    def write() -> pathlib.Path:
        d = pathlib.Path("made")
        d.mkdir(exist_ok=True)
        (d / "x.txt").write_text("stored")
        return d

    @zcas.step
    def read(p: pathlib.Path) -> list:
        return [(p / "x.txt").read_text(), p.resolve() == (here / "made").resolve()]

    @zcas.pipeline
    def pipe():
        made = write()
        (here / "made" / "x.txt").write_text("changed afterwards")
        return read(made)

    assert pipe().load() == ["stored", False]


class Box:
    def __init__(self, v):
        self.v = v

    def __eq__(self, other):
        return isinstance(other, Box) and other.v == self.v


def test_a_pickled_value_is_unpickled_for_downstream(here):
    original = Box([1, 2])

    @zcas.step(pickle=True)
    def make() -> Box:
        return original

    @zcas.step(pickle=True)
    def look(b: Box) -> list:
        b.v.append(3)  # its own copy: the object make returned is untouched
        return b.v

    @zcas.pipeline
    def pipe():
        return look(make())

    assert pipe().load() == [1, 2, 3]
    assert original.v == [1, 2]


def test_bytes_in_hand_still_need_the_pickle_opt_in():
    data = pickle.dumps(Box(1))
    with pytest.raises(zcas.ZcasError, match="refusing to unpickle"):
        Artifact("00" * 32, "pickle@1", data=data).load()
    assert Artifact("00" * 32, "pickle@1", data=data, allow_pickle=True).load() == Box(1)


def test_a_value_passed_to_several_steps_is_each_ones_own(here):
    """One artifact goes to every step it is passed to: ``load()`` handed each the same
    object, so ``grow`` changing its list changed ``count``'s and the caller's, and
    ``count``'s 4 was cached under the id of [1, 2, 3] (every later run a hit giving 4)."""

    @zcas.step
    def make() -> list:
        return [1, 2, 3]

    @zcas.step
    def grow(xs: list) -> int:
        xs.append(99)
        return len(xs)

    @zcas.step
    def count(xs: list) -> int:
        return len(xs)

    @zcas.step
    def both(a: list, b: list) -> list:
        a.append(0)
        return [len(a), len(b)]

    @zcas.pipeline
    def pipe():
        m = make()
        return m, grow(m), count(m), both(m, m)

    for _ in range(2):  # the first run (values decoded from the bytes just stored), then all hits
        m, g, c, b = pipe().output
        assert (m.load(), g.load(), c.load(), b.load()) == ([1, 2, 3], 4, 3, [4, 3])
        m.load().append(5)  # the caller's copy too is its own
        assert m.load() == [1, 2, 3] == zcas.Repository(here).get(m.id)


def test_an_array_passed_to_several_steps_is_each_ones_own(here):
    @zcas.step
    def make() -> np.ndarray:
        return np.zeros(4)

    @zcas.step
    def bump(a: np.ndarray) -> float:
        a += 1
        return float(a.sum())

    @zcas.step
    def total(a: np.ndarray) -> float:
        return float(a.sum())

    @zcas.pipeline
    def pipe():
        m = make()
        return bump(m), total(m), m

    for _ in range(2):
        b, t, m = pipe().output
        assert (b.load(), t.load(), m.load().tolist()) == (4.0, 0.0, [0.0] * 4)


def test_an_immutable_value_is_decoded_once_and_shared(here):
    @zcas.step
    def make() -> bytes:
        return b"x" * 100

    @zcas.pipeline
    def pipe():
        return make()

    for _ in range(2):
        a = pipe().output
        assert a.load() is a.load() == b"x" * 100


def test_a_put_value_loads_as_stored_not_as_the_object_put(here):
    """``Repository.put`` kept the object in hand as the artifact's value: a step given the
    artifact got that object (changed since by its owner, its dict keys unsorted, a numpy
    scalar) under a key naming the stored value."""
    repo = zcas.Repository(here)
    d = {"b": [1], "a": np.float64(0.5)}
    put = repo.put(d)
    d["b"].append(2)

    @zcas.step
    def look(x: dict) -> list:
        return [list(x), x["b"], type(x["a"]).__name__]

    @zcas.pipeline
    def pipe(x):
        return look(x)

    assert pipe(x=put).load() == [["a", "b"], [1], "float"]
    assert put.load() == {"a": 0.5, "b": [1]} and list(put.load()) == ["a", "b"]

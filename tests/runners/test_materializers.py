"""Every built-in materializer round-trips through the store, in this process and in a fresh
one (where nothing but zcas is imported first); a type with none is a one-line error."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import zcas
from zcas.runners import materializers as mats


@pytest.fixture
def repo(tmp_path):
    r = zcas.Repository.init(tmp_path)
    yield r
    r.close()


def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "i": np.arange(5, dtype="int32"), "f": [0.5, np.nan, 2.0, 3.5, -1.0], "s": list("abcde"),
        "t": pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC"), "c": pd.Categorical(list("xyxyz")),
        "b": [True, False, True, None, False],
    }, index=pd.Index([10, 20, 30, 40, 50], name="row"))


def _model():
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X = np.arange(60, dtype=float).reshape(20, 3)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, np.arange(20) % 2), X


def _same(a, b) -> None:
    if isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b)
    elif isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b)
    elif isinstance(a, pl.DataFrame):
        assert a.equals(b) and a.schema == b.schema
    elif isinstance(a, pa.Table):
        assert a.equals(b)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b, equal_nan=a.dtype.kind == "f")
    else:
        assert a == b and type(a) is type(b)


VALUES = {
    "pandas-parquet@1": _frame,
    "pandas-series-parquet@1": lambda: pd.Series([1.5, 2.5, None], index=["a", "b", "c"], name="price"),
    "arrow-parquet@1": lambda: pa.table({"x": [1, 2, 3], "y": ["a", None, "c"], "z": [[1], [], [2, 3]]}),
    "polars-parquet@1": lambda: pl.DataFrame({"x": [1, 2, None], "y": ["a", "b", "c"], "d": [1.0, 2.5, 3.0]}),
    "numpy@1": lambda: np.arange(24, dtype=np.float32).reshape(2, 3, 4),
    "json@1": lambda: {"a": [1, 2.5, None, True], "t": (1, "x"), "b": b"\x00\xff", "$k": {"n": -3}},
}


@pytest.mark.parametrize("tag", sorted(VALUES))
def test_round_trip(repo, tag):
    value = VALUES[tag]()
    art = repo.put(value)
    assert art.materializer == tag
    _same(value, zcas.Repository(repo.root).get(art.id))
    assert repo.put(VALUES[tag]()).id == art.id  # the same value stores as the same bytes


def test_series_without_a_name_and_with_an_int_name(repo):
    for s in (pd.Series([1, 2, 3]), pd.Series(["x"], name=7)):
        _same(s, repo.get(repo.put(s).id))
    with pytest.raises(zcas.ZcasError, match="name it with a str"):
        repo.put(pd.Series([1], name=("a", "b")))


def test_sklearn_through_skops_without_pickle(repo):
    model, X = _model()
    art = repo.put(model)
    assert art.materializer == "sklearn-skops@1"
    back = zcas.Repository(repo.root).get(art.id)  # no allow_pickle: skops loads only trusted types
    assert (back.predict_proba(X) == model.predict_proba(X)).all()
    assert repo.put(_model()[0]).id == art.id  # skops' archive made canonical: one model, one id


class Doubler:
    """A user's own transformer: skops would not trust it."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X * 2


def test_sklearn_with_a_type_skops_does_not_trust_needs_the_pickle_opt_in(repo):
    from sklearn.linear_model import LinearRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    X = np.arange(10, dtype=float).reshape(5, 2)
    model = make_pipeline(FunctionTransformer(Doubler().transform), LinearRegression()).fit(X, X[:, 0])
    with pytest.raises(mats.NeedsPickleError, match="pickle=True"):
        repo.put(model)
    art = repo.put(model, pickle=True)
    assert art.materializer == "pickle@1"
    with pytest.raises(zcas.ZcasError, match="refusing to unpickle"):
        zcas.Repository(repo.root).get(art.id)
    assert (zcas.Repository(repo.root).get(art.id, allow_pickle=True).predict(X) == model.predict(X)).all()


def test_loading_in_a_fresh_process_imports_the_library_it_needs(repo):
    ids = {tag: repo.put(make()).id for tag, make in VALUES.items()}
    ids["sklearn-skops@1"] = repo.put(_model()[0]).id
    code = (
        "import sys, zcas\n"
        "assert 'pandas' not in sys.modules and 'polars' not in sys.modules\n"
        f"r = zcas.Repository({repo.root!r})\n"
        f"for tag, i in {ids!r}.items():\n"
        "    print(tag, type(r.get(i)).__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    got = dict(line.split() for line in out if line)
    assert got == {"pandas-parquet@1": "DataFrame", "pandas-series-parquet@1": "Series", "arrow-parquet@1": "Table",
                   "polars-parquet@1": "DataFrame", "numpy@1": "ndarray", "json@1": "dict", "sklearn-skops@1": "Pipeline"}


def test_a_step_returning_a_dataframe_is_cached_and_loads_back(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    zcas.Repository.init(tmp_path)
    (tmp_path / "flow.py").write_text(
        "import pandas as pd, zcas\n"
        "@zcas.step\n"
        "def make(n: int) -> pd.DataFrame:\n"
        "    print('ran', flush=True)\n"
        "    return pd.DataFrame({'x': range(n)})\n"
        "@zcas.pipeline\n"
        "def main(n: int = 4):\n"
        "    return make(n)\n"
        "if __name__ == '__main__':\n"
        "    print(main().load()['x'].sum())\n"
    )
    first = subprocess.run([sys.executable, "flow.py"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    again = subprocess.run([sys.executable, "flow.py"], cwd=tmp_path, capture_output=True, text=True, check=True).stdout
    assert first.split() == ["ran", "6"] and again.split() == ["6"]


def test_a_type_with_none_is_named_with_how_to_register_one(repo):
    class Opaque:
        pass

    with pytest.raises(zcas.NoMaterializerError) as e:
        repo.put({"ok": 1, "bad": Opaque()})
    msg = str(e.value)
    assert "\n" not in msg and "Opaque" in msg and "@zcas.materializer(" in msg


def _large_arrays() -> dict:
    """Arrays of 1 MiB and more (stored without np.save's staging copies) of every layout."""
    rng = np.random.default_rng(0)
    n = 300_000
    return {
        "float64": rng.random(n), "2d float32": rng.random((600, 700)).astype(np.float32),
        "fortran": np.asfortranarray(rng.random((700, 600))), "strided view": rng.random((1200, 900))[::2, ::3],
        "big-endian": rng.integers(0, 9, n).astype(">i8"), "datetime": np.arange(n).astype("datetime64[s]"),
        "unicode": np.array([f"abc{i}" for i in range(n // 2)]), "bytes": np.array([b"x%d" % i for i in range(n)]),
        "structured": np.zeros(n, dtype=[("a", "<f8"), ("b", "i1", (3,))]),
        "aligned struct": np.ones(n, dtype=np.dtype([("a", "u1"), ("b", "<f8")], align=True)),
        "complex": rng.random(n) + 1j * rng.random(n), "bool": np.ones(4 * n, dtype=bool),
        "masked (stored as its data)": np.ma.array(rng.random(n)), "float16 3d": rng.random((n, 1, 4)).astype(np.float16),
    }


@pytest.mark.parametrize("name", sorted(_large_arrays()))
def test_a_large_array_is_stored_as_np_save_writes_it_and_loads_as_np_load_reads_it(name):
    import io

    a = _large_arrays()[name]
    m = mats.for_value(a)
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(a), allow_pickle=False)
    data = m.save(a)
    assert len(data) >= 1 << 20 and data == buf.getvalue()  # the same bytes: the same ids as before
    got, want = m.load(data), np.load(io.BytesIO(data), allow_pickle=False)
    assert type(got) is np.ndarray and got.dtype == want.dtype and got.shape == want.shape
    assert got.strides == want.strides and got.flags.writeable and got.flags.aligned
    # Compared by value: np.load leaves an aligned struct's padding bytes unset.
    assert np.array_equal(got, want) if want.dtype.fields is None else (got == want).all()
    got[(0,) * got.ndim] = want[(0,) * want.ndim]  # writable, and its own: the stored bytes are untouched
    assert m.save(a) == data


def test_a_large_npy_that_does_not_read_is_refused_as_np_load_refuses_it():
    a = np.arange(300_000, dtype=np.float64)
    data = mats.for_value(a).save(a)
    with pytest.raises(ValueError, match="array data"):
        mats.by_name("numpy").load(data[:-8])  # truncated: np.load's own error
    assert mats.by_name("numpy").load(data + b"\0" * 8).tolist() == a.tolist()  # trailing bytes: ignored, as np.load does

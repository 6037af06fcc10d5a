"""Materializers: how a Python value becomes bytes in the store, and comes back.

A registry from type to (name, version, save, load). The version is part of every cache
key that reads or writes such a value, so changing how a type is stored invalidates what
was stored the old way. Built in: plain values (canonical JSON, tuples kept), bytes,
numpy arrays (dtype and shape kept, no pickle), pandas DataFrames and Series, pyarrow
tables and polars DataFrames as Parquet, scikit-learn estimators through skops (each when
its library is installed), and ``pathlib.Path`` (a file or folder, handed back checked out).
A type with no materializer is an error naming it; pickle only for steps that opt in.
"""

from __future__ import annotations

import base64
import io
import json
import pathlib
import re
import sys
import typing
from collections.abc import Callable
from typing import Any

import attrs

from zcas.cas.errors import UsageError


class NoMaterializerError(UsageError, TypeError):
    def __init__(self, tp: type) -> None:
        self.type = tp
        name = f"{tp.__module__}.{tp.__qualname__}"
        super().__init__(
            f"no materializer for {name}: register one with @zcas.materializer({tp.__qualname__}), "
            f"or let the step pickle it with @zcas.step(pickle=True) (unsafe to load from a shared store)"
        )


class NeedsPickleError(UsageError, TypeError):
    """This value's materializer has no safe stored form for it (a scikit-learn model
    holding a user's own class): stored with pickle when the step opted in, else this error."""


@attrs.frozen
class Materializer:
    name: str
    version: str
    save: Callable[[Any], bytes]
    load: Callable[[bytes], Any]
    types: tuple[type, ...] = ()

    @property
    def tag(self) -> str:
        return f"{self.name}@{self.version}"


_by_type: dict[type, Materializer] = {}
_by_name: dict[str, Materializer] = {}
_lazy: list[tuple[str, str, Callable[[], None]]] = []  # (module, type name, registrar)


def register(m: Materializer) -> Materializer:
    for t in m.types:
        _by_type[t] = m
    _by_name[m.name] = m
    return m


def materializer(tp: type, *, name: str | None = None, version: str = "1") -> Callable[[Any], Any]:
    """Register a class with ``save(value) -> bytes`` and ``load(data) -> value`` for ``tp``.

    Use as ``@zcas.materializer(MyType)`` on a class (or any object) with those two
    static or class methods; bump ``version`` whenever the stored form changes.
    """

    def deco(cls: Any) -> Any:
        register(Materializer(name or f"user:{tp.__module__}.{tp.__qualname__}", str(version), cls.save, cls.load, (tp,)))
        return cls

    return deco


def by_name(tag_or_name: str) -> Materializer:
    name = tag_or_name.split("@")[0]
    if name not in _by_name and name in _OPTIONAL:
        _OPTIONAL[name]()  # loading a stored array: numpy is needed now, so import it
    m = _by_name.get(name)
    if m is None:
        raise UsageError(f"no materializer named {name!r} is registered in this process "
                         "(was it defined in a module not imported?)")
    return m


def for_value(value: Any, allow_pickle: bool = False) -> Materializer:
    tp = type(value)
    m = _by_type.get(tp)
    if m is None and _plain(value):
        m = _by_name["json"]
    if m is None:
        _register_imported()  # a numpy array implies numpy is imported: no import cost here
        m = _by_type.get(tp) or next((m for t, m in _by_type.items() if isinstance(value, t)), None)
    if m is None:
        if allow_pickle:
            return _by_name["pickle"]
        raise NoMaterializerError(_first_bad(value) if tp in (list, tuple, dict) else tp)
    if m.name == "json" and not _plain(value):
        if allow_pickle:
            return _by_name["pickle"]
        raise NoMaterializerError(_first_bad(value))
    return m


def check_return_type(fn: Callable[..., Any], allow_pickle: bool) -> None:
    """Before a step runs: if its return annotation is a class no materializer handles,
    say so now rather than after the work is done (best effort: annotations that are not
    a plain class, or cannot be resolved, are checked on the value instead)."""
    if allow_pickle:
        return
    try:
        ret = typing.get_type_hints(fn).get("return")
    except Exception:  # noqa: BLE001 - an annotation we cannot resolve is not the user's error here
        return
    if not isinstance(ret, type) or ret in (object, type(None), bool, int, float, str, bytes, bytearray, list, tuple, dict):
        return
    if ret in _by_type or any(issubclass(ret, t) for t in _by_type):
        return
    _register_imported()
    if ret in _by_type or any(issubclass(ret, t) for t in _by_type):
        return
    raise NoMaterializerError(ret)


# -- plain values: canonical JSON with tuples and bytes tagged ------------------------------


def _np_scalar(v: Any) -> bool:
    """A numpy scalar (np.float64, np.int32, np.bool_ ...): what ``arr.mean()`` returns,
    stored as the plain Python value its ``item()`` gives."""
    return type(v).__module__ == "numpy" and getattr(v, "ndim", None) == 0 and hasattr(v, "item")


def _plain(v: Any, depth: int = 0) -> bool:
    if depth > 100:
        return False
    if v is None or type(v) in (bool, int, str, bytes):
        return True
    if _np_scalar(v):
        x = v.item()
        return type(x) is not type(v) and _plain(x, depth + 1)
    if type(v) is float:
        return v == v and v not in (float("inf"), float("-inf"))
    if type(v) in (list, tuple):
        return all(_plain(x, depth + 1) for x in v)
    if type(v) is dict:
        return all(type(k) is str and _plain(x, depth + 1) for k, x in v.items())
    return False


def _first_bad(v: Any) -> type:
    if type(v) in (list, tuple):
        for x in v:
            if not _plain(x):
                return _first_bad(x)
    if type(v) is dict:
        for k, x in v.items():
            if type(k) is not str:
                return type(k)
            if not _plain(x):
                return _first_bad(x)
    return type(v)


def _tag(v: Any) -> Any:
    if _np_scalar(v):
        v = v.item()
    if type(v) is tuple:
        return {"$tuple": [_tag(x) for x in v]}
    if type(v) is list:
        return [_tag(x) for x in v]
    if type(v) is dict:
        if any(k.startswith("$") for k in v):
            return {"$dict": {k: _tag(x) for k, x in v.items()}}
        return {k: _tag(x) for k, x in v.items()}
    if type(v) is bytes:
        return {"$bytes": base64.b64encode(v).decode()}
    return v


def _untag(v: Any) -> Any:
    if type(v) is list:
        return [_untag(x) for x in v]
    if type(v) is dict:
        if len(v) == 1:
            (k, x), = v.items()
            if k == "$tuple":
                return tuple(_untag(y) for y in x)
            if k == "$bytes":
                return base64.b64decode(x)
            if k == "$dict":
                return {a: _untag(b) for a, b in x.items()}
        return {k: _untag(x) for k, x in v.items()}
    return v


def canonical_value(v: Any) -> bytes:
    return json.dumps(_tag(v), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


register(Materializer("json", "1", canonical_value, lambda b: _untag(json.loads(b)), ()))
register(Materializer("bytes", "1", bytes, bytes, (bytes, bytearray)))


def _pickle_save(v: Any) -> bytes:
    import pickle  # ~1 ms of every start (-X importtime), for the steps that opted in only

    return pickle.dumps(v, protocol=5)


def _pickle_load(b: bytes) -> Any:
    import pickle

    return pickle.loads(b)  # noqa: S301 - only for steps that opted in


register(Materializer("pickle", "1", _pickle_save, _pickle_load, ()))


# -- paths: stored as blob or tree, handed back as a checked-out path -----------------------


# Paths are stored (and checked out) by the step runner, which has the repository at hand;
# this entry gives them a name and version like any other type.
PATH = register(Materializer("path", "1", lambda v: b"", lambda b: None, (pathlib.Path, pathlib.PosixPath)))


# -- optional libraries, registered on first need --------------------------------------------
# numpy, pyarrow and pandas are optional dependencies, and heavy (numpy alone takes ~85 ms to
# import, measured): they are imported here, inside the registrars, only once a value needs them.


_DIRECT = 1 << 20  # arrays of at least this many bytes skip np.save's and np.load's staging copies


def _numpy() -> None:
    try:
        import numpy as np
    except ImportError:
        return
    header = _npy_header_writer()

    def save(a: Any) -> bytes:
        if a.dtype.hasobject:
            raise UsageError("numpy arrays of Python objects have no safe stored form; use a plain dtype")
        c = np.ascontiguousarray(a)
        if header is not None and c.nbytes >= _DIRECT and getattr(type(c.dtype), "_legacy", False):
            # What np.save writes (its own header writer, then the C-order bytes), in one
            # copy: np.save to a BytesIO copies through 16 MiB staging buffers and getvalue
            # copies again (80 ms for 50 MB here, against 15 ms).
            head = io.BytesIO()
            header(head, np.lib.format.header_data_from_array_1_0(c), None)
            return b"".join((head.getvalue(), c.reshape(-1).view(np.uint8).data))
        buf = io.BytesIO()
        np.save(buf, c, allow_pickle=False)
        return buf.getvalue()

    def load(b: bytes) -> Any:
        if len(b) >= _DIRECT:
            a = _npy_direct(np, b)
            if a is not None:
                return a
        return np.load(io.BytesIO(b), allow_pickle=False)

    register(Materializer("numpy", "1", save, load, (np.ndarray,)))


def _npy_header_writer() -> Callable[..., None] | None:
    """numpy's own writer of .npy headers (what np.save calls, choosing the format version
    as it does), or None where this numpy has it elsewhere: then np.save is used whole."""
    import importlib

    for where in ("numpy.lib._format_impl", "numpy.lib.format"):  # numpy 2, numpy 1
        try:
            writer = getattr(importlib.import_module(where), "_write_array_header", None)
        except ImportError:
            continue
        if writer is not None:
            return writer
    return None


def _npy_direct(np: Any, b: bytes) -> Any:
    """What ``np.load`` gives for the .npy bytes ``b``, with one copy instead of np.load's
    two (it reads a BytesIO in 256 KiB pieces, each copied out and then in); None for
    anything but a plain version 1 or 2 file, which np.load then reads (or refuses) itself."""
    import math

    fmt = np.lib.format
    f = io.BytesIO(b)  # shares the bytes: nothing is written to it
    try:
        version = fmt.read_magic(f)
        read = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
        if read is None:
            return None
        shape, fortran_order, dtype = read(f)
    except ValueError:
        return None
    count = math.prod(shape)
    if dtype.hasobject or dtype.itemsize == 0 or not getattr(type(dtype), "_legacy", False) \
            or f.tell() + count * dtype.itemsize > len(b):
        return None
    array = np.frombuffer(b, dtype=dtype, count=count, offset=f.tell()).copy()
    # Shaped as np.load shapes it (format.read_array).
    return array.reshape(shape[::-1]).transpose() if fortran_order else array.reshape(shape)


def _arrow() -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return
    register(Materializer("arrow-parquet", "1", _parquet_bytes, lambda b: pq.read_table(io.BytesIO(b)), (pa.Table,)))


def _parquet_bytes(t: Any) -> bytes:
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(t, buf)
    return buf.getvalue()


_SERIES_KEY = b"zcas.series"  # Parquet schema metadata: the Series' name, as JSON


def _pandas() -> None:
    """DataFrames and Series as Parquet through pyarrow (index and dtypes kept by pandas'
    own Parquet metadata). A Series is a one-column table whose real name rides in the
    schema metadata, since a name need not be a string."""
    try:
        import pandas as pd
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return

    def table(df: Any) -> Any:
        try:
            return pa.Table.from_pandas(df)
        except (pa.ArrowException, ValueError, TypeError) as e:
            raise UsageError(f"cannot store this {type(df).__name__} as Parquet: {str(e).splitlines()[0]}") from None

    def save_series(s: Any) -> bytes:
        if s.name is not None and type(s.name) not in (str, int, float, bool):
            raise UsageError(f"cannot store a Series named {s.name!r}: name it with a str, int, float or bool")
        t = table(s.to_frame(name="value"))
        meta = dict(t.schema.metadata or {})
        meta[_SERIES_KEY] = json.dumps({"name": s.name}).encode()
        return _parquet_bytes(t.replace_schema_metadata(meta))

    def load_series(b: bytes) -> Any:
        t = pq.read_table(io.BytesIO(b))
        name = json.loads((t.schema.metadata or {}).get(_SERIES_KEY, b'{"name": null}'))["name"]
        return t.to_pandas()["value"].rename(name)

    register(Materializer("pandas-parquet", "1", lambda df: _parquet_bytes(table(df)),
                          lambda b: pq.read_table(io.BytesIO(b)).to_pandas(), (pd.DataFrame,)))
    register(Materializer("pandas-series-parquet", "1", save_series, load_series, (pd.Series,)))


def _polars() -> None:
    try:
        import polars as pl
    except ImportError:
        return

    def save(df: Any) -> bytes:
        buf = io.BytesIO()
        df.write_parquet(buf)
        return buf.getvalue()

    register(Materializer("polars-parquet", "1", save, lambda b: pl.read_parquet(io.BytesIO(b)), (pl.DataFrame,)))


def _sklearn() -> None:
    """scikit-learn estimators through skops.io, not joblib: skops stores no pickle and
    loads only types it trusts (scikit-learn's, numpy's, scipy's), so a stored model from
    a shared remote cannot run code, and no pickle opt-in is needed. An estimator holding
    a type skops would not trust (a user's own transformer) is refused when stored, naming
    the types, rather than stored unloadable; such steps can opt in to pickle instead."""
    try:
        import sklearn.base
        import skops.io as sio
    except ImportError:
        return

    def save(est: Any) -> bytes:
        data = _stable_zip(sio.dumps(est))
        untrusted = sio.get_untrusted_types(data=data)
        if untrusted:
            raise NeedsPickleError(f"skops will not load {', '.join(untrusted)} without trusting it: store this "
                                   "estimator with @zcas.step(pickle=True) (unsafe to load from a shared store)")
        return data

    register(Materializer("sklearn-skops", "1", save, lambda b: sio.loads(b), (sklearn.base.BaseEstimator,)))


_SKOPS_IDS = re.compile(r'(?<="__id__": )\d+|(?<=")\d+(?=(\.np[yz])")')  # object ids, and files named by them


def _stable_zip(data: bytes) -> bytes:
    """skops' archive with its varying parts made canonical, so one model gives one id:
    the ``id()`` of objects (``__id__`` and the array files named by them) renumbered in
    order of first mention in the schema,
    timestamps fixed, members sorted and stored uncompressed (zstd compresses them)."""
    import zipfile

    src = zipfile.ZipFile(io.BytesIO(data))
    ids: dict[str, str] = {}  # id() of an object in the saving process -> its order of first mention

    members = {i.filename for i in src.infolist()}

    def renumber(m: re.Match[str]) -> str:
        n = m.group(0)
        if m.group(1) and n + m.group(1) not in members:  # a string that only looks like a file name
            return n
        return ids.setdefault(n, str(len(ids) + 1))

    schema = _SKOPS_IDS.sub(renumber, src.read("schema.json").decode())
    names = {f"{k}{ext}": f"{v}{ext}" for k, v in ids.items() for ext in (".npy", ".npz")}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        files = {"schema.json": schema.encode()}
        files.update({names.get(i.filename, i.filename): src.read(i) for i in src.infolist() if i.filename != "schema.json"})
        for name in sorted(files):
            dst.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), files[name])
    return out.getvalue()


_OPTIONAL: dict[str, Callable[[], None]] = {
    "numpy": _numpy, "arrow-parquet": _arrow, "pandas-parquet": _pandas, "pandas-series-parquet": _pandas,
    "polars-parquet": _polars, "sklearn-skops": _sklearn,
}
_done: set[str] = set()


def _register_imported() -> None:
    for mod, fn in (("numpy", _numpy), ("pyarrow", _arrow), ("pandas", _pandas), ("polars", _polars), ("sklearn", _sklearn)):
        if mod in sys.modules and mod not in _done:
            _done.add(mod)
            fn()

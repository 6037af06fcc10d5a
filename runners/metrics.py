"""Metrics: what a step reports about its result, as flat ``name -> number`` maps.

A record holds metrics flat (``train.loss``), so that runs compare column by column
whatever shape each step wrote them in. They come from three places, all ending in
``flatten``: files a step declares (JSON, YAML, TOML, or CSV with a header row), calls of
``zcas.log_metric`` inside a Python step, and a Python step's result annotated
``zcas.Metrics``.

A metrics file that is not what it claims is the step's failure, never a partial record:
every error is one ``MetricsError`` line naming the file and the key.
"""

from __future__ import annotations

import contextvars
import csv
import io
import json
import math
import os
import threading
import tomllib
import typing
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

from zcas.cas.errors import ZcasError
from zcas.lineage.records import (
    MAX_ENTRIES,
    MAX_NS,
    MAX_POINTS,
    MAX_RUN_POINTS,
    MAX_SERIES,
    RecordError,
    check_metric,
    check_metric_name,
)

MAX_FILE = 16 << 20  # bytes of one metrics file: a metrics file is a summary, not a dataset
FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".toml": "toml", ".csv": "csv", ".tsv": "tsv"}


class MetricsError(ZcasError, ValueError):
    """Metrics that cannot be recorded: a file that does not parse, a value that is no number."""


METRICS_MARK = "zcas.metrics"
# A step's result that is also its metrics: ``def evaluate(...) -> zcas.Metrics``. The value
# is stored as the step's output like any dict, and recorded, flattened, as its metrics. An
# annotation rather than a dict subclass: the result stays a plain dict for every
# materializer and every reader.
Metrics = Annotated[dict[str, Any], METRICS_MARK]


def returns_metrics(fn: Any) -> bool:
    """Whether a step's return annotation is ``zcas.Metrics`` (also as a string, under
    ``from __future__ import annotations``)."""
    ann = getattr(fn, "__annotations__", {}).get("return")
    if isinstance(ann, str):
        text = ann
        try:
            ann = typing.get_type_hints(fn, include_extras=True).get("return")
        except Exception:  # noqa: BLE001 - an unresolvable annotation: judge by its text
            return text.rsplit(".", 1)[-1] == "Metrics"
    return METRICS_MARK in getattr(ann, "__metadata__", ())


def flatten(value: Mapping[str, Any], where: str) -> dict[str, int | float]:
    """``{"train": {"loss": 0.1}}`` as ``{"train.loss": 0.1}``; lists by index
    (``scores.0``). Booleans, strings and nulls are no metrics: naming the key beats
    guessing what ``"0.9"`` or ``true`` meant."""
    out: dict[str, int | float] = {}
    todo: list[tuple[str, Any]] = [(str(k), v) for k, v in value.items()]
    while todo:
        name, v = todo.pop()
        if isinstance(v, Mapping):
            todo.extend((f"{name}.{k}", x) for k, x in v.items())
            continue
        if isinstance(v, (list, tuple)):
            todo.extend((f"{name}.{i}", x) for i, x in enumerate(v))
            continue
        out[name] = number(v, where, name)
        if len(out) > MAX_ENTRIES:
            raise MetricsError(f"{where}: more than {MAX_ENTRIES} metrics")
    for name in out:
        try:
            check_metric_name("metric", name)
        except RecordError:
            raise MetricsError(f"{where}: key {name!r} is not a metric name (dotted parts, none empty)") from None
    return dict(sorted(out.items()))


def number(v: Any, where: str, key: str) -> int | float:
    """A metric's value as the record keeps it (an int stays an int), or one line why not."""
    if type(v) is not bool:
        if hasattr(v, "item") and not isinstance(v, (int, float)):  # numpy scalars
            v = v.item()
        if isinstance(v, int) and not isinstance(v, bool):
            v = int(v)
        elif isinstance(v, float):
            v = float(v)
    try:
        check_metric(key, v)
    except RecordError:
        shown = repr(v) if len(repr(v)) <= 40 else repr(v)[:37] + "..."
        kind = "not finite" if isinstance(v, float) and not math.isfinite(v) else "not a number"
        raise MetricsError(f"{where}: key {key!r}: {shown} is {kind}") from None
    return v


def parse(data: bytes, fmt: str, where: str) -> dict[str, int | float]:
    """The flat metrics a file's bytes hold, read as ``fmt`` (see ``FORMATS``)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise MetricsError(f"{where}: not UTF-8 text") from None
    if fmt in ("csv", "tsv"):
        return _table(text, "," if fmt == "csv" else "\t", where)
    doc = _document(text, fmt, where)
    if not isinstance(doc, Mapping):
        raise MetricsError(f"{where}: holds a {type(doc).__name__}, not a table of metrics")
    return flatten(doc, where)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _document(text: str, fmt: str, where: str) -> Any:
    try:
        if fmt == "json":
            return json.loads(text, parse_constant=_no_constant)
        if fmt == "toml":
            return tomllib.loads(text)
        try:
            import yaml
        except ImportError:
            raise MetricsError(f"{where}: reading YAML needs PyYAML: pip install 'zcas[exp]'") from None
        return yaml.safe_load(text)
    except MetricsError:
        raise
    except Exception as e:  # noqa: BLE001 - each parser has its own error types; one line names the file
        first = (str(e).splitlines() or [type(e).__name__])[0][:160]
        raise MetricsError(f"{where}: not valid {fmt.upper()}: {first}") from None


def _table(text: str, sep: str, where: str) -> dict[str, int | float]:
    """CSV with a header row: one row is one metric per column; several rows (an epoch
    log, say) keep the last row as the metrics, as DVC's ``metrics show`` reads a table."""
    rows = list(csv.reader(io.StringIO(text), delimiter=sep))
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise MetricsError(f"{where}: needs a header row and at least one row of values")
    header, last = rows[0], rows[-1]
    if len(last) != len(header):
        raise MetricsError(f"{where}: last row has {len(last)} values for {len(header)} columns")
    out: dict[str, int | float] = {}
    for key, cell in zip(header, last, strict=True):
        out[key.strip()] = _cell(cell.strip(), where, key.strip())
    return flatten(out, where)


def _cell(text: str, where: str, key: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        v = float(text)
    except ValueError:
        v = None
    return number(v if v is not None else text, where, key)


def read_file(root: str, rel: str) -> dict[str, int | float]:
    """The metrics of a declared file in the working tree, by its extension."""
    fmt = FORMATS.get(os.path.splitext(rel)[1].lower())
    if fmt is None:
        raise MetricsError(f"metrics file {rel}: unknown format (use .json, .yaml, .yml, .toml, .csv or .tsv)")
    path = os.path.join(root, rel)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise MetricsError(f"metrics file {rel}: was not produced") from None
    except OSError as e:
        raise MetricsError(f"metrics file {rel}: {e.strerror or e}") from None
    if len(data) > MAX_FILE:
        raise MetricsError(f"metrics file {rel}: larger than {MAX_FILE >> 20} MiB")
    return parse(data, fmt, f"metrics file {rel}")


def read_files(root: str, rels: list[str] | tuple[str, ...]) -> dict[str, int | float]:
    """Every declared file's metrics in one map; two files naming one metric is an error
    (which would a comparison show?)."""
    out: dict[str, int | float] = {}
    seen: dict[str, str] = {}
    for rel in rels:
        for k, v in read_file(root, rel).items():
            if k in out:
                raise MetricsError(f"metrics file {rel}: key {k!r} is also in {seen[k]}")
            out[k], seen[k] = v, rel
    return out


# -- zcas.log_metric: metrics a Python step reports while it runs ------------------------------

MAX_POINTS_PER_RUN = MAX_RUN_POINTS  # points over every series of one run: a record stays well under its size limit


class Logged(dict[str, int | float]):
    """What a step logged: metrics by name, and ``series``: name -> {step: value}."""

    __slots__ = ("series", "points")

    def __init__(self) -> None:
        super().__init__()
        self.series: dict[str, dict[int, int | float]] = {}
        self.points = 0


_current: contextvars.ContextVar[Logged | None] = contextvars.ContextVar("zcas_metrics", default=None)
_lock = threading.Lock()


@contextmanager
def collecting() -> Iterator[Logged]:
    """Metrics logged in this context (the step executing in this thread) land in the map
    (and series, in its ``series``)."""
    found = Logged()
    token = _current.set(found)
    try:
        yield found
    finally:
        _current.reset(token)


def _logged(what: str) -> Logged:
    found = _current.get()
    if found is None:
        raise MetricsError(f"zcas.{what}: no step is executing (call it inside a @zcas.step)")
    return found


def _step(step: Any, what: str) -> int:
    if isinstance(step, bool) or not isinstance(step, int):
        if hasattr(step, "item") and not isinstance(step, (float, bool)):  # numpy integers
            return _step(step.item(), what)
        raise MetricsError(f"zcas.{what}: step must be an integer, not {type(step).__name__}")
    if not 0 <= step <= MAX_NS:
        raise MetricsError(f"zcas.{what}: step {step} is out of range [0, {MAX_NS}]")
    return int(step)


def log_metrics(values: Mapping[str, Any], step: int | None = None) -> None:
    """Record metrics of the step executing now; nested maps flatten (``{"train": {"loss": x}}``
    is ``train.loss``), a later value of one name replaces the earlier one. With ``step``
    (an integer: an epoch, an iteration), each value is also the point at ``step`` of that
    metric's series (a step logged again replaces its point). Outside a step it is an
    error: a metric that goes nowhere would be a silent loss."""
    what = "log_metrics"
    found = _logged(what)
    if not isinstance(values, Mapping):
        raise MetricsError(f"zcas.{what}: expected a dict of metrics, not {type(values).__name__}")
    flat = flatten(values, f"zcas.{what}")
    if step is None:
        with _lock:
            found.update(flat)
        return
    at = _step(step, what)
    with _lock:
        for name, v in flat.items():
            pts = found.series.get(name)
            if pts is None:
                if len(found.series) >= MAX_SERIES:
                    raise MetricsError(f"zcas.{what}: more than {MAX_SERIES} series in one run")
                pts = found.series[name] = {}
            if at not in pts:
                if found.points >= MAX_POINTS_PER_RUN:
                    raise MetricsError(f"zcas.{what}: more than {MAX_POINTS_PER_RUN} points in one run")
                if len(pts) >= MAX_POINTS:
                    raise MetricsError(f"zcas.{what}: series {name!r} has more than {MAX_POINTS} points")
                found.points += 1
            pts[at] = v


def log_metric(name: str, value: Any, step: int | None = None) -> None:
    """Record one metric of the step executing now (``name`` may be dotted: ``train.loss``);
    with ``step``, also the point at that step of its series (a loss per epoch)."""
    if not isinstance(name, str):
        raise MetricsError(f"zcas.log_metric: a metric's name is a string, not {type(name).__name__}")
    log_metrics({name: value}, step)


def series_of(logged: Mapping[str, Any]) -> dict[str, list[list[int | float]]]:
    """The series a step logged, as its record holds them: name -> [[step, value], ...] by
    step (names sorted)."""
    series = getattr(logged, "series", None) or {}
    return {name: [[s, v] for s, v in sorted(pts.items())] for name, pts in sorted(series.items())}


def from_result(fn: Any, result: Any, logged: dict[str, int | float]) -> dict[str, int | float]:
    """A Python step's metrics: what it logged, and its result if annotated ``zcas.Metrics``.
    A series' metric is its value at its highest step, unless the step logged that name
    without a step, or returned it (those values stand)."""
    out = {name: pts[max(pts)] for name, pts in (getattr(logged, "series", None) or {}).items() if pts}
    out.update(logged)
    if returns_metrics(fn):
        if not isinstance(result, Mapping):
            raise MetricsError(f"returned zcas.Metrics: a {type(result).__name__}, not a dict of metrics")
        out.update(flatten(result, "returned zcas.Metrics"))
    return dict(sorted(out.items()))

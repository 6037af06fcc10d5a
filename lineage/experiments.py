"""Experiments: runs side by side, as rows of params and metrics, and two of them compared.

An experiment is what one comparison row stands for:

- a run of a step or a pipeline, by name (a pipeline's record holds its steps' metrics);
- one ``zcas run`` of a ``zcas.toml`` pipeline (a *session*): every step run it recorded,
  params named ``STEP.KEY`` and metrics together, as DVC's ``exp show`` shows a workspace.

Rows come from the index's record bytes in one read transaction, newest first, and a
record is parsed only when it holds one of the names asked for, so ten thousand runs among
many more cost one pass over the time index (see benchmarks/bench_exp.py). Pulled runs are
in the index like any: a teammate's experiments show with the rest.
"""

from __future__ import annotations

import gc
import json
import marshal
import math
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import chain
from typing import Any

from zcas.cas.errors import UsageError

from .graph import flat

Number = int | float


Raw = tuple[tuple[str, ...], tuple[Any, ...], tuple[str, ...], tuple[Any, ...]]


class Experiment:
    """One row: ``id`` is a run's id (a session's: its newest run's).

    A row read from the index may hold its params and metrics as the index does, ``raw``:
    (param names, values, metric names, values), the names tuples shared by every row of
    one shape. Its ``params`` and ``metrics`` maps are then made when first asked for; a
    text table of ten thousand rows reads ``raw`` a column at a time and makes none."""

    __slots__ = ("id", "name", "status", "started_ns", "runs", "user", "host", "raw", "_params", "_metrics")

    def __init__(self, id: str, name: str, status: str, started_ns: int, params: dict[str, Any] | None,
                 metrics: dict[str, Number] | None, runs: list[str], user: str = "", host: str = "",
                 raw: Raw | None = None) -> None:
        if raw is None and (params is None or metrics is None):
            raise TypeError("Experiment needs params and metrics, or raw")
        self.id, self.name, self.status, self.started_ns, self.runs = id, name, status, started_ns, runs
        self.user, self.host, self.raw = user, host, raw
        self._params, self._metrics = params, metrics

    @property
    def params(self) -> dict[str, Any]:
        if self._params is None:
            assert self.raw is not None
            self._params = dict(zip(self.raw[0], self.raw[1], strict=True))
        return self._params

    @params.setter
    def params(self, value: dict[str, Any]) -> None:
        self.metrics  # noqa: B018 - made from raw before raw, no longer this row's, is dropped
        self._params, self.raw = value, None

    @property
    def metrics(self) -> dict[str, Number]:
        if self._metrics is None:
            assert self.raw is not None
            self._metrics = dict(zip(self.raw[2], self.raw[3], strict=True))
        return self._metrics

    @metrics.setter
    def metrics(self, value: dict[str, Number]) -> None:
        self.params  # noqa: B018 - made from raw before raw, no longer this row's, is dropped
        self._metrics, self.raw = value, None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Experiment) and self.as_dict() == other.as_dict()

    __hash__ = None  # type: ignore[assignment]  # (mutable, as the attrs class it replaced)

    def __repr__(self) -> str:
        return f"Experiment({', '.join(f'{k}={v!r}' for k, v in self.as_dict().items())})"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status, "started_ns": self.started_ns,
                "params": self.params, "metrics": self.metrics, "runs": self.runs, "user": self.user, "host": self.host}


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Build many small objects without the cycle collector running over them again and
    again (ten thousand rows are 50,000 objects: collections took a third of the time)."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


Decoded = tuple[bytes, int, str, Any, str, str, tuple[str, ...], tuple[Any, ...], tuple[str, ...], tuple[Any, ...]]


def _decoded(lineage: Any, name: str) -> list[Decoded]:
    """(run id, started_ns, status, session, user, host, param names, param values, metric
    names, metric values) of a step's runs, newest first, from the index's exps database
    (one cursor walk, rows holding values only; the names come from ``cols``, once each)."""
    loads = marshal.loads
    graph = lineage.graph
    names: dict[bytes, tuple[str, ...] | None] = {b"": ()}

    def missing(nid: Any) -> tuple[str, ...] | None:  # read once per distinct tuple of names
        got = names[nid] = graph.names([nid]).get(nid) if type(nid) is bytes else None
        return got

    out = []
    for rid, started, data in reversed(graph.exp_rows(name)):
        try:  # written by graph.exp_row from a validated record: a row that is not one is skipped
            status, session, user, host, pid, pvals, mid, mvals = loads(data)
            pn = names[pid] if pid in names else missing(pid)
            mn = names[mid] if mid in names else missing(mid)
        except (ValueError, EOFError, TypeError):
            continue
        if pn is None or mn is None or type(pvals) is not tuple or type(mvals) is not tuple \
                or len(pn) != len(pvals) or len(mn) != len(mvals):
            continue
        out.append((rid, started, status, session, user, host, pn, pvals, mn, mvals))
    return out


def of_run(rid: str, rec: dict[str, Any]) -> Experiment:
    """The row of one run record."""
    return Experiment(id=rid, name=rec["step"], status=rec["status"], started_ns=rec["started_ns"],
                      params=flat(rec.get("params") or {}), metrics=dict(rec.get("metrics") or {}), runs=[rid],
                      user=rec.get("user", ""), host=rec.get("host", ""))


def of_name(lineage: Any, name: str, failed: bool = False) -> list[Experiment]:
    """The runs of one step or pipeline, newest first (failed ones only if asked)."""
    with _gc_paused():
        out = []
        for rid, started, status, _, user, host, pn, pvals, mn, mvals in _decoded(lineage, name):
            if failed or status != "failed":
                h = rid.hex()
                out.append(Experiment(h, name, status, started, None, None, [h], user, host, (pn, pvals, mn, mvals)))
        return out


def known(lineage: Any, name: str) -> bool:
    """Whether any run of this step or pipeline is indexed."""
    return bool(lineage.graph.has_exps(name))


def of_sessions(lineage: Any, steps: Iterable[str], failed: bool = False, name: str = "zcas.toml") -> list[Experiment]:
    """One row per ``zcas run`` of a pipeline of command steps: its step runs together,
    newest session first. A session with a failed step is a failed experiment; a step run
    twice in one session shows its last run."""
    with _gc_paused():
        return _sessions(lineage, list(steps), failed, name)


def _sessions(lineage: Any, steps: list[str], failed: bool, name: str) -> list[Experiment]:
    found = []
    for step in steps:
        prefixed: dict[tuple[str, ...], tuple[str, ...]] = {}  # a step's param names as STEP.NAME, made once
        for rid, started, status, sid, user, host, pn, pvals, mn, mvals in _decoded(lineage, step):
            pre = prefixed.get(pn)
            if pre is None:
                pre = prefixed[pn] = tuple(f"{step}.{k}" for k in pn)
            found.append((started, rid, status, sid or rid, user, host, pre, pvals, mn, mvals))
    found.sort(key=operator.itemgetter(0))  # oldest first: a later run's values replace an earlier one's
    groups: dict[Any, list[Any]] = {}
    for f in found:
        groups.setdefault(f[3], []).append(f)
    out = []
    params, metrics = _Merger(6), _Merger(8)
    status_of, id_of = operator.itemgetter(2), operator.itemgetter(1)
    for runs in groups.values():
        status = "failed" if "failed" in map(status_of, runs) else "ran"
        if status == "failed" and not failed:
            continue
        first = runs[0]
        ids = list(map(bytes.hex, map(id_of, reversed(runs))))
        out.append(Experiment(ids[0], name, status, first[0], params(runs), metrics(runs), ids,
                              first[4], first[5]))
    out.sort(key=operator.attrgetter("started_ns"), reverse=True)
    return out


class _Merger:
    """A session's params (or metrics) from its step runs, oldest first, as one map with its
    keys sorted, a later run's value replacing an earlier one's. Sessions of one pipeline
    share their step runs' names: the merged, sorted names (and how to pick the values from
    the runs' values put end to end) are worked out once per distinct tuple of names."""

    def __init__(self, at: int) -> None:
        self.memo: dict[tuple[tuple[str, ...], ...], tuple[tuple[str, ...], Any]] = {}
        self.names, self.values = operator.itemgetter(at), operator.itemgetter(at + 1)

    def __call__(self, runs: list[Any]) -> dict[str, Any]:
        shape = tuple(map(self.names, runs))
        how = self.memo.get(shape)
        if how is None:
            merged: dict[str, int] = {}
            for i, k in enumerate(k for names in shape for k in names):
                merged[k] = i  # a later position of a name replaces an earlier
            order = tuple(sorted(merged))
            pick = operator.itemgetter(*(merged[k] for k in order)) if order else None
            how = self.memo[shape] = (order, pick)
        order, pick = how
        if not order:
            return {}
        got = pick(tuple(chain.from_iterable(map(self.values, runs))))  # type: ignore[misc]
        return dict(zip(order, got if len(order) > 1 else (got,), strict=True))


# -- filtering and sorting -------------------------------------------------------------------

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<=": operator.le, ">=": operator.ge, "!=": operator.ne, "==": operator.eq, "=": operator.eq,
    "<": operator.lt, ">": operator.gt,
}
_FILTER = re.compile(r"\s*([^<>=!\s]+)\s*(<=|>=|!=|==|=|<|>)\s*(.*?)\s*$")


def value_of(row: Experiment, name: str) -> Any:
    """A column's value: ``params.X`` or ``metrics.X`` explicitly, else a metric, else a param."""
    if name.startswith("metrics."):
        return row.metrics.get(name[8:])
    if name.startswith("params."):
        return row.params.get(name[7:])
    return row.metrics[name] if name in row.metrics else row.params.get(name)


def parse_filter(text: str) -> Callable[[Experiment], bool]:
    """``NAME OP VALUE`` (``acc>0.9``, ``train.C=1``, ``model!=svm``): VALUE read as JSON
    when it parses, else as a string; a row without the column never matches."""
    m = _FILTER.fullmatch(text)
    if not m:
        raise UsageError(f"invalid filter {text!r}: use NAME OP VALUE with OP one of <, <=, >, >=, =, !=")
    name, op, raw = m.groups()
    try:
        want = json.loads(raw)
    except ValueError:
        want = raw
    fn = _OPS[op]

    def keep(row: Experiment) -> bool:
        got = value_of(row, name)
        if got is None:
            return False
        try:
            return bool(fn(got, want))
        except TypeError:  # a number against a string: only != holds
            return op == "!="

    return keep


def select(rows: list[Experiment], filters: Iterable[str] = (), sort_by: str | None = None,
           descending: bool = False) -> list[Experiment]:
    """Rows passing every filter, sorted by a column (rows without it last) or newest first."""
    keeps = [parse_filter(f) for f in filters]
    out = [r for r in rows if all(k(r) for k in keeps)]
    if sort_by:
        vals = [value_of(r, sort_by) for r in out]  # each row's value looked up once
        if out and all(v is None for v in vals):
            cols = sorted({*(k for r in out for k in r.metrics), *(k for r in out for k in r.params)})
            raise UsageError(f"no column named {sort_by!r} to sort by (columns: {', '.join(cols[:20]) or 'none'})")
        ok = list(map(_sortable, vals))
        have = [(v, r) for v, r, s in zip(vals, out, ok, strict=True) if s]
        have.sort(key=operator.itemgetter(0), reverse=descending)
        out = [r for _, r in have] + [r for r, s in zip(out, ok, strict=True) if not s]
    return out


def _sortable(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def columns(rows: list[Experiment]) -> tuple[list[str], list[str], set[str]]:
    """(param columns, metric columns, the columns whose value differs between rows; 1,
    1.0 and true differ, as they do in a record)."""
    params = sorted({k for r in rows for k in r.params})
    metrics = sorted({k for r in rows for k in r.metrics})
    changed: set[str] = set()
    for field, cols in (("params", params), ("metrics", metrics)):
        maps = [getattr(r, field) for r in rows]
        for c in cols:
            first = maps[0].get(c, _MISSING)
            kind = type(first)
            if any((v := m.get(c, _MISSING)) != first or type(v) is not kind for m in maps):
                changed.add(f"{field}.{c}")
    return params, metrics, changed


_MISSING = object()


# -- two experiments compared ----------------------------------------------------------------


def diff_params(a: Experiment, b: Experiment, every: bool = False) -> list[dict[str, Any]]:
    """Each param whose value differs (every one, with ``every``): name, old, new."""
    out = []
    for k in sorted(a.params.keys() | b.params.keys()):
        old, new = a.params.get(k), b.params.get(k)
        if every or old != new or (k in a.params) != (k in b.params):
            out.append({"name": k, "old": old, "new": new})
    return out


def diff_metrics(a: Experiment, b: Experiment, every: bool = False) -> list[dict[str, Any]]:
    """Each metric that changed (every one, with ``every``): old, new, the change, and the
    change in percent of the old value (None when the old value is 0 or missing)."""
    out = []
    for k in sorted(a.metrics.keys() | b.metrics.keys()):
        old, new = a.metrics.get(k), b.metrics.get(k)
        if not every and old == new and (k in a.metrics) == (k in b.metrics):
            continue
        change = pct = None
        if old is not None and new is not None:
            change = _clean(new - old)
            pct = _clean(change / abs(old) * 100) if old else None
        out.append({"name": k, "old": old, "new": new, "change": change, "percent": pct})
    return out


def _clean(v: Number) -> Number:
    """A difference as people read it: 0.30000000000000004 - 0.1 shows as 0.2."""
    if isinstance(v, float) and math.isfinite(v):
        return float(f"{v:.12g}")
    return v

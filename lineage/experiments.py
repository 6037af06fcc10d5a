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

import json
import marshal
import math
import operator
import re
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from zcas.cas.errors import UsageError

from .graph import flat

Number = int | float


@attrs.define
class Experiment:
    """One row: ``id`` is a run's id (a session's: its newest run's)."""

    id: str
    name: str
    status: str
    started_ns: int
    params: dict[str, Any]
    metrics: dict[str, Number]
    runs: list[str]
    user: str = ""
    host: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "status": self.status, "started_ns": self.started_ns,
                "params": self.params, "metrics": self.metrics, "runs": self.runs, "user": self.user, "host": self.host}


def _rows(lineage: Any, name: str) -> list[tuple[str, int, tuple[Any, ...]]]:
    """(run id, started_ns, [status, session, params, metrics, user, host]) of a step's runs,
    newest first, from the index's exps database (one cursor walk, small rows)."""
    out = []
    for rid, started, data in reversed(lineage.graph.exp_rows(name)):
        try:
            row = marshal.loads(data)
        except (ValueError, EOFError, TypeError):  # written by graph.exp_row: never expected
            continue
        out.append((rid.hex(), started, row))
    return out


def of_run(rid: str, rec: dict[str, Any]) -> Experiment:
    """The row of one run record."""
    return Experiment(id=rid, name=rec["step"], status=rec["status"], started_ns=rec["started_ns"],
                      params=flat(rec.get("params") or {}), metrics=dict(rec.get("metrics") or {}), runs=[rid],
                      user=rec.get("user", ""), host=rec.get("host", ""))


def of_name(lineage: Any, name: str, failed: bool = False) -> list[Experiment]:
    """The runs of one step or pipeline, newest first (failed ones only if asked)."""
    return [Experiment(id=rid, name=name, status=row[0], started_ns=started, params=row[2], metrics=row[3],
                       runs=[rid], user=row[4], host=row[5])
            for rid, started, row in _rows(lineage, name) if failed or row[0] != "failed"]


def known(lineage: Any, name: str) -> bool:
    """Whether any run of this step or pipeline is indexed."""
    return bool(lineage.graph.exp_rows(name))


class _Prefixed(dict[str, str]):
    """``k`` -> ``STEP.k``, each name made once (ten thousand sessions repeat them)."""

    def __init__(self, step: str):
        super().__init__()
        self.step = step

    def __missing__(self, k: str) -> str:
        v = self[k] = f"{self.step}.{k}"
        return v


def of_sessions(lineage: Any, steps: Iterable[str], failed: bool = False, name: str = "zcas.toml") -> list[Experiment]:
    """One row per ``zcas run`` of a pipeline of command steps: its step runs together,
    newest session first. A session with a failed step is a failed experiment; a step run
    twice in one session shows its last run."""
    rows: dict[str, Experiment] = {}
    found = [(started, rid, step, row) for step in steps for rid, started, row in _rows(lineage, step)]
    found.sort(key=lambda x: x[0])  # oldest first: a later run's values replace an earlier one's
    prefixed = {step: _Prefixed(step) for step in steps}
    for started, rid, step, row in found:
        status, sid, params, metrics = row[:4]
        exp = rows.get(sid or rid)
        if exp is None:
            exp = rows[sid or rid] = Experiment(id=rid, name=name, status="ran", started_ns=started, params={},
                                                metrics={}, runs=[], user=row[4], host=row[5])
        exp.runs.append(rid)
        exp.id = rid  # the newest run names the row
        if status == "failed":
            exp.status = "failed"
        exp.params.update(zip(map(prefixed[step].__getitem__, params), params.values(), strict=True))
        exp.metrics.update(metrics)
    out = [r for r in rows.values() if failed or r.status != "failed"]
    for r in out:
        r.runs.reverse()
        r.params = dict(sorted(r.params.items()))
        r.metrics = dict(sorted(r.metrics.items()))
    out.sort(key=lambda r: r.started_ns, reverse=True)
    return out


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
        if not any(value_of(r, sort_by) is not None for r in out) and out:
            cols = sorted({*(k for r in out for k in r.metrics), *(k for r in out for k in r.params)})
            raise UsageError(f"no column named {sort_by!r} to sort by (columns: {', '.join(cols[:20]) or 'none'})")
        have = [r for r in out if _sortable(value_of(r, sort_by))]
        rest = [r for r in out if not _sortable(value_of(r, sort_by))]
        have.sort(key=lambda r: value_of(r, sort_by), reverse=descending)
        out = have + rest
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

"""Experiments for people: which runs a name means, two runs compared, a table, a plot.

The rows and the arithmetic are ``zcas.lineage.experiments``'; this module decides what a
word on the command line names (a ``zcas.toml`` pipeline, a step, a Python pipeline, a run,
a tag, ``HEAD~1``) and renders (text, CSV, pandas, a picture). pandas and matplotlib are
imported only by the calls that need them.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import operator
import re
from typing import TYPE_CHECKING, Any

from zcas.cas.errors import UsageError, ZcasError
from zcas.lineage import experiments as ex
from zcas.lineage.experiments import Experiment

if TYPE_CHECKING:
    from zcas.repository import Repository

_BACK = re.compile(r"(.+?)~(\d+)")
PLOT_FORMATS = (".png", ".svg", ".html")


def _pipeline_steps(repo: Repository) -> list[str]:
    from zcas.runners.spec import load

    return list(load(repo.root))


def rows(repo: Repository, target: str | None = None, failed: bool = False) -> list[Experiment]:
    """The experiments ``target`` names, newest first: no target is the ``zcas.toml``
    pipeline (one row per ``zcas run``), or else the pipeline run last; a name is that
    step's or pipeline's runs."""
    lineage = repo.lineage
    if target is None:
        steps = _pipeline_steps(repo)
        if steps:
            return ex.of_sessions(lineage, steps, failed)
        newest = next((r for _, r in lineage.runs(limit=1)), None)
        if newest is None:
            return []
        target = newest["step"]
    found = ex.of_name(lineage, target, failed)
    if not found and not ex.known(lineage, target):
        raise UsageError(f"no runs of a step or pipeline named {target!r}")
    return found


def resolve(repo: Repository, ref: str, target: str | None = None) -> Experiment:
    """One experiment: ``HEAD`` (the newest row of ``target``), ``HEAD~N`` or ``NAME~N`` (N
    rows before it), a step or pipeline name (its newest run), a run id or prefix, or a tag
    naming a run. A run id is that run alone, except the id ``exp show`` gives a row of the
    ``zcas.toml`` pipeline (its newest run): that is the whole row."""
    m = _BACK.fullmatch(ref)
    base, back = (m.group(1), int(m.group(2))) if m else (ref, 0)
    if base == "HEAD" or m or ex.known(repo.lineage, base):
        listed = rows(repo, None if base == "HEAD" else base, failed=False)
        if back >= len(listed):
            raise UsageError(f"{ref}: there {'is' if len(listed) == 1 else 'are'} only {len(listed)} "
                             f"{'experiment' if len(listed) == 1 else 'experiments'} to go back through")
        return listed[back]
    rid = _run_id(repo, ref)
    rec = repo.lineage.run_dict(bytes.fromhex(rid))
    if rec is None:
        raise UsageError(f"{ref!r} names no run")
    steps = _pipeline_steps(repo)
    if rec["step"] in steps and rec.get("session"):  # the id exp show gives a zcas run: that whole row
        for row in ex.of_sessions(repo.lineage, steps, failed=True):
            if rid == row.id:
                return row
    return ex.of_run(rid, rec)


def _run_id(repo: Repository, ref: str) -> str:
    tags = repo.lineage.graph.tags()
    if ref in tags:
        oid = tags[ref]
        if repo.lineage.graph.has_run(oid):
            return oid.hex()
        raise UsageError(f"tag {ref!r} names {oid.hex()[:12]}, which is no run")
    try:
        return repo.run(ref).id
    except (UsageError, ValueError) as e:
        raise UsageError(f"{ref!r} is no run, tag, step or HEAD~N: {e}") from None


def compare(repo: Repository, a: str, b: str, every: bool = False) -> dict[str, Any]:
    """Two experiments side by side: their ids, and the params and metrics that differ."""
    ea, eb = resolve(repo, a), resolve(repo, b)
    return {"a": ea.id, "b": eb.id, "params": ex.diff_params(ea, eb, every), "metrics": ex.diff_metrics(ea, eb, every)}


# -- rendering ----------------------------------------------------------------------------


def table(found: list[Experiment]) -> tuple[list[str], list[list[str]], set[int]]:
    """(header, columns of cells, the indexes of columns whose value changes between rows).
    Built a column at a time: ten thousand rows of thirty columns are 300,000 cells."""
    params, metrics, changed = ex.columns(found)
    header = ["run", "started", "status", *params, *metrics]
    hot = {3 + i for i, c in enumerate(params) if f"params.{c}" in changed}
    hot |= {3 + len(params) + i for i, c in enumerate(metrics) if f"metrics.{c}" in changed}
    fmt = dt.datetime.fromtimestamp
    cols = [[r.id[:12] for r in found], [fmt(r.started_ns / 1e9).strftime("%Y-%m-%d %H:%M:%S") for r in found],
            [r.status for r in found]]
    for field, names in (("params", params), ("metrics", metrics)):
        for col in _values(found, field, names):
            kinds = set(map(type, col))
            if kinds == {float}:  # most metric columns: one format, no per-cell dispatch
                cols.append([f"{v:.6g}" for v in col])
            elif kinds == {str}:
                cols.append(col)
            else:
                cols.append(_cells(col, kinds))
    return header, cols, hot


def _values(found: list[Experiment], field: str, names: list[str]) -> list[list[Any]]:
    """Each column's values (None where a row lacks it): rows sharing every column, the
    usual case, are read with one itemgetter call per row rather than a lookup per cell."""
    if not names:
        return []
    get = operator.itemgetter(*names)
    rows = []
    for r in found:
        m = getattr(r, field)
        try:
            got = get(m)
        except KeyError:
            got = tuple(m.get(c) for c in names)
        rows.append(got if len(names) > 1 else (got,))
    return [list(c) for c in zip(*rows, strict=True)]


def _cells(col: list[Any], kinds: set[type]) -> list[str]:
    """A column's cells, each distinct value formatted once (params take few values), keyed
    by (type, value): 1, 1.0 and True are equal as dict keys but not as cells."""
    if not {list, dict} & kinds:
        try:
            keyed = list(zip(map(type, col), col, strict=True))
            memo = {k: _cell(k[1]) for k in set(keyed)}
            return list(map(memo.__getitem__, keyed))
        except TypeError:  # something unhashable after all
            pass
    return [_cell(v) for v in col]


def _cell(v: Any) -> str:
    if v.__class__ is float:
        return f"{v:.6g}"
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, dict)):
        import json

        return json.dumps(v, sort_keys=True)
    return str(v)


def to_csv(found: list[Experiment]) -> str:
    params, metrics, _ = ex.columns(found)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["id", "name", "status", "started_ns", *params, *metrics])
    for r in found:
        w.writerow([r.id, r.name, r.status, r.started_ns, *(_csv(r.params.get(c)) for c in params),
                    *(_csv(r.metrics.get(c)) for c in metrics)])
    return buf.getvalue()


def _csv(v: Any) -> str:
    return "" if v is None else _cell(v) if not isinstance(v, float) else repr(v)


def to_pandas(found: list[Experiment]) -> Any:
    """One row per experiment: id, name, status, started, then params and metrics columns
    (a name that is both keeps the metric as ``metrics.NAME``)."""
    try:
        import pandas as pd
    except ImportError:
        raise ZcasError("to_pandas needs pandas: pip install pandas (or 'zcas[ecosystem]')") from None
    params, metrics, _ = ex.columns(found)
    records = []
    for r in found:
        d: dict[str, Any] = {"id": r.id, "name": r.name, "status": r.status,
                             "started": pd.Timestamp(r.started_ns, unit="ns")}
        d.update({c: r.params.get(c) for c in params})
        d.update({(f"metrics.{c}" if c in params else c): r.metrics.get(c) for c in metrics})
        records.append(d)
    return pd.DataFrame.from_records(records)


# -- plots --------------------------------------------------------------------------------


def plot(found: list[Experiment], metric: str, x: str, path: str) -> int:
    """Draw ``metric`` across experiments against ``x`` (``time``, ``step``: their order, or a
    param's name) into ``path`` (.png, .svg, or .html holding the svg); the number of points."""
    ext = path[path.rfind("."):].lower() if "." in path else ""
    if ext not in PLOT_FORMATS:
        raise UsageError(f"plot: {path}: write .png, .svg or .html")
    pts = _points(found, metric, x)
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise ZcasError("plot needs matplotlib: pip install 'zcas[exp]'") from None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    try:
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        if x == "time":
            xs = [dt.datetime.fromtimestamp(v / 1e9) for v in xs]
            fig.autofmt_xdate()
        if all(isinstance(v, (int, float, dt.datetime)) and not isinstance(v, bool) for v in xs):
            ax.plot(xs, ys, marker="o", linewidth=1.5)
        else:
            ax.plot([str(v) for v in xs], ys, marker="o", linewidth=1.5)
        ax.set_xlabel({"time": "run started", "step": "experiment (oldest first)"}.get(x, x))
        ax.set_ylabel(metric)
        ax.set_title(f"{metric} over {len(pts)} runs")
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        if ext == ".html":
            buf = io.StringIO()
            fig.savefig(buf, format="svg")
            svg = buf.getvalue()
            svg = svg[svg.find("<svg"):]
            with open(path, "w", encoding="utf-8") as f:
                f.write(f"<!doctype html>\n<meta charset=utf-8>\n<title>{_esc(metric)}</title>\n{svg}\n")
        else:
            fig.savefig(path, format=ext[1:])
    finally:
        plt.close(fig)
    return len(pts)


def _esc(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _points(found: list[Experiment], metric: str, x: str) -> list[tuple[Any, float]]:
    oldest_first = list(reversed(found))
    pts: list[tuple[Any, float]] = []
    for i, r in enumerate(oldest_first, 1):
        y = r.metrics.get(metric)
        if y is None:
            continue
        if x == "time":
            xv: Any = r.started_ns
        elif x == "step":
            xv = i
        else:
            xv = r.params.get(x)
            if xv is None:
                continue
        pts.append((xv, y))
    if not pts:
        known = sorted({k for r in found for k in r.metrics})
        raise UsageError(f"plot: no run has metric {metric!r}" + (f" against {x!r}" if x not in ("time", "step") else "")
                         + f" (metrics: {', '.join(known[:20]) or 'none'})")
    if x not in ("time", "step"):
        try:
            pts.sort(key=lambda p: p[0])
        except TypeError:
            pass
    return pts


# -- logs ---------------------------------------------------------------------------------


def log_of(lineage: Any, rid: str, rec: dict[str, Any]) -> dict[str, str]:
    """The captured output a run names: its own, or for a cached run recorded without one
    (by a zcas before logs), that of the run it came from."""
    seen = {rid}
    while not rec.get("log") and rec.get("cached_from") and rec["cached_from"] not in seen:
        seen.add(rec["cached_from"])
        found = lineage.run_dict(bytes.fromhex(rec["cached_from"]))
        if found is None:
            break
        rec = found
    return dict(rec.get("log") or {})


def print_log(db: Any, rid: str, rec: dict[str, Any], out: Any, err: Any = None,
              lineage: Any = None) -> dict[str, int]:
    """Write a run's stdout to ``out`` and its stderr to ``err`` (default: this process's
    stderr), a chunk at a time, verified as read: a 100 MB log is never held whole. Bytes
    written per stream."""
    import sys

    from zcas.cas.errors import ObjectNotFoundError
    from zcas.cas.view import iter_file_bytes

    log = log_of(lineage, rid, rec) if lineage is not None else dict(rec.get("log") or {})
    if not log:
        print(f"zcas: run {rid[:12]} printed nothing (or was recorded by a zcas that kept no logs)", file=sys.stderr)
        return {}
    targets = {"stdout": out, "stderr": err if err is not None else sys.stderr.buffer}
    written = {}
    for stream in ("stdout", "stderr"):
        if stream not in log:
            continue
        target = targets[stream]
        n = 0
        try:
            for block in iter_file_bytes(db, bytes.fromhex(log[stream])):
                target.write(block)
                n += len(block)
        except ObjectNotFoundError:
            raise ZcasError(f"the {stream} of run {rid[:12]} ({log[stream][:12]}) is not here; zcas pull fetches it") from None
        target.flush()
        written[stream] = n
    return written

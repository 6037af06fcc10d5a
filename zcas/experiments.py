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
import json
import operator
import re
from collections.abc import Callable, Sequence
from itertools import count, repeat
from typing import TYPE_CHECKING, Any, Protocol

from zcas.cas.errors import UsageError, ZcasError
from zcas.lineage import experiments as ex
from zcas.lineage.experiments import Experiment

if TYPE_CHECKING:
    from zcas.lineage.store import Lineage
    from zcas.repository import Repository

_BACK = re.compile(r"(.+?)~(\d+)")
PLOT_FORMATS = (".png", ".svg", ".html")


class Source(Protocol):
    """A repository to read experiments from: the façade, or the CLI's ``Reader``."""

    @property
    def root(self) -> str: ...

    @property
    def lineage(self) -> Lineage: ...


def _pipeline_steps(repo: Source) -> list[str]:
    from zcas.runners.spec import load

    return list(load(repo.root))


def rows(repo: Source, target: str | None = None, failed: bool = False) -> list[Experiment]:
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
    """(header, columns of cells, the indexes of columns whose value changes between rows)."""
    header, cols, hot = _columns(found)
    return header, [c.texts() for c in cols], hot


class _Column:
    """One column: its cells, or (``memo``, ``keys``) each distinct value formatted once
    (params take few values), by the position where it first occurs, and that position for
    each row, so that padding (and colour) cost one lookup per cell; and whether its value
    changes between rows."""

    __slots__ = ("cells", "memo", "keys", "changes")

    def __init__(self, cells: list[str] | None, memo: dict[int, str] | None = None, keys: list[int] | None = None,
                 changes: bool = False):
        self.cells, self.memo, self.keys, self.changes = cells, memo, keys, changes

    def texts(self) -> list[str]:
        if self.cells is None:
            assert self.memo is not None and self.keys is not None
            self.cells = list(map(self.memo.__getitem__, self.keys))
        return self.cells


def _columns(found: list[Experiment]) -> tuple[list[str], list[_Column], set[int]]:
    """Built a column at a time: ten thousand rows of thirty columns are 300,000 cells.
    A column "changes" when two rows differ in value or type (1, 1.0 and true differ) or
    one lacks it (``ex.columns``' rule)."""
    params, pcols = _raw_columns(found, 0) or _map_columns(found, "params")
    metrics, mcols = _raw_columns(found, 2) or _map_columns(found, "metrics")
    header = ["run", "started", "status", *params, *metrics]
    fmt = dt.datetime.fromtimestamp
    cols = [_Column([r.id[:12] for r in found]),
            _Column([fmt(r.started_ns // 1_000_000_000).isoformat(" ") for r in found]),
            _column([r.status for r in found])]
    hot: set[int] = set()
    for col in (*pcols, *mcols):
        c = _column(col)
        if c.changes:
            hot.add(len(cols))
        cols.append(c)
    return header, cols, hot


def _raw_columns(found: list[Experiment], at: int) -> tuple[list[str], list[tuple[Any, ...]]] | None:
    """(names, columns) of rows read from the index that share one tuple of names (rows of
    one pipeline): the values as read, transposed (names sorted); None for other rows."""
    first = found[0].raw if found else None
    if first is None:
        return None
    names = first[at]
    if not all(r.raw is not None and r.raw[at] is names for r in found):
        return None
    if not names:
        return [], []
    cols = list(zip(*[r.raw[at + 1] for r in found if r.raw is not None], strict=True))
    order = sorted(range(len(names)), key=names.__getitem__)
    return [names[i] for i in order], [cols[i] for i in order]


def _map_columns(found: list[Experiment], field: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    maps = [getattr(r, field) for r in found]
    names = sorted(set().union(*maps))
    return names, _values(maps, names)


def _column(col: Sequence[Any]) -> _Column:
    kinds = set(map(type, col))
    if kinds == {float}:  # most metric columns: distinct values, one format, no per-cell dispatch
        return _Column(list(map(format, col, repeat(".6g"))), changes=col.count(col[0]) != len(col))
    if not {list, dict} & kinds:
        # 1, 1.0 and True are equal as keys but not as cells: with more than one kind of
        # number, the key is (type, value); else the value (no two of other types are equal)
        typed = len(kinds & {bool, int, float}) > 1
        first: dict[Any, int] = {}
        try:  # each row's value as the position of its first occurrence: one pass, hashing each once
            codes = list(map(first.setdefault, zip(map(type, col), col, strict=True) if typed else col, count()))
        except TypeError:  # something unhashable after all
            pass
        else:
            memo = {pos: _cell(k[1] if typed else k) for k, pos in first.items()}
            return _Column(None, memo, codes, len(first) > 1)
    first = col[0]
    return _Column([_cell(v) for v in col], changes=any(v != first or type(v) is not type(first) for v in col))


Paint = Callable[[bool], tuple[str, str, str, str]]


def text_lines(found: list[Experiment], paint: Paint | None = None, clean: Callable[[str], str] | None = None) -> list[str]:
    """The table as lines of text: the header, then a line per row, columns padded (run,
    started and status to the left, the rest to the right). ``paint(changed)`` gives the
    text before and after a column's cells and before and after its name (colour on a
    terminal); ``clean`` makes a name or cell printable (names and values come from a
    remote's records too)."""
    header, cols, hot = _columns(found)
    names, padded = [], []
    for i, (name, col) in enumerate(zip(header, cols, strict=True)):
        texts = list(col.memo.values()) if col.memo is not None else col.texts()
        if clean is not None and not "".join(texts).isprintable():
            col = _Column([clean(x) for x in col.texts()])
            texts = col.texts()
        if clean is not None:
            name = clean(name)
        width = max(len(name), max(map(len, texts), default=0))
        just = str.ljust if i < 3 else str.rjust
        pre, post, hpre, hpost = paint(i in hot) if paint is not None else ("", "", "", "")
        names.append(f"{hpre}{just(name, width)}{hpost}")
        if col.memo is not None and col.keys is not None:  # pad (and paint) each distinct cell once
            memo = {k: f"{pre}{just(v, width)}{post}" for k, v in col.memo.items()}
            padded.append(list(map(memo.__getitem__, col.keys)))
        elif pre or post:
            padded.append([f"{pre}{c}{post}" for c in map(just, texts, repeat(width))])
        else:
            padded.append(list(map(just, texts, repeat(width))))
    lines = ["  ".join(names), *map("  ".join, zip(*padded, strict=True))]
    if len(cols) == 3:  # the last column is padded on the right: trailing spaces
        lines = [x.rstrip() for x in lines]
    return lines


def _values(maps: list[dict[str, Any]], names: list[str]) -> list[tuple[Any, ...]]:
    """Each column's values (``_MISSING`` where a row lacks it)."""
    if not names:
        return []
    get = operator.itemgetter(*names)
    try:
        rows = list(map(get, maps))  # every row has every column: one C call a row
    except KeyError:
        rows = [tuple(m.get(c, _MISSING) for c in names) for m in maps]
    else:
        if len(names) == 1:
            rows = [(v,) for v in rows]
    return list(zip(*rows, strict=True))


class _Missing:
    """A cell of a row without that column: shown as "-" like None, but not equal to it."""

    def __repr__(self) -> str:
        return "-"


_MISSING = _Missing()


def _cell(v: Any) -> str:
    if v.__class__ is float:
        return f"{v:.6g}"
    if v is None or v is _MISSING:
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


def series_of(lineage: Any, row: Experiment, metric: str, limit: int = 64) -> tuple[str, list[list[Any]]] | None:
    """The series of ``metric`` one experiment logged across steps (``zcas.log_metric(...,
    step=i)``): (run id, [[step, value], ...]), from the first of its runs holding one,
    looking into a pipeline run's step runs and a cached run's source (a hit keeps no copy);
    at most ``limit`` records read."""
    todo, seen = list(row.runs), set[str]()
    while todo and len(seen) < limit:
        rid = todo.pop(0)
        if rid in seen:
            continue
        seen.add(rid)
        try:
            rec = lineage.run_dict(bytes.fromhex(rid))
        except ValueError:
            continue
        if rec is None:
            continue
        found = (rec.get("series") or {}).get(metric) if isinstance(rec.get("series"), dict) else None
        if isinstance(found, list) and found and all(_point(p) for p in found):
            return rid, found
        steps = rec.get("steps")
        if isinstance(steps, dict):
            todo.extend(v for _, v in sorted(steps.items()) if isinstance(v, str))
        if isinstance(rec.get("cached_from"), str):
            todo.append(rec["cached_from"])
    return None


def _point(p: Any) -> bool:
    return (type(p) is list and len(p) == 2 and type(p[0]) is int
            and type(p[1]) in (int, float))  # the index holds validated records: a check, not a parse


def series(lineage: Any, found: list[Experiment], metric: str, runs: int = 5,
           scan: int = 200) -> list[tuple[str, list[list[Any]]]]:
    """The series of ``metric`` of the newest ``runs`` experiments that logged one (among the
    newest ``scan``), newest first."""
    out = []
    for row in found[:scan]:
        got = series_of(lineage, row, metric)
        if got is not None:
            out.append(got)
            if len(out) >= runs:
                break
    return out


def plot(found: list[Experiment], metric: str, x: str, path: str, lineage: Any = None,
         runs: int = 5) -> tuple[int, int]:
    """Draw ``metric`` into ``path`` (.png, .svg, or .html holding the svg and the data); the
    number of points, and of series drawn (0: the metric across experiments).

    ``x`` is ``step``: the series the newest ``runs`` experiments logged of it across their
    steps, one line each (with ``lineage`` to read them), or if none did, the metric across
    experiments in order as ``run`` does; ``run``: across experiments, oldest first;
    ``time``: against their start; or a param's name."""
    ext = path[path.rfind("."):].lower() if "." in path else ""
    if ext not in PLOT_FORMATS:
        raise UsageError(f"plot: {path}: write .png, .svg or .html")
    lines = series(lineage, found, metric, runs) if x == "step" and lineage is not None else []
    if lines:
        data = [{"run": rid, "points": pts} for rid, pts in lines]
        title = f"{metric} per step, {len(lines)} run{'s' * (len(lines) > 1)}"
        return _draw(path, ext, metric, data, "step", title), len(lines)
    pts = _points(found, metric, "run" if x == "step" else x)
    label = {"time": "run started", "step": "experiment (oldest first)", "run": "experiment (oldest first)"}.get(x, x)
    data = [{"points": [[a, b] for a, b in pts]}]
    return _draw(path, ext, metric, data, label, f"{metric} over {len(pts)} runs", time=x == "time"), 0


def _draw(path: str, ext: str, metric: str, data: list[dict[str, Any]], xlabel: str, title: str,
          time: bool = False) -> int:
    """One line per entry of ``data`` (its ``points``: [x, y]; ``run`` names a series' line,
    which is also the id of its group in an SVG, ``series-RUN12``). The points go into the
    file as well as the picture: an SVG's description and an HTML page's JSON and table."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # files only, never a window
        import matplotlib.pyplot as plt
    except ImportError:
        raise ZcasError("plot needs matplotlib: pip install 'zcas[exp]'") from None
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    n = 0
    try:
        for d in data:
            xs, ys = [p[0] for p in d["points"]], [p[1] for p in d["points"]]
            n += len(xs)
            if time:
                xs = [dt.datetime.fromtimestamp(v / 1e9) for v in xs]
                fig.autofmt_xdate()
            if not all(isinstance(v, (int, float, dt.datetime)) and not isinstance(v, bool) for v in xs):
                xs = [str(v) for v in xs]
            (line,) = ax.plot(xs, ys, marker="o" if len(xs) <= 200 else None, linewidth=1.5,
                              label=d["run"][:12] if "run" in d else None)
            if "run" in d:
                line.set_gid(f"series-{d['run'][:12]}")
        if len(data) > 1 or "run" in data[0]:
            ax.legend(title="run", fontsize="small")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric)
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        points = json.dumps(data, separators=(",", ":"))
        if ext == ".html":
            buf = io.StringIO()
            fig.savefig(buf, format="svg", metadata={"Description": points})
            svg = buf.getvalue()
            svg = svg[svg.find("<svg"):]
            with open(path, "w", encoding="utf-8") as f:
                f.write(f"<!doctype html>\n<meta charset=utf-8>\n<title>{_esc(metric)}</title>\n{svg}\n"
                        f"<script type=application/json id=zcas-data>{_script_safe(points)}</script>\n"
                        f"{_html_table(data)}\n")
        elif ext == ".svg":
            fig.savefig(path, format="svg", metadata={"Description": points})
        else:
            fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return n


def _html_table(data: list[dict[str, Any]]) -> str:
    """The points as a table under the picture (for reading them, and for screen readers)."""
    rows: list[str] = []
    for d in data:
        who = _esc(d["run"][:12]) if "run" in d else ""
        rows.extend(f"<tr><td>{who}<td>{_esc(_cell(a))}<td>{_esc(_cell(b))}" for a, b in d["points"])
    return "<table>\n<tr><th>run<th>x<th>value\n" + "\n".join(rows) + "\n</table>"


def _script_safe(js: str) -> str:
    """JSON that cannot close the script element holding it (these characters occur only
    inside JSON strings, where the escapes mean the same)."""
    return js.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


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
        elif x in ("step", "run"):
            xv = i
        else:
            xv = r.params.get(x)
            if xv is None:
                continue
        pts.append((xv, y))
    if not pts:
        known = sorted({k for r in found for k in r.metrics})
        raise UsageError(f"plot: no run has metric {metric!r}" + (f" against {x!r}" if x not in ("time", "step", "run") else "")
                         + f" (metrics: {', '.join(known[:20]) or 'none'})")
    if x not in ("time", "step", "run"):
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

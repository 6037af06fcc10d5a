"""Experiments: exp show, params diff, metrics diff, plot (thin over zcas.experiments)."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from .base import Ctx, cli, emit_json, json_option, pass_ctx

if TYPE_CHECKING:
    from zcas.lineage.experiments import Experiment


@cli.group()
def exp() -> None:
    """Compare experiments: runs side by side, params and metrics as columns."""


@exp.command("show")
@click.argument("target", required=False)
@click.option("--sort-by", metavar="NAME", help="Sort by a metric (or param); rows without it last.")
@click.option("--sort-order", type=click.Choice(["asc", "desc"]), default="asc", show_default=True)
@click.option("--filter", "filters", multiple=True, metavar="EXPR",
              help="Keep rows where NAME OP VALUE holds (acc>0.9, train.C=1; OP: < <= > >= = !=); repeatable.")
@click.option("--all", "failed", is_flag=True, help="Show failed runs too.")
@click.option("-n", "limit", type=click.IntRange(min=1), help="At most N rows.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (full ids, every column).")
@json_option("Print a JSON list of rows: id, name, status, started_ns, params, metrics, runs.")
@pass_ctx
def exp_show(c: Ctx, target: str | None, sort_by: str | None, sort_order: str, filters: tuple[str, ...], failed: bool,
             limit: int | None, as_csv: bool, as_json: bool) -> None:
    """A table of runs x params x metrics, newest first.

    TARGET is a step or a pipeline (its runs); without it, the zcas.toml pipeline: one row
    per zcas run, params named STEP.KEY.
    """
    import gc

    from zcas import experiments as xp
    from zcas.lineage.experiments import select

    # Ten thousand rows are some 50,000 containers that live until the table is printed:
    # the cycle collector, run again and again over them as they are made, found nothing
    # to free and took about a quarter of the time (measured). This process ends next.
    gc.disable()
    rows = select(xp.rows(c.reader, target, failed), filters, sort_by, sort_order == "desc")[:limit]
    if as_json:  # compact: the C encoder (indent=2 runs in Python: ten times slower on 10,000 rows)
        sys.stdout.write(json.dumps([r.as_dict() for r in rows]) + "\n")  # keys already in order
    elif as_csv:
        click.echo(xp.to_csv(rows), nl=False)
    else:
        _print_table(rows)


def _color() -> bool:
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"


def _print_table(rows: list[Experiment]) -> None:
    from zcas.cas.safetext import printable
    from zcas.experiments import text_lines

    if not rows:
        click.echo("no experiments (zcas run records them; --all shows failed ones)", err=True)
        return
    paint = None
    if _color():  # ANSI codes around each column's cells and name: changed columns in yellow
        hot_cell = click.style("\0", fg="yellow").split("\0")
        hot_name = click.style("\0", fg="yellow", bold=True).split("\0")
        name = click.style("\0", bold=True).split("\0")

        def paint(hot: bool) -> tuple[str, str, str, str]:
            return (hot_cell[0], hot_cell[1], hot_name[0], hot_name[1]) if hot else ("", "", name[0], name[1])

    sys.stdout.write("\n".join(text_lines(rows, paint, printable)) + "\n")


@cli.group()
def params() -> None:
    """Params of runs: compare two."""


@cli.group()
def metrics() -> None:
    """Metrics of runs: compare two."""


_DIFF_HELP = ("A and B: run ids (or prefixes), tags, a step or pipeline name (its newest run), HEAD (the newest "
              "experiment) or REF~N (N experiments before it). Default: HEAD~1 HEAD.")


@params.command("diff")
@click.argument("a", required=False, default="HEAD~1")
@click.argument("b", required=False, default="HEAD")
@click.option("--all", "every", is_flag=True, help="List unchanged params too.")
@json_option()
@pass_ctx
def params_diff(c: Ctx, a: str, b: str, every: bool, as_json: bool) -> None:
    """The params that differ between experiments A and B."""
    from zcas.experiments import compare

    res = compare(c.repository, a, b, every)
    if as_json:
        emit_json({"a": res["a"], "b": res["b"], "params": res["params"]})
        return
    _diff_lines(res, "params", ["name", "old", "new"])


@metrics.command("diff")
@click.argument("a", required=False, default="HEAD~1")
@click.argument("b", required=False, default="HEAD")
@click.option("--all", "every", is_flag=True, help="List unchanged metrics too.")
@json_option()
@pass_ctx
def metrics_diff(c: Ctx, a: str, b: str, every: bool, as_json: bool) -> None:
    """The metrics that differ between experiments A and B, with the change and percent."""
    from zcas.experiments import compare

    res = compare(c.repository, a, b, every)
    if as_json:
        emit_json({"a": res["a"], "b": res["b"], "metrics": res["metrics"]})
        return
    _diff_lines(res, "metrics", ["name", "old", "new", "change", "percent"])


params_diff.help = f"{params_diff.help}\n\n{_DIFF_HELP}"
metrics_diff.help = f"{metrics_diff.help}\n\n{_DIFF_HELP}"


def _diff_lines(res: dict[str, Any], field: str, cols: list[str]) -> None:
    from zcas.cas.safetext import printable
    from zcas.experiments import _cell

    click.echo(f"{res['a'][:12]} -> {res['b'][:12]}")
    items = res[field]
    if not items:
        click.echo(f"no {field} changed")
        return

    def fmt(item: dict[str, Any], col: str) -> str:
        v = item[col]
        if col == "percent":
            return "-" if v is None else f"{v:+.2f}%"
        if col == "change":
            return "-" if v is None else f"{v:+.6g}"
        return printable(_cell(v))

    table = [cols, *([fmt(i, col) for col in cols] for i in items)]
    widths = [max(len(r[k]) for r in table) for k in range(len(cols))]
    for r in table:
        click.echo("  ".join(x.ljust(widths[k]) if k == 0 else x.rjust(widths[k]) for k, x in enumerate(r)).rstrip())


@cli.command()
@click.argument("metric")
@click.option("--x", "x", default="step", show_default=True, metavar="step|run|time|PARAM",
              help="step: the series runs logged across their steps (zcas.log_metric(name, value, step=i)), or, if "
                   "none did, as run; run: across experiments in order; time: against their start; or a param.")
@click.option("--target", metavar="STEP|PIPELINE", help="Whose runs (default: as zcas exp show).")
@click.option("--filter", "filters", multiple=True, metavar="EXPR", help="As zcas exp show --filter.")
@click.option("--run", "refs", multiple=True, metavar="REF",
              help="With --x step: draw the series of these experiments (run id, tag, HEAD~N); repeatable.")
@click.option("--runs", "count", type=click.IntRange(min=1, max=100), default=5, show_default=True,
              help="With --x step: the series of the newest N experiments that logged one.")
@click.option("-o", "--output", "path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the picture: .png, .svg or .html (the svg in a page, with the data).")
@pass_ctx
def plot(c: Ctx, metric: str, x: str, target: str | None, filters: tuple[str, ...], refs: tuple[str, ...],
         count: int, path: str) -> None:
    """Draw METRIC across steps of runs, or across experiments, into a PNG, SVG or HTML file
    (needs the exp extra)."""
    from zcas import experiments as xp
    from zcas.cas.errors import UsageError
    from zcas.lineage.experiments import select

    if refs:
        if x != "step" or filters:
            raise UsageError("plot: --run draws series across steps: it goes with --x step and no --filter")
        rows = [xp.resolve(c.repository, ref, target) for ref in refs]
        if not xp.series(c.lineage, rows, metric, runs=len(rows)):
            raise UsageError(f"plot: {', '.join(refs)}: no series of {metric!r} (zcas.log_metric(name, value, step=i) "
                             "records one)")
        reader: Any = c.repository
    else:
        reader = c.reader
        rows = select(xp.rows(reader, target), filters)
    n, lines = xp.plot(rows, metric, x, path, lineage=reader.lineage, runs=len(rows) if refs else count)
    what = f"{n} points in {lines} series" if lines else f"over {n} runs"
    click.echo(f"wrote {path} ({metric} {what})", err=True)

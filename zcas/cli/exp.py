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
    from zcas import experiments as xp
    from zcas.lineage.experiments import select

    rows = select(xp.rows(c.repository, target, failed), filters, sort_by, sort_order == "desc")[:limit]
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
    from zcas.experiments import table

    if not rows:
        click.echo("no experiments (zcas run records them; --all shows failed ones)", err=True)
        return
    header, cols, hot = table(rows)
    color = _color()
    specs, names = [], []
    for i, (name, col) in enumerate(zip(header, cols, strict=True)):
        if not "".join(col).isprintable():  # names and values from a remote's records
            cols[i] = col = [printable(x) for x in col]
        name = printable(name)
        width = max(len(name), *map(len, col))
        align = ">" if i >= 3 else "<"
        spec = "{:" + align + str(width) + "}"
        names.append(format(name, align + str(width)))
        if color and i in hot:  # ANSI codes around the field: one format call per row, not per cell
            spec = click.style(spec, fg="yellow")
            names[-1] = click.style(names[-1], fg="yellow", bold=True)
        elif color:
            names[-1] = click.style(names[-1], bold=True)
        specs.append(spec)
    fmt = "  ".join(specs)
    lines = ["  ".join(names).rstrip(), *(fmt.format(*row).rstrip() for row in zip(*cols, strict=True))]
    sys.stdout.write("\n".join(lines) + "\n")


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
@click.option("--x", "x", default="step", show_default=True, metavar="step|time|PARAM",
              help="Against the experiments' order (step), their start time, or a param.")
@click.option("--target", metavar="STEP|PIPELINE", help="Whose runs (default: as zcas exp show).")
@click.option("--filter", "filters", multiple=True, metavar="EXPR", help="As zcas exp show --filter.")
@click.option("-o", "--output", "path", required=True, type=click.Path(dir_okay=False),
              help="Where to write the picture: .png, .svg or .html (the svg in a page).")
@pass_ctx
def plot(c: Ctx, metric: str, x: str, target: str | None, filters: tuple[str, ...], path: str) -> None:
    """Draw METRIC across experiments into a PNG, SVG or HTML file (needs the exp extra)."""
    from zcas import experiments as xp
    from zcas.lineage.experiments import select

    rows = select(xp.rows(c.repository, target), filters)
    n = xp.plot(rows, metric, x, path)
    click.echo(f"wrote {path} ({metric} over {n} runs)", err=True)

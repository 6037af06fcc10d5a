"""Lineage commands: log, show, reindex."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import click

from .base import Ctx, cli, emit_json, json_option, pass_ctx

if TYPE_CHECKING:
    from zcas.lineage.store import Lineage

# zcas.lineage (export, walk, redact) and the object store's ids and codec (zcas.cas.oid,
# zcas.cas.codec) are imported inside the commands: they pull in blake3, zstandard and attrs
# (~15 ms, measured), which `zcas --help` (~65 ms in all) never needs (see zcas/cli/__init__.py).

FORMATS = ["text", "json", "dot", "mermaid", "openlineage"]
DEFAULT_RUNS = 100  # runs `zcas log` lists without a target, -n or --since: a million would take minutes


def _target(c: Ctx, text: str) -> tuple[bytes, bool, str | None]:
    """(id, is a run, path) for a path with recorded history, a tag, a run or object id."""
    lin = c.lineage
    rel = c.repo.rel(text)
    hist = lin.graph.versions(rel)
    if hist:
        return bytes.fromhex(hist[-1].id), False, rel
    if os.path.isfile(text):  # a file lineage knows under another name, or not at all
        from zcas.cas.oid import hash_file

        return hash_file(text), False, rel
    tag = c.repo.refs.get_tag(text)
    if tag is not None:
        return tag, lin.graph.has_run(tag), None
    from zcas.cas.errors import AmbiguousIdError
    from zcas.cas.oid import check_prefix

    if text and all(ch in "0123456789abcdefABCDEF" for ch in text):
        prefix = check_prefix(text)
        # lineage knows runs and every artifact a run touched: look there first, which
        # needs no object index (the store may be large, or remote)
        found = lin.graph.find_prefix(prefix)
        if len(found) > 1:
            raise AmbiguousIdError(prefix, len(found), at_least=True)
        if found:
            return found[0], lin.graph.has_run(found[0]), None
    oid = c.repo.resolve(text)
    return oid, lin.graph.has_run(oid), None


def _writer_of_latest(lin: Lineage, path: str) -> bytes | None:
    """The latest run that wrote the version now recorded at ``path`` (None: none did, it
    was added by hand)."""
    hist = lin.graph.versions(path)
    if not hist:
        return None
    oid = hist[-1].id
    best: tuple[int, bytes] | None = None
    for rid in lin.graph.producers(bytes.fromhex(oid)):
        r = lin.run_dict(rid)
        if r and r.get("outputs", {}).get(path) == oid and (best is None or r["started_ns"] > best[0]):
            best = (r["started_ns"], rid)
    return best[1] if best else None


def _since(text: str | None) -> int:
    if not text:
        return 0
    from zcas.runners.durations import parse_duration

    return int((time.time() - parse_duration(text)) * 1e9)


@cli.command()
@click.argument("target", required=False)
@click.option("-n", "--max-count", "limit", type=click.IntRange(min=0),
              help=f"Show at most N runs (0: every run; without a TARGET or --since: the newest {DEFAULT_RUNS}).")
@click.option("--since", metavar="DURATION", help="Only runs started within DURATION (e.g. 2h, 7d).")
@click.option("--step", help="Only runs of this step.")
@click.option("--used-by", is_flag=True, help="Follow TARGET downstream: what was made from it.")
@click.option("--depth", type=click.IntRange(min=1), help="Follow at most N runs away from TARGET.")
@click.option("--graph", "as_graph", is_flag=True, help="Draw the lineage as a tree in the terminal.")
@click.option("--versions", is_flag=True, help="List the recorded versions of the path TARGET, newest first.")
@click.option("--all", "every", is_flag=True,
              help="For a PATH: every run that wrote its bytes, not only the one behind its latest version.")
@click.option("--remote", "remote_name", default=None, metavar="NAME",
              help="First take in the run records pushed to remote NAME since the last pull (no objects).")
@json_option("Same as --format json.")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="text", show_default=True,
              help="Output format: dot and mermaid draw the graph; openlineage prints RunEvents.")
@click.option("--emit", "emit_url", default=None, metavar="URL",
              help="POST the runs' OpenLineage RunEvents to the endpoint URL instead of printing them.")
@pass_ctx
def log(c: Ctx, target: str | None, limit: int | None, since: str | None, step: str | None, used_by: bool,
        depth: int | None, as_graph: bool, versions: bool, every: bool, remote_name: str | None, as_json: bool,
        fmt: str, emit_url: str | None) -> None:
    """Show runs, newest first; or, given a PATH or ID, where it came from.

    With no TARGET: one line per run (id, start time, status, duration, step). With a
    TARGET (a path that was added or written by a run, a tag, an object id or a run id):
    the runs and inputs it came from, down to data no run produced; --used-by shows what
    was made from it instead.
    """
    from zcas.cas.safetext import printable
    from zcas.lineage import export

    fmt = "json" if as_json else fmt
    # Only the text listing is cut to the newest runs (a person reads it; a line says so): a
    # script reading --json or OpenLineage gets every run unless it asks for fewer.
    bounded = (limit is None and target is None and since is None and not versions and emit_url is None
               and fmt == "text")
    limit = (DEFAULT_RUNS if bounded else None) if limit is None else (limit or None)
    if emit_url is not None:
        from zcas.cas.errors import UsageError
        from zcas.openlineage import check_url

        if fmt not in ("text", "openlineage") or as_graph or versions:
            raise UsageError("--emit sends OpenLineage events: it goes with no other --format, --graph or --versions")
        fmt, emit_url = "openlineage", check_url(emit_url)
    listing = target is None and remote_name is None and fmt in ("text", "json") and emit_url is None
    lin = c.reader.lineage if listing else c.lineage  # a listing reads only records: no façade to import
    if remote_name is not None:
        from zcas.remotes import Remote, pick

        Remote(c.repo, lin, pick(c.repo, remote_name)).sync_lineage()
    if versions:
        if target is None:
            raise click.UsageError("--versions needs a PATH")
        _print_versions(c, target, limit, fmt)
        return
    if target is None:
        if as_graph or fmt in ("dot", "mermaid"):
            raise click.UsageError("--graph, dot and mermaid need a TARGET (a path or an id)")
        found = lin.runs(step=step, since_ns=_since(since), limit=limit + 1 if bounded and limit else limit)
        more = bounded and limit is not None and len(found) > limit
        runs = {rid.hex(): r for rid, r in found[:limit]}
        _print_runs(c, runs, fmt, emit_url)
        if more:
            click.echo(f"zcas: the newest {limit} runs shown; -n N shows N, -n 0 every run", err=True)
        return
    from zcas.lineage.redact import public_record
    from zcas.lineage.walk import ancestors, descendants

    oid, is_run, path = _target(c, target)
    walk = descendants if used_by else ancestors
    credited = _writer_of_latest(lin, path) if path and not used_by and not every else None
    if credited is not None:  # that version's own history, not that of every run that wrote the same bytes
        g = ancestors(lin, credited, depth or (1 << 30), is_run=True)
        g.root = oid.hex()
        g.edges.append((credited.hex(), oid.hex(), "output"))
    else:
        g = walk(lin, oid, depth or (1 << 30), is_run=is_run)
    if path:
        g.artifacts.setdefault(oid.hex(), set()).add(path)
    if step:
        g.runs = {k: v for k, v in g.runs.items() if v["step"] == step}
    if fmt == "json":
        d = g.as_dict()
        d["runs"] = [public_record(r) for r in d["runs"]]  # env values of older records become digests
        emit_json(d)
    elif fmt == "dot":
        click.echo(export.dot(g))
    elif fmt == "mermaid":
        click.echo(export.mermaid(g))
    elif fmt == "openlineage":
        _print_runs(c, g.runs, fmt, emit_url)
    elif as_graph:
        for line in export.tree(g, upstream=not used_by):
            click.echo(line)
    else:
        ordered = sorted(g.runs.items(), key=lambda kv: (g.depth_of[kv[0]], -kv[1]["started_ns"]))
        if limit:
            ordered = ordered[:limit]
        for rid, r in ordered:
            click.echo(export.run_line(rid, r))
        sources = sorted({a for a in g.artifacts if not any(t == a and k == "output" for _, t, k in g.edges)})
        if not used_by:
            for a in sources:
                if a != g.root or not g.runs:
                    names = printable(", ".join(sorted(g.artifacts[a]))) or "(unnamed)"
                    click.echo(f"source {a[:12]}  {names}")


def _print_versions(c: Ctx, path: str, limit: int | None, fmt: str) -> None:
    """Every recorded version of a path, newest first: added by hand or written by a run."""
    from zcas.cas.errors import ZcasError
    from zcas.cas.safetext import printable
    from zcas.lineage import export

    rel = c.repo.rel(path)
    history = c.lineage.history(rel)
    found = list(reversed(list(enumerate(history, 1))))[:limit]  # numbered oldest first, as `forget PATH@N`
    if not found:
        raise ZcasError(f"no recorded versions of {printable(rel)} (zcas add it, or let a run write it)")
    if fmt == "json":
        emit_json([{"path": v.path, "id": v.id, "time_ns": v.time_ns, "kind": v.kind, "run": v.run, "number": n}
                   for n, v in found])
        return
    for n, v in found:
        how = f"run {v.run[:12]}" if v.run else "added"
        click.echo(f"{v.id[:12]}  {export.when(v.time_ns)}  {v.kind:<4}  {how}  @{n}")


def _print_runs(c: Ctx, runs: dict[str, dict[str, Any]], fmt: str, emit_url: str | None = None) -> None:
    from zcas.lineage import export
    from zcas.lineage.redact import public_record

    if fmt == "json":
        emit_json([dict(public_record(r), id=rid) for rid, r in runs.items()])
    elif fmt == "openlineage":
        from zcas.openlineage import pipelines_of, post_events, producer_lookup

        ns = f"file://{c.repo.root}"
        events = export.openlineage_events(runs, ns, producer_lookup(c.lineage), pipelines_of(c.lineage, runs))
        if emit_url is not None:
            n = post_events(events, emit_url)
            click.echo(f"sent {n} OpenLineage events ({len(runs)} runs) to {emit_url}", err=True)
            return
        for ev in events:
            click.echo(json.dumps(ev, sort_keys=True))
    else:
        for rid, r in runs.items():
            click.echo(export.run_line(rid, r))


@cli.command()
@click.argument("target")
@click.option("--log", "log", is_flag=True,
              help="Print what the run printed (stdout, then stderr; a cached run: the run it came from), streamed.")
@json_option()
@pass_ctx
def show(c: Ctx, target: str, log: bool, as_json: bool) -> None:
    """Everything about one run, or one artifact (its producers, users and paths)."""
    import shlex

    from zcas.cas.codec import KINDS
    from zcas.cas.errors import ZcasError
    from zcas.cas.safetext import printable as pr
    from zcas.lineage import export
    from zcas.lineage.redact import public_record

    oid, is_run, _ = _target(c, target)
    lin = c.lineage
    if is_run:
        rec = lin.run_dict(oid)
        if rec is None:
            raise ZcasError(f"run {oid.hex()[:12]} has no readable record (see zcas fsck)")
        r = public_record(rec)  # env values of older records become digests
        if log:
            from zcas.experiments import print_log

            print_log(c.repo.db, oid.hex(), rec, sys.stdout.buffer, lineage=lin)
            return
        if as_json:
            emit_json(dict(r, id=oid.hex()))
            return
        click.echo(f"run       {oid.hex()}")
        click.echo(f"step      {pr(r['step'])} ({r['kind']})")
        click.echo(f"status    {r['status']} (exit {r['exit_status']})")
        click.echo(f"started   {export.when(r['started_ns'])}   duration {(r['ended_ns'] - r['started_ns']) / 1e9:.3f}s")
        click.echo(f"host      {pr(r['user'])}@{pr(r['host'])}   zcas {pr(r['zcas_version'])}")
        if r.get("cmd"):
            click.echo(f"command   {pr(shlex.join(r['cmd']))}   (in {pr(r.get('cwd') or '.')})")
        if r.get("code"):
            click.echo(f"code      {pr(r['code'])}")
        if r.get("cache_key"):
            click.echo(f"cache key {r['cache_key']}")
        if r.get("cached_from"):
            click.echo(f"cached from run {r['cached_from']}")
        for title, field in (("inputs", "inputs"), ("outputs", "outputs")):
            click.echo(f"{title}:")
            for name, o in sorted(r[field].items()):
                click.echo(f"  {o}  {pr(name)}")
        if r.get("params"):
            click.echo("params:")
            for k, v in sorted(r["params"].items()):
                click.echo(f"  {pr(k)} = {pr(json.dumps(v))}")
        if r.get("env"):
            click.echo("env (names only: values are never stored):")
            for k, v in sorted(r["env"].items()):
                click.echo(f"  {pr(k)} ({'unset' if v is None else 'set'})")
        if r.get("metrics"):
            click.echo("metrics:")
            for k, v in sorted(r["metrics"].items()):
                click.echo(f"  {pr(k)} = {v}")
        if r.get("log"):
            click.echo("log (zcas show RUN --log prints it):")
            for k, v in sorted(r["log"].items()):
                click.echo(f"  {v}  {k}")
        return
    e = c.repo.db.entry(oid)
    info: dict[str, Any] = {
        "id": oid.hex(),
        "kind": KINDS[e.kind],
        "size": e.size,
        "produced_by": [r.hex() for r in lin.graph.producers(oid)],
        "used_by": [r.hex() for r in lin.graph.consumers(oid)],
        "tags": sorted(n for n, t in c.repo.refs.tags().items() if t == oid),
    }
    if as_json:
        emit_json(info)
        return
    click.echo(f"object    {info['id']}")
    click.echo(f"kind      {info['kind']}, {info['size']} bytes")
    for n in info["tags"]:
        click.echo(f"tag       {n}")
    for title in ("produced_by", "used_by"):
        for rid in info[title]:
            found = lin.run_dict(bytes.fromhex(rid))
            click.echo(f"{title.replace('_', ' '):<9} {export.run_line(rid, found) if found else rid}")


@cli.command()
@pass_ctx
def reindex(c: Ctx) -> None:
    """Rebuild the lineage index (LMDB) from the object store and refs alone."""
    n = c.repository.reindex()
    click.echo(f"reindexed {n['runs']} runs, {n['paths']} path versions, {n['tags']} tags"
               + (f"; {n['damaged']} damaged records skipped (see zcas fsck)" if n["damaged"] else ""))

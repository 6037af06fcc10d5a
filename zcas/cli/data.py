"""Data-versioning commands: add, cat, ls, checkout, tag, tags, fsck, gc, forget, du."""

from __future__ import annotations

import os
import shutil
import sys
from typing import TYPE_CHECKING

import click

from .base import Ctx, cli, emit_json, json_option, pass_ctx

if TYPE_CHECKING:
    from collections.abc import Callable

    from zcas.cas.refs import Forgotten
    from zcas.lineage.retention import Rules, RunRef, VersionRef

# The object store's operations (zcas.cas: view, checkout, fsck, gc, repair, usage),
# zcas.remotes and zcas.audit are imported inside the commands: they pull in lmdb,
# zstandard, blake3 and attrs (~90 ms, measured), which `zcas --help` (~65 ms in all) never
# needs (see zcas/cli/__init__.py).


@cli.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("-t", "--tag", "tag_name", metavar="NAME", help="Also tag the version added (one PATH only).")
@json_option()
@pass_ctx
def add(c: Ctx, paths: tuple[str, ...], tag_name: str | None, as_json: bool) -> None:
    """Store files or folders and record this version of each PATH.

    Prints "<id>  <path>" per path. Unchanged files are recognised by their stat and not
    read again.
    """
    if tag_name is not None:
        from zcas.cas.errors import UsageError
        from zcas.cas.refs import check_tag_name

        check_tag_name(tag_name)  # before anything is stored
        if len(paths) != 1:
            raise UsageError(f"--tag names one version: give one PATH, not {len(paths)}")
    bar = _add_progress(paths)
    out = c.repo.add(list(paths), bar)
    if bar is not None:
        bar.close()
    c.lineage.index_paths(c.repo.refs.last_recorded)
    if tag_name is not None:
        c.lineage.set_tag(tag_name, out[0][0])
    if as_json:
        emit_json([{"id": oid.hex(), "path": p, "kind": kind} for oid, p, kind in out])
    else:
        for oid, p, _ in out:
            click.echo(f"{oid.hex()}  {p}")


class _AddBar:
    """A bar of MiB stored or found unchanged. Its total comes from a quick walk of the paths
    first (sizes only, nothing read: cheap next to hashing them); ``close`` completes it even
    when the walk counted files the add skips."""

    def __init__(self, bar: Callable[[int, int], None], total: int) -> None:
        self.bar, self.total, self.done = bar, total, 0

    def __call__(self, n: int) -> None:
        self.done += n
        if self.done < self.total:
            self.bar(self.done >> 20, self.total >> 20)

    def close(self) -> None:
        self.bar(self.total >> 20, self.total >> 20)


def _add_progress(paths: tuple[str, ...]) -> _AddBar | None:
    """On a terminal only (``tty_bar``)."""
    from zcas.cas.progress import tree_size, tty_bar

    bar = tty_bar("adding", "MiB")
    if bar is None:
        return None
    total = sum(tree_size(p) for p in paths)
    return _AddBar(bar, total) if total >= 1 << 20 else None  # under 1 MiB: done before a bar would show


@cli.command()
@click.argument("ref")
@pass_ctx
def cat(c: Ctx, ref: str) -> None:
    """Write a stored file's bytes to standard output."""
    from zcas.cas.view import iter_file_bytes

    out = sys.stdout.buffer
    for block in iter_file_bytes(c.repo.db, c.repo.resolve(ref)):
        out.write(block)
    out.flush()


@cli.command()
@click.argument("ref")
@click.option("-r", "--recursive", is_flag=True, help="List every entry below the tree.")
@json_option()
@pass_ctx
def ls(c: Ctx, ref: str, recursive: bool, as_json: bool) -> None:
    """List a stored tree: mode, id, size and name of each entry."""
    from zcas.cas.safetext import printable
    from zcas.cas.view import list_tree

    rows = list_tree(c.repo.db, c.repo.resolve(ref), recursive)
    if as_json:
        emit_json([{"mode": m, "id": o.hex(), "size": s, "path": p} for m, o, s, p in rows])
        return
    for mode, oid, size, path in rows:  # names come from stored trees: control characters escaped
        click.echo(f"{mode:4}  {oid.hex()}  {size:>12}  {printable(path)}")


@cli.command()
@click.argument("ref")
@click.argument("dest", type=click.Path())
@click.option("-f", "--force", is_flag=True, help="Overwrite files whose content differs.")
@click.option("--prune", is_flag=True, help="Also delete files and folders in DEST that the tree does not name.")
@pass_ctx
def checkout(c: Ctx, ref: str, dest: str, force: bool, prune: bool) -> None:
    """Restore a stored file or tree (by id or tag) at DEST, byte for byte.

    Existing identical files are left alone; changed ones are refused unless --force.
    Files already in DEST that the tree does not name are left and counted (--prune
    deletes them).
    """
    from zcas.cas import codec
    from zcas.cas.checkout import checkout as do_checkout
    from zcas.cas.progress import tty_bar

    oid = c.repo.resolve(ref)
    n = do_checkout(c.repo.db, oid, dest, force=force, progress=tty_bar("checking out", "files"))
    click.echo(f"restored {n} file{'s' if n != 1 else ''} into {dest}", err=True)
    if c.repo.db.entry(oid).kind == codec.KIND_TREE:
        _extra_files(c, oid, dest, prune)


def _extra_files(c: Ctx, oid: bytes, dest: str, prune: bool) -> None:
    """Say what DEST holds that the tree does not name; with ``prune``, delete it."""
    from zcas.cas.safetext import printable
    from zcas.cas.view import list_tree

    named = {p.rstrip("/") for _, _, _, p in list_tree(c.repo.db, oid, recursive=True)}
    extra: list[str] = []
    for top, dirs, files in os.walk(dest):
        rel = os.path.relpath(top, dest)
        rel = "" if rel == "." else rel.replace(os.sep, "/") + "/"
        for d in list(dirs):
            if rel + d not in named:
                extra.append(rel + d + "/")
                dirs.remove(d)  # everything inside is extra too: named once
        extra.extend(rel + f for f in files if rel + f not in named)
    if not extra:
        return
    if prune:
        for e in extra:
            path = os.path.join(dest, e.rstrip("/"))
            if e.endswith("/") and not os.path.islink(path):
                shutil.rmtree(path)
            else:
                os.unlink(path)
        click.echo(f"pruned {len(extra)} entries the tree does not name", err=True)
    else:
        shown = ", ".join(printable(e) for e in extra[:3]) + (", ..." if len(extra) > 3 else "")
        click.echo(f"left {len(extra)} entries the tree does not name ({shown}); --prune deletes them", err=True)


@cli.command()
@click.argument("name")
@click.argument("ref", required=False)
@click.option("-f", "--force", is_flag=True, help="Move an existing tag.")
@click.option("-d", "--delete", is_flag=True, help="Delete the tag NAME.")
@pass_ctx
def tag(c: Ctx, name: str, ref: str | None, force: bool, delete: bool) -> None:
    """Name an object: NAME then works wherever an id does.

    REF is an id (or unique prefix), a tag, or a path with recorded versions (its latest).
    """
    if delete:
        c.lineage.delete_tag(name)
        return
    if ref is None:
        raise click.UsageError("missing argument ID (the object to tag)")
    from zcas.cas.refs import check_tag_name

    check_tag_name(name)
    versions = c.lineage.graph.versions(c.repo.rel(ref))  # a path: its latest recorded version
    c.lineage.set_tag(name, bytes.fromhex(versions[-1].id) if versions else c.repo.resolve(ref), force=force)


@cli.command()
@json_option()
@pass_ctx
def tags(c: Ctx, as_json: bool) -> None:
    """List tags and the ids they name."""
    t = c.repo.refs.tags()
    if as_json:
        emit_json({k: v.hex() for k, v in t.items()})
        return
    for name, oid in t.items():
        click.echo(f"{oid.hex()}  {name}")


@cli.command()
@click.option("--repair", is_flag=True, help="Replace corrupt and missing objects with good copies from a remote.")
@click.option("--remote", "remote_name", metavar="NAME", help="The remote --repair fetches from (default: origin).")
@json_option()
@pass_ctx
def fsck(c: Ctx, repair: bool, remote_name: str | None, as_json: bool) -> None:
    """Verify every stored object; exit 1 if any is corrupt or missing.

    Dangling objects (stored but named by nothing) are listed but are not an error, and so
    are unsafe run records (ones whose outputs escape the repository or differ from what
    their step declares, as a hostile remote could serve): runs never use them. With
    --repair, damaged and missing objects are fetched from a remote, verified, and put in
    place of the damaged ones.
    """
    from zcas.audit import unsafe_runs
    from zcas.cas.fsck import fsck as do_fsck
    from zcas.cas.fsck import tty_progress
    from zcas.cas.safetext import printable

    required, optional = c.roots()
    rep = do_fsck(c.repo.db, required, progress=tty_progress(), optional_roots=optional)
    repaired: list[str] = []
    if repair and not rep.ok:
        from zcas.cas.repair import repair as do_repair
        from zcas.remotes import Remote, pick

        r = Remote(c.repo, c.lineage, pick(c.repo, remote_name))
        corrupt = [bytes.fromhex(k) for k in rep.corrupt if not k.startswith("pack ")]
        fixed, _ = do_repair(c.repo.db, r.db, corrupt, [bytes.fromhex(m) for m in rep.missing])
        repaired = [o.hex() for o in fixed]
        rep = do_fsck(c.repo.db, required, progress=tty_progress(), optional_roots=optional)
    unsafe = unsafe_runs(c.lineage)
    if as_json:
        emit_json(
            {"checked": rep.checked, "corrupt": rep.corrupt, "missing": rep.missing, "repaired": repaired,
             "dangling": rep.dangling, "unindexed_packs": rep.unindexed_packs, "ok": rep.ok,
             "unsafe_runs": [{"run": rid, "reason": why} for rid, why in unsafe], "absent": rep.absent}
        )
    else:
        for oid in repaired:
            click.echo(f"repaired {oid}")
        for oid, why in sorted(rep.corrupt.items()):
            click.echo(f"corrupt {oid}: {printable(why)}")
        for oid in rep.missing:
            click.echo(f"missing {oid}")
        for oid in rep.dangling:
            click.echo(f"dangling {oid}")
        for key in rep.unindexed_packs:
            click.echo(f"unindexed {key} (left by an interrupted write; gc removes it)")
        for rid, why in unsafe:
            click.echo(f"unsafe run {rid}: {printable(why)} (never used as a cache hit)")
        click.echo(
            f"checked {rep.checked} objects: {len(rep.corrupt)} corrupt, {len(rep.missing)} missing, "
            f"{len(rep.dangling)} dangling" + (f", {len(repaired)} repaired" if repair else "")
            + (f"; {rep.absent} outputs of runs indexed from a remote are not fetched here (not damage)"
               if rep.absent else "")
        )
    if not rep.ok:
        sys.exit(1)


@cli.command()
@click.option("-n", "--dry-run", is_flag=True, help="Report what would be forgotten and deleted; change nothing.")
@click.option("--grace", default=None, metavar="DURATION",
              help="Never delete objects younger than this (e.g. 14d, 12h, 0; default: gc.grace, 14d).")
@click.option("--keep-last", type=click.IntRange(min=1), default=None, metavar="N",
              help="Forget all but the N newest versions of each path and runs of each step.")
@click.option("--keep-within", default=None, metavar="DURATION",
              help="Forget versions and runs older than DURATION before their path's or step's newest.")
@click.option("--keep-tagged", is_flag=True,
              help="Keep tagged versions and runs (always, with the other rules); alone: forget the rest.")
@click.option("--remote", "remote_name", default=None, metavar="NAME",
              help="Collect on remote NAME instead (its tags, run records and path history; the rules apply there).")
@json_option()
@pass_ctx
def gc(c: Ctx, dry_run: bool, grace: str | None, keep_last: int | None, keep_within: str | None,
       keep_tagged: bool, remote_name: str | None, as_json: bool) -> None:
    """Delete objects that no tag, recorded path version or run record reaches.

    With --keep-last, --keep-within or --keep-tagged, first forget the path versions and
    runs no rule keeps (a tag always keeps what it names), then collect. If anything those
    reach is corrupt, or missing below a stored tree or file, nothing is deleted (what it
    would keep alive is unknown): run `zcas fsck --repair` first.

    With --remote NAME the same happens on the remote, by what is recorded there, under
    the remote's lock: a push running meanwhile makes gc refuse, and pushes wait for it
    (they refuse while it runs). Nothing local changes.
    """
    import attrs

    from zcas.cas.gc import gc as do_gc
    from zcas.cas.statcache import StatCache
    from zcas.lineage.retention import Rules, plan
    from zcas.runners.durations import human_bytes, parse_duration
    from zcas.runners.values import clear_checkouts

    rules = Rules(keep_last=keep_last, keep_tagged=keep_tagged,
                  keep_within_ns=None if keep_within is None else int(parse_duration(keep_within) * 1e9))
    grace_s = None if grace is None else parse_duration(grace)  # bad input: refused before anything changes
    if remote_name is not None:
        _gc_remote(c, remote_name, rules, grace_s, dry_run, as_json)
        return
    c.exclusive = True
    forgotten = None
    versions, runs = plan(c.lineage, rules, c.repo.refs.tags().values())
    if dry_run:
        forgotten = c.lineage.graph.forgotten.union(_as_forgotten(versions, runs))
    else:
        c.lineage.forget([bytes.fromhex(r.run) for r in runs], [v.span() for v in versions])
    required, optional = c.roots(forgotten)
    rep = do_gc(c.repo.db, required, grace_s if grace_s is not None else parse_duration(c.config.get("gc.grace")),
                dry_run=dry_run, optional_roots=optional)
    if not dry_run and rep.objects_removed:
        StatCache.clear(c.repo.statcache_path)
    checkouts = clear_checkouts(c.repo.zdir, dry_run)  # alone under gc's lock: no step is reading one
    if as_json:
        emit_json(dict(attrs.asdict(rep), dry_run=dry_run, checkouts_removed=checkouts,
                       versions_forgotten=len(versions), runs_forgotten=len(runs),
                       forgotten={"versions": [v.as_dict() for v in versions], "runs": [r.as_dict() for r in runs]}))
        return
    verb = "would remove" if dry_run else "removed"
    if rules.active():
        if dry_run:
            _print_forgotten(versions, runs, "would forget")
        click.echo(f"{'would forget' if dry_run else 'forgot'} {len(versions)} path versions and {len(runs)} runs")
    click.echo(
        f"{verb} {rep.objects_removed} objects ({human_bytes(rep.bytes_removed)}) from {rep.packs_removed} packs, "
        f"{rep.leftovers_removed} leftover files, {checkouts} loaded copies of path artifacts; "
        f"{rep.objects_moved} live objects repacked"
    )


def _gc_remote(c: Ctx, name: str, rules: Rules, grace_s: float | None, dry_run: bool, as_json: bool) -> None:
    import attrs

    from zcas.remotegc import gc_remote
    from zcas.remotes import Remote, pick
    from zcas.runners.durations import human_bytes, parse_duration

    r = Remote(c.repo, c.lineage, pick(c.repo, name))
    rep = gc_remote(r, rules, grace_s if grace_s is not None else parse_duration(c.config.get("gc.grace")), dry_run)
    o = rep.objects
    if as_json:
        emit_json(dict(attrs.asdict(o), dry_run=dry_run, remote=name, versions_forgotten=len(rep.versions),
                       runs_forgotten=len(rep.runs), segments_removed=rep.segments_removed,
                       records_skipped=rep.records_skipped, actions_removed=rep.actions_removed,
                       forgotten={"versions": [v.as_dict() for v in rep.versions],
                                  "runs": [r.as_dict() for r in rep.runs]}))
        return
    verb = "would remove" if dry_run else "removed"
    if rules.active():
        if dry_run:
            _print_forgotten(rep.versions, rep.runs, "would forget")
        click.echo(f"{'would forget' if dry_run else 'forgot'} {len(rep.versions)} path versions and "
                   f"{len(rep.runs)} runs on {name}")
    click.echo(f"{verb} {o.objects_removed} objects ({human_bytes(o.bytes_removed)}) from {o.packs_removed} packs "
               f"on {name}, {o.leftovers_removed} leftover files; {o.objects_moved} live objects repacked; "
               f"{rep.segments_removed} lineage and history segments folded")


def _as_forgotten(versions: list[VersionRef], runs: list[RunRef]) -> Forgotten:
    from zcas.cas.refs import Forgotten

    f = Forgotten()
    for v in versions:
        f.add_version(*v.span())
    for r in runs:
        f.add_run(bytes.fromhex(r.run))
    return f


def _print_forgotten(versions: list[VersionRef], runs: list[RunRef], verb: str,
                     still: set[bytes] | None = None) -> None:
    from zcas.cas.safetext import printable
    from zcas.lineage import export

    def note(oid: str) -> str:
        return "  (still named: a tag, another version or a run keeps it)" if still and bytes.fromhex(oid) in still else ""

    for v in versions:
        how = f"run {v.run[:12]}" if v.run else "added"
        click.echo(f"{verb} {printable(v.path)}@{v.number}  {v.id[:12]}  {export.when(v.time_ns)}  {how}{note(v.id)}")
    for r in runs:
        click.echo(f"{verb} run {r.run[:12]}  {export.when(r.started_ns)}  {r.status:<6}  {printable(r.step)}")


def _forget_targets(c: Ctx, targets: tuple[str, ...]) -> tuple[list[VersionRef], list[RunRef]]:
    """The path versions and runs named by ``PATH@N`` and ``ID`` arguments (no duplicates)."""
    import re

    from zcas.cas.errors import AmbiguousIdError, UsageError, ZcasError
    from zcas.cas.oid import check_prefix
    from zcas.cas.refs import TagNotFoundError
    from zcas.cas.safetext import printable
    from zcas.lineage.retention import RunRef, path_versions

    lin = c.lineage
    versions: dict[tuple[str, int], VersionRef] = {}
    runs: dict[str, RunRef] = {}
    for text in targets:
        m = re.fullmatch(r"(.+)@([0-9]+)", text)
        if m:
            rel = c.repo.rel(m.group(1))
            number = int(m.group(2))
            if number < 1:
                raise UsageError(f"version numbers start at 1 (as 'zcas log PATH --versions' numbers them): {text!r}")
            found = path_versions(lin, rel)
            if not found:
                raise ZcasError(f"no recorded versions of {printable(rel)}")
            if number > len(found):
                raise ZcasError(f"{printable(rel)} has {len(found)} recorded version"
                                f"{'s' if len(found) != 1 else ''}: no @{number}")
            v = found[number - 1]
            versions[(v.path, v.time_ns)] = v
            continue
        tag = c.repo.refs.get_tag(text)
        if tag is not None:
            prefix = tag.hex()
        elif text and all(ch in "0123456789abcdefABCDEF" for ch in text):
            prefix = check_prefix(text)
        else:
            raise TagNotFoundError(text)
        ids = {rid for rid in lin.graph.find_prefix(prefix, limit=64) if lin.graph.has_run(rid)}
        paths: dict[bytes, set[str]] = {}
        for path, oid in lin.graph.all_paths():
            if oid.hex().startswith(prefix):
                paths.setdefault(oid, set()).add(path)
        ids |= set(paths)
        if not ids:
            raise ZcasError(f"nothing recorded under {printable(text)}: no run and no path version has that id")
        if len(ids) > 1:
            raise AmbiguousIdError(prefix, len(ids))
        (oid,) = ids
        d = lin.run_dict(oid) if lin.graph.has_run(oid) else None
        if d is not None:
            runs[oid.hex()] = RunRef(oid.hex(), d["step"], d["status"], d["started_ns"])
        for path in sorted(paths.get(oid, ())):
            for v in path_versions(lin, path):
                if v.id == oid.hex():
                    versions[(v.path, v.time_ns)] = v
    return list(versions.values()), list(runs.values())


@cli.command()
@click.argument("targets", nargs=-1, required=True, metavar="PATH@N|ID...")
@click.option("-n", "--dry-run", is_flag=True, help="Show what would be forgotten; change nothing.")
@json_option()
@pass_ctx
def forget(c: Ctx, targets: tuple[str, ...], dry_run: bool, as_json: bool) -> None:
    """Forget recorded path versions and runs, so gc may collect what only they kept.

    PATH@N is version N of PATH, numbered as `zcas log PATH --versions` shows (1: the
    oldest). ID is a run (its outputs stop being kept by it) or an object id (every
    recorded version holding it, on any path). Files in the working tree are never touched;
    a tag still keeps what it names. Objects go at the next `zcas gc` (after its grace period).
    """
    c.exclusive = not dry_run  # the index is rebuilt: no other command may write meanwhile
    versions, runs = _forget_targets(c, targets)
    if dry_run:
        required, optional = c.roots(c.lineage.graph.forgotten.union(_as_forgotten(versions, runs)))
    else:
        c.lineage.forget([bytes.fromhex(r.run) for r in runs], [v.span() for v in versions])
        required, optional = c.roots()
    still = set(required) | set(optional)
    if as_json:
        emit_json({"dry_run": dry_run,
                   "versions": [dict(v.as_dict(), still_named=bytes.fromhex(v.id) in still) for v in versions],
                   "runs": [r.as_dict() for r in runs]})
        return
    _print_forgotten(versions, runs, "would forget" if dry_run else "forgot", still)
    if not dry_run:
        click.echo("what nothing else keeps goes at the next 'zcas gc' (objects younger than its grace period stay)",
                   err=True)


@cli.command()
@json_option()
@pass_ctx
def du(c: Ctx, as_json: bool) -> None:
    """Show logical and stored size, and the dedup and compression ratios."""
    from zcas.cas.usage import usage
    from zcas.runners.durations import human_bytes

    u = usage(c.repo.db, [v.oid for v in c.repo.refs.live_history()])
    if as_json:
        emit_json(u.as_dict())
        return
    click.echo(f"versions recorded   {u.versions}")
    click.echo(f"logical size        {human_bytes(u.logical_bytes)}  ({u.logical_bytes} bytes)")
    click.echo(f"unique content      {human_bytes(u.unique_bytes)}  ({u.unique_bytes} bytes)")
    click.echo(f"stored on disk      {human_bytes(u.stored_bytes)}  ({u.stored_bytes} bytes)")
    click.echo(f"dedup ratio         {u.dedup_ratio:.2f}x")
    click.echo(f"compression ratio   {u.compression_ratio:.2f}x")
    click.echo(f"objects             {u.objects}")

"""``zcas status`` and ``zcas why``: the key as it would be now, against the last run."""

from __future__ import annotations

import os
from typing import Any

from zcas.cas import codec
from zcas.cas.errors import UsageError, ZcasError
from zcas.cas.ingest import path_id
from zcas.cas.view import list_tree
from zcas.runners import codemanifest
from zcas.runners import spec as spec_mod
from zcas.runners.artifacts import current_id
from zcas.runners.command import Command, plan
from zcas.runners.core import Core
from zcas.runners.keys import explain

from . import covers


def _last(ctx: Core, name: str) -> dict[str, Any] | None:
    rid = ctx.lineage.graph.last_run(name)
    return None if rid is None else ctx.lineage.run_dict(rid)


def check_step(ctx: Core, s: spec_mod.StepSpec) -> dict[str, Any]:
    """{"name", "status": fresh|stale, "reasons": [...], "key"} for one step, computed now."""
    try:
        p = plan(ctx, s, store=False)
    except ZcasError as e:
        return {"name": s.name, "status": "stale", "reasons": [str(e)], "key": None}
    hit = ctx.lookup(p.key, Command(s).valid)
    reasons: list[str] = []
    if hit is not None:
        rid, rec = hit
        for path in s.outputs:
            oid = rec["outputs"][path]
            if current_id(ctx, path) != bytes.fromhex(oid):
                reasons.append(f"output {path} missing or changed in the working tree (a run restores it)")
        return {"name": s.name, "status": "fresh", "reasons": reasons, "key": p.key.hex(), "run": rid.hex()}
    last = _last(ctx, s.name)
    if last is None:
        reasons.append("never ran")
    else:
        old = last.get("key_components", {})
        reasons = explain(old, p.components)
        for name in sorted(set(old) & set(p.components)):
            if name.startswith("input:") and old[name] != p.components[name]:
                reasons.extend(_tree_changes(ctx, name[6:], old[name], p.components[name]))
        if not reasons:
            reasons.append("outputs of the last run are missing from the store")
    return {"name": s.name, "status": "stale", "reasons": reasons, "key": p.key.hex()}


def _tree_changes(ctx: Core, path: str, old_hex: str, new_hex: str, limit: int = 5) -> list[str]:
    """For a folder input: which files in it changed. The old version is listed from the store
    (when it is there); the new one is read from the working tree, which status never stores."""
    db = ctx.db
    try:
        a = bytes.fromhex(old_hex)
        if db.entry(a).kind != codec.KIND_TREE:
            return []
        old = {r[3]: r[1] for r in list_tree(db, a, recursive=True) if r[0] != "tree"}
    except ZcasError:
        return []
    top = ctx.abspath(path)
    if not os.path.isdir(top) or os.path.islink(top):
        return []
    new: dict[str, bytes] = {}
    for dirpath, dirs, files in os.walk(top):
        dirs.sort()
        for f in files:
            full = os.path.join(dirpath, f)
            try:
                new[os.path.relpath(full, top).replace(os.sep, "/")] = path_id(full, ctx.statcache)[0]
            except ZcasError:
                continue
    lines = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            what = "added" if name not in old else "removed" if name not in new else "changed"
            lines.append(f"  {path}/{name} {what}")
    return lines[:limit] + ([f"  ... and {len(lines) - limit} more"] if len(lines) > limit else [])


def recorded_step(ctx: Core, name: str) -> dict[str, Any]:
    """A step zcas.toml does not declare (a Python step, a ``zcas.command`` step): its key can
    only be known by running its pipeline, so report what its last execution was and why it
    executed — its key against the previous run of the step with another key."""
    runs = [(rid, r) for rid, r in ctx.lineage.runs(step=name, limit=1000) if r["kind"] != "pipeline"]
    if not runs:
        raise UsageError(f"no step named {name!r} in {spec_mod.FILE}, and no run of a step of that name")
    last_rid, last = runs[0]
    executed = [(rid, r) for rid, r in runs if r["status"] in ("ran", "failed")]
    row: dict[str, Any] = {"name": name, "status": last["status"], "kind": last["kind"], "run": last_rid.hex(),
                           "key": last.get("cache_key") or None, "reasons": []}
    if not executed:
        row["reasons"].append("every recorded run was a cache hit (its result came from another run)")
        return row
    rid, ran = executed[0]

    def differs(r: dict[str, Any]) -> bool:
        if r.get("cache_key") and r.get("cache_key") != ran.get("cache_key"):
            return True
        return r["status"] == "ran" and (r.get("implicit_inputs") or {}) != (ran.get("implicit_inputs") or {})

    older = [_source(ctx, r) for _, r in runs if differs(r) and r["started_ns"] < ran["started_ns"]]
    what = f"last executed in run {rid.hex()[:12]}"
    if not older:
        row["reasons"].append(f"{what}: its first run (no earlier run with another key)")
    else:
        row["reasons"].append(f"{what}, because:")
        row["reasons"].extend(compare_runs(ctx, older[0], ran))
    if last["kind"] == "python":
        row["reasons"].append("whether it would run now depends on its inputs: run its pipeline to find out")
    return row


def _source(ctx: Core, rec: dict[str, Any]) -> dict[str, Any]:
    """A cache hit's record stands for the run it restored: that one knows what it read."""
    src = rec.get("cached_from")
    if rec.get("status") == "cached" and isinstance(src, str):
        try:
            return ctx.lineage.run_dict(bytes.fromhex(src)) or rec
        except ValueError:
            return rec
    return rec


def _keyed_on(rec: dict[str, Any]) -> dict[str, str]:
    """A run's key components with the files it read as they were read (what the key held
    of them was a guess made before it ran)."""
    comps = {k: v for k, v in (rec.get("key_components") or {}).items() if not k.startswith("implicit:")}
    for path, oid in (rec.get("implicit_inputs") or {}).items():
        comps[f"implicit:{path}"] = oid
    return comps


def compare_runs(ctx: Core, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What changed between two runs of a step, naming the definition (with file and line)
    when code changed and both runs' code manifests are in the store."""
    lines = explain(_keyed_on(old), _keyed_on(new))
    a = codemanifest.load(ctx.repo.db, old.get("code_manifest"))
    b = codemanifest.load(ctx.repo.db, new.get("code_manifest"))
    code = [i for i, line in enumerate(lines) if line.startswith("code changed:")]
    if code and a is not None and b is not None:
        detail = codemanifest.changes(a, b) or ["code changed (the manifests list the same entries)"]
        root = ctx.repo.root
        detail = [line.replace(root + os.sep, "") for line in detail]
        lines[code[0]:code[0] + 1] = detail
    return lines


def status_of(ctx: Core, wanted: list[str]) -> list[dict[str, Any]]:
    steps = spec_mod.load(ctx.repo.root)
    others = [w for w in wanted if w not in steps and ctx.lineage.graph.last_run(w) is not None]
    if others:
        return [recorded_step(ctx, w) for w in others] + (status_of(ctx, [w for w in wanted if w not in others])
                                                         if len(others) < len(wanted) else [])
    if not steps:
        raise UsageError(f"no {spec_mod.FILE} in {ctx.repo.root}: nothing to report")
    deps = spec_mod.graph(steps)
    order = spec_mod.select(steps, wanted, deps)
    rows: dict[str, dict[str, Any]] = {}
    for name in order:
        stale_up = [d for d in sorted(deps[name]) if rows[d]["status"] == "stale"]
        if stale_up:
            rows[name] = {"name": name, "status": "stale", "reasons": [f"upstream {stale_up[0]} is stale"], "key": None}
        else:
            rows[name] = check_step(ctx, steps[name])
    return [rows[n] for n in order]


def covers_target(ctx: Core, target: str) -> dict[str, Any]:
    """``why --explain``: everything the key of a step covers (zcas.toml's steps as they would
    be keyed now; other steps as their last executed run was)."""
    steps = spec_mod.load(ctx.repo.root)
    name = _step_name(ctx, steps, target)
    if name in steps:
        p = plan(ctx, steps[name], store=False)
        items = covers.from_components(p.components)
        return {"name": name, "kind": "command", "key": p.key.hex(), "covers": items}
    last = covers.last_executed(ctx.lineage, name)
    if last is None:
        raise UsageError(f"no step named {name!r} in {spec_mod.FILE}, and no executed run of a step of that name")
    rid, rec = last
    return {"name": name, "kind": rec["kind"], "key": rec.get("cache_key") or None, "run": rid.hex(),
            "covers": covers.from_record(ctx.repo.db, rec, ctx.repo.root)}


def _step_name(ctx: Core, steps: dict[str, spec_mod.StepSpec], target: str) -> str:
    if target in steps:
        return target
    rel = ctx.repo.rel(target) if os.path.isabs(target) or os.path.exists(target) else target
    owners = [s for s in steps.values() if rel in s.outputs]
    return owners[0].name if owners else target


def explain_target(ctx: Core, target: str) -> dict[str, Any]:
    steps = spec_mod.load(ctx.repo.root)
    if target not in steps:
        rel = ctx.repo.rel(target) if os.path.isabs(target) or os.path.exists(target) else target
        owners = [s for s in steps.values() if rel in s.outputs]
        if not owners:
            if ctx.lineage.graph.last_run(target) is not None:
                return recorded_step(ctx, target)
            raise UsageError(f"no step named {target!r} or writing {rel!r} in {spec_mod.FILE}")
        target = owners[0].name
    row = status_of(ctx, [target])[-1]
    return row

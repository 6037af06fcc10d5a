"""``zcas status`` and ``zcas why``: the key as it would be now, against the last run."""

from __future__ import annotations

import os

from zcas.cas.errors import UsageError, ZcasError

from . import spec as spec_mod
from .artifacts import current_id
from .execute import lookup, plan
from .keys import explain


def _last(ctx, name: str) -> dict | None:
    rid = ctx.lineage.graph.last_run(name)
    return None if rid is None else ctx.lineage.run_dict(rid)


def check_step(ctx, s) -> dict:
    """{"name", "status": fresh|stale, "reasons": [...], "key"} for one step, computed now."""
    try:
        p = plan(ctx, s, store=False)
    except ZcasError as e:
        return {"name": s.name, "status": "stale", "reasons": [str(e)], "key": None}
    hit = lookup(ctx, p.key)
    reasons: list[str] = []
    if hit is not None:
        rid, rec = hit
        for path, oid in rec["outputs"].items():
            if current_id(ctx, path) != bytes.fromhex(oid):
                reasons.append(f"output {path} missing or changed in the working tree (a run restores it)")
        return {"name": s.name, "status": "fresh", "reasons": reasons, "key": p.key.hex(), "run": rid.hex()}
    last = _last(ctx, s.name)
    if last is None:
        reasons.append("never ran")
    else:
        reasons = explain(last.get("key_components", {}), p.components)
        if not reasons:
            reasons.append("outputs of the last run are missing from the store")
    return {"name": s.name, "status": "stale", "reasons": reasons, "key": p.key.hex()}


def status_of(ctx, wanted: list[str]) -> list[dict]:
    steps = spec_mod.load(ctx.repo.root)
    if not steps:
        raise UsageError(f"no {spec_mod.FILE} in {ctx.repo.root}: nothing to report")
    deps = spec_mod.graph(steps)
    order = spec_mod.select(steps, wanted, deps)
    rows: dict[str, dict] = {}
    for name in order:
        stale_up = [d for d in sorted(deps[name]) if rows[d]["status"] == "stale"]
        if stale_up:
            rows[name] = {"name": name, "status": "stale", "reasons": [f"upstream {stale_up[0]} is stale"], "key": None}
        else:
            rows[name] = check_step(ctx, steps[name])
    return [rows[n] for n in order]


def explain_target(ctx, target: str) -> dict:
    steps = spec_mod.load(ctx.repo.root)
    if target not in steps:
        rel = ctx.repo.rel(target) if os.path.isabs(target) or os.path.exists(target) else target
        owners = [s for s in steps.values() if rel in s.outputs]
        if not owners:
            if ctx.lineage.graph.last_run(target) is not None:
                raise UsageError(f"step {target!r} is a one-off command; rerun it with zcas run to compare")
            raise UsageError(f"no step named {target!r} or writing {rel!r} in {spec_mod.FILE}")
        target = owners[0].name
    row = status_of(ctx, [target])[-1]
    return row

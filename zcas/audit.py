"""Run records that could not have been written by zcas for the step they claim to be.

A cache hit restores by the step's own declaration and ignores such records already (see
``command.declared_outputs_match`` and ``python._fits``); ``zcas fsck`` lists them so a user
learns that a remote (or someone with write access to it) served them.
"""

from __future__ import annotations

import json
from typing import Any

from zcas.lineage.graph import key_matches
from zcas.lineage.store import Lineage
from zcas.runners.python import well_formed_outputs
from zcas.runners.spec import SpecError, norm_path


def _unsafe_path(name: str) -> str | None:
    """Why an output name is not one a step could declare (None: it could)."""
    try:
        norm = norm_path(name, "output")
    except SpecError:
        return "absolute, empty or outside the repository"
    if norm != name or norm == ".":
        return "not a plain path inside the repository"
    if ".zcas" in norm.lower().split("/"):
        return "inside .zcas"
    return None


def problems(rec: dict[str, Any]) -> list[str]:
    """What is wrong with one run record (empty: nothing)."""
    out: list[str] = []
    comps = rec.get("key_components") or {}
    if rec.get("cache_key") and not key_matches(rec):
        out.append("its cache key does not match its key components")
    outputs = rec.get("outputs") or {}
    if rec.get("kind") == "command":
        for name in sorted(outputs):
            why = _unsafe_path(name)
            if why:
                out.append(f"output {name!r} is {why}")
        if "outputs" in comps:
            try:
                declared = set(json.loads(comps["outputs"]))
            except (ValueError, TypeError):
                declared = None
            if declared is not None and declared != set(outputs) and rec.get("status") != "failed":
                extra = sorted(set(outputs) - declared) or sorted(declared - set(outputs))
                out.append(f"outputs differ from the declared ones (e.g. {extra[0]!r})")
    elif rec.get("kind") == "python" and rec.get("cache_key") and outputs and not well_formed_outputs(outputs):
        out.append(f"output names {sorted(outputs)[:3]} are not output or output.N")
    return out


def unsafe_runs(lineage: Lineage) -> list[tuple[str, str]]:
    """(run id, reason) for every indexed run record a hit would refuse."""
    found = []
    for rid in lineage.graph.all_run_ids():
        rec = lineage.run_dict(rid)
        if rec is None:
            continue
        for why in problems(rec):
            found.append((rid.hex(), why))
    return found

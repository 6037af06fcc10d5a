"""Looking a cache key up: the local lineage first, then the default remote's.

Shared by every step kind, so a command and a Python step find (and refuse) hits by one rule.
The remote is duck-typed (``unusable``, ``lookup(key)``, ``fetch(ids)``,
``lookup_failed(error)``): the repository façade opens it, execution only asks it. A lookup
there is one request for the key (the remote's action cache), never a pull of its lineage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zcas.cas.errors import ZcasError
from zcas.cas.objstore import RemoteError

if TYPE_CHECKING:
    from zcas.lineage.store import Lineage


def cached_run(lineage: Lineage, key: bytes, usable: Callable[[dict[str, Any]], bool], remote_fn: Callable[[], Any],
               valid: Callable[[dict[str, Any]], bool] | None = None) -> tuple[bytes, dict[str, Any]] | None:
    """The usable cached run for ``key``, asking the remote when the local lineage misses.

    ``valid(record) -> bool`` says whether the record fits the step asking (its outputs are
    the ones the step declares): a record that does not is ignored, so the step reruns,
    whoever wrote it. ``usable(record) -> bool`` says whether its outputs are all here (and
    sound); ``remote_fn()`` opens the default remote on first need (None: none, or switched
    off). Shared by command steps and Python steps, so both look things up the same way.
    """
    rid = lineage.graph.cache_get(key)
    remote = None
    found = None
    if rid is None:
        remote = remote_fn()
        if remote is None or remote.unusable:
            return None
        try:
            found = remote.lookup(key)  # (steps on other threads ask at the same time)
        except ZcasError as e:
            remote.lookup_failed(e)
            return None
        if found is None:
            return None
        rid, rec, _ = found
    else:
        rec = lineage.run_dict(rid)
    if rec is None or rec.get("status") not in ("ran", "cached") or (valid is not None and not valid(rec)):
        return None
    if not usable(rec):
        remote = remote or remote_fn()
        if remote is None or remote.unusable:
            return None
        try:
            remote.fetch([bytes.fromhex(o) for o in rec["outputs"].values()])
        except ZcasError as e:
            if isinstance(e, RemoteError):  # the store itself failed (a bad object is just no hit)
                remote.lookup_failed(e)
            return None
        if not usable(rec):
            return None
    if found is not None:
        lineage.adopt(*found)  # indexed with this command's own records
    return rid, rec

"""The client's side of runs whose steps execute through the store (see scratch.py).

When a stack keeps its objects in object storage and runs on Dask, a worker shares nothing
with the client but the store: each step's inputs go to it as ids and its outputs come back
as ids. The client still plans, looks up and records every step; what it must remember is
which paths this run has produced that the working tree may not hold (yet, or at all with
``--no-checkout``), so a downstream step is planned from their ids, never from a stale
file, and whether executed steps' and hits' outputs are written into the working tree.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from zcas.cas.checkout import read_tree
from zcas.cas.errors import UsageError, ZcasError

from .artifacts import restore

if TYPE_CHECKING:
    from .core import Core

_checkout_default = True


class Held:
    """One session's outputs by path (ids), and whether they go into the working tree."""

    def __init__(self, checkout: bool):
        self.checkout = checkout
        self.ids: dict[str, bytes] = {}
        self.lock = threading.Lock()


_held: weakref.WeakKeyDictionary[Any, Held] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def held(core: Core) -> Held:
    with _lock:
        h = _held.get(core)
        if h is None:
            h = _held[core] = Held(_checkout_default)
        return h


@contextlib.contextmanager
def no_checkout() -> Iterator[None]:
    """Cores opened inside leave outputs in the store (``zcas run --no-checkout``)."""
    global _checkout_default
    saved, _checkout_default = _checkout_default, False
    try:
        yield
    finally:
        _checkout_default = saved


def through_store(core: Core) -> bool:
    """Whether this core's steps execute on workers sharing only the store (an
    object-store URL and the dask runner). Asked once a step executes: it starts the
    executor."""
    return bool(core.task_spec.get("url")) and getattr(core.executor, "name", None) == "dask"


def worker_spec(core: Core) -> dict[str, Any]:
    """How a worker opens the store: the URL and its settings, no path of the client's."""
    return {**{k: v for k, v in core.task_spec.items() if k not in ("tmp", "objects")}, "worker": True}


def known_ids(core: Core, paths: list[str]) -> dict[str, bytes]:
    """Ids of ``paths`` that this session's steps produced: the outputs themselves, or
    entries inside output folders. With outputs left in the store, a path holding some of
    them (a folder above an output) cannot be hashed from the working tree: refused."""
    h = held(core)
    with h.lock:
        ids = dict(h.ids)
    if not ids:
        return {}
    out: dict[str, bytes] = {}
    for p in paths:
        if p in ids:
            out[p] = ids[p]
            continue
        above = next((k for k in ids if p.startswith(k + "/")), None)
        if above is not None:
            found = _inside(core, ids[above], p[len(above) + 1:])
            if found is not None:
                out[p] = found
            continue
        below = next((k for k in ids if k.startswith(p + "/")), None)
        if below is not None and not h.checkout:
            raise UsageError(f"input {p} holds {below}, an output kept in the store (--no-checkout): "
                             f"declare {below} itself as the input")
    return out


def _inside(core: Core, tree: bytes, rel: str) -> bytes | None:
    oid = tree
    for part in rel.split("/"):
        try:
            entries = read_tree(core.db, oid)
        except ZcasError:  # not a folder: the path is not inside this output
            return None
        match = [e for e in entries if e.name == part.encode()]
        if not match:
            return None
        oid = match[0].oid
    return oid


def place(core: Core, outputs: dict[str, str], write: bool = True) -> None:
    """Outputs (path -> id) of a step this session ran or reused: noted for the steps
    after it, and written into the working tree (``write``: they are not there already)
    unless they stay in the store."""
    h = held(core)
    with h.lock:
        h.ids.update({p: bytes.fromhex(o) for p, o in outputs.items()})
    if write and h.checkout:
        for path, oid_hex in outputs.items():
            restore(core, path, bytes.fromhex(oid_hex))


def portable_ref(step: Any, ref: Any) -> Any:
    """A Python step's import name without the client's file path; a step no worker can
    import by name (defined in a script or inside a function) is refused in one line."""
    if not isinstance(ref, tuple):
        raise UsageError(f"step {step.name} is defined inside a function: workers import steps by module and name, "
                         "so define it at the top level of a module they can import")
    mod, qual = ref[0], ref[1]
    if mod == "__main__":
        raise UsageError(f"step {step.name} is defined in the script being run (__main__): workers import steps "
                         "by module and name, so move it into a module they can import")
    return type(ref)((mod, qual, None))

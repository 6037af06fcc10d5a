"""The client's side of runs whose steps execute through the store (see scratch.py).

When a stack keeps its objects in object storage and runs on Dask, a worker shares nothing
with the client but the store: each step's inputs go to it as ids and its outputs come back
as ids. The client still plans, looks up and records every step; what it must remember is
whether executed steps' and hits' outputs are written into the working tree and, when they
are not (``--no-checkout``), which paths this run has produced, so a downstream step is
planned from their ids, never from a stale file (and refused when they cannot name it).
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from zcas.cas.checkout import read_tree
from zcas.cas.errors import UsageError, ZcasError
from zcas.cas.tree import MODE_EXEC, MODE_LINK, MODES

from .artifacts import current_id, restore
from .aside import keep

if TYPE_CHECKING:
    from .core import Core

_checkout_default = True


class Held:
    """One session's outputs by path (ids), and whether they go into the working tree.

    Ids are kept only with ``--no-checkout``: when outputs are written into the tree, the
    tree is what later steps read, and it is hashed as on any runner (a held id would miss
    a later step writing inside an earlier one's output folder). ``stale``: outputs whose
    held id a later step's output inside them made out of date; a path at or below one
    cannot be named from the store, nor hashed from a tree that never received it."""

    def __init__(self, checkout: bool):
        self.checkout = checkout
        self.ids: dict[str, bytes] = {}
        self.stale: set[str] = set()
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


def _at_or_below(path: str, top: str) -> bool:
    return path == top or path.startswith(top + "/")


def known_ids(core: Core, paths: list[str], step: str = "") -> dict[str, bytes]:
    """Ids of ``paths`` that this session's steps produced and left in the store
    (``--no-checkout``): the outputs themselves, or entries inside output folders. A path
    that cannot be named from them (not in the output folder it is inside, one a later
    step wrote into, or a folder above an output) is refused: the working tree does not
    hold what the steps made, so hashing it would key the step by a stale file."""
    h = held(core)
    with h.lock:
        ids, stale = dict(h.ids), set(h.stale)
    if not ids and not stale:
        return {}
    out: dict[str, bytes] = {}
    for p in paths:
        if p in ids:
            out[p] = ids[p]
            continue
        above = next((k for k in ids if p.startswith(k + "/")), None)
        if above is not None:
            found = _inside(core, ids[above], p[len(above) + 1:])
            if found is None:
                raise UsageError(f"step {step}: input {p} is not in {above}, an output kept in the store "
                                 "(--no-checkout): the working tree does not hold that output")
            out[p] = found
            continue
        written = next((s for s in stale if _at_or_below(p, s)), None)
        if written is not None:
            raise UsageError(f"step {step}: input {p} is in {written}, an output a later step wrote into, kept in "
                             "the store (--no-checkout): declare what the later step wrote, or run without "
                             "--no-checkout")
        below = next((k for k in (*ids, *stale) if k.startswith(p + "/")), None)
        if below is not None:
            raise UsageError(f"step {step}: input {p} holds {below}, an output kept in the store (--no-checkout): "
                             f"declare {below} itself as the input")
    return out


def _inside(core: Core, tree: bytes, rel: str) -> bytes | None:
    """The id of ``rel`` inside the folder ``tree``; None if it is not there (or the
    listing cannot be read: nothing is guessed)."""
    found = _entry_inside(core, tree, rel)
    return None if found is None else found.oid


def _entry_inside(core: Core, tree: bytes, rel: str) -> Any:
    entry = None
    oid = tree
    for part in rel.split("/"):
        try:
            entries = read_tree(core.db, oid)
        except ZcasError:  # not a folder (or not readable): the path is not known to be inside
            return None
        match = [e for e in entries if e.name == part.encode()]
        if not match:
            return None
        entry = match[0]
        oid = entry.oid
    return entry


def input_modes(core: Core, paths: list[str]) -> dict[str, str]:
    """How each input that is not a plain file or folder is checked out on a worker
    (``exec`` or ``link``): only ids travel, and an id says nothing of the executable bit,
    nor whether its bytes are a link's target (an executable script run as ``./run.sh``
    would fail with 126; a link read as a file holding its target's name, under the key a
    local run of the link has). From the working tree, or from the folder an output left
    in the store holds it in (an output itself left there goes as a plain file)."""
    h = held(core)
    with h.lock:
        ids = dict(h.ids)
    out: dict[str, str] = {}
    for p in paths:
        if p == ".":
            continue
        above = next((k for k in ids if p.startswith(k + "/")), None)
        if above is not None:
            e = _entry_inside(core, ids[above], p[len(above) + 1:])
            if e is not None and e.mode in (MODE_EXEC, MODE_LINK):
                out[p] = MODES[e.mode]
            continue
        if p in ids:
            continue
        try:
            st = os.lstat(core.abspath(p))
        except OSError:
            continue
        if stat.S_ISLNK(st.st_mode):
            out[p] = "link"
        elif stat.S_ISREG(st.st_mode) and st.st_mode & 0o100:  # the bit Ingester reads as exec
            out[p] = "exec"
    return out


def place(core: Core, outputs: dict[str, str], write: bool = True) -> None:
    """Outputs (path -> id) of a step this session ran or reused: written into the working
    tree (``write``: they are not there already), or, with ``--no-checkout``, noted for the
    steps after it. Whatever is at a path written over and no recorded run produced (a file
    made by hand, a stale file left by ``--no-checkout``) is kept first (``aside.keep``)."""
    h = held(core)
    if not h.checkout:
        with h.lock:
            for path, oid_hex in outputs.items():
                for k in [k for k in h.ids if _at_or_below(k, path) or path.startswith(k + "/")]:
                    del h.ids[k]
                    if path.startswith(k + "/"):  # its id no longer says what it holds
                        h.stale.add(k)
                h.stale = {s for s in h.stale if not _at_or_below(s, path)}  # replaced whole
                h.ids[path] = bytes.fromhex(oid_hex)
        return
    if write:
        for path, oid_hex in outputs.items():
            oid = bytes.fromhex(oid_hex)
            if current_id(core, path) not in (None, oid):
                keep(core, [path])
            restore(core, path, oid)


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

"""Asking the remote for a pipeline's keys ahead of its steps.

A step's key needs the ids of its inputs, and a step downstream of a hit finds those ids in
the hit's record, before any output is restored. So the keys of a whole chain of hits can be
asked for one after another in the background, each hit found starting the download of its
outputs, while the steps themselves restore and record: a chain then costs its round trips
once, overlapped, instead of a lookup, a download and a restore in turn at every step. A
chain is followed by one thread (a hit's first dependent is asked on the thread that found
the hit), so its round trips are not slowed by threads handing work to each other.

Everything here is a guess made ahead. Each step still plans its key from its own working
tree, looks it up and verifies its hit by the core's one rule; what was asked ahead only
answers those requests sooner (``Remote.lookup`` and ``fetch`` reuse what is in flight). A
guess that turns out wrong costs one request; a guess is never acted on. Started only when
the remote is first asked (a pipeline of local hits never pays for it).
"""

from __future__ import annotations

import posixpath
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from zcas.cas.errors import ZcasError

from .command import Command, plan
from .spec import StepSpec, parents

THREADS = 4  # chains followed at once (each one request in flight at a time)


class LookAhead:
    def __init__(self, core: Any, steps: dict[str, StepSpec], order: list[str]):
        self.core, self.steps = core, steps
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._remote: Any = None
        made_by = {out: name for name in order for out in steps[name].outputs}
        outputs_within = {d for o in made_by for d in parents(posixpath.dirname(o))}
        self._made_by = made_by  # output path -> the step making it
        self._ups: dict[str, set[str]] = {}  # the steps that can be guessed -> the steps they wait on
        self._downs: dict[str, list[str]] = {n: [] for n in order}
        for name in order:
            ins = steps[name].inputs
            if any(p in outputs_within or any(d in made_by for d in parents(posixpath.dirname(p))) for p in ins):
                continue  # a path inside a folder output, or a folder around one: not in any record
            ups = {made_by[p] for p in ins if p in made_by and made_by[p] != name}
            self._ups[name] = ups
            for u in ups:
                self._downs[u].append(name)
        self._hits: dict[str, dict[str, bytes]] = {}  # step -> its outputs: of its hit found ahead, or as it ran
        self._asked: set[str] = set()
        self._ran: set[str] = set()

    def start(self, remote: Any) -> None:
        """Called once, when the core opens the remote (on the first local miss)."""
        if self._pool is not None or len(self._downs) < 2 or not hasattr(remote, "prefetch"):
            return
        self._remote = remote
        self._pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="zcas-lookahead")
        for name, ups in self._ups.items():
            if not ups and self._downs[name]:  # (a step alone asks for itself as soon)
                self._claim_and_submit(name)

    def stop(self) -> None:
        """The pipeline is over: stop asking, and let nothing fetched ahead write after this."""
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._remote is not None:
            self._remote.stop_ahead()

    def ran(self, name: str, outputs: dict[str, str]) -> None:
        """A step ran (its outputs stored, not yet recorded): ask for the keys of the steps
        waiting on it now, rather than after it is recorded and they are planned."""
        if self._pool is None or name not in self._downs or self._stop.is_set():
            return
        try:
            ids = {o: bytes.fromhex(outputs[o]) for o in self.steps[name].outputs}
        except (KeyError, ValueError):
            return
        with self._lock:
            self._hits[name] = ids
            self._ran.add(name)
            self._asked.add(name)
            ready = [d for d in self._downs[name] if self._ups[d] <= self._hits.keys()]
        for d in ready:
            self._claim_and_submit(d)

    def _claim(self, name: str) -> bool:
        with self._lock:
            if name in self._asked:
                return False
            self._asked.add(name)
            return True

    def _claim_and_submit(self, name: str) -> None:
        if self._claim(name) and self._pool is not None:
            try:
                self._pool.submit(self._follow, name)
            except RuntimeError:  # stopped meanwhile
                pass

    def _follow(self, name: str | None) -> None:
        """Guess ``name``, then down its chain on this thread while hits are found."""
        while name is not None and not self._stop.is_set() and not self._remote.unusable:
            try:
                ids = self._guess(name)
            except Exception:  # noqa: BLE001 - a guess that fails is no guess: the step asks for itself
                return
            if ids is None:
                return
            with self._lock:
                if name in self._ran:  # it ran meanwhile (its hit did not hold): that decides
                    return
                self._hits[name] = ids
                ready = [d for d in self._downs[name] if self._ups[d] <= self._hits.keys()]
            name = None
            for d in ready:  # the first on this thread, the others on their own
                if name is None and self._claim(d):
                    name = d
                else:
                    self._claim_and_submit(d)

    def _guess(self, name: str) -> dict[str, bytes] | None:
        """The outputs of the hit for ``name``'s key as planned from its upstream hits (local
        lineage first, else the remote's), their download started; None if none fits."""
        spec = self.steps[name]
        with self._lock:
            known = {p: self._hits[self._made_by[p]][p] for p in spec.inputs if self._made_by.get(p, name) != name}
        try:
            key = plan(self.core, spec, store=False, known=known).key
        except (ZcasError, OSError):  # an input not there yet, say: the step will say so itself
            return None
        lineage = self.core.lineage
        rid = lineage.graph.cache_get(key)
        if rid is not None:  # (its outputs, if not here, are fetched when the step asks)
            return _outputs(spec, lineage.run_dict(rid))
        found = self._remote.lookup(key)  # remembered: the step's own lookup gets this answer
        ids = _outputs(spec, found[1]) if found is not None else None
        if ids and not self._stop.is_set():
            self._remote.prefetch(list(ids.values()))
        return ids


def _outputs(spec: StepSpec, rec: dict | None) -> dict[str, bytes] | None:
    if rec is None or rec.get("status") not in ("ran", "cached") or not Command(spec).valid(rec):
        return None
    try:
        return {o: bytes.fromhex(rec["outputs"][o]) for o in spec.outputs}
    except (TypeError, ValueError):
        return None

"""The one execution core. Every step, of every kind, on every runner, takes one path:

    plan (the key) -> lookup (local lineage, then the remote's) -> lock the key
    -> verify the hit, or execute -> store the outputs -> record the run

A step kind (command.py, python.py) says only how a step is planned, executed and its
outputs captured; a runner (executors.py) says only where execution happens. Lookup, the
key lock and recording are here, once, so the two kinds cannot drift apart: a hit is
verified by one rule, and the key lock is held until the run is recorded on every runner,
so two processes reaching one key execute it once.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, NamedTuple, Protocol

from zcas._version import __version__
from zcas.cas import codec
from zcas.cas.errors import ObjectNotFoundError, StoreError, ZcasError
from zcas.cas.oid import hash_bytes
from zcas.cas.statcache import StatCache
from zcas.lineage import serde
from zcas.lineage.records import Run

from .durations import human_age
from .keylock import KeyLock, key_locks
from .lookup import cached_run

VERIFY_LIMIT = 1 << 20  # outputs smaller than this are read and verified on every hit


def user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return str(os.getuid())


class Plan(NamedTuple):
    """A step ready to run: its key and what its record will hold whatever the outcome."""

    name: str
    key: bytes
    components: dict[str, str]
    fields: dict[str, Any]  # record fields of this kind (inputs, params, env, cmd, code ...)
    in_materializers: dict[str, str] = {}  # noqa: RUF012 - never mutated: each plan passes its own
    cache: bool = True


class Done(NamedTuple):
    """What executing a step gave, wherever it ran (a task returns these fields as a tuple)."""

    code: int  # 0: success
    error: str  # one line, when code != 0
    outputs: dict[str, str]  # output name -> id (hex)
    materializers: dict[str, str]  # output name -> materializer tag (Python values)
    started: int
    ended: int
    multi: bool = False  # a Python step returned a tuple of outputs
    exc: BaseException | None = None  # a Python step's exception, raised to its caller
    found: dict[str, Any] | None = None  # record fields only executing tells (a Python step's implicit inputs)


class StepKind(Protocol):
    """How one kind of step is executed and its outputs captured: all the core asks."""

    kind: str  # "command" or "python": the record's kind

    def valid(self, rec: dict) -> bool:
        """Whether a cached record's outputs fit this step's declaration (else: rerun)."""

    def hit(self, core: Core, plan: Plan, rid: bytes, rec: dict) -> tuple[dict[str, str], dict[str, str], Callable[[str], Any]]:
        """Use a verified hit: (outputs, their materializers, a function of the new record's
        id giving what the caller gets)."""

    def before(self, core: Core, plan: Plan) -> Any:
        """Ready the step to execute (outputs set aside, say); a token for ``undo``."""

    def undo(self, core: Core, token: Any) -> None:
        """The step failed or was interrupted: put back what ``before`` moved."""

    def here(self, core: Core, plan: Plan) -> Done:
        """Execute in this thread, storing outputs in ``core.db``."""

    def task(self, core: Core, plan: Plan) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        """(function, arguments) executing it on a runner; the function returns a ``Done``'s fields."""

    def result(self, core: Core, plan: Plan, done: Done, rid: str) -> Any:
        """What the caller gets for an executed (or failed) step."""


class Pending:
    """A step a runner is executing. Its key stays locked until ``wait()`` records it."""

    def __init__(self, core: Core, kind: StepKind, plan: Plan, future: Any, token: Any, lock: KeyLock):
        self.core, self.kind, self.plan, self.future = core, kind, plan, future
        self.token, self.lock = token, lock
        self.submitted = time.time_ns()
        self._done = False
        self._value: Any = None
        self._error: BaseException | None = None
        self._waiting = threading.Lock()  # two threads may wait on one step: one records it

    def wait(self) -> Any:
        with self._waiting:
            self._settle()
        if self._error is not None:
            raise self._error
        return self._value

    def _settle(self) -> None:
        if not self._done:
            self._done = True
            try:
                try:
                    done = Done(*self.future.result())
                except StoreError:  # the store failed the worker, not the step: nothing is recorded
                    self.kind.undo(self.core, self.token)
                    raise
                except Exception as e:  # noqa: BLE001 - the step's own failure, recorded then raised
                    done = Done(1, _one_line(e), {}, {}, self.submitted, time.time_ns(), exc=e)
                except BaseException:
                    # Interrupted while the runner works: cancel it if it has not started. Nothing
                    # is recorded and nothing put back (a worker may still be writing there);
                    # what was set aside is in the store and the path history.
                    self.future.cancel()
                    raise
                self._value = self.core.finish(self.kind, self.plan, done, self.token, remote=True)
            except BaseException as e:
                self._error = e
            finally:
                self.lock.release()
                if self.core.inflight.get(self.plan.key) is self:
                    del self.core.inflight[self.plan.key]


def reported(rec: dict) -> dict[str, Any]:
    """The record fields a hit takes over from the run it restores: that run's metrics and
    the log it printed (the hit itself prints nothing)."""
    return {k: rec[k] for k in ("metrics", "log") if rec.get(k)}


def _one_line(e: BaseException) -> str:
    text = str(e).splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


class Core:
    """What the steps of one ``zcas run`` or one pipeline call share: the repository, its
    lineage and object store, the runner, the remote to ask, and the runs to record."""

    def __init__(self, repo: Any, lineage: Any, *, db: Any = None, executor: Callable[[], Any] | None = None,
                 remote: Callable[[], Any] | None = None, verify: bool = False, out: IO[str] | None = sys.stdout,
                 cmd_stdout: Any = None, task_spec: dict[str, Any] | None = None, pipeline: str | None = None):
        self.repo = repo  # zcas.cas.repo.Repo: the working tree and .zcas/
        self.lineage = lineage
        self.db = db if db is not None else repo.db  # where outputs go: a stack may keep them elsewhere
        # The stat cache says "this file, unchanged, is id X and stored": true of one store. A
        # stack's store gets a cache of its own, so an object stored only in the repository's
        # store is never taken as stored in the stack's (where hits are looked for).
        store = hash_bytes(repr(sorted((task_spec or {}).items())).encode()).hex()[:16]
        self._statcache_path = repo.statcache_path if self.db is repo.db else f"{repo.statcache_path}-{store}"
        self._statcache: StatCache | None = None
        self.verify = verify
        self.out = out  # status lines (None: silent)
        self.cmd_stdout = cmd_stdout  # where commands' stdout goes (None: inherit)
        self.task_spec = task_spec or {"objects": os.path.join(repo.zdir, "objects")}  # how a worker opens db
        self.pipeline = pipeline
        self.host = socket.gethostname()
        self.user = user_name()
        self.version = __version__
        self.id = os.urandom(16).hex()  # this session: every run it records names it
        self.started = time.time_ns()
        self.lock = threading.RLock()
        self.pending: list[Run] = []  # cache hits, recorded together at the end
        self.steps: dict[str, str] = {}  # step name -> run id, for a pipeline's record
        self.metrics: dict[str, int | float] = {}  # every step's metrics, for a pipeline's record
        self.inflight: dict[bytes, Pending] = {}
        self.keylocks = key_locks(repo.zdir)
        self._executor_factory = executor
        self._executor: Any = None
        self._remote_factory = remote
        self._remote: Any = None
        self.on_remote: list[Callable[[Any], None]] = []  # told when the remote opens (runners.lookahead)
        self.on_outputs: list[Callable[[str, dict[str, str]], None]] = []  # told a step's outputs before it is recorded

    # -- what is opened on first need -----------------------------------------------------

    @property
    def executor(self) -> Any:
        """The runner's executor (None: execute here), started when a step first executes."""
        with self.lock:
            if self._executor is None and self._executor_factory is not None:
                self._executor = self._executor_factory() or False
            return self._executor or None

    def remote(self) -> Any:
        """The remote to ask on a local miss (None: none, or switched off), opened once."""
        with self.lock:
            if self._remote is None:
                if self._remote_factory is None:
                    self._remote = False
                else:
                    try:
                        self._remote = self._remote_factory() or False
                    except ZcasError as e:
                        print(f"zcas: warning: remote cache off: {e}", file=sys.stderr)
                        self._remote = False
                    if self._remote:
                        for hook in self.on_remote:
                            hook(self._remote)
            return self._remote or None

    @property
    def statcache(self) -> StatCache:
        """Read on first need: a Python pipeline whose steps return no paths never does."""
        with self.lock:
            if self._statcache is None:
                self._statcache = StatCache(self._statcache_path)
            return self._statcache

    def abspath(self, rel: str) -> str:
        return os.path.join(self.repo.root, rel) if rel else self.repo.root

    def say(self, line: str) -> None:
        if self.out is not None:
            with self.lock:
                print(line, file=self.out, flush=True)

    # -- lookup ---------------------------------------------------------------------------

    def usable(self, rec: dict) -> bool:
        """The one rule for a hit, whatever the kind: every output object present, small
        ones (or all, with --verify) read and verified, folders' listings read."""
        for oid_hex in rec["outputs"].values():
            oid = bytes.fromhex(oid_hex)
            try:
                e = self.db.entry(oid)  # looks again for packs other processes published since
                if self.verify or e.size < VERIFY_LIMIT:
                    if e.kind == codec.KIND_TREE:
                        self.db.get(oid)  # the listing itself; its files are checked when restored
                    else:
                        self.db.get_bytes(oid)
            except ZcasError:
                return False
        return True

    def lookup(self, key: bytes, valid: Callable[[dict], bool], remote: bool = True) -> tuple[bytes, dict] | None:
        """``remote=False``: the local lineage only (the remote was asked moments ago)."""
        return cached_run(self.lineage, key, self.usable, self.remote if remote else lambda: None,
                          valid=valid)

    # -- running --------------------------------------------------------------------------

    def run(self, kind: StepKind, plan: Plan) -> Any:
        """A hit's result, an executed step's result, or a ``Pending`` on a runner."""
        if plan.cache:
            hit = self.lookup(plan.key, kind.valid)
            if hit is not None:
                return self._use_hit(kind, plan, *hit)
        prior = self.inflight.get(plan.key)
        if prior is not None:  # this session is executing the same key: its result is the hit
            try:
                prior.wait()
            except Exception:  # noqa: BLE001 - its failure is its caller's; this call reruns
                pass
            return self.run(kind, plan)

        def on_wait() -> None:
            self.say(f"waiting: {plan.name} (another zcas run is executing it)")
            self.settle()  # never wait holding keys of steps a runner has: the other may want them

        lock = self.keylocks.acquire(plan.key, on_wait)
        try:
            if plan.cache:
                hit = self.lookup(plan.key, kind.valid, remote=False)  # another process ran it while we waited
                if hit is not None:
                    lock.release()
                    return self._use_hit(kind, plan, *hit)
            ex = self.executor  # started before anything of the user's is moved
            token = kind.before(self, plan)
        except BaseException:
            lock.release()
            raise
        if ex is None:
            try:
                try:
                    done = kind.here(self, plan)
                except BaseException:  # interrupted: the user's files go back before anything else
                    kind.undo(self, token)
                    raise
                return self.finish(kind, plan, done, token)
            finally:
                lock.release()
        try:
            fn, args = kind.task(self, plan)
            future = ex.submit(fn, *args)
        except BaseException:
            kind.undo(self, token)
            lock.release()
            raise
        pending = self.inflight[plan.key] = Pending(self, kind, plan, future, token, lock)
        return pending

    def _use_hit(self, kind: StepKind, plan: Plan, rid: bytes, rec: dict) -> Any:
        started = time.time_ns()
        outputs, out_mats, make = kind.hit(self, plan, rid, rec)
        plan = plan._replace(fields={**plan.fields, **reported(rec)})  # a hit reports what its run did
        run = self._run(plan, kind, "cached", started, time.time_ns(), outputs, out_mats, 0, cached_from=rid.hex())
        new = self.record(run, now=False)
        self.note_step(plan.name, new)
        self.say(f"cached: {plan.name} (run {rid.hex()[:12]}, {human_age(time.time() - rec['started_ns'] / 1e9)} ago)")
        return make(new)

    def finish(self, kind: StepKind, plan: Plan, done: Done, token: Any, remote: bool = False) -> Any:
        """Record an executed step (outputs published first) and give its result."""
        dur = (done.ended - done.started) / 1e9
        if done.code != 0:
            kind.undo(self, token)
            if done.found and done.found.get("log"):  # what it printed says why it failed; its metrics count for nothing
                plan = plan._replace(fields={**plan.fields, "log": done.found["log"]})
            rid = self.record(self._run(plan, kind, "failed", done.started, done.ended, {}, {}, done.code), now=True)
            self.note_step(plan.name, rid)
            self.say(f"failed: {plan.name} ({done.error})")
            return kind.result(self, plan, done, rid)
        for hook in self.on_outputs:  # (the next steps' keys can be asked for while this one is recorded)
            hook(plan.name, done.outputs)
        found = dict(done.found or {})
        packs = found.pop("packs", None)  # what the task published: not a record field
        if found:
            plan = plan._replace(fields={**plan.fields, **found})
        if remote:
            self._published(kind, plan, done, packs, token)
        if self.db is not self.repo.db:
            self.db.flush()  # published on the stack's store before a record names them
        rid = self.record(self._run(plan, kind, "ran", done.started, done.ended, done.outputs, done.materializers, 0),
                          now=True)
        self.note_step(plan.name, rid)
        where = f", on {self._executor.name}" if remote and self._executor else ""
        self.say(f"ran: {plan.name} ({dur:.3f}s, run {rid[:12]}{where})")
        return kind.result(self, plan, done, rid)

    def _published(self, kind: StepKind, plan: Plan, done: Done, packs: list[str] | None, token: Any) -> None:
        """Every id a task returned is in the store before a record names it: the packs it
        says it published are loaded (not a listing of the whole store, which grows with
        it), the store listed only if one is still missing, and a task whose ids are
        not there after all (its writes lost) fails in one line, recorded as nothing."""
        wanted = [bytes.fromhex(o) for o in (*done.outputs.values(), *((done.found or {}).get("log") or {}).values())]
        if packs is not None:
            self.db.adopt_packs(packs)
        else:
            self.db.refresh()

        def held(oid: bytes) -> bool:  # (a copy, the worker's fresh one of an id found damaged here too)
            try:
                self.db.entry(oid)  # looks again (a listing) only for an id still missing
                return True
            except ObjectNotFoundError:
                return False

        missing = [o for o in wanted if not held(o)]
        if missing:
            kind.undo(self, token)
            raise StoreError(0, f"step {plan.name}: the worker returned {missing[0].hex()[:12]} but the store does not "
                                "hold it (its writes were lost): nothing recorded, run it again")

    def wait_all(self) -> None:
        """Every step handed to a runner has finished and is recorded (or raised)."""
        while self.inflight:
            next(iter(self.inflight.values())).wait()

    def settle(self) -> None:
        """Record every step a runner is executing, releasing their keys. Their errors stay
        with them, raised where their results are used (after an error, not over it); an
        interrupt stops the waiting."""
        while self.inflight:
            try:
                next(iter(self.inflight.values())).wait()
            except Exception:  # noqa: BLE001 - kept by the step: raised where its result is used
                pass

    # -- recording ------------------------------------------------------------------------

    def _run(self, plan: Plan, kind: StepKind, status: str, started: int, ended: int, outputs: dict[str, str],
             out_mats: dict[str, str], exit_status: int, cached_from: str | None = None) -> Run:
        return Run(step=plan.name, kind=kind.kind, status=status, cache_key=plan.key.hex(),
                   key_components=plan.components, outputs=outputs,
                   materializers={**plan.in_materializers, **out_mats}, started_ns=started, ended_ns=ended,
                   host=self.host, user=self.user, exit_status=exit_status, zcas_version=self.version,
                   cached_from=cached_from, session=self.id, **plan.fields)

    def record(self, run: Run, now: bool) -> str:
        """Record a run: at once (others may wait on its key), or batched with the rest; its id."""
        if run.metrics:
            with self.lock:
                self.metrics.update(run.metrics)
        if now:
            return self.lineage.record_run(run).hex()
        with self.lock:
            self.pending.append(run)
        return hash_bytes(serde.encode(run)).hex()

    def flush(self) -> None:
        with self.lock:
            runs, self.pending = self.pending, []
        if runs:
            self.lineage.record_runs(runs)
        if self.db is not self.repo.db:
            self.db.flush()

    def note_step(self, name: str, rid: str) -> None:
        with self.lock:
            key, n = name, 1
            while key in self.steps:
                n += 1
                key = f"{name}#{n}"
            self.steps[key] = rid

    def close(self) -> None:
        """Record what is batched and save the stat cache (the executor is the caller's)."""
        try:
            self.flush()
        finally:
            if self._statcache is not None:
                self._statcache.save()

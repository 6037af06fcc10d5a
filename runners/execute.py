"""One command step: compute its key, restore on a hit, run and record on a miss.

A hit needs the key in the lineage cache and every output object present (small ones
verified, or all with --verify); a hit whose objects are gone becomes a rerun, never a
failure. Two processes that reach the same key take a lock on it: one runs, the other
waits and then finds the result in the cache.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import time

import attrs

from zcas.cas import codec
from zcas.cas.errors import InputPathError, ZcasError

from .artifacts import current_id, restore, store_paths
from .aside import put_back, set_aside
from .keys import command_components, env_digests, key_of
from .spec import StepSpec

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
VERIFY_LIMIT = 1 << 20  # outputs smaller than this are read and verified on every hit


@attrs.define
class StepResult:
    name: str
    status: str  # "cached", "ran", "failed", "skipped"
    key: str = ""
    run: str = ""
    duration: float = 0.0
    exit_status: int = 0
    reason: str = ""

    def as_dict(self) -> dict:
        return attrs.asdict(self)


def param_text(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        import json

        return json.dumps(v)
    return str(v)


def _is_shell(argv) -> bool:
    from .spec import SHELL

    return len(argv) == 3 and tuple(argv[:2]) == SHELL


def substitute(argv: tuple[str, ...], params: dict) -> list[str]:
    """``{key}`` in argv becomes the param's value; other braces are left alone. Into shell
    code (a string ``cmd``) a value goes quoted, so spaces or ``;`` in it stay one word."""
    texts = {k: param_text(v) for k, v in params.items()}
    if _is_shell(argv):
        import shlex

        texts = {k: shlex.quote(v) for k, v in texts.items()}
    return [_PLACEHOLDER.sub(lambda m: texts.get(m.group(1), m.group(0)), a) for a in argv]


def _words(argv: list[str]) -> list[str]:
    """The words of a command, the words of its shell code included (best effort: a script
    named in ``cmd = "python train.py"`` counts as an input like in the list form)."""
    if not _is_shell(argv):
        return list(argv)
    import shlex

    try:
        return shlex.split(argv[2], comments=True)
    except ValueError:
        return argv[2].split()


def implicit_inputs(ctx, argv: list[str], cwd: str, declared: set[str]) -> list[str]:
    """argv tokens naming an existing file inside the repository (the script, most often)."""
    root = ctx.repo.root
    out = []
    for tok in _words(argv):
        if not tok or tok.startswith("-") or "\0" in tok:
            continue
        full = os.path.normpath(os.path.join(ctx.abspath(cwd), tok))
        if not full.startswith(root + os.sep) or os.sep + ".zcas" + os.sep in full + os.sep:
            continue
        rel = os.path.relpath(full, root).replace(os.sep, "/")
        if rel in declared or any(rel.startswith(d + "/") for d in declared):  # covered, or the step's own output
            continue
        try:
            if os.path.isfile(full):
                out.append(rel)
        except (OSError, ValueError):
            continue
    return out


@attrs.define
class Plan:
    spec: StepSpec
    argv: list[str]
    inputs: dict[str, bytes]
    env: dict[str, str | None]
    components: dict[str, str]
    key: bytes


def plan(ctx, spec: StepSpec, store: bool = True) -> Plan:
    """The step's key as things stand; ``store=False`` (status, why) hashes without storing."""
    argv = substitute(spec.cmd, spec.params)
    declared_out = set(spec.outputs)
    paths = list(dict.fromkeys([*spec.inputs, *implicit_inputs(ctx, argv, spec.cwd, declared_out | set(spec.inputs))]))
    try:
        if store:
            inputs = store_paths(ctx, paths)
        else:
            inputs = {}
            for p in paths:
                oid = current_id(ctx, p)
                if oid is None:
                    raise InputPathError(p, "No such file or directory")
                inputs[p] = oid
    except ZcasError as e:
        raise ZcasError(f"step {spec.name}: input {e}") from None
    env = env_digests(spec.env)
    # The command is keyed as written ({key} placeholders unexpanded): params have keys of
    # their own, so a param change is reported once, as itself.
    comps = command_components(list(spec.cmd), inputs, spec.params, env, list(spec.outputs), spec.cwd)
    return Plan(spec, argv, inputs, env, comps, key_of(comps))


def _usable(ctx, rec: dict) -> bool:
    """Every output object present; small ones (or all, with --verify) read and verified."""
    db = ctx.repo.db
    for oid_hex in rec["outputs"].values():
        oid = bytes.fromhex(oid_hex)
        try:
            e = db.entry(oid)  # looks again for packs other processes published since
            if ctx.verify or e.size < VERIFY_LIMIT:
                if e.kind == codec.KIND_TREE:
                    db.get(oid)  # the listing itself; its files are checked when restored
                else:
                    db.get_bytes(oid)
        except ZcasError:
            return False
    return True


def declared_outputs_match(rec: dict, spec: StepSpec) -> bool:
    """Whether a record's outputs are exactly the ones the step declares.

    A hit restores by the step's own declaration, never by names a record carries: a record
    (from a shared remote, say) naming ``../x`` or ``.zcas/...`` is simply not a hit."""
    outs = rec.get("outputs")
    return isinstance(outs, dict) and set(outs) == set(spec.outputs)


def lookup(ctx, key: bytes, spec: StepSpec) -> tuple[bytes, dict] | None:
    """A usable cached run for ``key``: from local lineage, else from the default remote's."""
    from .remote import cached_run

    return cached_run(ctx.lineage, key, lambda rec: _usable(ctx, rec), ctx.remote, ctx.lock,
                      valid=lambda rec: declared_outputs_match(rec, spec))


class KeyLock:
    """An exclusive lock on a cache key, across threads and processes (flock, striped)."""

    def __init__(self, ctx, key: bytes):
        d = os.path.join(ctx.repo.zdir, "locks")
        os.makedirs(d, exist_ok=True)
        self.path = os.path.join(d, key.hex()[:3] + ".lock")
        self.fd = -1

    def acquire(self, on_wait) -> None:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            on_wait()
            fcntl.flock(self.fd, fcntl.LOCK_EX)

    def release(self) -> None:
        if self.fd >= 0:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = -1


def _age(ns: int) -> str:
    from .durations import human_age

    return human_age(time.time() - ns / 1e9)


class PathLocks:
    """Shared locks on a step's inputs, exclusive on its outputs, held from hashing the
    inputs to recording the run. Another zcas process cannot rewrite a file this step is
    reading, or restore over one it is writing, in between: what is recorded under a key is
    what the key describes. Taken in one global order, so two processes never deadlock."""

    def __init__(self, ctx, inputs: list[str], outputs: list[str]):
        from zcas.cas.oid import hash_bytes

        d = os.path.join(ctx.repo.zdir, "locks")
        os.makedirs(d, exist_ok=True)
        want: dict[str, int] = {}
        for path, mode in [(i, fcntl.LOCK_SH) for i in inputs] + [(o, fcntl.LOCK_EX) for o in outputs]:
            name = os.path.join(d, "path-" + hash_bytes(path.encode()).hex()[:24])
            want[name] = max(want.get(name, 0), mode)  # both read and written: exclusive
        self.want = sorted(want.items())
        self.fds: list[int] = []

    def __enter__(self):
        for name, mode in self.want:
            fd = os.open(name, os.O_RDWR | os.O_CREAT, 0o666)
            self.fds.append(fd)
            fcntl.flock(fd, mode)
        return self

    def __exit__(self, *exc) -> None:
        for fd in reversed(self.fds):
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self.fds = []


def run_step(ctx, spec: StepSpec) -> StepResult:
    argv = substitute(spec.cmd, spec.params)
    reads = list(dict.fromkeys([*spec.inputs, *implicit_inputs(ctx, argv, spec.cwd, set(spec.outputs) | set(spec.inputs))]))
    with PathLocks(ctx, reads, list(spec.outputs)):
        return _run_step(ctx, spec)


def _run_step(ctx, spec: StepSpec) -> StepResult:
    p = plan(ctx, spec)
    hit = lookup(ctx, p.key, spec)
    if hit is None:
        lock = KeyLock(ctx, p.key)
        lock.acquire(lambda: ctx.say(f"waiting: {spec.name} (another zcas run is executing it)"))
        try:
            hit = lookup(ctx, p.key, spec)
            if hit is None:
                return _execute(ctx, p)
        finally:
            lock.release()
    return _restore(ctx, p, *hit)


def _record(ctx, p: Plan, status: str, started: int, ended: int, outputs: dict, exit_status: int, cached_from=None):
    from zcas.lineage.records import Run

    run = Run(
        step=p.spec.name, kind="command", status=status, cache_key=p.key.hex(), key_components=p.components,
        inputs={k: v.hex() for k, v in p.inputs.items()}, outputs=outputs, params=dict(p.spec.params),
        env=p.env, cmd=p.argv, cwd=p.spec.cwd, started_ns=started, ended_ns=ended, host=ctx.host,
        user=ctx.user, exit_status=exit_status, zcas_version=ctx.version, cached_from=cached_from,
    )
    return ctx.record(run, now=status != "cached")


def _restore(ctx, p: Plan, rid: bytes, rec: dict) -> StepResult:
    started = time.time_ns()
    outputs = {path: rec["outputs"][path] for path in p.spec.outputs}  # the declaration's paths, checked by lookup
    for path, oid_hex in outputs.items():
        restore(ctx, path, bytes.fromhex(oid_hex))
    new = _record(ctx, p, "cached", started, time.time_ns(), outputs, 0, cached_from=rid.hex())
    ctx.say(f"cached: {p.spec.name} (run {rid.hex()[:12]}, {_age(rec['started_ns'])} ago)")
    return StepResult(p.spec.name, "cached", p.key.hex(), new.hex(), (time.time_ns() - started) / 1e9)


def _execute(ctx, p: Plan) -> StepResult:
    env = dict(os.environ)
    for k, v in p.spec.params.items():
        env[f"ZCAS_PARAM_{k.upper()}"] = param_text(v)
    if ctx.executor is not None:
        return _execute_on(ctx, p, env)
    cwd = ctx.abspath(p.spec.cwd)
    aside = set_aside(ctx, p.spec.outputs)  # a stale file there must not pass for this run's output
    started = time.time_ns()
    if ctx.out.isatty():  # progress for people: what is running now (scripts get ran:/cached: lines)
        ctx.say(f"running: {p.spec.name}")
    try:
        proc = subprocess.run(p.argv, cwd=cwd, env=env, stdout=ctx.cmd_stdout)
        code = proc.returncode
    except FileNotFoundError:
        code, err = 127, f"command not found: {p.argv[0]}"
    except PermissionError:
        code, err = 126, f"permission denied: {p.argv[0]}"
    except BaseException:  # interrupted: the user's files go back before anything else
        put_back(ctx, aside)
        raise
    else:
        err = f"exit {code}"
    ended = time.time_ns()
    dur = (ended - started) / 1e9
    if code != 0:
        put_back(ctx, aside)
        rid = _record(ctx, p, "failed", started, ended, {}, code)
        ctx.say(f"failed: {p.spec.name} ({err})")
        return StepResult(p.spec.name, "failed", p.key.hex(), rid.hex(), dur, code, err)
    missing = [o for o in p.spec.outputs if not os.path.lexists(ctx.abspath(o))]
    if missing:
        put_back(ctx, aside)
        rid = _record(ctx, p, "failed", started, ended, {}, 0)
        why = f"declared output {missing[0]} was not produced"
        ctx.say(f"failed: {p.spec.name} ({why})")
        return StepResult(p.spec.name, "failed", p.key.hex(), rid.hex(), dur, 1, why)
    outputs = {k: v.hex() for k, v in store_paths(ctx, list(p.spec.outputs)).items()}
    rid = _record(ctx, p, "ran", started, ended, outputs, 0)
    ctx.say(f"ran: {p.spec.name} ({dur:.3f}s, run {rid.hex()[:12]})")
    return StepResult(p.spec.name, "ran", p.key.hex(), rid.hex(), dur)


def _execute_on(ctx, p: Plan, env: dict) -> StepResult:
    """Hand the command to the stack's runner (it runs in the shared repository folder)."""
    from .tasks import command_task

    aside = set_aside(ctx, p.spec.outputs)
    fut = ctx.executor.submit(command_task, ctx.spec, ctx.repo.root, p.argv, p.spec.cwd, env, list(p.spec.outputs))
    try:
        code, err, outputs, started, ended = fut.result()
    except BaseException:
        put_back(ctx, aside)
        raise
    dur = (ended - started) / 1e9
    if code != 0:
        put_back(ctx, aside)
        rid = _record(ctx, p, "failed", started, ended, {}, code)
        ctx.say(f"failed: {p.spec.name} ({err})")
        return StepResult(p.spec.name, "failed", p.key.hex(), rid.hex(), dur, code, err)
    ctx.repo.db.refresh()  # the worker published the outputs
    rid = _record(ctx, p, "ran", started, ended, outputs, 0)
    ctx.say(f"ran: {p.spec.name} ({dur:.3f}s, run {rid.hex()[:12]}, on {ctx.executor.name})")
    return StepResult(p.spec.name, "ran", p.key.hex(), rid.hex(), dur)

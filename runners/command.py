"""Command steps: a command line run in the working tree, its declared paths its inputs and outputs.

How a command is planned (its key from the command as written, the content of every input and
of any argument naming a file in the repository, params, declared environment, outputs and
working directory), executed (here, on a runner in the shared repository folder, or on a
worker sharing only the store, in a scratch folder: instore.py, scratch.py) and its outputs
captured; everything else is the core's (core.py).
"""

from __future__ import annotations

import json
import os
import shlex
import time
from collections.abc import Callable, Sequence
from typing import Any

import attrs

from zcas.cas.errors import InputPathError, ZcasError

from . import instore
from .artifacts import current_id, store_paths
from .aside import put_back, set_aside
from .capture import Logs, run_captured
from .core import Core, Done, Pending, Plan
from .keylock import PathLocks
from .keys import command_components, env_digests, key_of
from .scratch import store_command_task
from .spec import PLACEHOLDER, SHELL, StepSpec
from .tasks import check_command, command_task


@attrs.define
class StepResult:
    name: str
    status: str  # "cached", "ran", "failed", "skipped"
    key: str = ""
    run: str = ""
    duration: float = 0.0
    exit_status: int = 0
    reason: str = ""
    outputs: dict[str, str] = attrs.Factory(dict)  # path -> id (hex), of a ran or cached step

    def as_dict(self) -> dict:
        """The fields ``zcas run --json`` prints (outputs are in the run record)."""
        return attrs.asdict(self, filter=lambda a, _: a.name != "outputs")


def param_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (list, dict)):
        return json.dumps(v)
    return str(v)


def _is_shell(argv: Sequence[str]) -> bool:
    return len(argv) == 3 and tuple(argv[:2]) == SHELL


def substitute(argv: tuple[str, ...], params: dict) -> list[str]:
    """``{key}`` in argv becomes the param's value; other braces are left alone. Into shell
    code (a string ``cmd``) a value goes quoted, so spaces or ``;`` in it stay one word."""
    texts = {k: param_text(v) for k, v in params.items()}
    if _is_shell(argv):
        texts = {k: shlex.quote(v) for k, v in texts.items()}
    return [PLACEHOLDER.sub(lambda m: texts.get(m.group(1), m.group(0)), a) for a in argv]


def _words(argv: list[str]) -> list[str]:
    """The words of a command, the words of its shell code included (best effort: a script
    named in ``cmd = "python train.py"`` counts as an input like in the list form)."""
    if not _is_shell(argv):
        return list(argv)
    try:
        return shlex.split(argv[2], comments=True)
    except ValueError:
        return argv[2].split()


def implicit_inputs(ctx: Any, argv: list[str], cwd: str, declared: set[str]) -> list[str]:
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


def reads(core: Any, spec: StepSpec, argv: list[str]) -> list[str]:
    """Every path the step reads: its declared inputs, then the arguments naming files."""
    implicit = implicit_inputs(core, argv, spec.cwd, set(spec.outputs) | set(spec.inputs))
    return list(dict.fromkeys([*spec.inputs, *implicit]))


def plan(core: Any, spec: StepSpec, store: bool = True, paths: list[str] | None = None,
         known: dict[str, bytes] | None = None) -> Plan:
    """The step's key as things stand; ``store=False`` (status, why) hashes without storing.
    ``paths``: what ``reads`` gave, when the caller has it already. ``known``: ids of paths
    not (yet) in the working tree, taken as given (an upstream step's outputs, from its
    record, when planning ahead of a restore or without one)."""
    argv = substitute(spec.cmd, spec.params)
    if paths is None:
        paths = reads(core, spec, argv)
    known = known or {}
    try:
        inputs = {p: known[p] for p in paths if p in known}
        rest = [p for p in paths if p not in known]
        if store:
            inputs.update(store_paths(core, rest))
        else:
            for p in rest:
                oid = current_id(core, p)
                if oid is None:
                    raise InputPathError(p, "No such file or directory")
                inputs[p] = oid
        inputs = {p: inputs[p] for p in paths}  # the key lists inputs in the order read
    except ZcasError as e:
        raise ZcasError(f"step {spec.name}: input {e}") from None
    env = env_digests(spec.env)
    # The command is keyed as written ({key} placeholders unexpanded): params have keys of
    # their own, so a param change is reported once, as itself.
    comps = command_components(list(spec.cmd), inputs, spec.params, env, list(spec.outputs), spec.cwd)
    fields = {"inputs": {k: v.hex() for k, v in inputs.items()}, "params": dict(spec.params), "env": env,
              "cmd": argv, "cwd": spec.cwd}
    return Plan(spec.name, key_of(comps), comps, fields)


def declared_outputs_match(rec: dict, spec: StepSpec) -> bool:
    """Whether a record's outputs are exactly the ones the step declares.

    A hit restores by the step's own declaration, never by names a record carries: a record
    (from a shared remote, say) naming ``../x`` or ``.zcas/...`` is simply not a hit."""
    outs = rec.get("outputs")
    return isinstance(outs, dict) and set(outs) == set(spec.outputs)


def _env(spec: StepSpec) -> dict[str, str]:
    env = dict(os.environ)
    for k, v in spec.params.items():
        env[f"ZCAS_PARAM_{k.upper()}"] = param_text(v)
    return env


def _env_added(spec: StepSpec) -> dict[str, str | None]:
    """What a worker adds to its own environment for the command: the params, and the
    declared variables as the client has them (their digests are in the key; None: unset
    here, so unset there). Nothing else of the client's environment travels."""
    env: dict[str, str | None] = {name: os.environ.get(name) for name in spec.env}
    env.update({f"ZCAS_PARAM_{k.upper()}": param_text(v) for k, v in spec.params.items()})
    return env


class Command:
    """The command kind of step (see core.StepKind)."""

    kind = "command"

    def __init__(self, spec: StepSpec):
        self.spec = spec

    def valid(self, rec: dict) -> bool:
        return declared_outputs_match(rec, self.spec)

    def hit(self, core: Core, plan: Plan, rid: bytes, rec: dict) -> tuple[dict[str, str], dict[str, str], Callable[[str], Any]]:
        started = time.time_ns()
        outputs = {path: rec["outputs"][path] for path in self.spec.outputs}  # the declaration's paths
        instore.place(core, outputs)
        dur = (time.time_ns() - started) / 1e9
        return outputs, {}, lambda new: StepResult(self.spec.name, "cached", plan.key.hex(), new, dur, outputs=outputs)

    def before(self, core: Core, plan: Plan) -> Any:
        if not instore.held(core).checkout and instore.through_store(core):
            return []  # the working tree is not touched at all
        return set_aside(core, self.spec.outputs)  # a stale file there must not pass for this run's output

    def undo(self, core: Core, token: Any) -> None:
        put_back(core, token)

    def here(self, core: Core, plan: Plan) -> Done:
        argv = plan.fields["cmd"]
        started = time.time_ns()
        if core.out is not None and core.out.isatty():  # for people: what runs now (scripts get ran:/cached:)
            core.say(f"running: {self.spec.name}")
        logs = Logs()
        try:
            code, err = run_captured(argv, core.abspath(self.spec.cwd), _env(self.spec), core.cmd_stdout, logs)
        finally:
            log = logs.store(core.db)
        ended = time.time_ns()
        code, err, found = check_command(core.repo.root, code, err, list(self.spec.outputs), self.spec.metrics, log)
        if code != 0:
            return Done(code, err, {}, {}, started, ended, found=found)
        outputs = {k: v.hex() for k, v in store_paths(core, list(self.spec.outputs)).items()}
        return Done(0, "", outputs, {}, started, ended, found=found)

    def task(self, core: Core, plan: Plan) -> tuple[Callable[..., Any], tuple[Any, ...]]:
        if instore.through_store(core):
            core.db.flush()  # the inputs the client stored, published before a worker asks for them
            return store_command_task, (instore.worker_spec(core), self.spec.name, plan.fields["cmd"], self.spec.cwd,
                                        _env_added(self.spec), plan.fields["inputs"], list(self.spec.outputs),
                                        sorted(core.db.damaged), self.spec.metrics,
                                        instore.input_modes(core, list(plan.fields["inputs"])))
        return command_task, (core.task_spec, core.repo.root, plan.fields["cmd"], self.spec.cwd, _env(self.spec),
                              list(self.spec.outputs), sorted(core.db.damaged), self.spec.metrics)

    def result(self, core: Core, plan: Plan, done: Done, rid: str) -> StepResult:
        dur = (done.ended - done.started) / 1e9
        if done.exc is not None and not isinstance(done.exc, Exception):
            raise done.exc  # an interrupt is not the step's failure
        if done.code != 0:
            return StepResult(self.spec.name, "failed", plan.key.hex(), rid, dur, done.code, done.error)
        return StepResult(self.spec.name, "ran", plan.key.hex(), rid, dur, outputs=dict(done.outputs))


def run_command(core: Core, spec: StepSpec) -> StepResult:
    """Run one command step through the core, with its paths locked from hashing to recording."""
    paths = reads(core, spec, substitute(spec.cmd, spec.params))
    core.settle()  # no path lock is waited for while this process holds keys of pending steps
    with PathLocks(core.repo.zdir, paths, list(spec.outputs)):
        p = plan(core, spec, paths=paths, known=instore.known_ids(core, paths, spec.name))
        out = core.run(Command(spec), p)
        res = out.wait() if isinstance(out, Pending) else out
        if res.status == "ran":  # executed on a worker sharing only the store: the tree gets them now, if at all
            instore.place(core, res.outputs, write=instore.through_store(core))
        return res

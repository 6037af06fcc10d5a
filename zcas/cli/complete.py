"""Shell completion of the repository's own names: tags, remotes, step names and stacks.

click completes commands and options by itself (``_ZCAS_COMPLETE=bash_source zcas``, see
docs/ecosystem.md); what only the repository knows is added here, in one place, by
parameter, rather than by a ``shell_complete=`` on every option of every command module.
Each completer reads what it needs without the repository lock or the lineage index
writer, and any failure (outside a repository, a broken config) completes nothing: a
completion must never print an error into the user's prompt.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import click
from click.shell_completion import CompletionItem

RECENT_RUNS = 5000  # runs read for step names: completion answers in well under a second


def _zdir() -> str:
    from zcas.cas.repo import find_root

    return os.path.join(find_root(), ".zcas")


def tags() -> Iterable[str]:
    from zcas.cas.refs import Refs

    return Refs(_zdir()).tags()


def remotes() -> Iterable[str]:
    from zcas.config import Config

    return Config(_zdir()).section("remote")


def stacks() -> Iterable[str]:
    from zcas.config import Config
    from zcas.stacks import all_stacks

    return all_stacks(Config(_zdir()))


def steps() -> Iterable[str]:
    """zcas.toml's steps, then every step name in the latest runs."""
    from zcas.cas.repo import Repo
    from zcas.lineage.store import Lineage
    from zcas.runners import spec

    zdir = _zdir()
    names: dict[str, None] = {}
    try:
        names.update(dict.fromkeys(spec.load(os.path.dirname(zdir))))
    except Exception:  # noqa: BLE001 - a broken zcas.toml still leaves the recorded names
        pass
    repo = Repo(os.path.dirname(zdir))
    lin = Lineage(repo)
    try:
        names.update(dict.fromkeys(r["step"] for _, r in lin.runs(limit=RECENT_RUNS) if r["kind"] != "pipeline"))
    finally:
        lin.close()
    return names


def _completer(source: Callable[[], Iterable[str]], help: str) -> Callable[..., list[CompletionItem]]:
    def complete(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
        if incomplete.startswith("-"):
            return []
        try:
            found = sorted(n for n in source() if n.startswith(incomplete))
        except Exception:  # noqa: BLE001 - see the module doc
            return []
        return [CompletionItem(n, help=help) for n in found]

    return complete


TAG = _completer(tags, "tag")
REMOTE = _completer(remotes, "remote")
STEP = _completer(steps, "step")
STACK = _completer(stacks, "stack")

# (command path, parameter name) -> completer
WHAT = {
    ("cat", "ref"): TAG, ("checkout", "ref"): TAG, ("ls", "ref"): TAG, ("tag", "ref"): TAG, ("tag", "name"): TAG,
    ("show", "target"): TAG, ("log", "target"): TAG,
    ("log", "step"): STEP, ("why", "target"): STEP, ("status", "steps"): STEP, ("run", "args"): STEP,
    ("push", "args"): REMOTE, ("pull", "args"): REMOTE, ("fsck", "remote_name"): REMOTE, ("gc", "remote_name"): REMOTE,
    ("log", "remote_name"): REMOTE, ("ui", "remote_name"): REMOTE, ("remote modify", "name"): REMOTE,
    ("remote remove", "name"): REMOTE, ("stack register", "remote"): REMOTE,
    ("stack set", "name"): STACK, ("stack show", "name"): STACK, ("stack delete", "name"): STACK,
}


def install(group: click.Group) -> None:
    """Attach the completers to the commands' parameters (those that exist: a command or
    option renamed elsewhere is skipped here, and tests/cli/test_completion.py notices)."""
    for (path, pname), fn in WHAT.items():
        cmd: Any = group
        for part in path.split():
            cmd = cmd.commands.get(part) if isinstance(cmd, click.Group) else None
            if cmd is None:
                break
        for p in getattr(cmd, "params", ()):
            if p.name == pname:
                p._custom_shell_complete = fn

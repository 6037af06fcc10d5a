"""Stacks: how a pipeline runs, as one name: artifact store, runner, and (for dask) where
the scheduler is. The metadata store is always the repository's LMDB: the client computes
keys, looks them up and records lineage, wherever the steps run.

The default stack (the repository's own store, the local runner) needs no configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from zcas.cas.errors import UsageError
from zcas.cas.objstore import parse_url
from zcas.cas.repo import Repo, read_config, write_config
from zcas.config import RUNNERS, Config, ConfigError, check_name

DEFAULT = "default"


@attrs.frozen
class Stack:
    name: str
    store: str | None = None  # None: the repository's own object store
    runner: str = "local"
    scheduler: str | None = None  # dask: a scheduler address; None starts a local cluster
    remote: str | None = None  # the remote asked on cache misses (None: the default remote)

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @property
    def through_store(self) -> bool:
        """Steps execute on workers that share only the store with the client (an
        object-store URL and the dask runner): each in a scratch folder of its own, inputs
        fetched and outputs published by id (see docs/distributed.md)."""
        return bool(self.store) and self.runner == "dask"


def check_no_checkout(stack: Stack) -> None:
    """``--no-checkout`` leaves outputs in the store; on a stack whose commands run in the
    working tree, that is where they are made, so it is refused there."""
    if not stack.through_store:
        raise UsageError(f"--no-checkout needs a stack whose steps run through its store (a store URL and the dask "
                         f"runner); stack {stack.name} runs {stack.runner} steps in the working tree")


def all_stacks(cfg: Config) -> dict[str, Stack]:
    out = {DEFAULT: Stack(DEFAULT)}
    for name, body in cfg.section("stack").items():
        out[name] = Stack(name, body.get("store"), body.get("runner", "local"), body.get("scheduler"), body.get("remote"))
    return out


def active(cfg: Config, override: str | None = None) -> Stack:
    name = override or cfg.get("stack.active", DEFAULT)
    stacks = all_stacks(cfg)
    if name not in stacks:
        where = "--stack" if override else f"stack.active (from {cfg.origin('stack.active')})"
        raise UsageError(f"unknown stack {name!r} in {where} (stacks: {', '.join(sorted(stacks))})")
    return stacks[name]


def _edit(repo: Repo, fn: Callable[[dict[str, Any]], None]) -> None:
    cfg = read_config(repo.zdir)
    fn(cfg)
    write_config(repo.zdir, cfg)


def register(repo: Repo, stack: Stack, force: bool = False) -> None:
    check_name("stack", stack.name)
    if stack.name == DEFAULT:
        raise ConfigError("the default stack is built in; register another name")
    if stack.runner not in RUNNERS:
        raise ConfigError(f"unknown runner {stack.runner!r} (runners: {', '.join(RUNNERS)})")
    if stack.store:
        scheme = parse_url(stack.store)[0]
        if scheme == "memory" and stack.runner in ("processes", "dask"):
            raise ConfigError(f"a memory:// store lives in one process: the {stack.runner} runner's workers cannot share it")

    def fn(cfg: dict[str, Any]) -> None:
        table = cfg.setdefault("stack", {})
        if stack.name in table and not force:
            raise ConfigError(f"stack {stack.name} already exists (use --force to replace it)")
        table[stack.name] = {k: v for k, v in stack.as_dict().items() if k != "name" and v is not None}

    _edit(repo, fn)


def set_active(repo: Repo, cfg: Config, name: str) -> None:
    if name not in all_stacks(cfg):
        raise UsageError(f"unknown stack {name!r}")
    _edit(repo, lambda c: c.setdefault("stack", {}).__setitem__("active", name))


def delete(repo: Repo, cfg: Config, name: str) -> None:
    if name == DEFAULT:
        raise ConfigError("the default stack is built in and cannot be deleted")

    def fn(c: dict[str, Any]) -> None:
        table = c.get("stack", {})
        if name not in table or not isinstance(table[name], dict):
            raise UsageError(f"unknown stack {name!r}")
        del table[name]
        if table.get("active") == name:
            del table["active"]

    _edit(repo, fn)

"""The records lineage keeps: runs and path versions, as small frozen attrs classes.

Ids inside records are 64-hex strings, times are integer nanoseconds: both encode the
same way everywhere, which is what makes a record's bytes (and so a run's id) canonical.
"""

from __future__ import annotations

from typing import Any

import attrs

SCHEMA = 1
STATUSES = ("ran", "cached", "failed")
KINDS = ("command", "python", "pipeline")


@attrs.frozen(kw_only=True)
class Run:
    """One execution (or cache hit) of one step."""

    step: str
    kind: str = attrs.field(validator=attrs.validators.in_(KINDS))
    status: str = attrs.field(validator=attrs.validators.in_(STATUSES))
    cache_key: str = ""
    key_components: dict[str, str] = attrs.Factory(dict)  # component -> digest or value
    inputs: dict[str, str] = attrs.Factory(dict)  # name (a path for commands) -> id
    outputs: dict[str, str] = attrs.Factory(dict)
    params: dict[str, Any] = attrs.Factory(dict)
    env: dict[str, str | None] = attrs.Factory(dict)
    code: str | None = None  # code fingerprint (Python steps)
    cmd: list[str] | None = None  # argv (command steps)
    cwd: str = ""
    started_ns: int = 0
    ended_ns: int = 0
    host: str = ""
    user: str = ""
    exit_status: int = 0
    zcas_version: str = ""
    cached_from: str | None = None  # for a cache hit: the run whose outputs were restored
    materializers: dict[str, str] = attrs.Factory(dict)  # input/output name -> "name@version"
    session: str | None = None  # the pipeline call this step ran in
    steps: dict[str, str] = attrs.Factory(dict)  # a pipeline run: step name -> run id
    schema: int = SCHEMA

    @property
    def duration(self) -> float:
        return max(0, self.ended_ns - self.started_ns) / 1e9


@attrs.frozen(kw_only=True)
class PathVersion:
    """A path had this content at this time (added by hand, or written by a run)."""

    path: str
    id: str
    time_ns: int
    kind: str = "file"
    run: str | None = None

"""The records lineage keeps: runs and path versions, as small frozen attrs classes.

``PathVersion`` is lineage's one form of a path version: what the index holds and
``Lineage.history`` returns. The object store's history file has its own line type
(``zcas.cas.refs.PathVersion``: a bytes id, float seconds, no run); ``from_history_line`` is
the one conversion from it.

Ids inside records are 64-hex strings, times are integer nanoseconds: both encode the
same way everywhere, which is what makes a record's bytes (and so a run's id) canonical.

Every field is validated when a record is built, here or from decoded JSON (a record from
a remote is untrusted input): ids are 64 lowercase hex digits, integers are ints (never
bools or floats) within range, names are strings of at most ``MAX_NAME`` characters with no
NUL, maps hold at most ``MAX_ENTRIES`` entries and parameter values nest at most
``MAX_DEPTH`` deep. A record that breaks any of these is a ``RecordError``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import attrs

from zcas.cas.errors import ZcasError

if TYPE_CHECKING:
    from zcas.cas.refs import PathVersion as HistoryLine

SCHEMA = 3  # the newest record schema this zcas reads and writes (see SCHEMA_OF_FIELD)
STATUSES = ("ran", "cached", "failed")
KINDS = ("command", "python", "pipeline")
PATH_KINDS = ("file", "tree", "link")

MAX_NAME = 4096  # characters in a name: a step, a path, a param, a host, a user ...
MAX_COMPONENT_NAME = MAX_NAME + 64  # a key component's name: "input:" + a path
MAX_TEXT = 1 << 20  # characters in a free-text field (code fingerprint, one argv element, one env value)
MAX_ENTRIES = 100_000  # entries in one map (inputs, outputs, params, ...) or in argv
MAX_DEPTH = 100  # nesting of lists and maps inside one parameter value
MAX_NS = (1 << 63) - 1  # times are non-negative int64 nanoseconds (indexed as 8 bytes)

_HEX = re.compile(r"[0-9a-f]{64}")


class RecordError(ZcasError, ValueError):
    """A record that does not decode, or does not validate."""


def _show(value: object) -> str:
    r = repr(value)  # repr escapes control characters: safe in a one-line message
    return r if len(r) <= 60 else r[:57] + "..."


def _fail(where: str, what: str, value: object = None, show: bool = True) -> NoReturn:
    raise RecordError(f"{where} {what}" + (f": {_show(value)}" if show else ""))


# -- checks of one value (where: how the message names it) -----------------------------------


def check_str(where: str, v: object, limit: int = MAX_NAME, nul: bool = False) -> None:
    if type(v) is not str:
        _fail(where, f"must be a string, not {type(v).__name__}", v)
    if len(v) > limit:
        _fail(where, f"is longer than {limit} characters", show=False)
    if not nul and "\0" in v:
        _fail(where, "contains NUL", v)


def check_id(where: str, v: object) -> None:
    if type(v) is not str or not _HEX.fullmatch(v):
        _fail(where, "is not an id (64 lowercase hex digits)", v)


def check_int(where: str, v: object, lo: int, hi: int) -> None:
    if type(v) is not int:
        _fail(where, f"must be an integer, not {type(v).__name__}", v)
    if not lo <= v <= hi:
        _fail(where, f"is out of range [{lo}, {hi}]", v)


def check_plain(where: str, value: object, max_depth: int = MAX_DEPTH, max_values: int = MAX_ENTRIES * 10) -> None:
    """JSON-able plain data nesting at most ``max_depth`` deep (walked without recursion)."""
    todo: list[tuple[Any, int]] = [(value, 0)]
    count = 0
    while todo:
        v, depth = todo.pop()
        count += 1
        if count > max_values:
            _fail(where, f"holds more than {max_values} values", show=False)
        if v is None or type(v) in (bool, int, str):
            continue
        if type(v) is float:
            if not math.isfinite(v):
                _fail(where, "holds a non-finite float", v)
            continue
        if depth >= max_depth and isinstance(v, (list, tuple, dict)):
            _fail(where, f"nests deeper than {max_depth}", show=False)
        if type(v) in (list, tuple):
            todo.extend((x, depth + 1) for x in v)
        elif type(v) is dict:
            for k, x in v.items():
                if type(k) is not str:
                    _fail(where, "has a non-string key", k)
                todo.append((x, depth + 1))
        else:
            _fail(where, f"holds a {type(v).__name__}", v)


Check = Callable[[str, Any], None]  # a check of one value: (where, value)
Validator = Callable[[Any, "attrs.Attribute[Any]", Any], None]  # an attrs validator


def _mapping(check_key: Check, check_value: Check) -> Validator:
    def validate(inst: object, attr: attrs.Attribute[Any], v: Any) -> None:
        if type(v) is not dict:
            _fail(attr.name, f"must be a map, not {type(v).__name__}", v)
        if len(v) > MAX_ENTRIES:
            _fail(attr.name, f"has more than {MAX_ENTRIES} entries", show=False)
        for k, x in v.items():
            check_key(f"{attr.name} key", k)
            check_value(f"{attr.name}[{_show(k)}]", x)

    return validate


def _one(check: Check) -> Validator:
    return lambda inst, attr, v: check(attr.name, v)


def _optional(check: Check) -> Validator:
    return lambda inst, attr, v: None if v is None else check(attr.name, v)


def _name(where: str, v: object) -> None:
    check_str(where, v)


def _component_name(where: str, v: object) -> None:
    check_str(where, v, MAX_COMPONENT_NAME)


def _any_text(where: str, v: object) -> None:
    check_str(where, v, limit=1 << 62, nul=True)  # bounded by the record's size


def _env_value(where: str, v: object) -> None:
    if v is not None:
        check_str(where, v, MAX_TEXT)


def _materializer(where: str, v: Any) -> None:
    check_str(where, v)
    name, at, version = v.partition("@")
    if not name or not at or not version:
        _fail(where, "is not a materializer tag (name@version)", v)


def _cache_key(where: str, v: object) -> None:
    if not (type(v) is str and v == ""):
        check_id(where, v)


def _argv(where: str, v: object) -> None:
    if type(v) is not list:
        _fail(where, f"must be a list, not {type(v).__name__}", v)
    if len(v) > MAX_ENTRIES:
        _fail(where, f"has more than {MAX_ENTRIES} elements", show=False)
    for i, x in enumerate(v):
        check_str(f"{where}[{i}]", x, MAX_TEXT)


def _params(where: str, v: object) -> None:
    check_plain(where, v)


def check_rel_path(where: str, v: object) -> None:
    """A path inside the repository, in canonical ``a/b`` form: never absolute, never
    through ``..`` or ``.``, never into ``.zcas`` (any case). A record from a remote names
    these, and zcas hashes what they name: one that could leave the tree (or read the store
    itself) is refused, so the record is never a hit. A trailing slash names a folder's
    listing (``data/``; ``./`` the repository's top folder)."""
    check_str(where, v)
    assert isinstance(v, str)
    if v.endswith("/"):  # a folder's listing (an implicit input): DIR/, and ./ for the repository's own
        if v == "./":
            return
        v = v[:-1]
    framed = f"/{v}/"  # every component between slashes: an empty, '.' or '..' one shows as below
    if not v or "//" in framed or "/./" in framed or "/../" in framed or "\\" in v:
        _fail(where, "is not a repository-relative path (a/b, no '..', '.', '//' or leading '/')", v)
    if framed[:7].lower() == "/.zcas/":
        _fail(where, "lies inside .zcas", v)


MAX_METRIC_NAME = 512  # characters in a flattened metric name
STREAMS = ("stdout", "stderr")


def check_metric_name(where: str, v: object) -> None:
    """A flattened metric name: printable, no leading or trailing dot, no empty part."""
    check_str(where, v, MAX_METRIC_NAME)
    assert isinstance(v, str)
    if not v or any(not p for p in v.split(".")) or not v.isprintable():
        _fail(where, "is not a metric name (dotted parts, printable, none empty)", v)


def check_metric(where: str, v: object) -> None:
    """A metric is a number: an int or a finite float, never a bool (JSON would keep
    true apart from 1, and a table column must sort)."""
    if type(v) is int:
        check_int(where, v, -MAX_NS - 1, MAX_NS)
    elif type(v) is not float or not math.isfinite(v):
        _fail(where, f"must be a finite number, not {type(v).__name__}", v)


MAX_POINTS = 100_000  # points in one series (a step logged again replaces its point)


def check_series(where: str, v: object) -> None:
    """A series of one metric across the steps of a run: a list of ``[step, value]`` pairs,
    steps non-negative integers in increasing order (each at most once), values metrics."""
    if type(v) is not list:
        _fail(where, f"must be a list of [step, value] pairs, not {type(v).__name__}", v)
    if not v or len(v) > MAX_POINTS:
        _fail(where, f"must hold 1 to {MAX_POINTS} points", show=False)
    last = -1
    for i, p in enumerate(v):
        if type(p) is not list or len(p) != 2:
            _fail(f"{where}[{i}]", "is not a [step, value] pair", p)
        check_int(f"{where}[{i}] step", p[0], 0, MAX_NS)
        if p[0] <= last:
            _fail(f"{where}[{i}] step", "is not after the step before it", p[0])
        last = p[0]
        check_metric(f"{where}[{i}] value", p[1])


def _stream(where: str, v: object) -> None:
    if type(v) is not str or v not in STREAMS:
        _fail(where, f"must be one of {', '.join(STREAMS)}", v)


def _ns(where: str, v: object) -> None:
    check_int(where, v, 0, MAX_NS)


def _in(options: tuple[str, ...]) -> Validator:
    def validate(inst: object, attr: attrs.Attribute[Any], v: Any) -> None:
        if type(v) is not str or v not in options:
            _fail(attr.name, f"must be one of {', '.join(options)}", v)

    return validate


MAX_SERIES = 1000  # series in one run
MAX_RUN_POINTS = 200_000  # points over every series of one run (what a step may log, runners.metrics)


def _series_map(inst: object, attr: attrs.Attribute[Any], v: Any) -> None:
    if type(v) is not dict:
        _fail(attr.name, f"must be a map, not {type(v).__name__}", v)
    if len(v) > MAX_SERIES:
        _fail(attr.name, f"has more than {MAX_SERIES} entries", show=False)
    total = 0
    for k, x in v.items():
        check_metric_name(f"{attr.name} key", k)
        check_series(f"{attr.name}[{_show(k)}]", x)
        total += len(x)
        if total > MAX_RUN_POINTS:  # a record from elsewhere holds no more than a step could log
            _fail(attr.name, f"holds more than {MAX_RUN_POINTS} points in all", show=False)


@attrs.frozen(kw_only=True)
class Run:
    """One execution (or cache hit) of one step."""

    step: str = attrs.field(validator=_one(_name))
    kind: str = attrs.field(validator=_in(KINDS))
    status: str = attrs.field(validator=_in(STATUSES))
    cache_key: str = attrs.field(default="", validator=_one(_cache_key))
    # component -> digest or value
    key_components: dict[str, str] = attrs.field(factory=dict, validator=_mapping(_component_name, _any_text))
    # name (a path for commands) -> id
    inputs: dict[str, str] = attrs.field(factory=dict, validator=_mapping(_name, check_id))
    outputs: dict[str, str] = attrs.field(factory=dict, validator=_mapping(_name, check_id))
    params: dict[str, Any] = attrs.field(factory=dict, validator=_mapping(_name, _params))
    # VAR -> "b3:<digest>" of its value (or the value itself, in records of an older zcas), None if unset
    env: dict[str, str | None] = attrs.field(factory=dict, validator=_mapping(_name, _env_value))
    # code fingerprint (Python steps)
    code: str | None = attrs.field(default=None, validator=_optional(lambda w, v: check_str(w, v, MAX_TEXT)))
    cmd: list[str] | None = attrs.field(default=None, validator=_optional(_argv))  # argv (command steps)
    cwd: str = attrs.field(default="", validator=_one(_name))
    started_ns: int = attrs.field(default=0, validator=_one(_ns))
    ended_ns: int = attrs.field(default=0, validator=_one(_ns))
    host: str = attrs.field(default="", validator=_one(_name))
    user: str = attrs.field(default="", validator=_one(_name))
    exit_status: int = attrs.field(default=0, validator=_one(lambda w, v: check_int(w, v, -(1 << 63), MAX_NS)))
    zcas_version: str = attrs.field(default="", validator=_one(_name))
    # for a cache hit: the run whose outputs were restored
    cached_from: str | None = attrs.field(default=None, validator=_optional(check_id))
    # input/output name -> "name@version"
    materializers: dict[str, str] = attrs.field(factory=dict, validator=_mapping(_name, _materializer))
    session: str | None = attrs.field(default=None, validator=_optional(_name))  # the pipeline call this step ran in
    # a pipeline run: step name -> run id
    steps: dict[str, str] = attrs.field(factory=dict, validator=_mapping(_name, check_id))
    # the schema of the encoding, not of the run: ``serde`` writes the lowest that holds the
    # fields set (SCHEMA_OF_FIELD), so it takes no part in comparing runs
    schema: int = attrs.field(default=1, eq=False, validator=_one(lambda w, v: check_int(w, v, 1, SCHEMA)))
    # files a Python step read that it did not declare: repository-relative path -> id
    implicit_inputs: dict[str, str] = attrs.field(factory=dict, validator=_mapping(check_rel_path, check_id))
    # a Python step: the stored manifest of what its code fingerprint covers (explain, why)
    code_manifest: str | None = attrs.field(default=None, validator=_optional(check_id))
    # flattened metric name ("train.loss") -> a finite number (what the step reported)
    metrics: dict[str, int | float] = attrs.field(factory=dict, validator=_mapping(check_metric_name, check_metric))
    # captured output: stream ("stdout", "stderr") -> id of the blob or chunked file holding it
    log: dict[str, str] = attrs.field(factory=dict, validator=_mapping(_stream, check_id))
    # metric name -> its values across the steps of the run: [[step, value], ...], steps
    # increasing (zcas.log_metric(name, value, step=i)); the metric itself is the last value
    series: dict[str, list[list[int | float]]] = attrs.field(factory=dict, validator=_series_map)

    @property
    def duration(self) -> float:
        return max(0, self.ended_ns - self.started_ns) / 1e9


# Fields every stored run record has held since schema 1 began; the others came later
# (a record without them takes the default, and a record leaves out the latest ones when
# they hold their default: see ``OMITTED_AT_DEFAULT``).
RUN_REQUIRED = frozenset(
    {"step", "kind", "status", "cache_key", "key_components", "inputs", "outputs", "params", "env", "code", "cmd",
     "cwd", "started_ns", "ended_ns", "host", "user", "exit_status", "zcas_version", "cached_from", "schema"}
)


@attrs.frozen(kw_only=True)
class PathVersion:
    """A path had this content at this time (added by hand, or written by a run)."""

    path: str = attrs.field(validator=_one(_name))
    id: str = attrs.field(validator=_one(check_id))
    time_ns: int = attrs.field(validator=_one(_ns))
    kind: str = attrs.field(default="file", validator=_in(PATH_KINDS))
    run: str | None = attrs.field(default=None, validator=_optional(check_id))


# Written only when set, so a run that has none encodes (and so is identified) exactly as
# before these fields existed, and zcas versions before them still read it.
OMITTED_AT_DEFAULT: dict[str, Any] = {"implicit_inputs": {}, "code_manifest": None, "metrics": {}, "log": {},
                                      "series": {}}
# The schema that introduced each later field. A record is written with the lowest schema
# that holds what it sets: one using none of these stays schema 1 (byte for byte as before,
# read by every zcas); one that sets any is schema 2, which a zcas of schema 1 reports as
# needing a newer zcas and reads again once upgraded, rather than refusing it as malformed.
# Schema 3 brought ``series``: a zcas of schema 2 says "upgrade" for a run with a series.
SCHEMA_OF_FIELD: dict[str, int] = {"implicit_inputs": 2, "code_manifest": 2, "metrics": 2, "log": 2, "series": 3}

PATH_REQUIRED = frozenset({"path", "id", "time_ns"})


def artifact_ids(run: dict[str, Any]) -> list[bytes]:
    """The ids of the inputs, outputs, code manifest and captured output an unstructured run
    names (a value that is not an id names nothing)."""
    out = []
    manifest = run.get("code_manifest")
    found = run.get("log")
    log: dict[str, Any] = found if isinstance(found, dict) else {}
    for x in (*(run.get("inputs") or {}).values(), *(run.get("outputs") or {}).values(), *([manifest] if manifest else []),
              *log.values()):
        if isinstance(x, str) and len(x) == 64:
            try:
                out.append(bytes.fromhex(x))
            except ValueError:
                continue
    return out


def from_history_line(line: HistoryLine) -> PathVersion:
    """The path version a line of the object store's history file records (a bytes id, float
    seconds), or RecordError if it cannot be one. A kind path history does not tell apart
    ("exec", from a tree's modes) or does not know is "file"."""
    try:
        time_ns = int(line.time * 1e9)
        oid = line.oid.hex()
    except (AttributeError, TypeError, ValueError, OverflowError):
        raise RecordError(f"history line {_show(line)}: bad id or time") from None
    kind = line.kind if isinstance(line.kind, str) and line.kind in PATH_KINDS else "file"
    return PathVersion(path=line.path, id=oid, time_ns=time_ns, kind=kind)

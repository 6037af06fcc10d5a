"""The one converter and the canonical byte form of records.

Canonical form: JSON with sorted keys, no spaces, UTF-8, no NaN. Python's float repr is the
shortest round-trip form on every platform, and records hold only str, int, float, bool,
None, lists and str-keyed dicts, so the same record gives the same bytes on every machine
and Python version.

Decoding is strict, because records come from remotes too: a record is at most
``MAX_RECORD`` bytes, must be UTF-8 JSON nesting at most ``MAX_DEPTH`` (+2) deep, must be in
canonical form (so no two parsers can read it differently, e.g. through a duplicated key),
must hold every required field and no unknown one, and every field must pass the
validators in ``records``. A schema newer than this zcas knows is refused by name. Anything
else is a ``RecordError`` with a one-line reason; decoding never raises another error.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, NoReturn

import attrs

from .canonical import dumps
from .records import (
    MAX_DEPTH,
    OMITTED_AT_DEFAULT,
    PATH_REQUIRED,
    RUN_REQUIRED,
    SCHEMA,
    SCHEMA_OF_FIELD,
    PathVersion,
    RecordError,
    Run,
    _show,
    check_plain,
)

if TYPE_CHECKING:
    import cattrs

__all__ = [
    "RecordError", "NewerRecordError", "MAX_RECORD", "encode", "decode", "decode_dict", "canonical", "unstructure",
    "converter",
]

MAX_RECORD = 16 << 20  # bytes of one encoded record

_REQUIRED: dict[type, frozenset[str]] = {Run: RUN_REQUIRED, PathVersion: PATH_REQUIRED}


class NewerRecordError(RecordError):
    """A record of a schema newer than this zcas knows: not malformed, only not readable yet."""


def _build(d: dict[str, Any], cls: type[Run] | type[PathVersion]) -> Run | PathVersion:
    """Structure hook of the record classes: exact fields, then attrs' validators (no coercion)."""
    fields = attrs.fields_dict(cls)
    unknown = [k for k in d if k not in fields]
    if unknown:
        raise RecordError(f"unknown field {_show(min(unknown))}")
    missing = sorted(_REQUIRED[cls] - d.keys())
    if missing:
        raise RecordError(f"missing field {missing[0]!r}")
    return cls(**d)


def make_converter() -> cattrs.Converter:
    """The project's one cattrs converter (imported on first decode: cattrs is slow to load).

    Records are structured by ``_build``: cattrs' own structuring would coerce (a string
    to an int, a string to a list of characters), and a record must be refused instead.
    """
    import cattrs

    c = cattrs.Converter(forbid_extra_keys=True)
    for cls in (Run, PathVersion):
        c.register_structure_hook(cls, _build)
    return c


_converter: cattrs.Converter | None = None
TYPES: dict[str, type[Run] | type[PathVersion]] = {"run": Run, "path": PathVersion}


def converter() -> cattrs.Converter:
    global _converter
    if _converter is None:
        _converter = make_converter()
    return _converter


def unstructure(record: Run | PathVersion) -> dict:
    """Records hold only plain values, so attrs' own asdict is the unstructured form (less
    the newest fields while they hold their default)."""
    d = attrs.asdict(record, recurse=True)
    if isinstance(record, Run):
        for k, default in OMITTED_AT_DEFAULT.items():
            if d.get(k) == default:
                del d[k]
        d["schema"] = max([1, *(SCHEMA_OF_FIELD[k] for k in OMITTED_AT_DEFAULT if k in d)])  # (see Run.schema)
    return d


def canonical(obj: Any) -> bytes:
    return dumps(obj, "record")


def encode(record: Run | PathVersion) -> bytes:
    d = unstructure(record)
    d["type"] = "run" if isinstance(record, Run) else "path"
    d.setdefault("schema", 1)  # (a path record: nothing of it is newer than schema 1)
    return canonical(d)


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not allowed")


def decode_dict(data: bytes) -> dict:
    """Parse and check the envelope: size, JSON, type, schema and depth (not the fields)."""
    if len(data) > MAX_RECORD:
        raise RecordError(f"record is {len(data)} bytes, more than the limit {MAX_RECORD}")
    try:
        d = json.loads(bytes(data).decode("utf-8"), parse_constant=_no_constant)
    except RecursionError:
        raise RecordError("record nests too deeply") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise RecordError(f"record is not valid JSON: {str(e).splitlines()[0][:200]}") from None
    if not isinstance(d, dict):
        raise RecordError("record is not a JSON object")
    if type(d.get("type")) is not str or d["type"] not in TYPES:
        raise RecordError("record has no known type")
    schema = d.get("schema", SCHEMA)
    if type(schema) is not int:
        raise RecordError(f"record schema must be an integer, not {type(schema).__name__}")
    if schema > SCHEMA:
        raise NewerRecordError(f"record schema {schema} is newer than this zcas understands ({SCHEMA}); upgrade zcas")
    check_plain("record", d, max_depth=MAX_DEPTH + 2, max_values=MAX_RECORD)
    return d


def _check_canonical(d: dict, data: bytes) -> None:
    try:
        again = canonical(d)
    except (ValueError, UnicodeEncodeError, RecursionError):
        raise RecordError("record is not in canonical form") from None
    if again != bytes(data):
        raise RecordError("record is not in canonical form (sorted keys, no spaces, UTF-8)")


def decode(data: bytes) -> Run | PathVersion:
    """The record ``data`` encodes: envelope, fields, then canonical form checked."""
    d = decode_dict(data)
    fields = dict(d)
    cls = TYPES[fields.pop("type")]
    if cls is PathVersion:
        fields.pop("schema", None)
    try:
        rec = converter().structure(fields, cls)
    except RecordError as e:
        raise RecordError(f"invalid {cls.__name__} record: {e}") from None
    except Exception as e:  # noqa: BLE001 - cattrs may wrap errors in groups; one line is enough
        raise RecordError(f"invalid {cls.__name__} record: {_first_error(e)}") from None
    _check_canonical(d, data)
    return rec


def _first_error(e: BaseException) -> str:
    subs = getattr(e, "exceptions", None)
    if subs:
        return _first_error(subs[0])
    return (str(e) or type(e).__name__).splitlines()[0][:200]

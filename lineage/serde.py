"""The one converter and the canonical byte form of records.

Canonical form: JSON with sorted keys, no spaces, UTF-8, no NaN. Python's float repr is the
shortest round-trip form on every platform, and records hold only str, int, float, bool,
None, lists and str-keyed dicts, so the same record gives the same bytes on every machine
and Python version. Decoding refuses a schema newer than this zcas knows.
"""

from __future__ import annotations

import json

import attrs

from zcas.cas.errors import ZcasError

from .canonical import dumps
from .records import SCHEMA, PathVersion, Run


class RecordError(ZcasError, ValueError):
    """A record that does not decode, or does not validate."""


def make_converter():
    """The project's one cattrs converter (imported on first decode: cattrs is slow to load)."""
    import cattrs

    return cattrs.Converter(forbid_extra_keys=True)


_converter = None
TYPES = {"run": Run, "path": PathVersion}


def converter():
    global _converter
    if _converter is None:
        _converter = make_converter()
    return _converter


def unstructure(record: Run | PathVersion) -> dict:
    """Records hold only plain values, so attrs' own asdict is the unstructured form."""
    return attrs.asdict(record, recurse=True)


def canonical(obj) -> bytes:
    return dumps(obj, "record")


def encode(record: Run | PathVersion) -> bytes:
    d = unstructure(record)
    d["type"] = "run" if isinstance(record, Run) else "path"
    d.setdefault("schema", SCHEMA)
    return canonical(d)


def decode_dict(data: bytes) -> dict:
    """Parse and check the envelope only (fast path for listing)."""
    try:
        d = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise RecordError(f"record is not valid JSON: {e}") from None
    if not isinstance(d, dict) or d.get("type") not in TYPES:
        raise RecordError("record has no known type")
    schema = d.get("schema", SCHEMA)
    if not isinstance(schema, int) or schema > SCHEMA:
        raise RecordError(f"record schema {schema} is newer than this zcas understands ({SCHEMA}); upgrade zcas")
    return d


def decode(data: bytes) -> Run | PathVersion:
    d = decode_dict(data)
    cls = TYPES[d.pop("type")]
    if cls is PathVersion:
        d.pop("schema", None)
    try:
        return converter().structure(d, cls)
    except Exception as e:  # cattrs raises ClassValidationError groups; one line is enough
        raise RecordError(f"invalid {cls.__name__} record: {_first_error(e)}") from None


def _first_error(e: BaseException) -> str:
    subs = getattr(e, "exceptions", None)
    if subs:
        return _first_error(subs[0])
    return str(e) or type(e).__name__

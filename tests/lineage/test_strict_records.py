"""Strict records: a record that is valid JSON but holds a wrong id, type, name or size is a
RecordError, and decoding any bytes costs bounded time and memory and raises nothing else."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zcas.lineage import serde
from zcas.lineage.records import MAX_DEPTH, MAX_ENTRIES, MAX_NAME, PathVersion, RecordError, Run

ID = "ab" * 32


def good() -> dict:
    return json.loads(serde.encode(Run(
        step="train", kind="command", status="ran", cache_key=ID, key_components={"schema": "zcas-key-1"},
        inputs={"data.csv": ID}, outputs={"model.pkl": "cd" * 32}, params={"lr": 0.1}, env={"MODE": None},
        cmd=["python", "train.py"], cwd="", started_ns=1, ended_ns=2, host="h", user="u",
        materializers={"model.pkl": "pickle@1"}, steps={"s": ID}, cached_from=ID, session="x",
    )))


def refused(d: dict, match: str | None = None) -> str:
    with pytest.raises(RecordError, match=match) as e:
        serde.decode(serde.canonical(d))
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400
    return msg


def test_good_record_decodes():
    r = serde.decode(serde.canonical(good()))
    assert isinstance(r, Run) and r.step == "train"


@pytest.mark.parametrize("field,value", [
    ("outputs", {"model.pkl": "../../etc/passwd"}),
    ("inputs", {"data.csv": "AB" * 32}),  # ids are lowercase
    ("inputs", {"data.csv": "ab" * 31}),
    ("steps", {"s": "/tmp/x"}),
    ("cache_key", "ab" * 31 + "zz"),
    ("cache_key", 5),
    ("cached_from", "../x"),
])
def test_attack_record_with_non_id_in_an_id_field_is_refused(field, value):
    d = good()
    d[field] = value
    assert "is not an id" in refused(d)


def test_attack_record_with_path_as_output_id_is_refused():
    d = good()
    d["outputs"] = {"model.pkl": "../../etc/passwd"}
    msg = refused(d, "outputs")
    assert "../../etc/passwd" in msg


@pytest.mark.parametrize("field,value", [
    ("started_ns", "5"), ("started_ns", 5.0), ("started_ns", True), ("started_ns", -1), ("started_ns", 1 << 63),
    ("ended_ns", None), ("exit_status", False), ("exit_status", 1.5), ("schema", True), ("schema", 0),
])
def test_attack_record_with_wrong_int_is_refused(field, value):
    d = good()
    d[field] = value
    refused(d, field)


@pytest.mark.parametrize("field,value", [
    ("step", "a\0b"), ("step", "x" * (MAX_NAME + 1)), ("step", 7), ("step", ["a"]), ("host", "h\0"),
    ("user", {"a": 1}), ("cwd", "/a\0"), ("inputs", {"a\0b": ID}), ("params", {"p" * (MAX_NAME + 1): 1}),
    ("env", {"A": 5}), ("env", {"A\0": None}), ("materializers", {"m": "pickle"}), ("materializers", {"m": "@1"}),
    ("materializers", {"m": "pickle@"}), ("cmd", "rm -rf /"), ("cmd", ["ok", 1]), ("cmd", ["a\0"]),
    ("key_components", {"k": 1}), ("inputs", [["a", ID]]), ("params", []), ("session", 1), ("code", 1),
    ("status", ["ran"]), ("kind", "shell"),
])
def test_attack_record_with_wrong_name_or_type_is_refused(field, value):
    d = good()
    d[field] = value
    refused(d, field)


def test_attack_record_with_too_many_entries_is_refused():
    d = good()
    d["env"] = {f"V{i}": None for i in range(MAX_ENTRIES + 1)}
    refused(d, "more than")


def test_attack_record_nesting_deep_params_is_refused():
    v: list = []
    for _ in range(MAX_DEPTH + 5):
        v = [v]
    d = good()
    d["params"] = {"deep": v}
    refused(d, "nests deeper")


def test_attack_record_nesting_beyond_the_json_parser_is_a_record_error():
    data = b'{"params":{"x":' + b"[" * 200_000 + b"]" * 200_000 + b'},"type":"run"}'
    with pytest.raises(RecordError):
        serde.decode(data)


def test_attack_record_larger_than_the_limit_is_refused_before_parsing():
    with pytest.raises(RecordError, match="more than the limit"):
        serde.decode(b'{"x":"' + b"a" * serde.MAX_RECORD + b'"}')


@pytest.mark.parametrize("mutate", [
    lambda data: data.replace(b'"step":"train"', b'"step":"train","step":"evil"'),  # duplicate key
    lambda data: data.replace(b",", b", "),  # spaces
    lambda data: data.decode().encode("utf-16"),
    lambda data: data.replace(b'"host":"h"', b'"host":"\\ud800"'),  # a lone surrogate cannot be UTF-8
    lambda data: data.replace(b'"lr":0.1', b'"lr":NaN'),
    lambda data: data.replace(b'"lr":0.1', b'"lr":1e999'),
])
def test_attack_non_canonical_record_is_refused(mutate):
    data = serde.canonical(good())
    serde.decode(data)
    with pytest.raises(RecordError):
        serde.decode(mutate(data))


@pytest.mark.parametrize("field", ["inputs", "step", "started_ns", "schema"])
def test_attack_record_missing_a_required_field_is_refused(field):
    d = good()
    del d[field]
    refused(d)


def test_record_of_schema_1_before_materializers_sessions_and_steps_still_decodes():
    d = good()
    for k in ("materializers", "session", "steps"):
        del d[k]
    r = serde.decode(serde.canonical(d))
    assert isinstance(r, Run)
    assert r.materializers == {} and r.session is None and r.steps == {}


def test_attack_path_record_with_bad_id_is_refused():
    d = json.loads(serde.encode(PathVersion(path="a", id=ID, time_ns=1)))
    p = serde.decode(serde.canonical(d))
    assert isinstance(p, PathVersion) and p.path == "a"
    d["id"] = "../../x"
    refused(d, "id")


def test_records_with_bad_fields_cannot_be_built_locally_either():
    with pytest.raises(RecordError, match="outputs"):
        Run(step="s", kind="command", status="ran", outputs={"o": "../../etc/passwd"})
    with pytest.raises(RecordError, match="started_ns"):
        Run(step="s", kind="command", status="ran", started_ns=1.5)  # type: ignore[arg-type]


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=6,
)


@settings(max_examples=300)
@given(st.sampled_from(sorted(good())), json_values)
def test_attack_any_field_replaced_by_any_json_only_raises_record_error(field, value):
    d = good()
    d[field] = value
    try:
        r = serde.decode(serde.canonical(d))
    except RecordError:
        return
    assert serde.encode(r) == serde.canonical(d)  # what decodes re-encodes to the same bytes

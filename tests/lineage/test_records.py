"""Records encode canonically (same record, same bytes; any change, other bytes) and refuse
what they cannot vouch for."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zcas.lineage import serde
from zcas.lineage.canonical import NotCanonicalError, dumps
from zcas.lineage.records import Run

hexid = st.binary(min_size=32, max_size=32).map(bytes.hex)
# names (steps, paths, params ...) are text without NUL: no path, argument or variable holds one
name = st.text(st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), max_size=10)
plain = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=8,
)
runs = st.builds(
    Run,
    step=name.filter(bool),
    kind=st.sampled_from(["command", "python"]),
    status=st.sampled_from(["ran", "cached", "failed"]),
    cache_key=hexid,
    inputs=st.dictionaries(name, hexid, max_size=3),
    outputs=st.dictionaries(name, hexid, max_size=3),
    params=st.dictionaries(name, plain, max_size=3),
    started_ns=st.integers(0, 2**62),
    ended_ns=st.integers(0, 2**62),
    exit_status=st.integers(-255, 255),
)


@given(runs)
def test_roundtrip_and_canonical(run):
    data = serde.encode(run)
    assert serde.decode(data) == run
    assert serde.encode(serde.decode(data)) == data
    # the same record built again (dicts in another order) gives the same bytes
    d = json.loads(data)
    rebuilt = Run(**{k: v for k, v in reversed(list(d.items())) if k != "type"})
    assert serde.encode(rebuilt) == data


@given(runs, runs)
def test_different_records_different_bytes(a, b):
    if a != b:
        assert serde.encode(a) != serde.encode(b)


def test_future_schema_refused():
    data = serde.encode(Run(step="s", kind="command", status="ran"))
    d = json.loads(data)
    d["schema"] = 99
    with pytest.raises(serde.RecordError, match="newer than this zcas"):
        serde.decode(json.dumps(d).encode())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(status="exploded"),
        lambda d: d.update(kind="shell"),
        lambda d: d.update(surprise=1),
        lambda d: d.pop("step"),
        lambda d: d.update(type="nope"),
    ],
)
def test_invalid_records_refused(mutate):
    d = json.loads(serde.encode(Run(step="s", kind="command", status="ran")))
    mutate(d)
    with pytest.raises(serde.RecordError):
        serde.decode(serde.canonical(d))


@given(st.binary(max_size=200))
def test_decode_garbage_only_raises_record_error(data):
    try:
        serde.decode(data)
    except serde.RecordError:
        pass


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), b"bytes", {1: "int key"}, object(), {1, 2}])
def test_non_canonical_values_named(bad):
    with pytest.raises(NotCanonicalError, match="param 'x'"):
        dumps({"v": bad}, "param 'x'")

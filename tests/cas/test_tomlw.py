"""tomlw writes what tomllib reads back, for any string (issue 12: characters outside the
BMP were written as JSON surrogate pairs, which TOML refuses)."""

import tomllib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from zcas.cas.errors import UsageError
from zcas.cas.tomlw import dumps, write

plain = st.one_of(st.text(), st.integers(min_value=-(2**63), max_value=2**63 - 1), st.booleans(),
                  st.floats(allow_nan=False))


@given(st.text())
def test_any_string_value_round_trips(s):
    assert tomllib.loads(dumps({"t": {"k": s}})) == {"t": {"k": s}}


@given(st.text(), st.text(min_size=1), st.text(min_size=1))
def test_any_key_and_table_name_round_trips(key, table, sub):
    doc = {table: {key: "v", sub + "!": {key: 1}}}  # sub + "!": never the same key as ``key``
    got = tomllib.loads(dumps(doc))
    assert got == doc


@given(st.dictionaries(st.text(), st.one_of(plain, st.lists(plain, max_size=4)), max_size=6))
def test_any_table_of_plain_values_round_trips(table):
    assert tomllib.loads(dumps({"t": table})) == {"t": table}


def test_outside_the_bmp_is_written_as_itself(tmp_path):
    path = tmp_path / "c.toml"
    write(str(path), {"remote": {"name": "caf\u00e9 \U0001f600 \U00010348"}})
    text = path.read_bytes().decode("utf-8")
    assert "\U0001f600" in text and "\\ud83d" not in text.lower()
    assert tomllib.loads(text)["remote"]["name"] == "caf\u00e9 \U0001f600 \U00010348"


def test_a_lone_surrogate_is_a_one_line_usage_error():
    with pytest.raises(UsageError, match="not valid Unicode"):
        dumps({"t": {"k": "bad \udcff byte"}})

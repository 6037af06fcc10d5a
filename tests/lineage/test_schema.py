"""Record schemas: a run using a field newer than schema 1 is written as schema 2, so a zcas
that knows only schema 1 says "upgrade" (and reads it again once upgraded) instead of
refusing it as malformed; a run using none stays schema 1, byte for byte as before."""

from __future__ import annotations

import json

import pytest

from zcas.lineage import serde
from zcas.lineage.records import SCHEMA, SCHEMA_OF_FIELD, Run


def _run(**extra) -> Run:
    return Run(step="s", kind="python", status="ran", started_ns=1, ended_ns=2, **extra)


def test_a_run_without_newer_fields_stays_schema_1_and_round_trips():
    data = serde.encode(_run())
    assert json.loads(data)["schema"] == 1
    assert serde.encode(serde.decode(data)) == data


@pytest.mark.parametrize("field,value", [("implicit_inputs", {"data/in.txt": "ab" * 32}),
                                         ("code_manifest", "cd" * 32)])
def test_a_run_with_a_newer_field_is_the_schema_that_field_came_with(field, value):
    data = serde.encode(_run(**{field: value}))
    assert json.loads(data)["schema"] == SCHEMA_OF_FIELD[field] == SCHEMA
    back = serde.decode(data)
    assert getattr(back, field) == value and serde.encode(back) == data


def test_a_zcas_of_schema_1_reports_a_newer_record_as_newer_not_malformed(monkeypatch):
    data = serde.encode(_run(code_manifest="cd" * 32))
    monkeypatch.setattr(serde, "SCHEMA", 1)
    with pytest.raises(serde.NewerRecordError, match="upgrade zcas"):
        serde.decode(data)
    serde.decode(serde.encode(_run()))  # while schema-1 runs still read

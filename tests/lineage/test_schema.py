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


@pytest.mark.parametrize("field,value,schema", [("implicit_inputs", {"data/in.txt": "ab" * 32}, 2),
                                                ("code_manifest", "cd" * 32, 2),
                                                ("metrics", {"loss": 0.5}, 2),
                                                ("series", {"loss": [[0, 1.0], [3, 0.5]]}, 3)])
def test_a_run_with_a_newer_field_is_the_schema_that_field_came_with(field, value, schema):
    data = serde.encode(_run(**{field: value}))
    assert json.loads(data)["schema"] == SCHEMA_OF_FIELD[field] == schema <= SCHEMA
    back = serde.decode(data)
    assert getattr(back, field) == value and serde.encode(back) == data


def test_a_zcas_of_schema_1_reports_a_newer_record_as_newer_not_malformed(monkeypatch):
    data = serde.encode(_run(code_manifest="cd" * 32))
    monkeypatch.setattr(serde, "SCHEMA", 1)
    with pytest.raises(serde.NewerRecordError, match="upgrade zcas"):
        serde.decode(data)
    serde.decode(serde.encode(_run()))  # while schema-1 runs still read


def test_a_zcas_of_schema_2_reports_a_run_with_a_series_as_newer(monkeypatch):
    data = serde.encode(_run(series={"loss": [[0, 1.0]]}, metrics={"loss": 1.0}))
    two = serde.encode(_run(metrics={"loss": 1.0}))
    monkeypatch.setattr(serde, "SCHEMA", 2)
    with pytest.raises(serde.NewerRecordError, match="upgrade zcas"):
        serde.decode(data)
    back = serde.decode(two)
    assert isinstance(back, Run) and back.metrics == {"loss": 1.0}  # schema-2 runs still read, byte for byte as before


@pytest.mark.parametrize("series,fragment", [
    ({"loss": [[1, 0.5], [1, 0.4]]}, "not after the step before it"),
    ({"loss": [[2, 0.5], [1, 0.4]]}, "not after the step before it"),
    ({"loss": [[-1, 0.5]]}, "out of range"),
    ({"loss": [[True, 0.5]]}, "must be an integer"),
    ({"loss": [[1.0, 0.5]]}, "must be an integer"),
    ({"loss": [[1, "0.5"]]}, "finite number"),
    ({"loss": [[1, True]]}, "finite number"),
    ({"loss": [[1, 0.5, 2]]}, "not a [step, value] pair"),
    ({"loss": [{"step": 1}]}, "not a [step, value] pair"),
    ({"loss": []}, "1 to"),
    ({"loss": {"0": 1.0}}, "must be a list"),
    ({"": [[0, 1.0]]}, "not a metric name"),
    ({"a..b": [[0, 1.0]]}, "not a metric name"),
    ([["loss", [[0, 1.0]]]], "must be a map"),
])
def test_a_hostile_series_is_refused_in_one_line(series, fragment):
    """A record from a remote naming a series that breaks the rules: refused, never a crash."""
    good = json.loads(serde.encode(_run(series={"loss": [[0, 1.0]]})))
    good["series"] = series
    data = json.dumps(good, sort_keys=True, separators=(",", ":")).encode()
    with pytest.raises(serde.RecordError) as e:
        serde.decode(data)
    assert fragment in str(e.value) and "\n" not in str(e.value)


def test_a_series_of_too_many_points_is_refused():
    from zcas.lineage.records import MAX_POINTS, RecordError

    with pytest.raises(RecordError, match="1 to"):
        _run(series={"loss": [[i, 0.0] for i in range(MAX_POINTS + 1)]})


def test_a_record_with_more_points_in_all_than_a_step_may_log_is_refused():
    """A hostile remote record may not carry more than what runners.metrics lets a run log."""
    from zcas.lineage.records import MAX_POINTS, MAX_RUN_POINTS, RecordError
    from zcas.runners.metrics import MAX_POINTS_PER_RUN

    assert MAX_RUN_POINTS == MAX_POINTS_PER_RUN
    full = [[i, 0.0] for i in range(MAX_POINTS)]
    _run(series={"a": full, "b": full})  # exactly the limit: fine
    with pytest.raises(RecordError, match="points in all"):
        _run(series={"a": full, "b": full, "c": [[0, 0.0]]})

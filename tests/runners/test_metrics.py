"""Metrics parsers and flattening (property tests), the record fields' validation, and a
big log printed without being held in memory."""

from __future__ import annotations

import io
import json
import math
import os
import tracemalloc

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from zcas.lineage import serde
from zcas.lineage.records import RecordError, Run
from zcas.runners.metrics import MetricsError, flatten, parse

KEY = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8)
NUM = st.one_of(st.integers(min_value=-(2**53), max_value=2**53),
                st.floats(allow_nan=False, allow_infinity=False, width=64))
TREE = st.recursive(NUM, lambda kids: st.dictionaries(KEY, kids, min_size=1, max_size=4), max_leaves=20)
DOC = st.dictionaries(KEY, TREE, min_size=1, max_size=5)


def _leaves(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@given(DOC)
def test_flatten_keeps_every_leaf_under_its_dotted_path(doc):
    flat = flatten(doc, "t")
    assert flat == dict(_leaves(doc))
    assert list(flat) == sorted(flat)


@given(DOC)
def test_json_yaml_and_toml_give_the_same_flat_metrics(doc):
    import tomllib  # noqa: F401 - the parser under test reads TOML with it

    want = dict(_leaves(doc))
    assert parse(json.dumps(doc).encode(), "json", "m.json") == want
    assert parse(yaml.safe_dump(doc).encode(), "yaml", "m.yaml") == want
    assert parse(_toml(doc).encode(), "toml", "m.toml") == want


def _toml(doc, table=""):
    """A small TOML writer for the test: scalars first, then sub-tables."""
    lines = [f"[{table}]"] if table else []
    for k, v in doc.items():
        if not isinstance(v, dict):
            lines.append(f"{k} = {repr(v) if isinstance(v, float) else v}")
    for k, v in doc.items():
        if isinstance(v, dict):
            lines.append(_toml(v, f"{table}.{k}" if table else k))
    return "\n".join(lines) + "\n"


@given(st.dictionaries(KEY, NUM, min_size=1, max_size=6), st.integers(min_value=0, max_value=3))
def test_csv_reads_the_last_row_under_its_header(row, earlier):
    header = list(row)
    lines = [",".join(header)] + [",".join("0" for _ in header)] * earlier + [",".join(repr(row[k]) for k in header)]
    got = parse(("\n".join(lines) + "\n").encode(), "csv", "m.csv")
    assert got == {k: pytest.approx(v, rel=0, abs=0) for k, v in row.items()}


@given(st.one_of(st.text(max_size=5), st.booleans(), st.none(), st.just(float("nan")), st.just(float("inf"))), KEY)
def test_a_value_that_is_no_number_is_refused_naming_the_key(bad, key):
    with pytest.raises(MetricsError) as e:
        parse(json.dumps({"ok": 1, key: {"deep": bad}} if key != "ok" else {key: bad}).encode(), "json", "metrics file m.json")
    msg = str(e.value)
    assert "m.json" in msg and "\n" not in msg
    assert ("deep" in msg) or ("NaN" in msg or "Infinity" in msg or key in msg)


@pytest.mark.parametrize("data,fmt,fragment", [
    (b"{", "json", "not valid JSON"),
    (b"[1, 2]", "json", "not a table of metrics"),
    (b"a: [1, {b: x}]", "yaml", "'a.1.b'"),
    (b"x = ", "toml", "not valid TOML"),
    (b"a,b\n1\n", "csv", "1 values for 2 columns"),
    (b"a,b\n", "csv", "header row and at least one row"),
    (b"\xff", "json", "not UTF-8"),
    (b'{"": 1}', "json", "not a metric name"),
    (b'{"a": {"": 1}}', "json", "not a metric name"),
])
def test_malformed_files_are_one_line_errors(data, fmt, fragment):
    with pytest.raises(MetricsError, match=fragment):
        parse(data, fmt, "f")


def _run(**fields):
    return Run(step="s", kind="command", status="ran", **fields)


def test_record_fields_round_trip_and_old_records_encode_as_before():
    r = _run(metrics={"acc": 0.5, "n": 3}, log={"stdout": "a" * 64})
    assert serde.decode(serde.encode(r)) == r
    plain = serde.encode(_run())
    assert b"metrics" not in plain and b'"log"' not in plain  # absent at their default: same bytes, same id


@pytest.mark.parametrize("fields", [
    {"metrics": {"acc": True}},
    {"metrics": {"acc": "0.5"}},
    {"metrics": {"acc": math.nan}},
    {"metrics": {"a..b": 1}},
    {"metrics": {".a": 1}},
    {"metrics": {"a": 1 << 70}},
    {"log": {"stdout": "not-an-id"}},
    {"log": {"combined": "a" * 64}},
    {"log": ["a" * 64]},
])
def test_malformed_metrics_or_log_fields_are_refused(fields):
    with pytest.raises(RecordError):
        _run(**fields)
    if "nan" in repr(fields):
        return  # canonical JSON has no NaN: such a record cannot even be written
    good = json.loads(serde.encode(_run()))
    good.update(fields)
    with pytest.raises(RecordError):
        serde.decode(json.dumps(good, sort_keys=True, separators=(",", ":")).encode())


def test_a_big_log_is_printed_a_chunk_at_a_time(repo):
    """40 MB of output is stored chunked and printed through a small buffer, verified."""
    from zcas.cas.ingest import Ingester
    from zcas.cas.statcache import StatCache
    from zcas.experiments import print_log

    path = repo.root + "/big.log"
    line = b"epoch 123 loss 0.123456789 accuracy 0.987654321 " * 2 + b"\n"
    with open(path, "wb") as f:
        for _ in range((40 << 20) // len(line)):
            f.write(line)
    size = os.path.getsize(path)
    oid = Ingester(repo.db, StatCache(None)).add(path)[0]
    repo.db.flush()

    class Sink(io.RawIOBase):
        n = 0

        def write(self, b):
            self.n += len(b)
            return len(b)

    out = Sink()
    tracemalloc.start()
    try:
        written = print_log(repo.db, "0" * 64, {"log": {"stdout": oid.hex()}}, out, io.BytesIO())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert written == {"stdout": size} and out.n == size
    assert peak < 8 << 20, f"peak {peak} bytes while printing a {size}-byte log"


def test_an_index_from_before_the_exps_database_gets_its_rows_once(repo):
    from zcas.lineage import experiments as ex
    from zcas.lineage.graph import EXPS_MARK
    from zcas.lineage.store import Lineage

    lin = Lineage(repo)
    lin.record_runs([Run(step="s", kind="command", status="ran", started_ns=i, params={"a": {"b": i}},
                         metrics={"m": i / 2}) for i in range(1, 4)])

    def forget_rows(txn):
        txn.drop(lin.graph.dbs["exps"], delete=False)
        txn.delete(EXPS_MARK, db=lin.graph.dbs["meta"])

    lin.graph.write(forget_rows)
    assert ex.of_name(lin, "s") == []
    lin.close()
    lin = Lineage(repo)
    rows = ex.of_name(lin, "s")
    assert [(r.params, r.metrics) for r in rows] == [({"a.b": i}, {"m": i / 2}) for i in (3, 2, 1)]
    lin.reindex()  # a rebuild brings the rows with the runs, and marks them
    assert len(ex.of_name(lin, "s")) == 3 and lin.graph.fill_exps() == 0
    lin.close()


def test_changed_columns_tell_1_from_true_and_missing_from_none():
    from zcas.lineage.experiments import Experiment, columns, diff_metrics, select

    def e(i, params, metrics):
        return Experiment(id=str(i), name="s", status="ran", started_ns=i, params=params, metrics=metrics, runs=[])

    rows = [e(1, {"a": 1, "b": 2, "c": None}, {"m": 1.0}), e(2, {"a": True, "b": 2}, {"m": 1.0, "n": 0})]
    params, metrics, changed = columns(rows)
    assert params == ["a", "b", "c"] and metrics == ["m", "n"]
    assert changed == {"params.a", "params.c", "metrics.n"}
    assert diff_metrics(rows[0], rows[1]) == [{"name": "n", "old": None, "new": 0, "change": None, "percent": None}]
    assert [r.id for r in select(rows, ["m>=1", "n=0"])] == ["2"]
    assert [r.id for r in select(rows, [], sort_by="n", descending=True)] == ["2", "1"]  # rows without it last

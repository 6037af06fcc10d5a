"""The exps rows of the lineage index (v3: values apart from their column names), and an
index holding rows of the older form (v2, names in every row) given new rows on open."""

from __future__ import annotations

import marshal

from zcas.lineage import experiments as ex
from zcas.lineage.graph import flat, step_key
from zcas.lineage.records import Run
from zcas.lineage.store import Lineage


def _runs():
    return [Run(step="s", kind="command", status="ran" if i != 2 else "failed", started_ns=i * 10**9,
                params={"a": {"b": i}, "opt": "adam" if i % 2 else "sgd"}, metrics={"m": i / 2} if i != 2 else {},
                session=f"sess{i}", user="u", host="h")
            for i in range(1, 5)]


def test_rows_hold_values_and_share_their_names(repo):
    lin = Lineage(repo)
    lin.record_runs(_runs())
    rows = ex.of_name(lin, "s", failed=True)
    assert [(r.status, r.params, r.metrics, r.user, r.host) for r in rows] == [
        ("ran", {"a.b": 4, "opt": "sgd"}, {"m": 2.0}, "u", "h"),
        ("ran", {"a.b": 3, "opt": "adam"}, {"m": 1.5}, "u", "h"),
        ("failed", {"a.b": 2, "opt": "sgd"}, {}, "u", "h"),
        ("ran", {"a.b": 1, "opt": "adam"}, {"m": 0.5}, "u", "h"),
    ]
    assert [r.status for r in ex.of_name(lin, "s")] == ["ran"] * 3
    # two tuples of names (params; metrics) serve all four rows: rows hold no names
    assert lin.graph.count("cols") == 2
    assert all(b"opt" not in v for _, _, v in lin.graph.exp_rows("s"))
    assert ex.known(lin, "s") and not ex.known(lin, "t")
    lin.close()


def test_an_index_with_rows_of_the_older_form_gets_new_rows_on_open(repo):
    lin = Lineage(repo)
    lin.record_runs(_runs())
    want = [(r.id, r.params, r.metrics) for r in ex.of_name(lin, "s", failed=True)]

    def to_v2(txn):  # what a zcas before v3 wrote: names in every row, and its mark
        g = lin.graph
        txn.drop(g.dbs["exps"], delete=False)
        txn.drop(g.dbs["cols"], delete=False)
        txn.put(b"exps-v2", b"1", db=g.dbs["meta"])  # (it leaves our mark as it finds it: set)
        for rid, rec in lin.runs():
            row = marshal.dumps((rec["status"], rec.get("session"), flat(rec.get("params") or {}),
                                 rec.get("metrics") or {}, rec.get("user", ""), rec.get("host", "")), 4)
            txn.put(step_key(rec["step"]) + rec["started_ns"].to_bytes(8, "big") + rid, row, db=g.dbs["exps"])

    lin.graph.write(to_v2)
    assert ex.of_name(lin, "s", failed=True) == []  # old rows are not read as new ones
    lin.close()
    lin = Lineage(repo)  # opening rebuilds the rows once
    assert [(r.id, r.params, r.metrics) for r in ex.of_name(lin, "s", failed=True)] == want
    assert lin.graph.fill_exps() == 0
    lin.graph.write(to_v2)  # a zcas of the v2 form opened it again, and rebuilt its rows
    lin.close()
    lin = Lineage(repo)
    assert [(r.id, r.params, r.metrics) for r in ex.of_name(lin, "s", failed=True)] == want
    lin.close()


def test_sessions_group_step_runs_and_sort_their_columns(repo):
    lin = Lineage(repo)
    runs = []
    for i in range(3):
        for k, step in enumerate(("prep", "train")):
            runs.append(Run(step=step, kind="command", status="ran", started_ns=(i * 10 + k) * 10**9,
                            params={"z": i, "a": k}, metrics={"acc": i / 10} if step == "train" else {},
                            session=f"s{i}"))
    lin.record_runs(runs)
    rows = ex.of_sessions(lin, ["prep", "train"])
    assert [list(r.params) for r in rows] == [["prep.a", "prep.z", "train.a", "train.z"]] * 3
    assert [r.params["train.z"] for r in rows] == [2, 1, 0] and [r.metrics for r in rows][0] == {"acc": 0.2}
    assert [len(r.runs) for r in rows] == [2, 2, 2]
    lin.close()


def test_path_kinds_of_the_index_are_the_records():
    from zcas.lineage.graph import _KINDS
    from zcas.lineage.records import PATH_KINDS

    assert set(_KINDS) == set(PATH_KINDS)


def test_reading_rows_imports_no_records_module():
    """exp show and log's listing read the index without attrs (records are made elsewhere)."""
    import subprocess
    import sys

    code = ("import sys, zcas.lineage.store, zcas.lineage.experiments, zcas.experiments; "
            "print('zcas.lineage.records' in sys.modules, 'attr' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]

"""Secrets are never printed or exported, and names from records (maybe from a remote) are
escaped for the terminal and for each export format's own syntax."""

import json
import re
import sys

from blake3 import blake3

from zcas.lineage import export
from zcas.lineage.redact import env_digest, plaintext_env, public_record
from zcas.lineage.walk import Subgraph

SECRET = "hunter2-s3cret"
A, B, R = "aa" * 32, "bb" * 32, "cc" * 32


def test_env_digest_is_the_agreed_function():
    want = "b3:" + blake3(b"zcas-env-1\0" + SECRET.encode()).hexdigest()
    assert env_digest(SECRET) == want
    assert env_digest(None) is None
    assert env_digest("\udcff") == "b3:" + blake3(b"zcas-env-1\0\xff").hexdigest()  # surrogateescape
    assert env_digest("") != env_digest("x")


def old_record() -> dict:
    return {"step": "s", "kind": "command", "status": "ran", "inputs": {}, "outputs": {}, "started_ns": 1,
            "ended_ns": 2, "env": {"TOKEN": SECRET, "GONE": None},
            "key_components": {"env:TOKEN": json.dumps(SECRET), "env:GONE": "null", "argv": '["x"]'}}


def new_record() -> dict:
    d = old_record()
    d["env"] = {"TOKEN": env_digest(SECRET), "GONE": None}
    d["key_components"] = {"env:TOKEN": json.dumps(env_digest(SECRET)), "env:GONE": "null", "argv": '["x"]'}
    return d


def test_attack_public_record_never_holds_a_plaintext_env_value():
    old = old_record()
    pub = public_record(old)
    assert SECRET not in json.dumps(pub)
    assert pub["env"] == {"TOKEN": env_digest(SECRET), "GONE": "unset"}
    assert pub["key_components"] == {"env:TOKEN": env_digest(SECRET), "env:GONE": "null", "argv": '["x"]'}
    assert old["env"]["TOKEN"] == SECRET  # a copy: the record itself is untouched


def test_public_records_of_old_and_new_records_compare_equal():
    assert public_record(old_record()) == public_record(new_record())
    pub = public_record(new_record())
    assert public_record(pub) == pub  # idempotent
    python_step = dict(old_record(), key_components={"env:TOKEN": '"' + SECRET + '"'})  # canonical dumps form
    assert public_record(python_step)["key_components"]["env:TOKEN"] == env_digest(SECRET)


def test_plaintext_env_tells_old_records_from_new():
    assert plaintext_env(old_record())
    assert not plaintext_env(new_record())
    assert plaintext_env(dict(new_record(), key_components={"env:T": json.dumps(SECRET)}))
    assert not plaintext_env({"step": "pipeline"})


def graph(step: str, name: str = "data.csv") -> Subgraph:
    run = dict(new_record(), env={"TOKEN": SECRET}, step=step, inputs={name: A}, outputs={"out": B})
    g = Subgraph(B, runs={R: run}, artifacts={A: {name}, B: {"out"}},
                 edges=[(A, R, "input"), (R, B, "output")], depth_of={R: 1})
    return g


def test_attack_exports_never_hold_a_plaintext_env_value():
    g = graph("s")
    assert SECRET not in json.dumps(export.subgraph_json(g))
    assert SECRET not in json.dumps(export.records_json(g.runs))
    assert SECRET not in json.dumps(export.openlineage_events(g.runs, "file:///x"))
    assert export.records_json(g.runs)[0]["env"] == {"TOKEN": env_digest(SECRET)}


EVIL = 'evil"]; x [label="pwned\\N\x1b[2J\x07\u202e<b>`#&(){}|\nnext'


def test_attack_step_name_with_escape_sequences_is_escaped_in_run_line_and_tree():
    g = graph(EVIL, name="in\x1b]0;title\x07.csv")
    lines = [export.run_line(R, g.runs[R]), *export.tree(g), *export.tree(g, upstream=False)]
    for line in lines:
        assert not re.search("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]", line), line
    assert "\\x1b" in lines[0]


_DOT_STR = r'"(?:[^"\\]|\\.)*"'


def test_attack_step_name_cannot_break_out_of_a_dot_label():
    out = export.dot(graph(EVIL, name=EVIL))
    body = out.splitlines()[3:-1]
    node = re.compile(rf"  {_DOT_STR} \[shape=(note|box)(, style=rounded)?, label={_DOT_STR}\];")
    edge = re.compile(rf"  {_DOT_STR} -> {_DOT_STR};")
    assert len(body) == 5
    for line in body:
        assert node.fullmatch(line) or edge.fullmatch(line), line
    assert "\x1b" not in out and "\\N" not in out.replace("\\\\", "")


def test_attack_step_name_cannot_break_out_of_a_mermaid_label():
    out = export.mermaid(graph(EVIL, name=EVIL))
    lines = out.splitlines()
    assert lines[0] == "flowchart LR" and len(lines) == 6
    label = r'"[^"\[\]()<>{}|`\\\x00-\x1f]*"'
    for line in lines[1:]:
        assert (re.fullmatch(rf"  a[0-9a-f]{{16}}\[{label}\]", line) or re.fullmatch(rf"  r[0-9a-f]{{16}}\({label}\)", line)
                or re.fullmatch(r"  [ar][0-9a-f]{16} --> [ar][0-9a-f]{16}", line)), line


def test_attack_run_with_absurd_times_still_prints():
    r = dict(new_record(), started_ns=(1 << 63) - 1, ended_ns=0)
    assert "s" in export.run_line(R, r)
    assert export.openlineage_events({R: r}, "ns")[0]["eventTime"]


def test_deep_chain_draws_without_recursion_and_with_bounded_lines():
    n = 3000
    ids = [f"{i:064x}" for i in range(n + 1)]
    runs = {f"{i:063x}f": dict(new_record(), step=f"s{i}", inputs={f"a{i}": ids[i]}, outputs={f"a{i + 1}": ids[i + 1]})
            for i in range(n)}
    edges = []
    for i in range(n):
        rid = f"{i:063x}f"
        edges += [(ids[i], rid, "input"), (rid, ids[i + 1], "output")]
    g = Subgraph(ids[-1], runs=runs, artifacts={x: {f"a{i}"} for i, x in enumerate(ids)}, edges=edges)
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(200)  # a recursive drawing would fail at once
    try:
        up = export.tree(g)
        down = export.tree(Subgraph(ids[0], runs=runs, artifacts=g.artifacts, edges=edges), upstream=False)
    finally:
        sys.setrecursionlimit(old)
    assert len(up) == 2 * n + 1 and len(down) == 2 * n + 1
    assert max(map(len, up)) < export.MAX_INDENT + 200

"""Files a Python step reads without declaring them (issue 20): implicit inputs.

While a step executes, the files it opens for reading inside the repository are recorded
with their ids; a later run whose files changed reruns, going back is a hit, ``zcas why``
names the file, and writes the step does not return are a warning naming the path. A path
from a record is untrusted (a remote may have written it) and must never leave the tree.
"""

from __future__ import annotations

import json
import os
import textwrap

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import run_zcas
from zcas.lineage import serde
from zcas.lineage.records import RecordError, Run, check_rel_path
from zcas.runners import implicit

FLOW = '''
import pathlib
import zcas

@zcas.step
def read() -> str:
    open("exec.log", "a").write("read\\n")
    with open("scratch.txt", "w") as f:   # written, then read back: the step's own, no input
        f.write("tmp")
    open("scratch.txt").read()
    return pathlib.Path("data/in.txt").read_text()

@zcas.step
def shout(s: str) -> str:
    open("exec.log", "a").write("shout\\n")
    return s.upper()

@zcas.pipeline
def main():
    return shout(read())
'''


def _ran(root) -> list[str]:
    log = root / "exec.log"
    out = log.read_text().split() if log.exists() else []
    if log.exists():
        log.unlink()
    return out


@pytest.fixture
def flow(repo_dir):
    (repo_dir / "flow.py").write_text(textwrap.dedent(FLOW))
    (repo_dir / "data").mkdir()
    (repo_dir / "data" / "in.txt").write_text("one")
    return repo_dir


def test_a_changed_file_reruns_going_back_is_a_hit_and_why_names_it(flow):
    r = run_zcas("run", "flow.py:main", cwd=flow)
    assert r.code == 0 and _ran(flow) == ["read", "shout"], r
    assert "wrote exec.log, scratch.txt, which it does not return" in r.err  # writes named, once per step
    assert run_zcas("run", "flow.py:main", cwd=flow).code == 0 and _ran(flow) == []
    (flow / "data" / "in.txt").write_text("two")
    assert run_zcas("run", "flow.py:main", cwd=flow).code == 0 and _ran(flow) == ["read", "shout"]
    r = run_zcas("why", "flow.read", cwd=flow)
    assert r.code == 0 and "file read data/in.txt changed:" in r.out, r
    (flow / "data" / "in.txt").write_text("one")
    assert run_zcas("run", "flow.py:main", cwd=flow).code == 0 and _ran(flow) == []  # the first version's run
    (flow / "data" / "in.txt").write_text("two")
    assert run_zcas("run", "flow.py:main", cwd=flow).code == 0 and _ran(flow) == []  # and the second's


def test_the_record_names_what_was_read_not_what_the_step_wrote(flow):
    assert run_zcas("run", "flow.py:main", cwd=flow).code == 0
    r = run_zcas("why", "flow.read", "--explain", "--json", cwd=flow)
    files = {c["name"]: c["value"] for c in json.loads(r.out)["covers"] if c["kind"] == "file read"}
    from zcas.cas.oid import hash_bytes

    assert files == {"data/in.txt": hash_bytes(b"one").hex()}


def test_returning_a_written_path_makes_it_an_output_not_a_warning(repo_dir):
    (repo_dir / "flow.py").write_text(textwrap.dedent('''
        import pathlib
        import zcas

        @zcas.step
        def make() -> pathlib.Path:
            p = pathlib.Path("out/result.txt")
            p.parent.mkdir(exist_ok=True)
            p.write_text("made")
            return p

        @zcas.pipeline
        def main():
            return make()
    '''))
    r = run_zcas("run", "flow.py:main", cwd=repo_dir)
    assert r.code == 0 and "warning" not in r.err, r


@pytest.mark.parametrize("runner", ["threads", "processes"])
def test_implicit_inputs_on_a_runner(repo_dir, runner):
    """A step on a runner records what it read there (processes: in the worker)."""
    (repo_dir / "flow.py").write_text(textwrap.dedent('''
        import zcas

        @zcas.step
        def read() -> str:
            open("exec.log", "a").write("read\\n")
            return open("in.txt").read()

        @zcas.pipeline
        def main():
            return read()
    '''))
    (repo_dir / "in.txt").write_text("a")
    assert run_zcas("stack", "register", "r", "--runner", runner, cwd=repo_dir).code == 0
    args = ("run", "--stack", "r", "flow.py:main")
    r = run_zcas(*args, cwd=repo_dir)
    assert r.code == 0 and _ran(repo_dir) == ["read"], r
    assert run_zcas(*args, cwd=repo_dir).code == 0 and _ran(repo_dir) == []
    (repo_dir / "in.txt").write_text("b")
    assert run_zcas(*args, cwd=repo_dir).code == 0 and _ran(repo_dir) == ["read"]


# -- paths from records are untrusted ---------------------------------------------------------

ID = "ab" * 32
BAD = ["../secret", "/etc/passwd", ".zcas/objects/x", ".ZCAS/x", "a//b", "./a", "a/./b", "a/../../b", "", "a\\..\\b",
       "data//", ".zcas/", "/", "a\0b"]  # data/ names a folder listing: valid


def _record(path: str) -> bytes:
    d = serde.unstructure(Run(step="s", kind="python", status="ran"))
    d["implicit_inputs"] = {path: ID}
    d["type"] = "run"
    return serde.canonical(d)


@pytest.mark.parametrize("path", BAD)
def test_a_record_naming_a_path_that_escapes_does_not_decode(path):
    with pytest.raises(RecordError, match="implicit_inputs key") as e:
        serde.decode(_record(path))
    assert "\n" not in str(e.value)


def test_a_record_naming_a_plain_path_decodes():
    rec = serde.decode(_record("data/in.txt"))
    assert isinstance(rec, Run) and rec.implicit_inputs == {"data/in.txt": ID}


def test_records_without_the_new_fields_read_and_encode_as_before():
    """A run with no implicit inputs and no manifest encodes as the previous zcas wrote it."""
    run = Run(step="s", kind="python", status="ran", code="x")
    data = serde.encode(run)
    assert b"implicit_inputs" not in data and b"code_manifest" not in data
    assert serde.decode(data) == run


@pytest.mark.parametrize("path", BAD)
def test_a_bad_path_in_an_unvalidated_record_is_no_hit(tmp_path, path):
    """``valid`` reads records as plain dicts; a bad path there is no hit, never an error."""
    (tmp_path / "x").write_text("x")
    assert implicit.matches(str(tmp_path), {path: ID}, None) is False
    assert implicit.matches(str(tmp_path), "not a map", None) is False


def test_a_link_out_of_the_repository_is_no_hit(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("secret")
    root = tmp_path / "repo"
    root.mkdir()
    os.symlink(outside, root / "link.txt")
    from zcas.cas.oid import hash_bytes

    oid = hash_bytes(b"secret").hex()
    assert implicit.current(str(root), "link.txt", None) is None
    assert implicit.matches(str(root), {"link.txt": oid}, None) is False
    (root / "in.txt").write_text("secret")
    assert implicit.matches(str(root), {"in.txt": oid}, None) is True  # the same content, inside: a hit


@given(st.text(alphabet=st.sampled_from(["a", "b", ".", "/", "\\", "z", "c", "s", "Z", "C", "A", "S"]), max_size=12))
def test_an_accepted_path_stays_inside_the_repository_and_out_of_the_store(p):
    root = "/r/repo"
    try:
        check_rel_path("p", p)
    except RecordError:
        return
    full = os.path.normpath(os.path.join(root, p))
    if p == "./":  # the top folder's listing
        return
    assert full.startswith(root + "/")
    assert not full.lower().startswith(root + "/.zcas")
    assert all(x not in ("", ".", "..") for x in p.removesuffix("/").split("/"))


def test_a_step_whose_reads_depend_on_what_it_reads(repo_dir):
    """It reads ``switch.txt``, and ``b.txt`` only when the switch says so: every change
    to a file it read reruns it, and going back to files seen before is a hit."""
    (repo_dir / "flow.py").write_text(textwrap.dedent('''
        import zcas

        @zcas.step
        def pick() -> str:
            open("exec.log", "a").write("pick\\n")
            if open("switch.txt").read() == "on":
                return "b:" + open("b.txt").read()
            return "off"

        @zcas.pipeline
        def main():
            return pick()
    '''))
    (repo_dir / "switch.txt").write_text("off")
    (repo_dir / "b.txt").write_text("1")

    def run() -> list[str]:
        r = run_zcas("run", "flow.py:main", cwd=repo_dir)
        assert r.code == 0, r
        return _ran(repo_dir)

    assert run() == ["pick"]
    (repo_dir / "b.txt").write_text("2")
    assert run() == []  # not read while the switch is off
    (repo_dir / "switch.txt").write_text("on")
    assert run() == ["pick"]
    (repo_dir / "b.txt").write_text("3")
    assert run() == ["pick"]
    (repo_dir / "b.txt").write_text("2")
    assert run() == []  # switch on, b.txt 2: seen before
    (repo_dir / "switch.txt").write_text("off")
    assert run() == []  # switch off: the first run


@pytest.mark.parametrize("path", ["../outside.txt", "/etc/hostname", ".zcas/statcache"])
def test_a_planted_record_with_an_escaping_path_is_never_a_hit(flow, path):
    """A record that came from elsewhere (a remote's packs, say) claiming the step's key,
    other outputs, and a file outside the tree as what it read: it is never indexed, never
    a hit, and nothing fails on the way."""
    import zcas
    from zcas.cas import codec

    assert run_zcas("run", "flow.py:main", cwd=flow).code == 0 and _ran(flow) == ["read", "shout"]
    repo = zcas.Repository(flow)
    [(genuine_id, genuine)] = [(rid, r) for rid, r in repo.lineage.runs(step="flow.read") if r["status"] == "ran"]
    evil = repo.put(b"evil").id
    forged = dict(genuine)
    forged.update(outputs={"output": evil}, implicit_inputs={path: evil}, started_ns=genuine["started_ns"] + 1,
                  ended_ns=genuine["ended_ns"] + 1, type="run")
    serde.decode(serde.canonical({**forged, "implicit_inputs": {"ok.txt": evil}}))  # well-formed but for the path
    repo.cas.db.put(codec.KIND_RECORD, serde.canonical(forged))
    repo.cas.db.flush()
    repo.close()
    r = run_zcas("reindex", cwd=flow)
    assert r.code == 0 and "Traceback" not in r.err, r
    r = run_zcas("run", "flow.py:main", cwd=flow)
    assert r.code == 0 and "Traceback" not in r.err, r
    assert _ran(flow) == []
    repo = zcas.Repository(flow)
    newest = repo.lineage.runs(step="flow.read", limit=1)[0][1]
    repo.close()
    assert newest["status"] == "cached" and newest["cached_from"] == genuine_id.hex()  # the genuine run is the hit
    r = run_zcas("why", "flow.read", "--explain", cwd=flow)
    assert r.code == 0 and path not in r.out, r


@given(st.text(alphabet=st.sampled_from(["a", ".", "/", "\\", "z", "c", "s", "Z", "C", "S", "\0"]), max_size=14))
def test_the_path_check_is_the_plain_rule(p):
    """What ``check_rel_path`` accepts, said the slow way: components, none empty, '.' or
    '..', no backslash or NUL, not under .zcas in any case; a trailing slash (a folder's
    listing) on such a path, or ``./`` (the top folder's)."""
    body = p[:-1] if p.endswith("/") else p
    parts = body.split("/")
    plain = p == "./" or (bool(body) and "\\" not in p and "\0" not in p
                          and all(x not in ("", ".", "..") for x in parts) and parts[0].lower() != ".zcas")
    try:
        check_rel_path("p", p)
        accepted = True
    except RecordError:
        accepted = False
    assert accepted == plain


def test_a_planted_record_naming_dot_env_never_puts_its_id_in_a_key(flow):
    """A record from elsewhere, newest for the step, claiming it read ``.env``: a run it
    does not fit is planned and recorded under what the step read here, so neither the key
    it asks a remote for nor the components it records (and pushes) hold the id of ``.env``."""
    import zcas
    from zcas.cas import codec
    from zcas.cas.oid import hash_bytes

    (flow / ".env").write_text("TOKEN=hunter2")
    secret = hash_bytes(b"TOKEN=hunter2").hex()
    assert run_zcas("run", "flow.py:main", cwd=flow).code == 0 and _ran(flow) == ["read", "shout"]
    repo = zcas.Repository(flow)
    [genuine] = [r for _, r in repo.lineage.runs(step="flow.read") if r["status"] == "ran"]
    forged = dict(genuine)
    forged.update(implicit_inputs={".env": "0" * 64}, started_ns=genuine["started_ns"] + 10**12,
                  ended_ns=genuine["ended_ns"] + 10**12, type="run")
    repo.cas.db.put(codec.KIND_RECORD, serde.canonical(forged))
    repo.cas.db.flush()
    repo.close()
    assert run_zcas("reindex", cwd=flow).code == 0
    (flow / "data" / "in.txt").write_text("changed")  # a miss: the step runs again
    r = run_zcas("run", "flow.py:main", cwd=flow)
    assert r.code == 0 and _ran(flow) == ["read", "shout"], r
    (flow / "data" / "in.txt").write_text("one")  # and back (a hit or a run: the forged record shares the first key)
    assert run_zcas("run", "flow.py:main", cwd=flow).code == 0
    repo = zcas.Repository(flow)
    runs = [r for _, r in repo.lineage.runs(step="flow.read")]
    repo.close()
    assert len(runs) >= 4
    for rec in runs:
        assert "implicit:.env" not in rec.get("key_components", {}), rec
        assert secret not in json.dumps(rec)


def test_a_file_opened_many_times_is_kept_once(tmp_path):
    """The hook keeps distinct opens only: a step opening one file 200,000 times holds one
    entry, not 200,000 (memory grew without bound before)."""
    from zcas.runners import fileaudit

    (tmp_path / "x.txt").write_text("x")
    path = str(tmp_path / "x.txt")
    with fileaudit.recording(str(tmp_path)) as rec:
        for _ in range(200_000):
            fileaudit._hook("open", (path, "r", 0))
        open(path).close()
    assert len(rec.raw) <= 2 and rec.reads == {"x.txt"}  # the two opens differ in flags only

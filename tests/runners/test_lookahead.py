"""Issue 19: a pipeline's remote lookups asked ahead of its steps (runners/lookahead.py).

A chain of hits asks each key once and restores what the producer made; a guess made ahead
is only ever a request answered sooner, never a result: a hostile entry for a key the
lookahead guessed, but that the step does not reach, changes nothing."""

from __future__ import annotations

import collections
import json

import pytest

from tests.conftest import run_zcas
from tests.runners.test_action_cache import _counted, _repo
from zcas.cas import codec
from zcas.cas.objstore import ObstoreBackend
from zcas.lineage import actions, serde
from zcas.lineage.keyhash import key_of

STEPS = 6


def _chain(path, first: str = "") -> None:
    """s0 writes random bytes; each next step copies the one before and appends its number."""
    lines = [f'[steps.s0]\ncmd = "{first}head -c 3000 /dev/urandom > o0.bin"\noutputs = ["o0.bin"]\n']
    for i in range(1, STEPS):
        lines.append(f'[steps.s{i}]\ncmd = "cat o{i - 1}.bin > o{i}.bin; echo {i} >> o{i}.bin"\n'
                     f'inputs = ["o{i - 1}.bin"]\noutputs = ["o{i}.bin"]\n')
    (path / "zcas.toml").write_text("\n".join(lines))


def _entries(url: str) -> dict[str, tuple[str, dict]]:
    """(cache key, run record as stored) of each action cache entry, by the step it ran."""
    b = ObstoreBackend(url)
    return {rec["step"]: (key, json.loads(raw)) for key in actions.keys(b)
            for _, rec, raw, _ in [actions.decode(key, actions.get(b, key))]}


def _pushed(tmp_path, first: str = ""):
    """A chain run in repository ``a`` and pushed to a file:// remote: (url, a, entries)."""
    url = f"file://{tmp_path / 'remote'}"
    a = _repo(tmp_path / "a", url)
    _chain(a, first)
    assert run_zcas("run", cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    return url, a, _entries(url)


def test_a_chain_of_remote_hits_is_one_request_for_its_entries_and_restores_the_producers_outputs(tmp_path):
    url, a, entries = _pushed(tmp_path)
    b = _repo(tmp_path / "b", url)
    _chain(b)
    r, requests = _counted(tmp_path, "run", cwd=b)
    assert r.returncode == 0, r
    assert r.stdout.count("cached:") == STEPS and "ran:" not in r.stdout, r.stdout
    for i in range(STEPS):
        assert (b / f"o{i}.bin").read_bytes() == (a / f"o{i}.bin").read_bytes()
    asked = [k for m, k in requests if m == "get_bounded" and k.startswith("ac/")]
    assert asked == [actions.entry_key(entries["s0"][0])], asked  # s0's entry carries the others'
    assert not any(m == "list" for m, _ in requests), requests  # no pack index loaded


def test_an_entry_carries_the_runs_pushed_downstream_of_it():
    """``downstream``: breadth first, the step's own key left out, at most MAX_THEN."""
    def run(key, ins, outs):
        return key, {"inputs": {f"i{n}": x for n, x in enumerate(ins)}, "outputs": {f"o{n}": x for n, x in enumerate(outs)}}

    runs = [run("k0", [], ["a"]), run("k1", ["a"], ["b"]), run("k2", ["a"], ["c"]), run("k3", ["b", "c"], ["d"]),
            run("k0", ["z"], ["a"]), run("k4", ["q"], ["r"])]
    down = actions.downstream(runs)
    assert down[0] == [1, 2, 3] and down[1] == [3] and down[3] == [] and down[5] == []
    assert down[4] == [1, 2, 3]  # another run of key k0: itself never carried
    fan = [run("root", [], ["x"])] + [run(f"k{n}", ["x"], [f"y{n}"]) for n in range(3 * actions.MAX_THEN)]
    assert len(actions.downstream(fan)[0]) == actions.MAX_THEN


def test_attack_hostile_carried_entries_are_dropped_and_each_key_asked_for_itself(tmp_path):
    """Carried entries that do not check (another key's run, not a run, bad key, not a list
    item, a failed run) are dropped one by one; the chain still hits, asking each key."""
    url, a, entries = _pushed(tmp_path)
    b_end = ObstoreBackend(url)
    k0, rec0 = entries["s0"]
    found = actions.decode_all(k0, actions.get(b_end, k0))
    assert [t[2]["step"] for t in found.then] == [f"s{i}" for i in range(1, STEPS)]
    k2, rec2 = entries["s2"]
    bad = [actions.Then(entries["s1"][0], serde.canonical(rec2), {}),  # s2's run under s1's key
           actions.Then(k2, serde.canonical(dict(rec2, status="failed")), {})]
    body = json.loads(codec.decode(actions.entry_key(k0), actions.encode(serde.canonical(rec0), {}, bad))[1])
    body["then"] += ["junk", {"key": "x" * 64, "run": "{}"}, {"key": k2, "run": 5}]
    b_end.delete(actions.entry_key(k0))
    b_end.put(actions.entry_key(k0), codec.encode(codec.KIND_RECORD, json.dumps(body).encode()))
    assert actions.decode_all(k0, actions.get(b_end, k0)).then == []

    b = _repo(tmp_path / "b", url)
    _chain(b)
    r, requests = _counted(tmp_path, "run", cwd=b)
    assert r.returncode == 0 and r.stdout.count("cached:") == STEPS, r
    for i in range(STEPS):
        assert (b / f"o{i}.bin").read_bytes() == (a / f"o{i}.bin").read_bytes()
    asked = collections.Counter(k for m, k in requests if m == "get_bounded" and k.startswith("ac/"))
    assert asked[actions.entry_key(k0)] == 1 and asked[actions.entry_key(entries["s1"][0])] == 1, asked


def test_remote_gc_drops_carried_entries_of_runs_it_forgets(tmp_path):
    from zcas.remotegc import RemoteGcReport, _tidy_actions
    from zcas.repository import Repository

    url, a, entries = _pushed(tmp_path)
    b_end = ObstoreBackend(url)
    k0 = entries["s0"][0]
    ids = {step: actions.decode_all(k, actions.get(b_end, k)).run_id for step, (k, _) in entries.items()}
    keep = {rid: b"" for step, rid in ids.items() if step != "s3"}  # s3's run forgotten
    _tidy_actions(Repository(a).remote_for(), keep, RemoteGcReport(None, [], []), dry_run=False)
    assert [t[2]["step"] for t in actions.decode_all(k0, actions.get(b_end, k0)).then] == ["s1", "s2", "s4", "s5"]
    assert actions.get(b_end, entries["s3"][0]) is None


def test_a_chain_of_misses_asks_each_key_once(tmp_path):
    url = f"file://{tmp_path / 'remote'}"
    b = _repo(tmp_path / "b", url)
    _chain(b)
    r, requests = _counted(tmp_path, "run", cwd=b)
    assert r.returncode == 0 and r.stdout.count("ran:") == STEPS, r
    assert collections.Counter(m for m, _ in requests) == {"get_bounded": STEPS}, requests


def test_attack_hostile_entry_for_a_guessed_key_is_never_used(tmp_path):
    """The remote's entry for s0 names an output it does not hold, and the remote holds an
    entry for the key s1 would have with that output, naming other bytes. The lookahead asks
    for that key and fetches those bytes; s0 cannot be restored, so it reruns, s1's real key
    differs, and s1 runs on what s0 made: the guess decides nothing."""
    url, a, entries = _pushed(tmp_path, first="sleep 1; ")  # (time for the guesses ahead of s0 when it reruns below)
    b_end = ObstoreBackend(url)
    ghost = "ab" * 32  # an id the remote does not hold
    k0, rec0 = entries["s0"]
    lie0 = serde.canonical(dict(rec0, outputs={"o0.bin": ghost}))
    b_end.delete(actions.entry_key(k0))
    actions.put(b_end, k0, lie0, {})
    _, rec1 = entries["s1"]
    evil = entries["s4"][1]["outputs"]["o4.bin"]  # bytes the remote holds, not what s1 makes
    comps = dict(rec1["key_components"], **{"input:o0.bin": ghost})
    forged = dict(rec1, key_components=comps, cache_key=key_of(comps).hex(), outputs={"o1.bin": evil})
    actions.put(b_end, forged["cache_key"], serde.canonical(forged), {})

    b = _repo(tmp_path / "b", url)
    _chain(b, first="sleep 1; ")
    r, requests = _counted(tmp_path, "run", cwd=b)
    assert r.returncode == 0, r
    asked = [k for m, k in requests if m == "get_bounded"]
    assert actions.entry_key(forged["cache_key"]) in asked  # the guess was made (and fetched)
    assert "ran: s0" in r.stdout and "ran: s1" in r.stdout, r.stdout
    o0 = (b / "o0.bin").read_bytes()
    assert o0 != (a / "o0.bin").read_bytes()  # s0 ran here: fresh random bytes
    assert (b / "o1.bin").read_bytes() == o0 + b"1\n"  # s1 ran on them, not the forged entry's bytes
    assert json.loads(run_zcas("status", "--json", cwd=b).out)  # the repository reads back


def test_a_diamond_and_a_fan_out_of_remote_hits_restore_every_output(tmp_path):
    """Branches followed on several threads at once (and by the steps' own threads, -j 4)."""
    url = f"file://{tmp_path / 'remote'}"
    lines = ['[steps.a]\ncmd = "head -c 2000 /dev/urandom > a.bin"\noutputs = ["a.bin"]\n']
    for n in range(8):
        lines.append(f'[steps.f{n}]\ncmd = "cat a.bin > f{n}.bin; echo {n} >> f{n}.bin"\ninputs = ["a.bin"]\n'
                     f'outputs = ["f{n}.bin"]\n')
    ins = ", ".join(f'"f{n}.bin"' for n in range(8))
    lines.append(f'[steps.join]\ncmd = "cat f*.bin > all.bin"\ninputs = [{ins}]\noutputs = ["all.bin"]\n')
    a = _repo(tmp_path / "a", url)
    (a / "zcas.toml").write_text("\n".join(lines))
    assert run_zcas("run", cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    b = _repo(tmp_path / "b", url)
    (b / "zcas.toml").write_text("\n".join(lines))
    r, requests = _counted(tmp_path, "run", "-j", "4", cwd=b)
    assert r.returncode == 0 and r.stdout.count("cached:") == 10 and "ran:" not in r.stdout, r
    for name in ["a.bin", "all.bin", *(f"f{n}.bin" for n in range(8))]:
        assert (b / name).read_bytes() == (a / name).read_bytes(), name
    asked = collections.Counter(k for m, k in requests if m == "get_bounded" and k.startswith("ac/"))
    assert sum(asked.values()) == 1, asked  # a's entry carries its nine runs downstream


def test_a_step_reading_inside_a_folder_output_hits_without_being_guessed(tmp_path):
    """An input inside a folder another step makes has no id in any record: not guessed
    ahead, asked by the step itself."""
    url = f"file://{tmp_path / 'remote'}"
    toml = ('[steps.mk]\ncmd = "mkdir -p d && head -c 500 /dev/urandom > d/x.bin"\noutputs = ["d"]\n'
            '[steps.use]\ncmd = "cat d/x.bin d/x.bin > y.bin"\ninputs = ["d/x.bin"]\noutputs = ["y.bin"]\n')
    a = _repo(tmp_path / "a", url)
    (a / "zcas.toml").write_text(toml)
    assert run_zcas("run", cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    b = _repo(tmp_path / "b", url)
    (b / "zcas.toml").write_text(toml)
    r = run_zcas("run", cwd=b)
    assert r.code == 0 and r.out.count("cached:") == 2, r
    assert (b / "y.bin").read_bytes() == (a / "y.bin").read_bytes() == (a / "d/x.bin").read_bytes() * 2


FLOW = '''
import zcas

@zcas.step
def one(n: int) -> list:
    return list(range(n))

@zcas.step
def two(xs: list) -> list:
    return [x * 2 for x in xs]

@zcas.step
def three(xs: list) -> int:
    return sum(xs)

@zcas.pipeline
def main(n: int = 10):
    return three(two(one(n)))
'''


def test_a_python_pipelines_chain_of_remote_hits_is_one_request_for_its_entries(tmp_path):
    """Python steps are not planned ahead (their keys need the values), but the entry of the
    first carries the others: the later lookups are answered without a request."""
    url = f"file://{tmp_path / 'remote'}"
    a = _repo(tmp_path / "a", url)
    (a / "flow.py").write_text(FLOW)
    assert run_zcas("run", "flow.py:main", cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    b = _repo(tmp_path / "b", url)
    (b / "flow.py").write_text(FLOW)
    r, requests = _counted(tmp_path, "run", "--json", "flow.py:main", cwd=b)
    assert r.returncode == 0 and r.stderr.count("cached:") == 3, r
    def outputs(repo):
        return {x["step"]: x["outputs"] for x in json.loads(run_zcas("log", "--json", cwd=repo).out)}

    assert outputs(b)["flow.three"] == outputs(a)["flow.three"]
    assert [m for m, k in requests if k.startswith("ac/")] == ["get_bounded"], requests


def test_attack_carried_entries_past_their_byte_bound_and_entries_inflating_past_theirs_are_not_kept(tmp_path):
    """A small entry may not make a command hold more than what a push writes: carried
    records past THEN_BYTES are dropped, and an entry claiming to inflate past MAX_ENTRY is
    no entry (refused before it is inflated)."""
    url, _, entries = _pushed(tmp_path)
    k0, rec0 = entries["s0"]
    big = [actions.Then(k, serde.canonical(dict(rec, params={"pad": "x" * (actions.THEN_BYTES // 3)})), {})
           for step, (k, rec) in sorted(entries.items()) if step != "s0"]
    data = actions.encode(serde.canonical(rec0), {}, big)
    kept = actions.decode_all(k0, data).then
    assert 0 < len(kept) < len(big) and sum(len(t[3]) for t in kept) <= actions.THEN_BYTES
    bomb = codec.encode(codec.KIND_RECORD, b"\0" * (actions.MAX_ENTRY + 1))
    assert len(bomb) < 1 << 20  # small on the remote
    with pytest.raises(serde.RecordError, match="inflates to"):
        actions.decode_all(k0, bomb)


def test_a_remote_keeps_carried_records_up_to_a_bound_for_the_whole_command(tmp_path, monkeypatch):
    from zcas import remotes
    from zcas.repository import Repository

    url, a, entries = _pushed(tmp_path)
    k0, _ = entries["s0"]
    monkeypatch.setattr(remotes, "CARRIED_BYTES", 2 * len(json.dumps(entries["s1"][1])))
    rem = Repository(_repo(tmp_path / "b", url)).remote_for()
    assert rem.lookup(bytes.fromhex(k0)) is not None
    assert 1 <= len(rem._asked) - 1 <= 2  # s0's own answer, and as many carried as fit


def test_stopping_what_was_asked_ahead_drops_the_fetches_not_started(tmp_path, monkeypatch):
    """The end of a run (or an interrupt) waits for the fetches under way, not for every
    output guessed ahead; whoever waited on a dropped one is told, never left waiting."""
    import threading
    import time

    from zcas.repository import Repository

    url = f"file://{tmp_path / 'remote'}"
    rem = Repository(_repo(tmp_path / "b", url)).remote_for()
    fetched: list[bytes] = []
    started = threading.Event()

    def slow(oids, hints=True):
        started.set()
        time.sleep(0.3)
        fetched.extend(oids)
        return len(oids)

    monkeypatch.setattr(rem, "_fetch", slow)
    for i in range(100):
        rem.prefetch([i.to_bytes(32, "big")])
    assert started.wait(5)
    t = time.perf_counter()
    rem.stop_ahead()
    assert time.perf_counter() - t < 1.5 and len(fetched) <= 2 * 16  # the batches under way, no more
    waiting = rem._fetching[(99).to_bytes(32, "big")]
    assert waiting.done() and waiting.exception() is not None


def test_an_entry_remote_gc_rewrites_for_its_hints_keeps_what_it_carries(tmp_path):
    """After a gc --remote moved a run's outputs, its entry is written again with fresh
    hints, and still carries the entries of the kept runs downstream (with fresh hints too)."""
    from zcas.remotegc import _write_actions
    from zcas.repository import Repository

    url, a, entries = _pushed(tmp_path)
    b_end = ObstoreBackend(url)
    k0 = entries["s0"][0]
    found = actions.decode_all(k0, actions.get(b_end, k0))
    assert len(found.then) == STEPS - 1
    decoded = {k: actions.decode_all(k, actions.get(b_end, k)) for k, _ in entries.values()}
    keep = {f.run_id: (f.raw, f.record) for k, f in decoded.items() if f.record["step"] != "s3"}
    packs = {k: {e.pack for e in f.where.values()} for k, f in decoded.items()}
    _write_actions(Repository(a).remote_for(), keep, packs, removed={e.pack for e in found.where.values()})
    after = actions.decode_all(k0, actions.get(b_end, k0))
    assert [t[2]["step"] for t in after.then] == ["s1", "s2", "s4", "s5"]  # s3's run forgotten meanwhile
    assert all(t[4] for t in after.then)  # each with where its outputs are now

"""Issue 19: a pipeline's remote lookups asked ahead of its steps (runners/lookahead.py).

A chain of hits asks each key once and restores what the producer made; a guess made ahead
is only ever a request answered sooner, never a result: a hostile entry for a key the
lookahead guessed, but that the step does not reach, changes nothing."""

from __future__ import annotations

import collections
import json

from tests.conftest import run_zcas
from tests.runners.test_action_cache import _counted, _repo
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


def test_a_chain_of_remote_hits_asks_each_key_once_and_restores_the_producers_outputs(tmp_path):
    url = f"file://{tmp_path / 'remote'}"
    a = _repo(tmp_path / "a", url)
    _chain(a)
    assert run_zcas("run", cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    b = _repo(tmp_path / "b", url)
    _chain(b)
    r, requests = _counted(tmp_path, "run", cwd=b)
    assert r.returncode == 0, r
    assert r.stdout.count("cached:") == STEPS and "ran:" not in r.stdout, r.stdout
    for i in range(STEPS):
        assert (b / f"o{i}.bin").read_bytes() == (a / f"o{i}.bin").read_bytes()
    asked = collections.Counter(k for m, k in requests if m == "get_bounded" and k.startswith("ac/"))
    assert len(asked) == STEPS and set(asked.values()) == {1}, asked  # every key asked, each once
    assert not any(m == "list" for m, _ in requests), requests  # no pack index loaded


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
    url = f"file://{tmp_path / 'remote'}"
    a = _repo(tmp_path / "a", url)
    _chain(a, first="sleep 1; ")  # (time for the guesses ahead of s0 when it reruns below)
    assert run_zcas("run", cwd=a).code == 0
    assert run_zcas("push", cwd=a).code == 0
    b_end = ObstoreBackend(url)
    entries = _entries(url)
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

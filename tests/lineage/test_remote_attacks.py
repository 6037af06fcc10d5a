"""A hostile remote's lineage segments: each malformed segment or record is skipped with one
warning (remembered, not repeated), the good records beside it are indexed, and nothing a
remote sends can stop a pull, poison the cache, or write outside the repository."""

import json
import os
import struct
from typing import Any

import pytest
import zstandard

from zcas.cas import codec
from zcas.cas.memory import MemoryBackend
from zcas.lineage import remote as remote_mod
from zcas.lineage import serde
from zcas.lineage.keyhash import key_of
from zcas.lineage.records import Run
from zcas.lineage.redact import env_digest
from zcas.lineage.remote import RemoteLineage, _pack, _seg_key, default_warn
from zcas.lineage.store import Lineage

OUT = "cd" * 32


def run(i: int, **kw) -> Run:
    comps = {"schema": "zcas-key-1", "argv": json.dumps([f"step{i}"]), "cwd": ""}
    fields: dict[str, Any] = dict(step=f"s{i}", kind="command", status="ran", cache_key=key_of(comps).hex(), key_components=comps,
                  cmd=[f"step{i}"], outputs={f"out{i}.txt": OUT}, started_ns=10**18 + i, ended_ns=10**18 + i + 1)
    fields.update(kw)
    return Run(**fields)


def rec(i: int, **kw) -> bytes:
    return serde.encode(run(i, **kw))


def hostile(i: int, **fields) -> bytes:
    """A record of run i with fields replaced by anything (in canonical form, so only the fields are wrong)."""
    d = json.loads(rec(i))
    d.update(fields)
    return serde.canonical(d)


def put_segment(backend, records: list[bytes]) -> str:
    payload = _pack(records)
    key = _seg_key(payload)
    backend.put(key, codec.encode(codec.KIND_RECORD, payload))
    return key


@pytest.fixture
def lin(repo):
    lin = Lineage(repo)
    yield lin
    lin.close()


@pytest.fixture
def remote(lin, tmp_path):
    warnings: list[str] = []
    r = RemoteLineage(lin, MemoryBackend(), str(tmp_path / "state"), warn=warnings.append)
    setattr(r, "warnings", warnings)  # noqa: B010 - a test's own attribute: what was warned
    return r


def cached(lin, i: int) -> bool:
    return lin.graph.cache_get(bytes.fromhex(run(i).cache_key)) is not None


def test_good_segment_is_indexed(remote, lin):
    put_segment(remote.backend, [rec(1), rec(2)])
    assert remote.pull() == 2
    assert cached(lin, 1) and cached(lin, 2) and remote.warnings == []
    assert remote.pull() == 0


def test_attack_segment_with_malformed_record_is_skipped(remote, lin):
    key = put_segment(remote.backend, [rec(1), b"not json", rec(2), b"[" * 100_000])
    assert remote.pull() == 2
    assert cached(lin, 1) and cached(lin, 2)
    assert len(remote.warnings) == 1
    w = remote.warnings[0]
    assert key in w and "2 of 4 run records skipped" in w and "not valid JSON" in w and "\n" not in w
    assert remote.pull() == 0 and len(remote.warnings) == 1  # remembered: warned once
    assert len(remote.remote_run_ids()) == 2


@pytest.mark.parametrize("fields", [
    {"started_ns": "5"}, {"started_ns": 5.5}, {"exit_status": True}, {"inputs": [["a", OUT]]},
    {"cmd": "rm -rf /"}, {"outputs": {"o": 5}}, {"step": None}, {"materializers": {"o": "pickle"}},
    {"status": "exploded"}, {"surprise": 1}, {"schema": "1"},
])
def test_attack_record_with_wrong_types_is_skipped(remote, lin, fields):
    put_segment(remote.backend, [hostile(1, **fields), rec(2)])
    assert remote.pull() == 1
    assert not cached(lin, 1) and cached(lin, 2)
    assert len(remote.warnings) == 1 and "1 of 2 run records skipped" in remote.warnings[0]


def test_attack_record_with_path_as_output_id_is_skipped(remote, lin, repo_dir):
    put_segment(remote.backend, [hostile(1, outputs={"out.txt": "../../etc/passwd"})])
    before = sorted(os.listdir(repo_dir.parent))
    assert remote.pull() == 0
    assert lin.graph.count("runs") == 0 and not cached(lin, 1)
    assert "outputs" in remote.warnings[0] and "is not an id" in remote.warnings[0]
    assert sorted(os.listdir(repo_dir.parent)) == before


def test_attack_record_whose_cache_key_does_not_match_its_components_is_skipped(remote, lin):
    """Cache poisoning: a record claiming the key of a victim's step for outputs of its choosing."""
    victim_key = run(1).cache_key
    forged = hostile(2, cache_key=victim_key, outputs={"out1.txt": "ee" * 32})
    put_segment(remote.backend, [forged])
    assert remote.pull() == 0
    assert lin.graph.cache_get(bytes.fromhex(victim_key)) is None
    assert "does not match its key components" in remote.warnings[0]


@pytest.mark.parametrize("payload", [
    struct.pack("<Q", 1 << 62) + b"{}",  # a length prefix far past the end (and past any limit)
    struct.pack("<Q", 1000) + b"{}",  # past the end
    _pack([b"{}"]) + b"\x01\x02\x03",  # a truncated length prefix
])
def test_attack_segment_with_huge_or_lying_length_prefix_is_skipped(remote, lin, payload):
    good = rec(1)
    payload = _pack([good]) + payload  # the good record before the bad frame is not indexed either
    key = _seg_key(payload)
    remote.backend.put(key, codec.encode(codec.KIND_RECORD, payload))
    assert remote.pull() == 0
    assert lin.graph.count("runs") == 0
    assert len(remote.warnings) == 1 and key in remote.warnings[0] and "skipped" in remote.warnings[0]
    assert remote.pull() == 0 and len(remote.warnings) == 1


def test_attack_segment_under_wrong_name_is_skipped(remote, lin):
    payload = _pack([rec(1)])
    wrong = f"lineage/seg-{'00' * 32}"
    remote.backend.put(wrong, codec.encode(codec.KIND_RECORD, payload))
    remote.backend.put("lineage/seg-x.y", codec.encode(codec.KIND_RECORD, payload))
    # a key the backend itself would refuse, as an S3 listing can hold: never read, only named
    remote.backend._data["lineage/seg-../../ABC"] = (codec.encode(codec.KIND_RECORD, payload), 0.0)
    assert remote.pull() == 0 and lin.graph.count("runs") == 0
    assert len(remote.warnings) == 3
    assert any(wrong in w and "does not match its name" in w for w in remote.warnings)
    assert sum("its name is not t-<16 hex digits>-<64 hex digits>" in w for w in remote.warnings) == 2
    assert remote.pull() == 0 and len(remote.warnings) == 3  # remembered, whatever the name
    state = os.listdir(remote.state_dir)
    assert all(n.startswith("rejected-") and "/" not in n and ".." not in n for n in state)


@pytest.mark.parametrize("data", [
    b"garbage",
    b"",
    codec.HEADER.pack(codec.KIND_RECORD, codec.CODEC_ZSTD, 100) + b"not a zstd frame",
    codec.HEADER.pack(codec.KIND_RECORD, codec.CODEC_RAW, 100) + b"short",
    codec.encode(codec.KIND_BLOB, _pack([b"{}"])),
])
def test_attack_segment_that_does_not_decode_is_skipped(remote, lin, data):
    key = f"lineage/seg-{remote_mod.hash_bytes(data).hex()}"
    remote.backend.put(key, data)
    assert remote.pull() == 0
    assert len(remote.warnings) == 1 and key in remote.warnings[0]


def test_attack_segment_too_large_is_skipped_before_it_is_read(remote, lin, monkeypatch):
    monkeypatch.setattr(remote_mod, "MAX_SEGMENT", 1 << 20)
    payload = _pack([rec(1)]) + _pack([b"x" * (2 << 20)])
    key = _seg_key(payload)
    remote.backend.put(key, codec.encode_raw(codec.KIND_RECORD, payload))
    reads = []
    real = remote.backend.get_range

    def get_range(*a):
        reads.append(a)
        return real(*a)

    remote.backend.get_range = get_range
    assert remote.pull() == 0
    assert reads == [] and "more than the limit" in remote.warnings[0]


def test_attack_zstd_bomb_segment_is_refused_by_its_declared_size(remote, lin, monkeypatch):
    monkeypatch.setattr(remote_mod, "MAX_SEGMENT", 1 << 20)
    raw = b"\0" * (64 << 20)
    bomb = codec.HEADER.pack(codec.KIND_RECORD, codec.CODEC_ZSTD, len(raw)) + zstandard.ZstdCompressor().compress(raw)
    assert len(bomb) < 1 << 20
    key = f"lineage/seg-{remote_mod.hash_bytes(raw).hex()}"
    remote.backend.put(key, bomb)
    assert remote.pull() == 0
    assert "declares" in remote.warnings[0] and "more than the limit" in remote.warnings[0]


def test_attack_segment_of_newer_schema_is_not_remembered(remote, lin):
    d = json.loads(rec(1))
    d["schema"] = 99
    put_segment(remote.backend, [serde.canonical(d), rec(2)])
    assert remote.pull() == 1 and cached(lin, 2)
    assert "newer zcas" in remote.warnings[0]
    assert remote.pull() == 0 and len(remote.warnings) == 2  # read again: an upgraded zcas would index it


def test_attack_warning_text_from_remote_is_escaped(capsys):
    default_warn("remote lineage segment lineage/seg-x\x1b]0;pwned\x07: bad \u202e")
    err = capsys.readouterr().err
    assert err.startswith("zcas: warning: ") and err.count("\n") == 1
    assert "\x1b" not in err and "\x07" not in err and "\u202e" not in err


def test_attack_record_with_escape_sequences_in_reason_is_escaped_in_warning(remote, lin, capsys):
    put_segment(remote.backend, [hostile(1, step="x\x1b[2J", kind="shell\x1b]0;t\x07")])
    remote.warn = default_warn
    remote.pull()
    err = capsys.readouterr().err
    assert "zcas: warning:" in err and "\x1b" not in err and "\x07" not in err


def test_attack_duplicate_records_in_a_segment_are_indexed_once(remote, lin):
    put_segment(remote.backend, [rec(1)] * 50)
    assert remote.pull() == 1 and lin.graph.count("runs") == 1


def test_attack_file_remote_with_hostile_segments_pull_keeps_working(repo, lin, tmp_path):
    """The same over a file:// remote (the local backend), several hostile segments at once."""
    from zcas.cas.local import LocalBackend

    backend = LocalBackend(str(tmp_path / "remote"))
    put_segment(backend, [rec(1), hostile(2, outputs={"x": "../../etc/passwd"})])
    put_segment(backend, [hostile(3, cache_key="ab" * 32)])
    backend.put(f"lineage/seg-{'11' * 32}", b"\xff" * 100)
    put_segment(backend, [rec(4)])
    warnings: list[str] = []
    r = RemoteLineage(lin, backend, str(tmp_path / "state"), warn=warnings.append)
    assert r.pull() == 2
    assert cached(lin, 1) and cached(lin, 4) and not cached(lin, 3)
    assert len(warnings) == 3
    backend.close()


# -- push --------------------------------------------------------------------------------------


def test_push_then_pull_in_another_repository(lin, tmp_path, repo_dir):
    from zcas.cas.repo import Repo, init

    shared = MemoryBackend()
    lin.record_runs([run(1), run(2)])
    a = RemoteLineage(lin, shared, str(tmp_path / "sa"), warn=pytest.fail)
    assert a.push() == 2 and a.push() == 0
    init(str(tmp_path / "b"))
    repo_b = Repo(str(tmp_path / "b"))
    lin_b = Lineage(repo_b)
    try:
        b = RemoteLineage(lin_b, shared, str(tmp_path / "sb"), warn=pytest.fail)
        assert b.pull() == 2 and cached(lin_b, 1)
        assert b.push() == 0
    finally:
        lin_b.close()
        repo_b.db.abort()


def test_attack_push_never_sends_a_record_holding_a_plaintext_env_value(lin, tmp_path):
    """A record of an older zcas holds the value itself (a secret): it must never leave."""
    old = run(1, env={"TOKEN": "s3cret-value"},
              key_components={**run(1).key_components, "env:TOKEN": json.dumps("s3cret-value")})
    old = Run(**{**serde.unstructure(old), "cache_key": key_of(old.key_components).hex()})
    old_comp_only = run(3, key_components={**run(3).key_components, "env:TOKEN": json.dumps("s3cret-value")})
    old_comp_only = Run(**{**serde.unstructure(old_comp_only), "cache_key": key_of(old_comp_only.key_components).hex()})
    comps = {**run(2).key_components, "env:TOKEN": json.dumps(env_digest("s3cret-value"))}
    new = run(2, env={"TOKEN": env_digest("s3cret-value"), "UNSET": None}, key_components=comps,
              cache_key=key_of(comps).hex())
    lin.record_runs([old, new, old_comp_only])
    backend = MemoryBackend()
    warnings: list[str] = []
    r = RemoteLineage(lin, backend, str(tmp_path / "state"), warn=warnings.append)
    assert r.push() == 1
    assert r.last_push_skipped == {"plaintext_env": 2, "refused": 0}
    assert len(warnings) == 1 and "2 run records not pushed" in warnings[0] and "s3cret" not in warnings[0]
    for key in backend.list():
        assert b"s3cret" not in codec.decode(key, backend.get(key))[1]
    assert r.push() == 0 and len(warnings) == 2  # still not pushed, and said again


def test_push_skips_records_a_remote_would_refuse(lin, tmp_path):
    lin.record_runs([run(1, cache_key="ab" * 32), run(2)])
    warnings: list[str] = []
    r = RemoteLineage(lin, MemoryBackend(), str(tmp_path / "state"), warn=warnings.append)
    assert r.push() == 1 and r.last_push_skipped == {"plaintext_env": 0, "refused": 1}
    assert "1 run record not pushed" in warnings[0]


def test_push_splits_large_pushes_into_segments(lin, tmp_path, monkeypatch, repo):
    monkeypatch.setattr(remote_mod, "SEGMENT_TARGET", 2000)
    lin.record_runs([run(i) for i in range(20)])
    backend = MemoryBackend()
    r = RemoteLineage(lin, backend, str(tmp_path / "state"), warn=pytest.fail)
    assert r.push() == 20
    segs = list(backend.list("lineage/"))
    assert len(segs) > 3
    for key in segs:
        assert len(codec.decode(key, backend.get(key))[1]) < 2000 + 1500


# -- through the command line, over a file:// remote -------------------------------------------


def test_attack_cli_pull_of_hostile_segments_warns_once_and_succeeds(repo_dir, tmp_path):
    from tests.conftest import run_zcas
    from zcas.cas.objstore import ObstoreBackend

    url = f"file://{tmp_path}/remote"
    backend = ObstoreBackend(url)
    key = put_segment(backend, [rec(1), b"not json", hostile(2, outputs={"o": "../../etc/passwd"}),
                                hostile(3, step="x\x1b[2J", cache_key="ab" * 32)])
    bad = struct.pack("<Q", 1 << 62) + b"{}"
    backend.put(_seg_key(bad), codec.encode(codec.KIND_RECORD, bad))
    assert run_zcas("remote", "add", "origin", url, cwd=repo_dir).code == 0
    r = run_zcas("pull", cwd=repo_dir)
    assert r.code == 0 and "Traceback" not in r.err, r
    warnings = r.err.splitlines()
    assert len(warnings) == 2 and all(w.startswith("zcas: warning: ") for w in warnings), r
    assert any(key in w and "3 of 4" in w for w in warnings) and "\x1b" not in r.err
    assert "1 new run record" in r.out
    r = run_zcas("pull", cwd=repo_dir)
    assert r.code == 0 and r.err == "", r
    log = run_zcas("log", cwd=repo_dir)
    assert log.code == 0 and log.out.count("\n") == 1 and "s1" in log.out


def test_attack_cli_push_never_sends_plaintext_env_and_says_so(repo_dir, tmp_path):
    from tests.conftest import run_zcas
    from zcas.cas.repo import Repo

    repo = Repo(str(repo_dir))
    lin = Lineage(repo)
    lin.record_run(run(1, env={"TOKEN": "s3cret-value"}, key_components={}, cache_key=""))
    lin.record_run(run(2))
    lin.close()
    repo.backend.close()
    url = f"file://{tmp_path}/remote"
    assert run_zcas("remote", "add", "origin", url, cwd=repo_dir).code == 0
    r = run_zcas("push", cwd=repo_dir)
    assert r.code == 0, r
    assert r.err.startswith("zcas: warning: 1 run record not pushed") and "s3cret" not in r.err + r.out, r
    for dirpath, _, files in os.walk(tmp_path / "remote"):
        for f in files:
            data = open(os.path.join(dirpath, f), "rb").read()
            if f.startswith("seg-"):
                data = codec.decode(f, data)[1]
            assert b"s3cret" not in data


def test_attack_secret_run_ids_name_the_records_a_pack_push_must_leave_out(lin):
    old = lin.record_run(run(1, env={"TOKEN": "s3cret-value"}))
    new = lin.record_run(run(2, env={"TOKEN": env_digest("s3cret-value"), "U": None}))
    assert remote_mod.secret_run_ids(lin) == {old}
    assert new not in remote_mod.secret_run_ids(lin)


def test_attack_key_with_control_characters_reaches_any_warn_callback_escaped(remote, lin):
    remote.backend._data["lineage/seg-\x1b]0;pwned\x07\n"] = (b"x", 0.0)
    assert remote.pull() == 0
    assert len(remote.warnings) == 1
    assert "\x1b" not in remote.warnings[0] and "\n" not in remote.warnings[0] and "\\x1b" in remote.warnings[0]

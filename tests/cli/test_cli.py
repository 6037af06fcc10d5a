"""The zcas command as users and scripts see it: output formats, exit codes, one-line errors."""

import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys

import pytest
from blake3 import blake3

from tests.conftest import assert_one_line_error, run_zcas

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_version(zcas):
    from zcas import __version__

    r = zcas("--version")
    assert r.code == 0 and r.out.strip() == f"zcas {__version__}"


def _commands():
    from zcas.cli import cli

    return sorted(cli.commands)


@pytest.mark.parametrize("cmd", _commands())
def test_every_command_has_help_and_docs(cmd):
    from zcas.cli import cli

    assert cli.commands[cmd].help and len(cli.commands[cmd].help.strip()) > 10
    r = run_zcas(cmd, "--help")
    assert r.code == 0 and "Usage: zcas" in r.out
    docs = open(os.path.join(ROOT, "docs", "cli.md")).read()
    assert f"## zcas {cmd}" in docs, f"docs/cli.md lacks a section for zcas {cmd}"


@pytest.mark.parametrize("cmd", [["add", "x"], ["cat", "abcd"], ["ls", "abcd"], ["tags"], ["fsck"], ["gc"], ["du"],
                                 ["checkout", "abcd", "d"], ["tag", "n", "abcd"]])
def test_outside_a_repository(tmp_path, cmd):
    r = run_zcas(*cmd, cwd=tmp_path)
    assert_one_line_error(r, "not a zcas repository", "zcas init", code=1)


def test_init_and_reinit(tmp_path, zcas):
    r = zcas("init", str(tmp_path / "r"))
    assert r.code == 0 and "Initialized empty" in r.out
    assert (tmp_path / "r" / ".zcas" / "config.toml").is_file()
    r = zcas("init", str(tmp_path / "r"))
    assert r.code == 0 and "Reinitialized" in r.out


def test_add_prints_b3sum_and_path(repo_dir, zcas):
    (repo_dir / "a.csv").write_bytes(b"x,y\n1,2\n")
    big = os.urandom(3 << 20)
    (repo_dir / "big.bin").write_bytes(big)
    r = zcas("add", "a.csv", "big.bin", cwd=repo_dir)
    assert r.code == 0, r
    small = blake3(b"x,y\n1,2\n").hexdigest()
    assert r.out.splitlines() == [
        f"{small}  a.csv",
        f"{blake3(big).hexdigest()}  big.bin",
    ]
    j = json.loads(zcas("add", "--json", "a.csv", cwd=repo_dir).out)
    assert j == [{"id": blake3(b"x,y\n1,2\n").hexdigest(), "path": "a.csv", "kind": "file"}]


def test_cat_ls_checkout_roundtrip(repo_dir, zcas):
    d = repo_dir / "data"
    (d / "sub").mkdir(parents=True)
    (d / "x.txt").write_text("hello\n")
    (d / "sub" / "big").write_bytes(os.urandom(2 << 20))
    os.symlink("x.txt", d / "ln")
    tree = zcas("add", "data", cwd=repo_dir).out.split()[0]
    fid = blake3(b"hello\n").hexdigest()
    r = zcas("cat", fid[:8], cwd=repo_dir)
    assert r.code == 0 and r.raw == b"hello\n"
    r = zcas("cat", blake3((d / "sub" / "big").read_bytes()).hexdigest(), cwd=repo_dir)
    assert r.raw == (d / "sub" / "big").read_bytes()
    r = zcas("ls", tree[:10], cwd=repo_dir)
    names = [ln.split()[-1] for ln in r.out.splitlines()]
    assert names == ["ln", "sub/", "x.txt"]
    assert r.out.splitlines()[2].split()[:3] == ["file", fid, "6"]
    rows = json.loads(zcas("ls", "-r", "--json", tree, cwd=repo_dir).out)
    assert [row["path"] for row in rows] == ["ln", "sub/", "sub/big", "x.txt"]
    r = zcas("checkout", tree, "out", cwd=repo_dir)
    assert r.code == 0, r
    assert (repo_dir / "out" / "sub" / "big").read_bytes() == (d / "sub" / "big").read_bytes()
    assert os.readlink(repo_dir / "out" / "ln") == "x.txt"


def test_tags(repo_dir, zcas):
    (repo_dir / "f").write_text("v1")
    oid = zcas("add", "f", cwd=repo_dir).out.split()[0]
    assert zcas("tag", "v1", oid[:6], cwd=repo_dir).code == 0
    assert zcas("tags", cwd=repo_dir).out == f"{oid}  v1\n"
    assert zcas("cat", "v1", cwd=repo_dir).raw == b"v1"
    assert json.loads(zcas("tags", "--json", cwd=repo_dir).out) == {"v1": oid}
    (repo_dir / "f").write_text("v2")
    oid2 = zcas("add", "f", cwd=repo_dir).out.split()[0]
    assert_one_line_error(zcas("tag", "v1", oid2, cwd=repo_dir), "already points", "--force")
    assert zcas("tag", "--force", "v1", oid2, cwd=repo_dir).code == 0
    assert zcas("cat", "v1", cwd=repo_dir).raw == b"v2"
    assert zcas("tag", "-d", "v1", cwd=repo_dir).code == 0
    assert zcas("tags", cwd=repo_dir).out == ""


def test_dash_c_and_zcas_dir(repo_dir, tmp_path, zcas):
    (repo_dir / "f").write_text("x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = zcas("-C", str(repo_dir), "add", "f", cwd=elsewhere)
    assert r.code == 0 and r.out.endswith("  f\n")
    r = zcas("tags", cwd=elsewhere, env={"ZCAS_DIR": str(repo_dir)})
    assert r.code == 0
    r = zcas("tags", cwd=elsewhere, env={"ZCAS_DIR": str(repo_dir / ".zcas")})
    assert r.code == 0
    assert_one_line_error(zcas("tags", env={"ZCAS_DIR": str(elsewhere)}), "not a zcas repository")


BAD = [
    (["add", "missing.txt"], "cannot read missing.txt", 1),
    (["cat", "zzzz"], "unknown tag or id: zzzz", 1),
    (["cat", "abc"], "too short", 2),
    (["cat", "0000000000"], "not found", 1),
    (["cat", "g" * 64], "unknown tag or id", 1),
    (["ls", "nosuchtag"], "unknown tag or id: nosuchtag", 1),
    (["checkout", "nosuchtag", "d"], "unknown tag or id", 1),
    (["tag", "bad/name", "abcd"], "invalid tag name", 2),
    (["tag", "deadbeef", "abcd"], "would read as an object id", 2),
    (["gc", "--grace", "soon"], "invalid duration", 2),
]


@pytest.mark.parametrize("args,msg,code", BAD, ids=[" ".join(a) for a, _, _ in BAD])
def test_bad_input_one_line(repo_dir, zcas, args, msg, code):
    assert_one_line_error(zcas(*args, cwd=repo_dir), msg, code=code)


def test_unknown_command_is_usage_error(repo_dir, zcas):
    r = zcas("frobnicate", cwd=repo_dir)
    assert r.code == 2 and "No such command 'frobnicate'" in r.err and "Traceback" not in r.err


def test_ambiguous_prefix(repo_dir, zcas):
    # find two contents whose ids share a 4-hex prefix
    seen = {}
    i = 0
    while True:
        data = str(i).encode()
        p = blake3(data).hexdigest()[:4]
        if p in seen:
            break
        seen[p] = data
        i += 1
    (repo_dir / "a").write_bytes(seen[p])
    (repo_dir / "b").write_bytes(data)
    assert zcas("add", "a", "b", cwd=repo_dir).code == 0
    assert_one_line_error(zcas("cat", p, cwd=repo_dir), "ambiguous", p, code=2)


def test_special_file_refused(repo_dir, zcas):
    d = repo_dir / "d"
    d.mkdir()
    (d / "ok").write_text("x")
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(d / "sock"))
    try:
        r = zcas("add", "d", cwd=repo_dir)
    finally:
        s.close()
    assert_one_line_error(r, "sock", "not a regular file")
    assert zcas("fsck", cwd=repo_dir).out.startswith("checked 0 objects")


def test_checkout_refuses_changed_file(repo_dir, zcas):
    (repo_dir / "f").write_text("mine")
    oid = zcas("add", "f", cwd=repo_dir).out.split()[0]
    (repo_dir / "f").write_text("edited")
    assert_one_line_error(zcas("checkout", oid, "f", cwd=repo_dir), "would overwrite changed file", "--force")
    assert (repo_dir / "f").read_text() == "edited"
    assert zcas("checkout", "--force", oid, "f", cwd=repo_dir).code == 0
    assert (repo_dir / "f").read_text() == "mine"


def _limit_fsize(limit):
    def pre():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return pre


def test_disk_full_leaves_no_partial_object(repo_dir):
    (repo_dir / "big").write_bytes(os.urandom(4 << 20))
    p = subprocess.run(
        [sys.executable, "-m", "zcas", "add", "big"], cwd=repo_dir, capture_output=True, text=True,
        preexec_fn=_limit_fsize(1 << 20),
    )
    assert p.returncode == 1
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert "size limit exceeded" in p.stderr or "no space left" in p.stderr
    packs = repo_dir / ".zcas" / "objects" / "packs"
    assert list(packs.iterdir()) == []
    assert list((repo_dir / ".zcas" / "objects" / "tmp").iterdir()) == []
    assert not (repo_dir / ".zcas" / "history.jsonl").exists()
    r = run_zcas("fsck", cwd=repo_dir)
    assert r.code == 0 and r.out.startswith("checked 0 objects")


def test_fsck_gc_du(repo_dir, zcas):
    (repo_dir / "keep").write_text("keep me" * 100)
    (repo_dir / "drop").write_text("drop me" * 100)
    keep = zcas("add", "keep", cwd=repo_dir).out.split()[0]
    drop = zcas("add", "drop", cwd=repo_dir).out.split()[0]
    r = zcas("fsck", cwd=repo_dir)
    assert r.code == 0 and "0 corrupt, 0 missing, 0 dangling" in r.out
    # forget the history of "drop": its object becomes unreachable
    hist = repo_dir / ".zcas" / "history.jsonl"
    hist.write_text("".join(ln + "\n" for ln in hist.read_text().splitlines() if drop not in ln))
    assert zcas("reindex", cwd=repo_dir).code == 0  # the lineage index follows the history file
    r = zcas("fsck", "--json", cwd=repo_dir)
    assert json.loads(r.out)["dangling"] == [drop]
    assert zcas("gc", cwd=repo_dir).out.startswith("removed 0 objects")  # 14 days of grace
    r = zcas("gc", "--grace", "0", "--dry-run", cwd=repo_dir)
    assert r.out.startswith("would remove 1 objects")
    assert zcas("cat", drop[:8], cwd=repo_dir).code == 0
    r = zcas("gc", "--grace", "0", cwd=repo_dir)
    assert r.out.startswith("removed 1 objects"), r
    assert_one_line_error(zcas("cat", drop[:8], cwd=repo_dir), "not found")
    assert zcas("cat", keep, cwd=repo_dir).raw == b"keep me" * 100
    du = json.loads(zcas("du", "--json", cwd=repo_dir).out)
    assert du["logical_bytes"] == 700 and du["unique_bytes"] == 700 and du["versions"] == 1
    assert du["stored_bytes"] < 700  # compressed


def test_fsck_reports_corruption(repo_dir, zcas):
    (repo_dir / "f").write_bytes(os.urandom(5000))
    oid = zcas("add", "f", cwd=repo_dir).out.split()[0]
    [pack] = [p for p in (repo_dir / ".zcas" / "objects" / "packs").iterdir() if p.suffix == ".pack"]
    data = bytearray(pack.read_bytes())
    data[-10] ^= 0xFF
    pack.write_bytes(bytes(data))
    r = zcas("fsck", cwd=repo_dir)
    assert r.code == 1
    assert re.search(rf"corrupt {oid}: .*hash mismatch", r.out), r
    assert_one_line_error(zcas("cat", oid, cwd=repo_dir), oid, "corrupt")


def test_du_dedup_counts_only_what_recorded_versions_hold(repo_dir, zcas):
    """Run outputs and stored values are objects too, but no recorded version: they must not
    make deduplication look below 1x (issue 13)."""
    (repo_dir / "a.txt").write_bytes(b"same content " * 100)
    (repo_dir / "b.txt").write_bytes(b"same content " * 100)
    assert zcas("add", "a.txt", "b.txt", cwd=repo_dir).code == 0
    r = zcas("run", "-o", "big.bin", "--", "sh", "-c", "head -c 200000 /dev/urandom > big.bin", cwd=repo_dir)
    assert r.code == 0, r
    du = json.loads(zcas("du", "--json", cwd=repo_dir).out)
    assert du["logical_bytes"] == 2600 and du["unique_bytes"] == 1300 and du["dedup_ratio"] == 2.0, du


def test_checkout_says_what_it_left_and_prunes_on_request(repo_dir, zcas):
    """Issue 13: a tree checked out over a folder names the files it did not write."""
    src = repo_dir / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("a")
    (src / "sub" / "b.txt").write_text("b")
    tree = zcas("add", "src", cwd=repo_dir).out.split()[0]
    dest = repo_dir / "dest"
    (dest / "old").mkdir(parents=True)
    (dest / "old" / "x.txt").write_text("x")
    (dest / "stray.txt").write_text("s")
    r = zcas("checkout", tree, "dest", cwd=repo_dir)
    assert r.code == 0 and "left 2 entries the tree does not name" in r.err and "--prune" in r.err, r
    assert (dest / "stray.txt").exists() and (dest / "old" / "x.txt").exists()
    r = zcas("checkout", tree, "dest", "--prune", cwd=repo_dir)
    assert r.code == 0 and "pruned 2 entries" in r.err, r
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == ["a.txt", "sub", "sub/b.txt"]

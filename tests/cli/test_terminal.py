"""Terminal conventions: progress bars only on a terminal (click's), NO_COLOR respected;
shell completion of tags, remotes, steps and stacks for bash, zsh and fish."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

import pytest

from tests.conftest import run_zcas
from zcas.cli import cli
from zcas.cli.complete import WHAT

SGR = re.compile(rb"\x1b\[[0-9;]*m")  # a colour or style escape


def run_tty(args: list[str], cwd, env: dict | None = None) -> tuple[int, bytes]:
    """``zcas ARGS`` with stdout and stderr on a pseudo-terminal; everything it wrote."""
    e = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    e.update({"TERM": "xterm", "COLUMNS": "100"}, **(env or {}))
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.chdir(cwd)
        os.execve(sys.executable, [sys.executable, "-m", "zcas", *args], e)
    out = b""
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        out += data
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), out


@pytest.fixture
def stored(repo_dir):
    data = repo_dir / "data"
    data.mkdir()
    for i in range(50):
        (data / f"f{i}.txt").write_text(f"file {i}\n" * (i + 1))
    assert run_zcas("add", "--tag", "v1", "data", cwd=repo_dir).code == 0
    return repo_dir


@pytest.mark.parametrize("args, label", [(["checkout", "v1", "out"], b"checking out"), (["fsck"], b"verifying objects")])
def test_a_bar_on_a_terminal_and_none_elsewhere(stored, args, label):
    code, out = run_tty(args, stored)
    assert code == 0, out
    assert label in out and re.search(rb"\[#+\]", out), out  # a full bar at the end
    assert SGR.search(out) is None  # a bar, no colours
    if args[0] == "checkout":
        subprocess.run(["rm", "-rf", str(stored / "out")], check=True)
    plain = run_zcas(*args, cwd=stored)  # stderr a pipe: no bar, only the result line
    assert plain.code == 0 and label.decode() not in plain.err and "[" not in plain.err, plain


def test_no_color_and_a_dumb_terminal(stored):
    code, out = run_tty(["fsck"], stored, {"NO_COLOR": "1"})
    assert code == 0 and b"verifying objects" in out and b"\x1b[?25l" not in out  # click draws plainly
    code, out = run_tty(["fsck"], stored, {"TERM": "dumb"})
    assert code == 0 and b"verifying objects" not in out and b"checked" in out


def _complete(shell: str, words: str, cwd) -> list[str]:
    """What the completion script of ``shell`` would offer for ``words`` (click's protocol)."""
    index = str(len(words.split()) - (0 if words.endswith(" ") else 1))
    partial = "" if words.endswith(" ") else words.split()[-1]
    env = dict(os.environ, _ZCAS_COMPLETE=f"{shell}_complete", COMP_WORDS=words,
               COMP_CWORD=partial if shell == "fish" else index)  # fish passes the word, the others its index
    p = subprocess.run([sys.executable, "-m", "zcas"], cwd=cwd, env=env, capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p
    if shell == "bash":
        return [ln.split(",", 1)[1] for ln in p.stdout.splitlines() if ln]
    if shell == "zsh":
        lines = p.stdout.splitlines()
        return [lines[i + 1] for i in range(0, len(lines), 3)]
    return [ln.split(",", 1)[1].split("\t")[0] for ln in p.stdout.splitlines() if ln]


@pytest.fixture
def named(stored):
    (stored / "zcas.toml").write_text('[steps.count]\ncmd = "ls data > n.txt"\ninputs = ["data"]\noutputs = ["n.txt"]\n'
                                      '[steps.copy]\ncmd = "cp n.txt m.txt"\ninputs = ["n.txt"]\noutputs = ["m.txt"]\n')
    assert run_zcas("run", cwd=stored).code == 0
    assert run_zcas("run", "--name", "adhoc", "--", "true", cwd=stored).code == 0
    assert run_zcas("tag", "v2", "v1", cwd=stored).code == 0
    assert run_zcas("remote", "add", "origin", f"file://{stored}/remote", cwd=stored).code == 0
    assert run_zcas("remote", "add", "backup", f"file://{stored}/remote2", cwd=stored).code == 0
    return stored


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_of_the_repository_names(named, shell):
    assert _complete(shell, "zcas checkout ", named) == ["v1", "v2"]
    assert _complete(shell, "zcas cat v2", named) == ["v2"]
    assert _complete(shell, "zcas push ", named) == ["backup", "origin"]
    assert _complete(shell, "zcas log --remote o", named) == ["origin"]
    assert _complete(shell, "zcas why ", named) == ["adhoc", "copy", "count"]
    assert _complete(shell, "zcas run co", named) == ["copy", "count"]
    assert _complete(shell, "zcas stack set ", named) == ["default"]
    assert "checkout" in _complete(shell, "zcas ch", named)  # commands, as click completes them


def test_completion_outside_a_repository_offers_nothing_and_prints_nothing(tmp_path):
    assert _complete("bash", "zcas checkout ", tmp_path) == []
    assert _complete("bash", "zcas why ", tmp_path) == []


def test_every_completed_parameter_exists():
    """A command or option renamed elsewhere would silently lose its completion."""
    for path, pname in WHAT:
        cmd = cli
        for part in path.split():
            cmd = cmd.commands[part]
        assert pname in {p.name for p in cmd.params}, (path, pname)


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_the_completion_scripts_are_click_s(shell):
    p = subprocess.run([sys.executable, "-m", "zcas"], env=dict(os.environ, _ZCAS_COMPLETE=f"{shell}_source"),
                       capture_output=True, text=True)
    assert p.returncode == 0 and "_ZCAS_COMPLETE" in p.stdout


def test_add_draws_a_bar_of_mib_on_a_terminal(repo_dir):
    (repo_dir / "big").mkdir()
    (repo_dir / "big" / "a.bin").write_bytes(os.urandom(3 << 20))
    (repo_dir / "big" / ".zcas").mkdir()  # skipped by add, counted by the quick walk: the bar still completes
    (repo_dir / "big" / ".zcas" / "x").write_bytes(b"y" * (1 << 20))
    code, out = run_tty(["add", "big"], repo_dir)
    assert code == 0, out
    assert out.count(b"adding") >= 2 and b"4/4  MiB" in out and out.rstrip().endswith(b"  big"), out
    assert out.count(b"4/4  MiB") == 1  # completed once
    plain = run_zcas("add", "big", cwd=repo_dir)
    assert plain.code == 0 and plain.err == "", plain

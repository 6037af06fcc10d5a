"""One real repository for the UI tests, built once through the real CLI: a command pipeline
(a CSV through two steps, and a step that fails), a Python pipeline run with three values of
one param (experiments), a versioned and tagged folder with a picture in it, and the runs of
a teammate taken in from a file:// remote (pulled runs)."""

from __future__ import annotations

import base64
import json
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import run_zcas

PIPE = """
[steps.clean]
cmd = "sh -c 'mkdir -p out && head -n 4 data/raw.csv > out/clean.csv'"
inputs = ["data/raw.csv"]
outputs = ["out/clean.csv"]
env = ["UI_TEST_SECRET"]

[steps.count]
cmd = "sh -c 'wc -l < out/clean.csv > out/count.txt'"
inputs = ["out/clean.csv"]
outputs = ["out/count.txt"]

[steps.bad]
cmd = "sh -c 'echo oops >&2; exit 3'"
"""

FLOW = textwrap.dedent('''
    import zcas

    @zcas.step
    def prepare(n: int) -> dict:
        return {"values": list(range(n))}

    @zcas.step
    def train(data: dict, lr: float = 0.1) -> dict:
        return {"loss": sum(data["values"]) * lr}

    @zcas.pipeline
    def main(n: int = 5, lr: float = 0.1):
        return train(prepare(n), lr=lr)
''')

# a 1x1 PNG
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")
SECRET = "s3cr3t-value-never-shown"
CSV = "city,temp\nOslo,3\nLima,19\n<b>Bold</b>,7\nCairo,25\nPerth,21\n"


@dataclass
class Scene:
    root: Path
    mate: Path
    remote_url: str
    runs: list[dict] = field(default_factory=list)  # zcas log --json: newest first

    def run(self, step: str, status: str | None = None, nth: int = 0) -> dict:
        """The nth newest run of ``step`` (with ``status``)."""
        found = [r for r in self.runs if r["step"] == step and (status is None or r["status"] == status)]
        return found[nth]


def _ok(*args: str, cwd: Path, env: dict | None = None) -> str:
    r = run_zcas(*args, cwd=cwd, env=env)
    assert r.code == 0, r
    return r.out


def _runs(cwd: Path) -> list[dict]:
    return json.loads(_ok("log", "--json", cwd=cwd))


@pytest.fixture(scope="session")
def scene(tmp_path_factory) -> Scene:
    return build_scene(tmp_path_factory.mktemp("ui"))


def build_scene(base: Path) -> Scene:
    """The repository the UI tests read (also what tests/ui/screenshots.py shows)."""
    root, mate, remote = base / "main", base / "mate", base / "remote"
    url = f"file://{remote}"
    # the teammate: one command step, pushed
    mate.mkdir()
    _ok("init", cwd=mate)
    (mate / "zcas.toml").write_text('[steps.shout]\ncmd = "sh -c \'tr a-z A-Z < in.txt > loud.txt\'"\n'
                                    'inputs = ["in.txt"]\noutputs = ["loud.txt"]\n')
    (mate / "in.txt").write_text("from a teammate\n")
    _ok("run", cwd=mate)
    _ok("remote", "add", "origin", url, cwd=mate)
    _ok("push", cwd=mate)
    # here
    root.mkdir()
    _ok("init", cwd=root)
    (root / "data").mkdir()
    (root / "data" / "raw.csv").write_text(CSV)
    (root / "data" / "pixel.png").write_bytes(PNG)
    (root / "zcas.toml").write_text(PIPE)
    (root / "flow.py").write_text(FLOW)
    r = run_zcas("run", cwd=root, env={"UI_TEST_SECRET": SECRET})
    assert r.code != 0 and "failed: bad" in r.out, r  # the failing step fails; the others ran
    for lr in ("0.1", "0.2", "0.3"):
        _ok("run", "flow.py:main", "-p", f"lr={lr}", cwd=root)
    _ok("run", "flow.py:main", "-p", "lr=0.2", cwd=root)  # a cache hit
    _ok("add", "--tag", "dataset", "data", cwd=root)
    _ok("remote", "add", "origin", url, cwd=root)
    _ok("pull", cwd=root)
    return Scene(root, mate, url, _runs(root))

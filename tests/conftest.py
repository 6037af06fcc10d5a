"""Shared fixtures: a fresh repository, and running the CLI in-process like a user would."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# Property tests check what is generated, not how fast: on a loaded 2-core machine (CI runs
# the torture tests beside them) generation can be slow, which is no failure of zcas.
from hypothesis import HealthCheck, settings  # noqa: E402

from zcas.cas.repo import Repo, init

settings.register_profile("zcas", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("zcas")

# No test may ever reach a cloud metadata service: if some code path ends up without S3
# credentials, obstore would ask the instance metadata endpoint (169.254.169.254). Point it
# at a closed port on this machine instead, for this process and everything it starts.
os.environ["AWS_METADATA_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


class CliResult:
    def __init__(self, code: int, out: str, err: str, raw: bytes):
        self.code = code
        self.out = out
        self.err = err
        self.raw = raw

    def __repr__(self) -> str:
        return f"CliResult(code={self.code}, out={self.out[:200]!r}, err={self.err[:300]!r})"


def run_zcas(*args: str, cwd: str | os.PathLike | None = None, env: dict | None = None, input: bytes | None = None) -> CliResult:
    """Run the real ``zcas`` entry point in a subprocess (exit codes, stderr, no traceback)."""
    e = dict(os.environ)
    e.pop("ZCAS_DIR", None)
    e.pop("ZCAS_DEBUG", None)
    if env:
        e.update(env)
    p = subprocess.run(
        [sys.executable, "-m", "zcas", *args], cwd=cwd, env=e, capture_output=True, input=input
    )
    return CliResult(p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"), p.stdout)


@pytest.fixture(scope="session")
def s3_endpoint():
    """An S3-compatible server on 127.0.0.1: .ci/run's, or one started for this session."""
    from tests import s3server

    endpoint = os.environ.get("ZCAS_TEST_S3_ENDPOINT")
    proc = None
    if not endpoint:
        proc, endpoint = s3server.start()
    s3server.make_bucket(endpoint)
    yield endpoint
    if proc is not None:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def s3_env(s3_endpoint, monkeypatch):
    """The standard AWS variables pointing at the test server, for this test."""
    from tests import s3server

    for k, v in s3server.env_for(s3_endpoint).items():
        monkeypatch.setenv(k, v)
    return s3server.env_for(s3_endpoint)


@pytest.fixture
def s3_url():
    """A fresh prefix in the test bucket for each test."""
    return f"s3://zcas-test/t-{os.urandom(6).hex()}"


@pytest.fixture
def zcas():
    return run_zcas


@pytest.fixture
def repo_dir(tmp_path):
    init(str(tmp_path))
    return tmp_path


@pytest.fixture
def repo(repo_dir):
    r = Repo(str(repo_dir))
    yield r
    r.db.abort()
    r.backend.close()


def assert_one_line_error(res: CliResult, *fragments: str, code: int | None = None) -> None:
    """A failure the way users must see it: non-zero, one line on stderr, no traceback."""
    assert res.code != 0, res
    if code is not None:
        assert res.code == code, res
    lines = [ln for ln in res.err.splitlines() if ln.strip()]
    assert len(lines) == 1, res
    assert "Traceback" not in res.err
    for f in fragments:
        assert f in lines[0], res

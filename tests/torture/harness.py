"""Shared by the torture tests: how many trials, and checks every trial must pass."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

TRIALS = int(os.environ.get("ZCAS_TORTURE_TRIALS", "20"))
SECONDS = float(os.environ.get("ZCAS_TORTURE_SECONDS", "30"))
STATS: dict[str, dict[str, int]] = {}


def note(kind: str, **counts: int) -> None:
    s = STATS.setdefault(kind, {})
    for k, v in counts.items():
        s[k] = s.get(k, 0) + v


def env() -> dict:
    e = dict(os.environ)
    e.pop("ZCAS_DIR", None)
    e.pop("ZCAS_DEBUG", None)
    return e


def zcas_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "zcas", *args]


def kill_at(cmd: list[str], cwd, delay: float) -> int:
    """Start ``cmd``, SIGKILL it after ``delay`` seconds (if still running); its exit code."""
    p = subprocess.Popen(cmd, cwd=cwd, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
    return p.wait()


def fsck_clean(cwd) -> dict:
    """fsck reports no corrupt and no missing object (leftovers of killed writers are fine)."""
    p = subprocess.run(zcas_cmd("fsck", "--json"), cwd=cwd, env=env(), capture_output=True, text=True)
    rep = json.loads(p.stdout)
    assert rep["corrupt"] == {} and rep["missing"] == [], rep
    assert p.returncode == 0, p.stderr
    return rep


def ok(cmd: list[str], cwd) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, cwd=cwd, env=env(), capture_output=True, text=True)
    assert p.returncode == 0, (cmd, p.stdout, p.stderr)
    return p

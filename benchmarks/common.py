"""Shared by the benchmark scripts: run zcas the way an installed copy runs."""

from __future__ import annotations

import os
import subprocess
import sys

ZCAS = [sys.executable, "-m", "zcas"]


def bytecode_env() -> dict[str, str]:
    """Compile zcas to bytecode once and let Python use it, as an installed package would.

    Some machines set PYTHONDONTWRITEBYTECODE; without cached bytecode every zcas process
    would recompile its sources (about 50 ms) and the figures would measure that.
    """
    import zcas

    pkgs = {os.path.dirname(zcas.__file__)}
    for sub in ("cas", "lineage", "runners"):
        mod = __import__(f"zcas.{sub}", fromlist=["_"])
        pkgs.add(os.path.dirname(mod.__file__))
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    subprocess.run([sys.executable, "-m", "compileall", "-q", *sorted(pkgs)], check=True, env=env)
    return env


ENV = bytecode_env()


def warm(path: str) -> None:
    """Read every file once so zcas and its baselines all start from a warm page cache."""
    for dirpath, _, files in os.walk(path):
        for n in files:
            with open(os.path.join(dirpath, n), "rb") as f:
                while f.read(1 << 24):
                    pass

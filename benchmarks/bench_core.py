"""Start-up and warm runs, now against an earlier revision in the same run (issue 12).

Run:  python benchmarks/bench_core.py [--baseline REV] [--rounds N]

Measures, alternating between the current tree and zcas as it was at REV (default
ff259c6, the main before the one execution core), each figure a median:
  - `zcas --help` (start-up of the command),
  - a warm `zcas run` of a 20-step zcas.toml chain (every step a hit),
  - a warm `zcas run flow.py:main` of a 3-step Python pipeline (every step a hit).
Prints both figures and now/baseline; the target is no worse (about 1.0x, within noise).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from common import ENV  # noqa: E402

ROOT = os.path.dirname(HERE)
# Drops setuptools' editable-install finder, so PYTHONPATH decides which zcas is imported.
SITE = ("import sys\nsys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in "
        "(getattr(f, '__module__', '') or '').lower() and 'Editable' not in getattr(f, '__name__', type(f).__name__)]\n")


def extract(rev: str, dest: str) -> tuple[list[str], dict]:
    """(command, environment) running zcas as it was at ``rev``, laid out as it installs."""
    src = os.path.join(dest, "src")
    os.makedirs(src)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as t:
        t.extractall(src, filter="data")
    pkg = os.path.join(dest, "pkg")
    shutil.copytree(os.path.join(src, "zcas"), os.path.join(pkg, "zcas"))
    for sub in ("cas", "lineage", "runners"):
        shutil.copytree(os.path.join(src, sub), os.path.join(pkg, "zcas", sub))
    with open(os.path.join(pkg, "sitecustomize.py"), "w") as f:
        f.write(SITE)
    subprocess.run([sys.executable, "-m", "compileall", "-q", pkg], check=True)
    main = "zcas" if os.path.exists(os.path.join(pkg, "zcas", "__main__.py")) else "zcas.runners"
    return [sys.executable, "-m", main], {**ENV, "PYTHONPATH": pkg}


def timed(cmd: list[str], cwd: str, env: dict) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def project(path: str, cmd: list[str], env: dict) -> str:
    os.makedirs(path)
    subprocess.run(cmd + ["init"], cwd=path, env=env, check=True, stdout=subprocess.DEVNULL)
    steps = ['[steps.s0]\ncmd = "echo 0 > s0.txt"\noutputs = ["s0.txt"]\n']
    for i in range(1, 20):
        steps.append(f'[steps.s{i}]\ncmd = "cat s{i - 1}.txt > s{i}.txt; echo {i} >> s{i}.txt"\n'
                     f'inputs = ["s{i - 1}.txt"]\noutputs = ["s{i}.txt"]\n')
    with open(os.path.join(path, "zcas.toml"), "w") as f:
        f.write("\n".join(steps))
    with open(os.path.join(path, "flow.py"), "w") as f:
        f.write("import zcas\n\n@zcas.step\ndef a(n: int) -> list:\n    return list(range(n))\n\n"
                "@zcas.step\ndef b(x: list) -> int:\n    return sum(x)\n\n@zcas.step\ndef c(s: int) -> dict:\n"
                "    return {'sum': s}\n\n@zcas.pipeline\ndef main(n: int = 1000):\n    return c(b(a(n)))\n")
    for args in (["run"], ["run", "flow.py:main"]):  # cold: everything runs once
        subprocess.run(cmd + args, cwd=path, env=env, check=True, stdout=subprocess.DEVNULL)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default="ff259c6", metavar="REV")
    ap.add_argument("--rounds", type=int, default=7)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="zcas-bench-core-")
    try:
        now_cmd, now_env = [sys.executable, "-m", "zcas"], ENV
        old_cmd, old_env = extract(a.baseline, os.path.join(work, "baseline"))
        sides = {"now": (now_cmd, now_env, project(os.path.join(work, "p-now"), now_cmd, now_env)),
                 "baseline": (old_cmd, old_env, project(os.path.join(work, "p-old"), old_cmd, old_env))}
        cases = [("zcas --help", ["--help"], a.rounds * 3), ("warm zcas run (20 command steps)", ["run"], a.rounds),
                 ("warm zcas run flow.py:main (3 Python steps)", ["run", "flow.py:main"], a.rounds)]
        print(f"baseline: zcas at {a.baseline}; medians of alternating runs")
        for title, args, rounds in cases:
            got: dict[str, list[float]] = {"now": [], "baseline": []}
            for _ in range(rounds):
                for side, (cmd, env, cwd) in sides.items():
                    got[side].append(timed(cmd + args, cwd, env))
            now, then = statistics.median(got["now"]), statistics.median(got["baseline"])
            print(f"{title:<46} now {now * 1000:7.1f} ms   baseline {then * 1000:7.1f} ms   now/baseline {now / then:.2f}x",
                  flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""`zcas run` overhead (issue 4): a chain of 1 ms shell stages, cold, warm and partly changed.

Run:  python benchmarks/bench_run.py [--stages 50] [--big 200]

Each stage is `sh -c 'cat prev > out; echo N >> out'` (about 1 ms). Figures are wall times
of whole `zcas run` processes; the baseline is the same chain run by a plain shell script
in the same run, and `dvc repro` where DVC is installed (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ENV, ZCAS  # noqa: E402


def run(cmd, cwd) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def make_chain(d: str, n: int, param_at: int | None = None, param: int = 1) -> None:
    lines = []
    for i in range(1, n + 1):
        p = param if i == param_at else 1
        lines += [
            f"[steps.s{i:03d}]",
            f"cmd = [\"sh\", \"-c\", \"cat s{i - 1:03d}.txt > s{i:03d}.txt; echo {i} {{k}} >> s{i:03d}.txt\"]",
            f'inputs = ["s{i - 1:03d}.txt"]',
            f'outputs = ["s{i:03d}.txt"]',
            f"params = {{ k = {p} }}",
            "",
        ]
    with open(os.path.join(d, "zcas.toml"), "w") as f:
        f.write("\n".join(lines))


def fresh(base: str, name: str, n: int) -> str:
    d = os.path.join(base, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    subprocess.run(ZCAS + ["init"], cwd=d, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(d, "s000.txt"), "w") as f:
        f.write("seed\n")
    make_chain(d, n)
    return d


def shell_baseline(base: str, n: int) -> float:
    d = os.path.join(base, "sh")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "s000.txt"), "w") as f:
        f.write("seed\n")
    script = "".join(f"sh -c 'cat s{i - 1:03d}.txt > s{i:03d}.txt; echo {i} 1 >> s{i:03d}.txt'\n" for i in range(1, n + 1))
    return run(["sh", "-c", script], d)


def dvc_chain(base: str, n: int) -> dict[str, float] | None:
    if not shutil.which("dvc"):
        return None
    d = os.path.join(base, "dvc")
    os.makedirs(d)
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=d, check=True)
    with open(os.path.join(d, "s000.txt"), "w") as f:
        f.write("seed\n")
    stages = ["stages:"]
    for i in range(1, n + 1):
        stages += [f"  s{i:03d}:", f"    cmd: sh -c 'cat s{i - 1:03d}.txt > s{i:03d}.txt; echo {i} 1 >> s{i:03d}.txt'",
                   f"    deps: [s{i - 1:03d}.txt]", f"    outs: [s{i:03d}.txt]"]
    with open(os.path.join(d, "dvc.yaml"), "w") as f:
        f.write("\n".join(stages) + "\n")
    return {"cold": run(["dvc", "repro", "-q"], d), "warm": run(["dvc", "repro", "-q"], d)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stages", type=int, default=50)
    ap.add_argument("--big", type=int, default=200)
    a = ap.parse_args()
    n = a.stages
    with tempfile.TemporaryDirectory(prefix="zcas-bench-run-") as base:
        sh = min(shell_baseline(base, n) for _ in range(3))
        cold = []
        for k in range(3):
            d = fresh(base, f"z{k}", n)
            cold.append(run(ZCAS + ["run"], d))
        d = os.path.join(base, "z0")
        warm = min(run(ZCAS + ["run"], d) for _ in range(5))
        make_chain(d, n, param_at=n // 2, param=2)
        changed = run(ZCAS + ["run"], d)
        for i in range(1, n + 1):
            os.unlink(os.path.join(d, f"s{i:03d}.txt"))
        restored = run(ZCAS + ["run"], d)
        big = fresh(base, "big", a.big)
        run(ZCAS + ["run"], big)
        warm_big = min(run(ZCAS + ["run"], big) for _ in range(3))
        dv = dvc_chain(base, n)
    per = (min(cold) - sh) / n * 1000
    print(f"{'measure':<44} {'zcas':>9}   baseline (same run)")
    print(f"{f'cold {n} stages':<44} {min(cold):8.3f}s   plain shell {sh:.3f}s; overhead {per:.1f} ms/stage (target <= 10)  [target <= 0.6 s]")
    print(f"{f'warm {n} stages, nothing changed':<44} {warm:8.3f}s   [target <= 0.15 s]")
    print(f"{f'param changed at stage {n // 2}':<44} {changed:8.3f}s   ({n - n // 2 + 1} stages rerun)")
    print(f"{'all outputs deleted (restored from cache)':<44} {restored:8.3f}s")
    print(f"{f'warm {a.big} stages':<44} {warm_big:8.3f}s   [target <= 0.25 s]")
    if dv:
        print(f"{'dvc repro cold / warm':<44} {dv['cold']:8.3f}s / {dv['warm']:.3f}s")
    else:
        print("dvc: not installed (pip install -e '.[bench]' to compare in the same run)")


if __name__ == "__main__":
    main()

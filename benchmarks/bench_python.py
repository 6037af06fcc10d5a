"""Python API benchmarks (issue 5): step chains and large values, cold and warm.

Run:  python benchmarks/bench_python.py

Each figure is the wall time of a whole Python process running the pipeline (as a user
re-running a script sees it), with joblib.Memory in the same run where it is installed
(`pip install joblib`). Cold runs record every run durably (fsynced packs and LMDB).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ENV, ZCAS  # noqa: E402

CHAIN = '''
import sys, zcas
N = int(sys.argv[1])

@zcas.step
def inc(d: dict, i: int) -> dict:
    return {"i": i, "total": d["total"] + i, "tag": "x" * 20}

@zcas.pipeline
def chain():
    d = {"i": 0, "total": 0, "tag": ""}
    for i in range(N):
        d = inc(d, i)
    return d

print(chain().load()["total"])
'''

BIG = '''
import sys, zcas, numpy as np

@zcas.step
def make(n: int) -> bytes:
    return np.random.default_rng(n).integers(0, 255, 50 * 2**20, dtype=np.uint8).tobytes()

@zcas.step
def to_array(b: bytes) -> np.ndarray:
    return np.frombuffer(b, dtype=np.uint8).astype(np.float32)[: 50 * 2**20 // 4]

@zcas.step
def stats(a: np.ndarray) -> float:
    return float(a.mean())

@zcas.pipeline
def big():
    return stats(to_array(make(1)))

print(big().load())
'''

JOBLIB_CHAIN = '''
import sys
from joblib import Memory
mem = Memory("jl", verbose=0)
N = int(sys.argv[1])

@mem.cache
def inc(d, i):
    return {"i": i, "total": d["total"] + i, "tag": "x" * 20}

d = {"i": 0, "total": 0, "tag": ""}
for i in range(N):
    d = inc(d, i)
print(d["total"])
'''


def timed(cmd, cwd) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def project(base: str, name: str, script: str) -> str:
    d = os.path.join(base, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    subprocess.run(ZCAS + ["init"], cwd=d, env=ENV, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(d, "flow.py"), "w") as f:
        f.write(textwrap.dedent(script))
    return d


def has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def main() -> None:
    py = sys.executable
    print(f"{'measure':<40} {'zcas':>9}   baseline (same run) / target")
    with tempfile.TemporaryDirectory(prefix="zcas-bench-py-") as base:
        startup = min(timed([py, "-c", "pass"], base) for _ in range(5))
        for n, cold_t, warm_t in ((20, None, None), (100, 0.4, 0.15)):
            colds = []
            for k in range(3):
                d = project(base, f"c{n}-{k}", CHAIN)
                colds.append(timed([py, "flow.py", str(n)], d))
            warm = min(timed([py, "flow.py", str(n)], d) for _ in range(5))
            jl = ""
            if has("joblib"):
                with open(os.path.join(d, "jl.py"), "w") as f:
                    f.write(JOBLIB_CHAIN)
                jc = timed([py, "jl.py", str(n)], d)
                jw = min(timed([py, "jl.py", str(n)], d) for _ in range(5))
                jl = f"joblib.Memory cold {jc:.3f}s warm {jw:.3f}s; "
            tgt = f"[targets cold <= {cold_t} s, warm <= {warm_t} s]" if cold_t else ""
            print(f"{f'chain of {n} steps, cold':<40} {min(colds):8.3f}s   {jl}python startup {startup:.3f}s {tgt}")
            print(f"{f'chain of {n} steps, warm':<40} {warm:8.3f}s")
        if has("numpy"):
            colds = []
            for k in range(2):
                d = project(base, f"big{k}", BIG)
                colds.append(timed([py, "flow.py"], d))
            warm = min(timed([py, "flow.py"], d) for _ in range(3))
            t = time.perf_counter()
            subprocess.run([py, "-c", "import numpy as np; b = np.random.default_rng(1).integers(0, 255, 50 * 2**20, dtype=np.uint8).tobytes(); np.frombuffer(b, dtype=np.uint8).astype(np.float32).mean()"], check=True)
            plain = time.perf_counter() - t
            print(f"{'3 steps passing 50 MB, cold':<40} {min(colds):8.3f}s   the same code without zcas {plain:.3f}s [target <= 0.5 s]")
            print(f"{'3 steps passing 50 MB, warm':<40} {warm:8.3f}s   [target <= 0.2 s]")


if __name__ == "__main__":
    main()

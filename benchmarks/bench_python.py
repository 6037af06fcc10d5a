"""Python API benchmarks (issue 5): step chains and large values, cold and warm.

Run:  python benchmarks/bench_python.py [--rounds N] [--big-only] [--baseline REV ...]

Each figure is the wall time of a whole Python process running the pipeline (as a user
re-running a script sees it), with joblib.Memory in the same run where it is installed
(`pip install joblib`). Cold runs record every run durably (fsynced packs and LMDB).

The 50 MB pipeline (issue 18) is timed in alternating rounds against the same code without
zcas (and, with ``--baseline REV``, zcas as it was at REV, extracted as bench_core does;
the option may be given more than once, and ``HEAD`` times what is committed without the
uncommitted edits of the working tree),
and beside it the floor of storing its values in zcas's format: making their stored bytes,
and hashing and compressing those on every core, nothing written.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ENV  # noqa: E402

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

# The same code without zcas: the same functions, called the same way.
PLAIN = BIG.replace("import sys, zcas,", "import sys,").replace("@zcas.step\n", "").replace("@zcas.pipeline\n", "") \
    .replace("print(big().load())", "print(big())")

# What storing the two values costs at the least in zcas's format, on every core, nothing
# written: each value's stored bytes (its materializer), its BLAKE3, and every ~40 KiB chunk
# hashed and compressed with zstd-1 (the codec's level), as cas.chunking does.
FLOOR = '''
import os, time, numpy as np, zstandard
from concurrent.futures import ThreadPoolExecutor
from blake3 import blake3
from pyfastcdc import FastCDC
from zcas.runners import materializers as mats
b = np.random.default_rng(1).integers(0, 255, 50 * 2**20, dtype=np.uint8).tobytes()
a = np.frombuffer(b, dtype=np.uint8).astype(np.float32)[: 50 * 2**20 // 4]
mats._register_imported()
ex = ThreadPoolExecutor(os.cpu_count() or 2)
local = __import__("threading").local()

def batch(view, cuts):  # as cas.chunking: a run whose first chunk does not shrink is kept raw
    if not hasattr(local, "c"):
        local.c = zstandard.ZstdCompressor(level=1, write_checksum=False)
    out, squeeze = [], True
    for o, n in cuts:
        piece = view[o:o + n]
        packed = local.c.compress(piece) if squeeze else piece
        squeeze = squeeze and len(packed) < n - (n >> 5)
        out.append((blake3(piece).digest(), packed))
    return out

t0 = time.perf_counter()
datas = [mats.for_value(v).save(v) for v in (b, a)]
t1 = time.perf_counter()
for d in datas:
    view = memoryview(d)
    whole = ex.submit(lambda v: blake3(v, max_threads=blake3.AUTO).digest(), view)
    cuts = [(c.offset, c.length) for c in FastCDC(32 << 10).cut_buf(view)]
    for f in [ex.submit(batch, view, cuts[i:i + 64]) for i in range(0, len(cuts), 64)]:
        f.result()
    whole.result()
t2 = time.perf_counter()
print(f"{t1 - t0:.6f} {t2 - t1:.6f}")
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


def timed(cmd, cwd, env=ENV) -> float:
    return timed2(cmd, cwd, env)[0]


def timed2(cmd, cwd, env=ENV) -> tuple[float, float]:
    """(wall, CPU) seconds of a process: CPU is user + system time of all its threads."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def project(base: str, name: str, script: str, env=ENV) -> str:
    d = os.path.join(base, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    subprocess.run([sys.executable, "-m", "zcas", "init"], cwd=d, env=env, check=True, stdout=subprocess.DEVNULL)
    with open(os.path.join(d, "flow.py"), "w") as f:
        f.write(textwrap.dedent(script))
    return d


def has(mod: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(mod) is not None


def chains() -> None:
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


def big(rounds: int, baselines: list[str]) -> None:
    """3 steps passing 50 MB, cold, against the same code without zcas (issue 18: <= 1.3x),
    in alternating rounds so a busy machine's drift hits every side alike; with
    ``baselines``, zcas as it was at each of those revisions too, in the same rounds."""
    py = sys.executable
    sides: dict[str, tuple[list[str], dict]] = {"now": ([py], ENV)}
    with tempfile.TemporaryDirectory(prefix="zcas-bench-py-") as base:
        for i, rev in enumerate(baselines):
            from bench_core import extract

            sides[rev] = ([py], extract(rev, os.path.join(base, f"baseline-{i}"))[1])
        with open(os.path.join(base, "plain.py"), "w") as f:
            f.write(textwrap.dedent(PLAIN))
        got: dict[str, list[float]] = {"plain": [], "plain cpu": [], "floor": [], "save": []}
        for side in sides:
            got[side], got[f"{side} cpu"], got[f"{side} warm"] = [], [], []
        for r in range(rounds):
            wall, cpu = timed2([py, "plain.py"], base)
            got["plain"].append(wall)
            got["plain cpu"].append(cpu)
            for side, (cmd, env) in sides.items():
                d = project(base, f"big-{side}-{r}", BIG, env)
                wall, cpu = timed2(cmd + ["flow.py"], d, env)
                got[side].append(wall)
                got[f"{side} cpu"].append(cpu)
                got[f"{side} warm"].append(timed(cmd + ["flow.py"], d, env))
                shutil.rmtree(d)
            out = subprocess.run([py, "-c", FLOOR], env=ENV, check=True, capture_output=True, text=True).stdout.split()
            got["save"].append(float(out[0]))
            got["floor"].append(float(out[1]))
        med = {k: statistics.median(v) for k, v in got.items()}
        plain = med["plain"]
        print(f"3 steps passing 50 MB (bytes, then a float32 array): medians of {rounds} alternating rounds, "
              f"load {os.getloadavg()[0]:.2f}")
        print(f"{'':<52}{'wall':>8}          {'CPU (all threads)':>17}")
        print(f"{'the same code without zcas (baseline)':<52}{plain:8.3f} s {'':<8}{med['plain cpu']:8.3f} s")
        for side in sides:
            label = "zcas" if side == "now" else f"zcas at {side}"
            ratios = sorted(c / p for c, p in zip(got[side], got["plain"], strict=True))
            print(f"{label + ', cold':<52}{med[side]:8.3f} s {med[side] / plain:5.2f}x {med[side + ' cpu']:8.3f} s "
                  f"{med[side + ' cpu'] / med['plain cpu']:5.2f}x   (wall rounds {ratios[0]:.2f}-{ratios[-1]:.2f}x) "
                  "[target <= 1.3x]")
            print(f"{label + ', warm':<52}{med[side + ' warm']:8.3f} s   [target <= 0.2 s]")
        print(f"{'floor: stored bytes made (materializers)':<52}{med['save']:8.3f} s")
        print(f"{'floor: BLAKE3 + zstd-1 chunks of them, every core':<52}{med['floor']:8.3f} s   "
              f"(baseline + both: {(plain + med['save'] + med['floor']) / plain:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds of the 50 MB pipeline")
    ap.add_argument("--big-only", action="store_true", help="only the 50 MB pipeline")
    ap.add_argument("--baseline", metavar="REV", action="append", default=[],
                    help="also time zcas as it was at REV (50 MB pipeline); may be repeated")
    a = ap.parse_args()
    if not a.big_only:
        chains()
    if has("numpy"):
        big(a.rounds, a.baseline)


if __name__ == "__main__":
    main()

"""Lineage benchmarks (issue 3): a synthetic graph of 100,000 runs.

Run:  python benchmarks/bench_lineage.py [--runs 100000]

The graph: chains of 50 runs (each run reads the previous run's output), and every tenth
run also reads 20 source datasets no run produced (wide fan-in). Figures: recording in
bulk (amortized per run, every batch durable), a cache-key lookup in the library (beside a
raw LMDB get in the same run), `zcas log ARTIFACT` for an artifact 50 levels deep and
`zcas --help`, each as a whole process.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ENV, ZCAS  # noqa: E402


def proc_time(cmd, cwd, n=5) -> float:
    best = 1e9
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    a = ap.parse_args()
    from zcas.cas import codec
    from zcas.cas.repo import Repo, init
    from zcas.lineage.records import Run
    from zcas.lineage.store import Lineage

    rnd = random.Random(7)
    with tempfile.TemporaryDirectory(prefix="zcas-bench-lineage-") as d:
        init(d)
        repo = Repo(d)
        lin = Lineage(repo)
        sources = [repo.db.put(codec.KIND_BLOB, f"source {i}".encode()).hex() for i in range(1000)]
        repo.db.flush()
        chain_len = 50
        keys = []
        deep = None
        batch: list[Run] = []
        t_record = 0.0
        prev = None
        for i in range(a.runs):
            pos = i % chain_len
            if pos == 0:
                prev = rnd.choice(sources)
            out = repo.db.put(codec.KIND_BLOB, f"output of run {i}".encode()).hex()
            inputs = {"in": prev}
            if pos % 10 == 9:
                inputs.update({f"src{j}": rnd.choice(sources) for j in range(20)})
            key = os.urandom(32).hex()
            keys.append(key)
            batch.append(Run(step=f"s{pos}", kind="python", status="ran", cache_key=key, inputs=inputs,
                             outputs={"out": out}, params={"i": i}, started_ns=i * 1000, ended_ns=i * 1000 + 500))
            prev = out
            if pos == chain_len - 1 and deep is None:
                deep = out
            if len(batch) == 1000:
                t = time.perf_counter()
                lin.record_runs(batch)
                t_record += time.perf_counter() - t
                batch = []
        if batch:
            t = time.perf_counter()
            lin.record_runs(batch)
            t_record += time.perf_counter() - t
        g = lin.graph
        sample = [bytes.fromhex(k) for k in rnd.sample(keys, 10_000)]
        t = time.perf_counter()
        for k in sample:
            g.cache_get(k)
        lookup = (time.perf_counter() - t) / len(sample)
        with g.env.begin() as txn:
            db = g.dbs["cache"]
            t = time.perf_counter()
            for k in sample:
                txn.get(k, db=db)
            raw = (time.perf_counter() - t) / len(sample)
        lin.close()
        repo.close()
        log_t = proc_time(ZCAS + ["log", deep], d)
        out = subprocess.run(ZCAS + ["log", deep], cwd=d, env=ENV, capture_output=True, text=True).stdout
        levels = sum(1 for ln in out.splitlines() if not ln.startswith("source"))
        help_t = proc_time(ZCAS + ["--help"], d, 10)
        py_t = proc_time([sys.executable, "-c", "pass"], d, 10)
    print(f"{'measure':<48} {'zcas':>12}   baseline (same run) / target")
    print(f"{f'record {a.runs} runs in batches of 1000':<48} {t_record / a.runs * 1e3:9.3f} ms   per run, amortized  [target <= 1 ms]")
    print(f"{'cache-key lookup (library)':<48} {lookup * 1e6:9.2f} us   raw LMDB get {raw * 1e6:.2f} us  [target <= 20 us]")
    print(f"{f'zcas log ARTIFACT ({levels} levels deep)':<48} {log_t * 1e3:9.1f} ms   [target <= 150 ms]")
    print(f"{'zcas --help':<48} {help_t * 1e3:9.1f} ms   python -c pass {py_t * 1e3:.1f} ms  [target <= 80 ms]")


if __name__ == "__main__":
    main()

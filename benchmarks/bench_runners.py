"""Runner benchmark (issue 7): a fan-out pipeline of 32 independent CPU-bound steps.

Run:  python benchmarks/bench_runners.py [--steps 32] [--seconds 0.5]

Each step spins the CPU for about --seconds. Wall time of a cold run on each runner
(local, threads, processes, dask with a local 2-worker cluster), beside a plain sequential
loop over the same function in the same run, and the per-task overhead of each runner
(wall time of 32 no-op steps).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import runners_flow as flow  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=0.5)
    a = ap.parse_args()
    from zcas.repository import Repository
    from zcas.stacks import Stack, register

    spin = flow.calibrate(a.seconds)
    t = time.perf_counter()
    for i in range(a.steps):
        flow.burn.fn(i, spin)
    seq = time.perf_counter() - t
    print(f"{a.steps} steps of ~{a.seconds}s CPU; sequential loop without zcas: {seq:.2f}s")
    print(f"{'runner':<10} {'cold':>8} {'speedup':>8} {'per-task overhead':>18}")
    base = tempfile.mkdtemp(prefix="zcas-bench-runners-")
    try:
        for runner in ("local", "threads", "processes", "dask"):
            d = os.path.join(base, runner)
            os.makedirs(d)
            repo = Repository.init(d)
            register(repo.cas, Stack("s", None, runner))
            repo.executor("s")  # start pools and clusters outside the timing
            t = time.perf_counter()
            flow.fan(a.steps, spin, repo=repo, stack="s")
            cold = time.perf_counter() - t
            t = time.perf_counter()
            flow.fan(a.steps, 0, repo=repo, stack="s", salt=1)
            noop = (time.perf_counter() - t) / a.steps
            print(f"{runner:<10} {cold:7.2f}s {seq / cold:7.2f}x {noop * 1e3:15.1f} ms")
            repo.close()
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

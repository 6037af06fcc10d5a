"""Scale benchmark (issue 18): does a command cost more as the repository's history grows?

Run:  python benchmarks/bench_scale.py [--hit-runs 10000] [--big 1000000] [--small 10000] [--rounds 15]

Two figures, each the ratio of a big repository to a small one, timed as whole processes
interleaved between the two (the median of ``--rounds``), in one run of this script:

1. ``zcas run``, a warm hit (one step of a zcas.toml pipeline whose result is recorded and
   present), in a repository with ``--hit-runs`` earlier runs and their packs against one
   with 10. Each earlier run is recorded as a ``zcas run`` leaves it: its own flush (an
   output object and its record in a pack of their own, repacked as the store does) and
   its own index transaction, with path history for its input and output.
2. ``zcas log`` (its default view), ``zcas log --step STEP`` and ``zcas status`` in a
   repository of ``--big`` runs against one of ``--small``. These runs are recorded through
   the library in batches of 5,000 (``Lineage.record_runs``: records stored in packs,
   indexed in one transaction a batch), over 100 steps, with inputs, outputs, params and
   valid cache keys; then the zcas.toml pipeline those commands look at (3 steps) runs for
   real, so ``status`` plans each step, finds its hit and checks its outputs.

``--big`` below a million measures what the machine allows in the time; the script says so
and the ratio is then what it is at that size, not at a million.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ENV, ZCAS  # noqa: E402

STEPS = 100  # steps of the synthetic history
BATCH = 5000


def sh(cmd: list[str], cwd: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(cmd, cwd=cwd, env=ENV, check=True, capture_output=True)


def timed(cmd: list[str], cwd: str) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def pipeline(root: str, steps: int) -> None:
    """A zcas.toml of ``steps`` command steps in a chain, each copying its input."""
    os.makedirs(os.path.join(root, "data"), exist_ok=True)
    with open(os.path.join(root, "data", "in.txt"), "w") as f:
        f.write("input\n" * 1000)
    prev = "data/in.txt"
    with open(os.path.join(root, "zcas.toml"), "w") as f:
        for i in range(steps):
            out = f"out/s{i}.txt"
            f.write(f'[steps.s{i}]\ncmd = "mkdir -p out && cp {prev} {out}"\ninputs = ["{prev}"]\n'
                    f'outputs = ["{out}"]\nparams = {{ n = {i} }}\n\n')
            prev = out


def synthetic(i: int, t0: int, rng: random.Random, out_id: str | None = None) -> object:
    """The record of one earlier run, as a command step of the history leaves it."""
    from zcas.lineage.keyhash import key_of
    from zcas.lineage.records import Run

    step = f"hist{i % STEPS}"
    comps = {"schema": "zcas-key-1", "argv": f"[\"step\", {i}]", "input:data/in.csv": "%064x" % (i // STEPS)}
    start = t0 + i * 10**6
    status = "cached" if i % 4 == 3 else "ran"
    return Run(step=step, kind="command", status=status, cache_key=key_of(comps).hex(), key_components=comps,
               inputs={"data/in.csv": "%064x" % (i // STEPS)}, outputs={f"out/{step}.bin": out_id or "%064x" % (i + 1)},
               params={"lr": rng.choice([0.1, 0.01]), "epochs": i % 7}, cmd=["python", "train.py", str(i)],
               started_ns=start, ended_ns=start + 5 * 10**8, host="bench", user="bench", zcas_version="bench",
               session="%032x" % (i // 3), cached_from="%064x" % (i + 7) if status == "cached" else None)


def history(root: str, n: int, per_flush: int) -> float:
    """``n`` earlier runs, recorded ``per_flush`` at a time; seconds taken."""
    from zcas.cas import codec
    from zcas.cas.repo import Repo
    from zcas.lineage.store import Lineage

    rng = random.Random(18)
    t = time.perf_counter()
    repo = Repo(root)
    lin = Lineage(repo)
    t0 = time.time_ns() - (n + 10) * 10**6 - 3600 * 10**9
    batch = []
    for i in range(n):
        out = None
        if per_flush == 1:  # a run of its own: its output is an object in its pack
            out = repo.db.put(codec.KIND_BLOB, b"output of run %d\n" % i).hex()
        batch.append(synthetic(i, t0, rng, out))
        if len(batch) >= per_flush:
            lin.record_runs(batch)  # type: ignore[arg-type]
            batch = []
    if batch:
        lin.record_runs(batch)  # type: ignore[arg-type]
    lin.close()
    repo.close()
    return time.perf_counter() - t


def make(root: str, n: int, per_flush: int, steps: int) -> float:
    from zcas.cas.repo import init

    init(root)
    pipeline(root, steps)
    took = history(root, n, per_flush)
    sh([*ZCAS, "run"], root)  # the pipeline runs for real: the hit to come, what status checks
    return took


def interleaved(cmds: dict[str, tuple[list[str], str]], rounds: int) -> dict[str, float]:
    """The median time of each command, run in turns (load drifts alike for all)."""
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for cmd, cwd in cmds.values():
        timed(cmd, cwd)  # warm the page cache
    for _ in range(rounds):
        for k, (cmd, cwd) in cmds.items():
            times[k].append(timed(cmd, cwd))
    return {k: statistics.median(v) for k, v in times.items()}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--hit-runs", type=int, default=10_000, help="earlier runs, each its own flush, for the hit")
    ap.add_argument("--small", type=int, default=10_000, help="runs of the small repository for log and status")
    ap.add_argument("--big", type=int, default=1_000_000, help="runs of the big repository for log and status")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--only", choices=["hit", "log"], help="only one of the two figures")
    ap.add_argument("--keep", metavar="DIR", help="build the repositories in DIR and keep them (reused if there)")
    a = ap.parse_args()
    base = a.keep or tempfile.mkdtemp(prefix="bench-scale-")
    os.makedirs(base, exist_ok=True)
    try:
        print(f"load average at start: {load()}")
        if a.only != "log":
            hit(base, a)
        if a.only != "hit":
            log_status(base, a)
        print(f"load average at end: {load()}")
    finally:
        if not a.keep:
            shutil.rmtree(base, ignore_errors=True)


def _built(base: str, name: str, n: int, per_flush: int, steps: int) -> str:
    root = os.path.join(base, name)
    if os.path.isdir(os.path.join(root, ".zcas")):
        print(f"  {name}: reusing {root}")
        return root
    os.makedirs(root, exist_ok=True)
    took = make(root, n, per_flush, steps)
    print(f"  {name}: {n:,} runs recorded in {took:.1f} s ({took / max(n, 1) * 1e6:.0f} us a run)")
    return root


def hit(base: str, a: argparse.Namespace) -> None:
    print(f"zcas run, a warm hit: 10 earlier runs vs {a.hit_runs:,} (each its own flush and pack)")
    small = _built(base, "hit-10", 10, 1, 1)
    big = _built(base, f"hit-{a.hit_runs}", a.hit_runs, 1, 1)
    packs = {r: len([p for p in os.listdir(os.path.join(r, ".zcas", "objects", "packs")) if p.endswith(".pack")])
             for r in (small, big)}
    before = load()
    m = interleaved({"small": ([*ZCAS, "run"], small), "big": ([*ZCAS, "run"], big)}, a.rounds)
    print(f"  zcas run (hit): {m['small'] * 1000:.1f} ms with 10 runs ({packs[small]} packs), "
          f"{m['big'] * 1000:.1f} ms with {a.hit_runs:,} ({packs[big]} packs): ratio {m['big'] / m['small']:.3f} "
          f"(median of {a.rounds}, load {before} -> {load()})")


def log_status(base: str, a: argparse.Namespace) -> None:
    print(f"zcas log and zcas status: {a.small:,} runs vs {a.big:,}")
    small = _built(base, f"log-{a.small}", a.small, BATCH, 3)
    big = _built(base, f"log-{a.big}", a.big, BATCH, 3)
    if a.big < 1_000_000:
        print(f"  (measured at {a.big:,} runs, not 1,000,000)")
    cmds = {}
    for label, args in (("log", ["log"]), ("log --step hist7", ["log", "--step", "hist7"]),
                        ("log -n 20", ["log", "-n", "20"]), ("status", ["status"])):
        cmds[f"{label}|small"] = ([*ZCAS, *args], small)
        cmds[f"{label}|big"] = ([*ZCAS, *args], big)
    lines = {k: len(sh(cmd, cwd).stdout.splitlines()) for k, (cmd, cwd) in cmds.items()}
    before = load()
    m = interleaved(cmds, a.rounds)
    for label in ("log", "log --step hist7", "log -n 20", "status"):
        s, b = m[f"{label}|small"], m[f"{label}|big"]
        print(f"  zcas {label}: {s * 1000:.1f} ms at {a.small:,} runs ({lines[f'{label}|small']} lines), "
              f"{b * 1000:.1f} ms at {a.big:,} ({lines[f'{label}|big']} lines): ratio {b / s:.3f}")
    print(f"  (median of {a.rounds}, interleaved; load {before} -> {load()})")


if __name__ == "__main__":
    main()

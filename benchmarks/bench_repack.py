"""Cost per run and per lookup after 10 and after 10,000 small flushes (issue 12).

Every zcas run is a process that opens the object store (lists the pack indexes and maps
or reads them), stores a few small objects and flushes them as a pack of its own. Without
repacking, the store after N runs holds N packs and every run pays for loading all of
them; with automatic repacking the number of packs stays bounded, and since opening the
store reads no id (lookups bisect each pack's index), a run costs the same after 10,000
runs as after 10.

For each N, in one process and one run of this script: N runs, each a fresh ObjectDB
over the same local store (as a new process would open it) storing two small objects
and flushing (the mean over all N, the repacks they set off included); then 100 more runs
on each store, timed one by one and interleaved between the stores (the median: what a run
costs given that history, the open included);
then a fresh ObjectDB opens the store and reads 2,000 random ids (open time, and mean time
per lookup: index lookup, pack read, verification), then the same ids again. The first
lookups bisect each pack's index; once that has cost about what building the dict of
every id would, the dict is built, so the first 2,000 lookups carry that build (it was
part of opening the store before) and the second 2,000 show a lookup on its own. A third
store holds the same objects as the big one, written in as few flushes as the small one:
against it, what remains is the cost of holding more objects, not of having flushed more
often.

    .venv/bin/python benchmarks/bench_repack.py            # 10 and 10,000 flushes
    .venv/bin/python benchmarks/bench_repack.py --no-repack --big 2000   # the cost without it
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time

from zcas.cas import codec
from zcas.cas.db import ObjectDB
from zcas.cas.local import LocalBackend
from zcas.cas.pack import PREFIX, name_of_idx_key

LOOKUPS = 2000
RUNS = 100  # timed runs per store, after its history


def _run(objects: str, i: int, repack: bool, per_run: int = 1) -> list[bytes]:
    """One run: open the store afresh, store ``per_run`` pairs of small objects, flush."""
    backend = LocalBackend(objects)
    db = ObjectDB(backend, auto_repack=repack)
    ids = []
    for j in range(i * per_run, (i + 1) * per_run):
        ids.append(db.put(codec.KIND_BLOB, b"output of run %d\n" % j * 4))
        ids.append(db.put(codec.KIND_RECORD, b'{"run": %d, "step": "s"}' % j))
    db.flush()
    backend.close()
    return ids


def history(n: int, root: str, repack: bool, per_run: int = 1) -> dict:
    """A store after ``n`` flushes of ``per_run`` pairs of objects each."""
    objects = os.path.join(root, f"objects-{n}-{per_run}")
    ids: list[bytes] = []
    t0 = time.perf_counter()
    for i in range(n):
        ids.extend(_run(objects, i, repack, per_run))
    return {"objects_dir": objects, "ids": ids, "next": n * per_run, "history": (time.perf_counter() - t0) / n,
            "runs": []}


def timed_run(st: dict, repack: bool) -> None:
    """One more run on a store, timed (the cost of a run given its history)."""
    t = time.perf_counter()
    st["ids"].extend(_run(st["objects_dir"], st["next"], repack))
    st["runs"].append(time.perf_counter() - t)
    st["next"] += 1


def lookups(st: dict, seed: int) -> dict[str, float]:
    """Open the store afresh and look 2,000 random ids up, twice (best of five)."""
    objects, ids = st["objects_dir"], st["ids"]
    runs = sorted(st["runs"])
    packs = sum(1 for k in LocalBackend(objects).list(PREFIX) if name_of_idx_key(k))
    rng = random.Random(seed)
    wanted = [rng.choice(ids) for _ in range(LOOKUPS)]
    opens, first, warm = [], [], []
    for _ in range(5):  # best of five: the figures are small and the machine is shared
        backend = LocalBackend(objects)
        t0 = time.perf_counter()
        db = ObjectDB(backend, auto_repack=False)
        db.refresh()
        t1 = time.perf_counter()
        for oid in wanted:
            db.get(oid)
        t2 = time.perf_counter()
        for oid in wanted:
            db.get(oid)
        t3 = time.perf_counter()
        backend.close()
        opens.append(t1 - t0)
        first.append((t2 - t1) / LOOKUPS)
        warm.append((t3 - t2) / LOOKUPS)
    return {"history": st["history"], "flush": runs[len(runs) // 2], "open": min(opens), "lookup": min(first),
            "warm": min(warm), "packs": packs, "objects": len(ids)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=10)
    ap.add_argument("--big", type=int, default=10_000)
    ap.add_argument("--no-repack", action="store_true", help="measure without automatic repacking")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="zcas-bench-repack-")
    repack = not args.no_repack
    try:
        stores = [history(args.small, root, repack), history(args.big, root, repack),
                  # the same objects as after the big history, written by as few flushes as the small one
                  history(args.small, root, repack, per_run=args.big // args.small)]
        for _ in range(RUNS):  # interleaved: a busy moment of the machine hits all three alike
            for st in stores:
                timed_run(st, repack)
        a, b, c = (lookups(st, seed) for seed, st in enumerate(stores))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    mode = "without repacking" if args.no_repack else "with automatic repacking"
    print(f"small flushes, {mode}; a run = open the store, store 2 small objects, flush")
    cols = (f"{args.small:,} flushes", f"{args.big:,} flushes", "ratio",
            f"{args.small:,} big flushes", "ratio")
    print(f"{'':>34}" + "".join(f"{c:>18}" for c in cols))
    rows = (("per flush over the history (ms)", "history", 1e3), ("per run after it, median (ms)", "flush", 1e3),
            ("  of which: open the store (ms)", "open", 1e3), (f"per lookup, first {LOOKUPS:,} (us)", "lookup", 1e6),
            ("per lookup, again (us)", "warm", 1e6))
    for label, key, scale in rows:
        x, y, z = a[key] * scale, b[key] * scale, c[key] * scale
        print(f"{label:>34}{x:>18.3f}{y:>18.3f}{y / x:>18.2f}{z:>18.3f}{y / z:>18.2f}")
    print(f"{'objects / packs at the end':>34}{a['objects']:>12,} / {a['packs']:<3}{b['objects']:>12,} / {b['packs']:<3}"
          f"{'':>18}{c['objects']:>12,} / {c['packs']:<3}")
    print("ratio: the 10,000-flush store against the 10-flush one; the last ratio against a store holding the "
          "same objects written in 10 flushes (what remains is the cost of more objects, not of more flushes)")


if __name__ == "__main__":
    main()

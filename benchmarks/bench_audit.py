"""Cost of recording the files a Python step reads (issue 20): a step opening 10,000 files.

Run:  python benchmarks/bench_audit.py [FILES] [REPEATS]

The step reads FILES (default 10,000) small files inside a repository folder. An audit hook
cannot be removed once added, so each variant runs in a process of its own; figures are
medians of REPEATS (default 7) inside that process:

- plain: the step, no hook in the process (the baseline);
- hook idle: the hook installed, no step recording (what every other open pays);
- recording: the step inside ``fileaudit.recording``, the paths it opened sorted out
  (the hook's whole cost on the step; idle and recording runs alternate in one process);
- the hook's own work alone: the same 10,000 events handed to the hook directly and the
  paths sorted out, no file opened (a figure a busy machine's noise cannot swamp);
- ids, cold / warm: naming each file read by its id afterwards, with an empty stat cache
  (every file hashed) and with a warm one (what a rerun pays).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile

CHILD = r'''
import os, statistics, sys, time
root, n, repeats, variant = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
names = [os.path.join("data", f"f{i:05d}.txt") for i in range(n)]
os.chdir(root)

def step():
    total = 0
    for p in names:
        with open(p, "rb") as f:
            total += len(f.read())
    return total

from zcas.runners import fileaudit, implicit
from zcas.cas.statcache import StatCache

def once():
    if variant == "recording":
        with fileaudit.recording(root) as rec:
            step()
        assert len(rec.reads) == n
    else:
        step()

def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t

if variant == "plain":
    out = [statistics.median(timed(step) for _ in range(repeats))]
else:  # idle and recording taken in turn in one process: the busy machine's drift hits both
    fileaudit._install()
    idle, recording = [], []
    for _ in range(repeats):
        idle.append(timed(step))
        variant = "recording"
        recording.append(timed(once))
        variant = "idle"
    out = [statistics.median(idle), statistics.median(recording)]
    variant = "recording"

    def hook_work():  # what the hook and the sorting of paths cost, called directly: no I/O
        with fileaudit.recording(root) as rec:
            for p in names:
                fileaudit._hook("open", (p, "rb", 524288))
            rec.reads
    hook_only = statistics.median(timed(hook_work) for _ in range(repeats))
if variant == "recording":
    reads = [p.replace(os.sep, "/") for p in names]
    cache_path = os.path.join(root, "statcache")
    for warm in (False, True):
        ts = []
        for _ in range(repeats):
            if not warm and os.path.exists(cache_path):
                os.unlink(cache_path)
            sc = StatCache(cache_path)
            t = time.perf_counter()
            ids = implicit.ids_of(root, reads, (), sc)
            ts.append(time.perf_counter() - t)
            sc.save()
            assert len(ids) == n
        out.append(statistics.median(ts))
    out.append(hook_only)
print(" ".join(f"{x:.6f}" for x in out))
'''


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 7
    rounds = 7  # processes per variant, taken in turn, so drift on a busy machine hits all alike
    root = tempfile.mkdtemp(prefix="zcas-bench-audit-")
    try:
        os.makedirs(os.path.join(root, "data"))
        for i in range(n):
            with open(os.path.join(root, "data", f"f{i:05d}.txt"), "w") as f:
                f.write(f"row {i}\n" * 8)
        res: dict[str, list[list[float]]] = {"plain": [], "hooked": []}
        for _ in range(rounds):
            for variant in res:
                p = subprocess.run([sys.executable, "-c", CHILD, root, str(n), str(repeats), variant],
                                   capture_output=True, text=True, check=True)
                res[variant].append([float(x) for x in p.stdout.split()])

        def med(variant: str, i: int = 0) -> float:
            return statistics.median(r[i] for r in res[variant])

        plain = med("plain")
        print(f"a step opening {n} files; medians over {rounds} processes of medians of {repeats} runs")
        print(f"{'what':<44}{'ms':>10}{'vs plain':>10}")
        rows = [("plain (no hook: the baseline)", plain, False), ("hook installed, not recording", med("hooked"), True),
                ("recording the step's opens", med("hooked", 1), True),
                ("ids of the files read, cold stat cache", med("hooked", 2), False),
                ("ids of the files read, warm stat cache", med("hooked", 3), False),
                ("the hook's own work alone (events + paths)", med("hooked", 4), True)]
        for what, t, vs in rows:
            share = what.startswith("the hook's own")  # not a run of the step: its share of one
            extra = f"{(t if share else t - plain) / plain * 100:>+9.1f}%" if vs else ""
            print(f"{what:<44}{t * 1000:>10.2f}{extra}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

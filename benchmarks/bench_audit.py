"""Cost of recording the files a Python step reads (issue 20): a step opening 10,000 files.

Run:  python benchmarks/bench_audit.py [FILES] [REPEATS] [--rounds N] [--baseline REV]

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
  (every file hashed) and with a warm one (what a rerun pays);
- with ``--baseline REV``: the hook idle, recording and its own work as they were at REV
  (its fileaudit.py loaded in place of this one), in the same rounds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r'''
import os, statistics, sys, time
root, n, repeats, variant = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
audit_file = sys.argv[5] if len(sys.argv) > 5 else ""  # fileaudit.py of another revision
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
if audit_file:  # the hook as it was at a baseline revision (it imports nothing of zcas)
    import importlib.util
    spec = importlib.util.spec_from_file_location("fileaudit_baseline", audit_file)
    fileaudit = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fileaudit)

def once():
    if variant == "recording":
        with fileaudit.recording(root) as rec:
            step()
        assert len(rec.reads) == n
    else:
        step()

def timed(fn):  # (wall, CPU) seconds: the CPU time is what a busy machine's waits leave out
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c

def med(pairs):
    return [statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)]

if variant == "plain":
    out = med([timed(step) for _ in range(repeats)])
else:  # idle and recording taken in turn in one process: the busy machine's drift hits both
    fileaudit._install()
    idle, recording = [], []
    for _ in range(repeats):
        idle.append(timed(step))
        variant = "recording"
        recording.append(timed(once))
        variant = "idle"
    out = med(idle) + med(recording)
    variant = "recording"

    events = [(p, "rb", 524288) for p in names]  # what the interpreter hands the hook

    def hook_work():  # what the hook and the sorting of paths cost, called directly: no I/O
        with fileaudit.recording(root) as rec:
            for args in events:
                fileaudit._hook("open", args)
            rec.reads
    hook_only = med([timed(hook_work) for _ in range(repeats)])
if variant == "recording" and audit_file:
    out += [0.0] * 4 + hook_only  # ids are implicit.py's, the same at any revision of the hook
elif variant == "recording":
    reads = [p.replace(os.sep, "/") for p in names]
    cache_path = os.path.join(root, "statcache")
    for warm in (False, True):
        ts = []
        for _ in range(repeats):
            if not warm and os.path.exists(cache_path):
                os.unlink(cache_path)
            sc = StatCache(cache_path)
            t = time.perf_counter(), time.process_time()
            ids = implicit.ids_of(root, reads, (), sc)
            ts.append((time.perf_counter() - t[0], time.process_time() - t[1]))
            sc.save()
            assert len(ids) == n
        out += med(ts)
    out += hook_only
print(" ".join(f"{x:.6f}" for x in out))
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="?", type=int, default=10_000)
    ap.add_argument("repeats", nargs="?", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=7, help="processes per variant, taken in turn")
    ap.add_argument("--baseline", metavar="REV", help="also time the hook as it was at REV, in the same rounds")
    a = ap.parse_args()
    n, repeats, rounds = a.files, a.repeats, a.rounds
    root = tempfile.mkdtemp(prefix="zcas-bench-audit-")
    try:
        os.makedirs(os.path.join(root, "data"))
        for i in range(n):
            with open(os.path.join(root, "data", f"f{i:05d}.txt"), "w") as f:
                f.write(f"row {i}\n" * 8)
        sides = {"plain": [], "hooked": []}
        if a.baseline:
            old = os.path.join(root, "fileaudit_baseline.py")
            with open(old, "wb") as f:
                f.write(subprocess.run(["git", "-C", ROOT, "show", f"{a.baseline}:runners/fileaudit.py"],
                                       check=True, capture_output=True).stdout)
            sides["baseline"] = [old]
        res: dict[str, list[list[float]]] = {k: [] for k in sides}
        for _ in range(rounds):  # every variant in each round, so drift on a busy machine hits all alike
            for variant, extra in sides.items():
                kind = "hooked" if variant == "baseline" else variant
                p = subprocess.run([sys.executable, "-c", CHILD, root, str(n), str(repeats), kind, *extra],
                                   capture_output=True, text=True, check=True)
                res[variant].append([float(x) for x in p.stdout.split()])

        def med(variant: str, i: int = 0, cpu: int = 0) -> float:
            return statistics.median(r[2 * i + cpu] for r in res[variant])

        print(f"a step opening {n} files; medians over {rounds} processes of medians of {repeats} runs; "
              f"load {os.getloadavg()[0]:.2f}")
        print(f"{'what':<52}{'wall ms':>10}{'vs plain':>10}{'CPU ms':>10}{'vs plain':>10}")
        rows = [("plain (no hook: the baseline)", "plain", 0, False), ("hook installed, not recording", "hooked", 0, True),
                ("recording the step's opens", "hooked", 1, True),
                ("ids of the files read, cold stat cache", "hooked", 2, False),
                ("ids of the files read, warm stat cache", "hooked", 3, False),
                ("the hook's own work alone (events + paths)", "hooked", 4, True)]
        if a.baseline:
            rows += [(f"at {a.baseline}: hook installed, not recording", "baseline", 0, True),
                     (f"at {a.baseline}: recording the step's opens", "baseline", 1, True),
                     (f"at {a.baseline}: the hook's own work alone", "baseline", 4, True)]
        for what, variant, i, vs in rows:
            share = "own work" in what  # not a run of the step: its share of one
            line = f"{what:<52}"
            for cpu in (0, 1):
                t, plain = med(variant, i, cpu), med("plain", 0, cpu)
                extra = f"{(t if share else t - plain) / plain * 100:>+9.1f}%" if vs else " " * 10
                line += f"{t * 1000:>10.2f}{extra}"
            print(line)
        for cpu, clock in ((0, "wall"), (1, "CPU")):
            rec = sorted((r[2 + cpu] - p[cpu]) / p[cpu] * 100 for r, p in zip(res["hooked"], res["plain"], strict=True))
            print(f"recording vs plain ({clock}), round by round: {' '.join(f'{x:+.1f}%' for x in rec)}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Speed round two (issue 18), the object store's rows: each figure beside its baseline, same run.

Run:  python benchmarks/bench_speed.py [--data DIR] [--rounds N] [--only NAME ...] [--baseline REV]

Rows (rounds alternate zcas and its baseline; the ratio is the median of per-round ratios,
and each round prints the 1-minute load average it started at):

- ``big``: ``zcas add`` of 4 x 256 MiB CSV (a fresh repository each round) against the
  floor: reading the same files and BLAKE3 + zstd-1 of their bytes in 1 MiB blocks on every
  core, in one Python process (timed inside it); and against ``dvc add`` (uncompressed)
  when DVC is found (on PATH, or ``/tmp/dvcenv/bin/dvc``). The components are printed too:
  FastCDC cutting, BLAKE3 of the whole files, BLAKE3 + zstd-1 per ~40 KiB chunk.
- ``checkout``: ``zcas checkout`` of that 1 GiB into a fresh folder against ``cp -r`` of the
  same files, and the decode floor: zstd decompression + BLAKE3 of the stored chunks, on every core.
- ``readd``: ``zcas add`` of the 10,000 small files, unchanged, against ``git status`` in a
  git repository of the same files after ``git add``.
- ``small100k``: 100,000 files of 1-16 KiB (about 850 MB, in 1,000 folders): ingest against
  ``cp -r``, and re-add unchanged against ``git status``.

``--baseline REV`` also times zcas as of git revision REV in the same rounds (before/after).
The zcas figures are whole processes (interpreter start included, ~0.1 s).
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
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import gen  # noqa: E402
from common import ENV, ZCAS, warm  # noqa: E402


def load() -> float:
    return os.getloadavg()[0]


class Secs(float):
    """A wall time in seconds that also carries the process's CPU time (``cpu``)."""

    cpu = 0.0

    def __str__(self) -> str:
        return f"{float(self):.3f} s ({self.cpu:.2f} CPU-s)"


def timed(cmd, cwd=None, env=ENV) -> Secs:
    """Wall and CPU time (user + system, children included) of one command."""
    subprocess.run(["sync"], check=True)
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if p.returncode:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({p.returncode}): {p.stderr.decode(errors='replace')[-2000:]}")
    out = Secs(time.perf_counter() - t)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out.cpu = r1.ru_utime + r1.ru_stime - r0.ru_utime - r0.ru_stime
    return out


def row(name: str, mine: list[float], base: list[float], base_name: str, target: str) -> None:
    ratios = [m / b for m, b in zip(mine, base, strict=True)]
    print(f"{name:<42} {statistics.median(mine):7.3f} s ({min(mine):.3f}-{max(mine):.3f})   "
          f"{base_name} {statistics.median(base):7.3f} s ({min(base):.3f}-{max(base):.3f})   "
          f"ratio {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})   target {target}", flush=True)


def note(text: str) -> None:
    print(f"  {text}", flush=True)


def fresh_repo(path: str, zcas=ZCAS, env=ENV) -> str:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    subprocess.run(zcas + ["init"], cwd=path, env=env, check=True, stdout=subprocess.DEVNULL)
    return path


# -- floors, in this process --------------------------------------------------------------

FLOOR = r"""
import os, sys, time, threading
from concurrent.futures import ThreadPoolExecutor
from blake3 import blake3
import zstandard
local = threading.local()
def work(mv):
    c = getattr(local, "c", None)
    if c is None:
        c = local.c = zstandard.ZstdCompressor(level=1, write_checksum=False)
    blake3(mv).digest()
    return len(c.compress(mv))
t = time.perf_counter()
datas = []
for p in sys.argv[1:]:
    with open(p, "rb") as f:
        datas.append(f.read())
read = time.perf_counter() - t
with ThreadPoolExecutor(os.cpu_count()) as ex:
    ex.submit(work, b"warm").result()
    t = time.perf_counter()
    c0 = os.times()
    futs = []
    for data in datas:
        mv = memoryview(data)
        futs += [ex.submit(work, mv[i : i + (1 << 20)]) for i in range(0, len(data), 1 << 20)]
    out = sum(f.result() for f in futs)
    c1 = os.times()
print(time.perf_counter() - t, c1.user + c1.system - c0.user - c0.system, read, out)
"""


def floor(files: list[str]) -> tuple[float, float, float]:
    """(wall, CPU, read): BLAKE3 + zstd-1 of the files' bytes (in memory) in 1 MiB blocks on
    every core, timed inside one Python process; ``read`` is what reading them took first."""
    out = subprocess.run([sys.executable, "-c", FLOOR, *files], check=True, capture_output=True, text=True).stdout
    wall, cpu, read, _ = out.split()
    return float(wall), float(cpu), float(read)


def components(files: list[str]) -> None:
    """What a chunked ingest must do beyond the floor, each timed alone on one thread."""
    from blake3 import blake3
    from pyfastcdc import FastCDC

    from zcas.cas.manifest import AVG_CHUNK

    datas = []
    for p in files:
        with open(p, "rb") as f:
            datas.append(f.read())
    t = time.perf_counter()
    cuts = [[(c.offset, c.length) for c in FastCDC(AVG_CHUNK).cut_buf(d)] for d in datas]
    cut = time.perf_counter() - t
    t = time.perf_counter()
    for d in datas:
        blake3(d).digest()
    whole = time.perf_counter() - t
    t = time.perf_counter()
    for d, cs in zip(datas, cuts, strict=True):
        mv = memoryview(d)
        for off, n in cs:
            blake3(mv[off : off + n]).digest()
    per_chunk = time.perf_counter() - t
    n = sum(map(len, cuts))
    note(f"components, one thread: FastCDC cut {cut:.3f} s ({n} chunks); BLAKE3 whole files {whole:.3f} s; "
         f"BLAKE3 per chunk {per_chunk:.3f} s (load {load():.2f})")


# -- rows ---------------------------------------------------------------------------------


def dvc() -> str | None:
    for p in (shutil.which("dvc"), "/tmp/dvcenv/bin/dvc"):
        if p and os.path.exists(p):
            return p
    return None


def bench_big(d: dict, work: str, rounds: int, old: dict | None) -> None:
    files = sorted(os.path.join(d["big"], n) for n in os.listdir(d["big"]))
    warm(d["big"])
    components(files)
    mine, base, cpus, olds = [], [], [], []
    for i in range(rounds):
        lo = load()
        f_wall, f_cpu, f_read = floor(files)
        repo = fresh_repo(os.path.join(work, "big"))
        t = timed(ZCAS + ["add", d["big"]], cwd=repo)
        mine.append(t)
        base.append(f_wall)
        cpus.append(f_cpu)
        extra = ""
        if old is not None:
            repo = fresh_repo(os.path.join(work, "big-old"), old["cmd"], old["env"])
            olds.append(timed(old["cmd"] + ["add", d["big"]], cwd=repo, env=old["env"]))
            extra = f"; before {olds[-1]}"
        note(f"round {i + 1}: zcas add {t}, floor {f_wall:.3f} s ({f_cpu:.2f} CPU-s; reading the files "
             f"first {f_read:.3f} s){extra} (load {lo:.2f})")
    row("ingest 1 GiB vs floor", mine, base, "floor", "<= 1.15x")
    if olds:
        row("ingest 1 GiB, before", olds, base, "floor", "")
    exe = dvc()
    if exe is None:
        note("dvc add: DVC not found")
        return
    dv = []
    for i in range(min(rounds, 3)):
        repo = os.path.join(work, "dvc")
        shutil.rmtree(repo, ignore_errors=True)
        os.makedirs(repo)
        subprocess.run([exe, "init", "--no-scm", "-q"], cwd=repo, check=True)
        shutil.copytree(d["big"], os.path.join(repo, "big"))
        warm(os.path.join(repo, "big"))
        lo = load()
        dv.append(timed([exe, "add", "-q", "big"], cwd=repo, env=os.environ))
        zrepo = fresh_repo(os.path.join(work, "big"))
        mine2 = timed(ZCAS + ["add", d["big"]], cwd=zrepo)
        note(f"round {i + 1}: dvc add {dv[-1]}, zcas add {mine2} (load {lo:.2f})")
        mine[i] = mine2
        shutil.rmtree(repo, ignore_errors=True)
    row("ingest 1 GiB vs dvc add", mine[: len(dv)], dv, "dvc add", "<= 0.7x")


DECODE = r"""
import os, sys, time, threading
from concurrent.futures import ThreadPoolExecutor
from zcas.cas.repo import Repo
from zcas.cas import codec
from blake3 import blake3
db = Repo(sys.argv[1]).db
recs = [db.read_record(o, e) for o, e in db.iter_entries() if e.kind == codec.KIND_BLOB]
def work(part):
    for r in part:
        blake3(codec.decode(b"", r)[1]).digest()
t = time.perf_counter()
with ThreadPoolExecutor(os.cpu_count()) as ex:
    list(ex.map(work, [recs[i : i + 256] for i in range(0, len(recs), 256)]))
print(time.perf_counter() - t)
"""


def bench_checkout(d: dict, work: str, rounds: int, old: dict | None) -> None:
    warm(d["big"])
    repo = fresh_repo(os.path.join(work, "co"))
    oid = subprocess.run(ZCAS + ["add", "--json", d["big"]], cwd=repo, env=ENV, check=True, capture_output=True,
                         text=True).stdout.split('"id": "')[1][:64]
    mine, cps, olds = [], [], []
    out = os.path.join(work, "co-out")
    for i in range(rounds):
        lo = load()
        shutil.rmtree(out, ignore_errors=True)
        cps.append(timed(["cp", "-r", d["big"], out]))
        shutil.rmtree(out, ignore_errors=True)
        mine.append(timed(ZCAS + ["checkout", oid, out], cwd=repo))
        extra = ""
        if old is not None:
            shutil.rmtree(out, ignore_errors=True)
            olds.append(timed(old["cmd"] + ["checkout", oid, out], cwd=repo, env=old["env"]))
            extra = f"; before {olds[-1]}"
        dec = float(subprocess.run([sys.executable, "-c", DECODE, repo], env=ENV, check=True, capture_output=True,
                                   text=True).stdout)
        note(f"round {i + 1}: zcas checkout {mine[-1]}, cp -r {cps[-1]}, decode+hash floor {dec:.3f} s"
             f"{extra} (load {lo:.2f})")
    row("checkout 1 GiB vs cp -r", mine, cps, "cp -r", "<= 1.05x")
    if olds:
        row("checkout 1 GiB, before", olds, cps, "cp -r", "")
    shutil.rmtree(out, ignore_errors=True)


def git_repo(src: str, path: str) -> str:
    """A git repository holding a copy of ``src``, every file added."""
    shutil.rmtree(path, ignore_errors=True)
    shutil.copytree(src, os.path.join(path, "data"))
    subprocess.run(["git", "init", "-q"], cwd=path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "status", "--porcelain"], cwd=path, check=True, stdout=subprocess.DEVNULL)
    return path


def readd_vs_git(name: str, src: str, work: str, rounds: int, old: dict | None) -> None:
    g = git_repo(src, os.path.join(work, f"git-{name}"))
    repo = fresh_repo(os.path.join(work, f"readd-{name}"))
    shutil.copytree(src, os.path.join(repo, "data"))
    subprocess.run(ZCAS + ["add", "data"], cwd=repo, env=ENV, check=True, stdout=subprocess.DEVNULL)
    if old is not None:
        orepo = fresh_repo(os.path.join(work, f"readd-{name}-old"), old["cmd"], old["env"])
        shutil.copytree(src, os.path.join(orepo, "data"))
        subprocess.run(old["cmd"] + ["add", "data"], cwd=orepo, env=old["env"], check=True, stdout=subprocess.DEVNULL)
    time.sleep(0.2)  # past the stat cache's racy window
    subprocess.run(ZCAS + ["add", "data"], cwd=repo, env=ENV, check=True, stdout=subprocess.DEVNULL)
    mine, gits, olds = [], [], []
    for i in range(rounds):
        lo = load()
        gits.append(timed(["git", "status", "--porcelain"], cwd=g, env=os.environ))
        mine.append(timed(ZCAS + ["add", "data"], cwd=repo))
        bare, helps = timed([sys.executable, "-c", "pass"]), timed(ZCAS + ["--help"])
        note(f"round {i + 1}: a bare Python process {bare}, zcas --help {helps} (the start any zcas command pays)")
        extra = ""
        if old is not None:
            olds.append(timed(old["cmd"] + ["add", "data"], cwd=orepo, env=old["env"]))
            extra = f"; before {olds[-1]}"
        note(f"round {i + 1}: zcas re-add {mine[-1]}, git status {gits[-1]}{extra} (load {lo:.2f})")
    row(f"re-add unchanged {name} vs git status", mine, gits, "git status", "<= 3x")
    if olds:
        row(f"re-add unchanged {name}, before", olds, gits, "git status", "")


def bench_readd(d: dict, work: str, rounds: int, old: dict | None) -> None:
    warm(d["small"])
    readd_vs_git("10k", d["small"], work, rounds, old)


def bench_small100k(d: dict, work: str, rounds: int, old: dict | None) -> None:
    src = d["small100k"]
    if not os.path.isdir(src):
        gen.small_files(src + ".tmp", count=100_000, folders=1000, seed=7)
        os.rename(src + ".tmp", src)
    warm(src)
    mine, cps, olds = [], [], []
    for i in range(rounds):
        lo = load()
        out = os.path.join(work, f"cp100k-{i}")  # a fresh name: never copied into a leftover
        cps.append(timed(["cp", "-r", src, out]))
        shutil.rmtree(out)
        repo = fresh_repo(os.path.join(work, "in100k"))
        mine.append(timed(ZCAS + ["add", src], cwd=repo))
        extra = ""
        if old is not None:
            repo = fresh_repo(os.path.join(work, "in100k-old"), old["cmd"], old["env"])
            olds.append(timed(old["cmd"] + ["add", src], cwd=repo, env=old["env"]))
            extra = f"; before {olds[-1]}"
        note(f"round {i + 1}: zcas add {mine[-1]}, cp -r {cps[-1]}{extra} (load {lo:.2f})")
    row("ingest 100k small files vs cp -r", mine, cps, "cp -r", "<= 0.5x")
    if olds:
        row("ingest 100k small files, before", olds, cps, "cp -r", "")
    for p in (os.path.join(work, "in100k"), os.path.join(work, "in100k-old")):
        shutil.rmtree(p, ignore_errors=True)
    readd_vs_git("100k", src, work, rounds, old)


BENCHES = {"big": bench_big, "checkout": bench_checkout, "readd": bench_readd, "small100k": bench_small100k}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "zcas-bench-data"))
    ap.add_argument("--work", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", nargs="*", choices=sorted(BENCHES))
    ap.add_argument("--baseline", metavar="REV", help="also time zcas as of git revision REV, in the same rounds")
    a = ap.parse_args()
    import bench_cas

    d = bench_cas.prepare(a.data, quick=False)
    d["small100k"] = os.path.join(a.data, "small100k")
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}  {os.cpu_count()} cores  load {os.getloadavg()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="zcas-speed-", dir=a.work) as work:
        old = None
        if a.baseline:
            from bench_remote import old_zcas

            old = old_zcas(a.baseline, os.path.join(work, "old"))
            old["env"] = {**ENV, **old["env"]}
        for name in a.only or list(BENCHES):
            BENCHES[name](d, work, a.rounds, old)


if __name__ == "__main__":
    main()

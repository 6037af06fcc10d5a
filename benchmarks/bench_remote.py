"""Remote benchmarks (issue 6): push and pull to an S3-protocol server on 127.0.0.1.

Run:  python benchmarks/bench_remote.py [--data DIR] [--quick] [--baseline REV [--rounds N] [--quiet S]] [--no-plain]

Starts moto's S3 server (pip install -e '.[test]'), then measures `zcas push` and `zcas
pull` of the 10,000 small files and of the 1 GiB data, beside plain obstore puts and gets
of the same bytes to the same server in the same run (16 requests in flight), and `dvc
push`/`dvc pull` where DVC is installed.

`--baseline REV` also pulls the same remote with zcas as it was at git revision REV
(extracted to a temporary folder and run from there, with that revision's own command
line), alternating with the current pull, so the cost of a change (say, verifying every
pulled record) is a same-run ratio. Beside the wall times it prints the CPU time of each
pull and of the S3 server, and a floor: the time decoding and hashing the same records
takes alone, in memory, on every core. A verified pull has to do the baseline's work (the
download, the writes, the server's part, all on the same machine here) and that on top, so
it cannot take less than the sum of those CPU times divided by the cores: the bound printed.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from common import ENV, ZCAS  # noqa: E402

import bench_cas  # noqa: E402
from tests import s3server  # noqa: E402


def timed(cmd, cwd, env) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def files_of(root: str) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, fs in os.walk(root) for f in fs)


def raw_obstore(files: list[str], root: str, url: str) -> tuple[float, float]:
    import obstore

    from zcas.cas.objstore import make_store

    store = make_store(url)
    t = time.perf_counter()
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda p: obstore.put(store, os.path.relpath(p, root), open(p, "rb").read()), files))
    put = time.perf_counter() - t
    t = time.perf_counter()
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda p: obstore.get(store, os.path.relpath(p, root)).bytes(), files))
    return put, time.perf_counter() - t


def old_zcas(rev: str, dest: str) -> dict:
    """How to run zcas as it was at ``rev`` (its packages laid out as they install: zcas/,
    zcas/cas, zcas/lineage, zcas/runners): ``env`` to add, and ``cmd``, its own command
    line (``python -m zcas`` now; ``python -m zcas.runners`` before the CLI moved; the
    current one must not run, since modules an old tree lacks would come from this one)."""
    import tarfile

    root = os.path.dirname(HERE)
    src = os.path.join(dest, "src")
    os.makedirs(src)
    archive = subprocess.run(["git", "-C", root, "archive", rev], check=True, capture_output=True).stdout
    import io

    with tarfile.open(fileobj=io.BytesIO(archive)) as t:
        t.extractall(src, filter="data")
    pkg = os.path.join(dest, "pkg", "zcas")
    shutil.copytree(os.path.join(src, "zcas"), pkg)
    for sub in ("cas", "lineage", "runners"):
        shutil.copytree(os.path.join(src, sub), os.path.join(pkg, sub))
    subprocess.run([sys.executable, "-m", "compileall", "-q", pkg], check=True)
    main = next(m for m in ("zcas", "zcas.runners") if os.path.exists(os.path.join(dest, "pkg", *m.split("."), "__main__.py")))
    return {"env": {"PYTHONPATH": os.path.join(dest, "pkg")}, "cmd": [sys.executable, "-m", main]}


def fresh(path: str, url: str, env: dict, cmd: list[str] = ZCAS) -> str:
    os.makedirs(path)
    subprocess.run(cmd + ["init"], cwd=path, env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(cmd + ["remote", "add", "origin", url], cwd=path, env=env, check=True)
    return path


def timed_cpu(cmd, cwd, env, server: int | None) -> tuple[float, float, float, float]:
    """(wall seconds, CPU seconds of the process, CPU seconds of the server meanwhile, CPU
    seconds every other process on the machine used meanwhile: on a shared machine, the
    noise each figure sits in)."""
    before, s0, b0 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_of(server), machine_busy()
    wall = timed(cmd, cwd, env)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own, srv = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, cpu_of(server) - s0
    return wall, own, srv, max(0.0, machine_busy() - b0 - own - srv)


def wait_quiet(limit: float) -> None:
    """Wait (up to ``limit`` seconds) for half a second in which other processes leave at
    least 90% of the machine idle, so that a timed pull does not share its cores."""
    cores, end = os.cpu_count() or 1, time.monotonic() + limit
    while time.monotonic() < end:
        b = machine_busy()
        time.sleep(0.5)
        if machine_busy() - b < 0.1 * 0.5 * cores:
            return


def machine_busy() -> float:
    """CPU seconds all processes have used since boot (Linux; 0 elsewhere)."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return 0.0
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


def cpu_of(pid: int | None) -> float:
    """CPU seconds a process has used so far (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def compare_pulls(name: str, url: str, work: str, env: dict, baseline: dict, rounds: int, server: int | None,
                  quiet: float = 0) -> str:
    """Pull the remote with the baseline, then with zcas now, alternating, ``rounds`` times
    each; print medians side by side, and the floor. Returns a repository pulled now."""
    import statistics

    old_env = {**env, **baseline["env"]}
    runs: dict[str, list[tuple[float, float, float, float]]] = {"now": [], "then": []}
    for i in range(rounds):
        then = fresh(os.path.join(work, f"{name}-old{i}"), url, old_env, baseline["cmd"])
        wait_quiet(quiet)
        runs["then"].append(timed_cpu(baseline["cmd"] + ["pull"], then, old_env, server))
        now = fresh(os.path.join(work, f"{name}-new{i}"), url, env)
        wait_quiet(quiet)
        runs["now"].append(timed_cpu(ZCAS + ["pull"], now, env, server))
    med = {k: [statistics.median(r[c] for r in v) for c in range(4)] for k, v in runs.items()}
    spread = {k: "–".join(f"{f(r[0] for r in v):.2f}" for f in (min, max)) for k, v in runs.items()}
    (w, c, sv, o), (bw, bc, bsv, bo) = med["now"], med["then"]
    print(f"{name:<12} pull, median of {rounds}   verified (now)        baseline ({baseline['rev']})   now/baseline", flush=True)
    print(f"{'':<12} wall              {w:6.2f} s ({spread['now']})   {bw:6.2f} s ({spread['then']})   {w / bw:.2f}x")
    print(f"{'':<12} zcas CPU          {c:6.2f} s              {bc:6.2f} s              {c / bc:.2f}x")
    print(f"{'':<12} S3 server CPU     {sv:6.2f} s              {bsv:6.2f} s")
    print(f"{'':<12} others' CPU       {o:6.2f} s              {bo:6.2f} s              (other processes meanwhile: noise)")
    wait_quiet(quiet)
    fw, fc, n, raw = verify_floor(now)
    cores = os.cpu_count() or 1
    need = max(bw, (bc + bsv + fc) / cores)
    print(f"{'':<12} floor: decoding and hashing the same {n:,} records ({raw / 1e6:,.0f} MB) alone, in memory, "
          f"{cores} threads: {fw:.2f} s ({fc:.2f} CPU-s)")
    print(f"{'':<12} so a verified pull needs >= max(baseline wall, (baseline CPU {bc:.2f} + server {bsv:.2f} + "
          f"verifying {fc:.2f}) / {cores} cores) = {need:.2f} s: >= {need / bw:.2f}x the baseline", flush=True)
    return now


def verify_floor(repo: str) -> tuple[float, float, int, int]:
    """(wall, CPU seconds, records, decoded bytes) to decode and hash every record of a
    repository's packs, already in memory, on every core: the least verifying them costs,
    whoever does it. Plain zstandard and blake3 calls, no zcas code in the loop."""
    import glob
    import struct

    import zstandard
    from blake3 import blake3

    from zcas.cas.pack import decode_index

    work = []
    for path in glob.glob(os.path.join(repo, ".zcas", "objects", "packs", "*.pack")):
        name = os.path.basename(path)[5:-5]
        with open(path, "rb") as f:
            body = f.read()
        with open(path[:-5] + ".idx", "rb") as f:
            ents = sorted(decode_index(name, f.read()), key=lambda t: t[1])
        work += [(body, ents[k : k + 256]) for k in range(0, len(ents), 256)]
    head = struct.Struct("<BBQ")

    def one(task) -> int:
        body, ents = task
        d = zstandard.ZstdDecompressor()
        n = 0
        for _, off, length, _, _ in ents:
            _, codec, raw = head.unpack_from(body, off)
            rec = memoryview(body)[off + head.size : off + length]
            data = d.decompress(rec, max_output_size=raw) if codec == 1 else rec
            blake3(data).digest()
            n += len(data)
        return n

    cores = os.cpu_count() or 1
    t, c = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(cores) as ex:
        raw = sum(ex.map(one, work))
    return time.perf_counter() - t, time.process_time() - c, sum(len(e) for _, e in work), raw


def one(name: str, src: str, work: str, env: dict, bucket_url: str, baseline: dict | None = None,
        plain: bool = True, rounds: int = 3, server: int | None = None, quiet: float = 0) -> None:
    url = f"{bucket_url}/{name}-zcas"
    a = fresh(os.path.join(work, f"{name}-a"), url, env)
    b = fresh(os.path.join(work, f"{name}-b"), url, env)
    subprocess.run(ZCAS + ["add", src], cwd=a, env=env, check=True, stdout=subprocess.DEVNULL)
    push = timed(ZCAS + ["push"], a, env)
    pull = timed(ZCAS + ["pull"], b, env)
    if baseline is not None:  # alternate: then, now, then, now ... and compare medians
        compare_pulls(name, url, work, env, baseline, rounds, server, quiet)
    if not plain:
        return
    files = files_of(src)
    rput, rget = raw_obstore(files, src, f"{bucket_url}/{name}-raw")
    print(f"{name:<12} push {push:7.2f}s  pull {pull:7.2f}s   |  plain obstore, 16 in flight: put {rput:7.2f}s  get {rget:7.2f}s"
          f"   |  push/put {push / rput:.2f}x  pull/get {pull / rget:.2f}x", flush=True)
    if shutil.which("dvc"):
        d = os.path.join(work, f"{name}-dvc")
        os.makedirs(d)
        subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=d, env=env, check=True)
        subprocess.run(["dvc", "remote", "add", "-d", "s3", f"{bucket_url}/{name}-dvc"], cwd=d, env=env, check=True)
        subprocess.run(["dvc", "remote", "modify", "s3", "endpointurl", env["AWS_ENDPOINT_URL"]], cwd=d, env=env, check=True)
        shutil.copytree(src, os.path.join(d, "data"))
        subprocess.run(["dvc", "add", "-q", "data"], cwd=d, env=env, check=True)
        dp = timed(["dvc", "push", "-q"], d, env)
        shutil.rmtree(os.path.join(d, ".dvc", "cache"))
        shutil.rmtree(os.path.join(d, "data"))
        dl = timed(["dvc", "pull", "-q"], d, env)
        print(f"{'':<12} dvc push {dp:7.2f}s  dvc pull {dl:7.2f}s   |  zcas {dp / push:.1f}x / {dl / pull:.1f}x faster")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "zcas-bench-data"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--baseline", metavar="REV", help="also pull with zcas as of git revision REV, in the same run")
    ap.add_argument("--rounds", type=int, default=3, help="pulls of each, alternating, with --baseline (default 3)")
    ap.add_argument("--no-plain", action="store_true", help="skip plain obstore and DVC (only zcas, and the baseline)")
    ap.add_argument("--quiet", type=float, default=0, metavar="SECONDS",
                    help="with --baseline, wait up to SECONDS before each timed pull for the machine to be idle")
    a = ap.parse_args()
    d = bench_cas.prepare(a.data + ("-quick" if a.quick else ""), a.quick)
    proc, endpoint = s3server.start()
    try:
        s3server.make_bucket(endpoint, "bench")
        env = {**ENV, **s3server.env_for(endpoint)}
        os.environ.update(s3server.env_for(endpoint))
        with tempfile.TemporaryDirectory(prefix="zcas-bench-remote-") as work:
            base = old_zcas(a.baseline, os.path.join(work, "baseline")) if a.baseline else None
            if base:
                base["rev"] = a.baseline
            print("targets: small files push <= 5.5 s, pull <= 8 s; 1 GiB push and pull within 1.5x of plain obstore"
                  + ("; verified pull within 1.3x of the baseline's" if base else ""))
            for name, key in (("small-10k", "small"), ("big-1GiB", "big")):
                one(name, d[key], work, env, "s3://bench", base, not a.no_plain, a.rounds, proc.pid, a.quiet)
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()

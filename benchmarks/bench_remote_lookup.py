"""Remote lookups at scale (issue 19): does a cache miss, a hit or a pull cost more when
the remote holds a large history?

Run:  python benchmarks/bench_remote_lookup.py [--runs 100000] [--segments 10000] [--steps 50]
      [--s3-only | --file-only] [--repeat 3]

For each remote kind (moto's S3 server on 127.0.0.1, and a file:// folder), in one run:

- a remote seeded through the library with RUNS run records in SEGMENTS lineage segments
  (valid records, as pushes would leave them), and an empty remote;
- miss: `zcas run` of one new command against the big remote vs the empty one, and the
  requests it made to the remote (counted at the backend);
- pipeline: a STEPS-step chain, all misses, with the big remote configured vs none;
- hits: the same chain in a fresh repository, every step a hit from the big remote (its
  outputs fetched), vs the same chain's local hits (outputs deleted, restored from the local
  store) plus the raw download of the bytes the hits fetched (obstore GETs of the packs);
- pull: `zcas pull` when nothing is new, against the big remote.

Each figure is the median of --repeat runs.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from common import ENV, ZCAS  # noqa: E402

from tests import s3server  # noqa: E402

_COUNTED = """
import json, os, sys
from zcas.cas.objstore import ObstoreBackend
n = [0]
for name in ("get", "get_range", "get_ranges", "get_bounded", "stream", "put", "put_path", "delete", "list", "info",
             "list_after"):
    orig = getattr(ObstoreBackend, name)
    def counted(self, *a, _orig=orig, **kw):
        n[0] += 1
        return _orig(self, *a, **kw)
    setattr(ObstoreBackend, name, counted)
from zcas.cli import main
sys.argv = ["zcas", *sys.argv[1:]]
try:
    main()
finally:
    print(n[0], file=open(os.environ["BENCH_REQUESTS"], "w"))
"""


def run(args, cwd, env, counted: str | None = None) -> float:
    cmd = [sys.executable, "-c", _COUNTED, *args] if counted else [*ZCAS, *args]
    e = dict(env, BENCH_REQUESTS=counted) if counted else env
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=e, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def seed(url: str, env: dict, runs: int, segments: int) -> None:
    """RUNS valid run records in SEGMENTS segments, written as pushes would write them."""
    from zcas.cas import codec
    from zcas.cas.objstore import ObstoreBackend
    from zcas.lineage import serde
    from zcas.lineage.records import Run
    from zcas.lineage.remote import _pack, _seg_key

    old = dict(os.environ)
    os.environ.update(env)
    try:
        b = ObstoreBackend(url, env.get("AWS_ENDPOINT_URL"), None, True)
        per = max(1, runs // segments)
        now, year = time.time_ns(), 365 * 24 * 3600 * 10**9

        def one(s: int) -> None:
            recs = []
            for i in range(per):
                t = s * per + i + 1
                run = Run(step=f"seed-{t % 997}", kind="command", status="ran", started_ns=t, ended_ns=t + 1,
                          host="h", user="u")
                recs.append(serde.canonical(dict(serde.unstructure(run), type="run")))
            payload = _pack(recs)
            # named over the year before now, as a team's pushes would be
            when = now - year + s * (year // segments)
            b.put(_seg_key(payload, when), codec.encode(codec.KIND_RECORD, payload))

        with ThreadPoolExecutor(16) as ex:
            list(ex.map(one, range(segments)))
    finally:
        os.environ.clear()
        os.environ.update(old)


def repo(path: str, url: str | None, env: dict, endpoint: str | None) -> str:
    os.makedirs(path)
    subprocess.run([*ZCAS, "init"], cwd=path, env=env, check=True, stdout=subprocess.DEVNULL)
    if url:
        extra = ["--endpoint", endpoint, "--allow-http"] if endpoint else []
        subprocess.run([*ZCAS, "remote", "add", "origin", url, *extra], cwd=path, env=env, check=True,
                       stdout=subprocess.DEVNULL)
    return path


def chain(path: str, steps: int) -> None:
    lines = ['[steps.s0]\ncmd = "head -c 200000 /dev/urandom > o0.bin"\noutputs = ["o0.bin"]\n']
    for i in range(1, steps):
        lines.append(f'[steps.s{i}]\ncmd = "cat o{i - 1}.bin o{i - 1}.bin | head -c 200000 > o{i}.bin; echo {i} >> o{i}.bin"\n'
                     f'inputs = ["o{i - 1}.bin"]\noutputs = ["o{i}.bin"]\n')
    with open(os.path.join(path, "zcas.toml"), "w") as f:
        f.write("\n".join(lines))


def raw_download(url: str, env: dict, keys: list[str]) -> float:
    import obstore

    from zcas.cas.objstore import make_store

    old = dict(os.environ)
    os.environ.update(env)
    try:
        store = make_store(url)
        t = time.perf_counter()
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(lambda k: obstore.get(store, k).bytes(), keys))
        return time.perf_counter() - t
    finally:
        os.environ.clear()
        os.environ.update(old)


def bench(kind: str, url_of, env: dict, endpoint: str | None, a: argparse.Namespace, work: str) -> None:
    big, empty = url_of("big"), url_of("empty")
    t = time.perf_counter()
    seed(big, env, a.runs, a.segments)
    print(f"[{kind}] seeded {a.runs} runs in {a.segments} segments in {time.perf_counter() - t:.1f}s", flush=True)
    reqs = os.path.join(work, f"{kind}-requests")

    # miss: one new command, big remote vs empty remote
    miss_big, miss_empty, counts = [], [], []
    for r in range(a.repeat):
        for url, out in ((big, miss_big), (empty, miss_empty)):
            p = repo(os.path.join(work, f"{kind}-miss-{len(out)}-{r}-{'big' if url == big else 'empty'}"), url, env,
                     endpoint)
            out.append(run(["run", "-o", "o.txt", "--", "sh", "-c", f"echo {r} > o.txt"], p, env,
                           counted=reqs if url == big else None))
            if url == big:
                counts.append(int(open(reqs).read()))
    print(f"[{kind}] miss, 1 step: big remote {median(miss_big):.3f}s vs empty remote {median(miss_empty):.3f}s "
          f"= {median(miss_big) / median(miss_empty):.2f}x (target <= 1.2x); requests per missing key: "
          f"{max(counts)} (target <= 2)", flush=True)

    # a chain of misses, big remote vs no remote
    with_remote, without = [], []
    for r in range(a.repeat):
        for url, out in ((big, with_remote), (None, without)):
            p = repo(os.path.join(work, f"{kind}-chain-{r}-{'remote' if url else 'none'}"), url, env, endpoint)
            chain(p, a.steps)
            out.append(run(["run"], p, env))
    print(f"[{kind}] {a.steps}-step chain, all misses: big remote {median(with_remote):.3f}s vs no remote "
          f"{median(without):.3f}s = {median(with_remote) / median(without):.2f}x (target <= 1.3x)", flush=True)

    # hits from the big remote vs local hits plus the raw transfer of the same bytes
    producer = os.path.join(work, f"{kind}-chain-0-remote")
    run(["push"], producer, env)
    from zcas.cas.objstore import ObstoreBackend

    old = dict(os.environ)
    os.environ.update(env)
    packs = [k for k in ObstoreBackend(big, endpoint, None, True).list("packs/") if k.endswith(".pack")]
    os.environ.clear()
    os.environ.update(old)
    remote_hits, local_hits, transfer = [], [], []
    for r in range(a.repeat):
        p = repo(os.path.join(work, f"{kind}-hits-{r}"), big, env, endpoint)
        chain(p, a.steps)
        remote_hits.append(run(["run"], p, env))
        for i in range(a.steps):
            os.unlink(os.path.join(p, f"o{i}.bin"))
        local_hits.append(run(["run"], p, env))
        transfer.append(raw_download(big, env, packs))
    floor = median(local_hits) + median(transfer)
    print(f"[{kind}] {a.steps}-step chain, all hits from the big remote: {median(remote_hits):.3f}s vs local hits "
          f"{median(local_hits):.3f}s + raw download {median(transfer):.3f}s = {floor:.3f}s: "
          f"{median(remote_hits) / floor:.2f}x (target <= 1.5x)", flush=True)

    # the cursor: one LIST from a start-after offset vs one GET of a small manifest object
    from zcas.cas.objstore import ObstoreBackend

    old = dict(os.environ)
    os.environ.update(env)
    try:
        b = ObstoreBackend(big, endpoint, None, True)
        b.put("bench-manifest", b"x" * 4096)
        start = f"lineage/t-{time.time_ns() - 24 * 3600 * 10**9:016x}"
        lists, gets = [], []
        for _ in range(max(5, a.repeat)):
            t = time.perf_counter()
            list(b.list_after("lineage/", start))
            lists.append(time.perf_counter() - t)
            t = time.perf_counter()
            b.get("bench-manifest")
            gets.append(time.perf_counter() - t)
    finally:
        os.environ.clear()
        os.environ.update(old)
    print(f"[{kind}] cursor: LIST after an offset {median(lists) * 1000:.1f} ms vs GET of a 4 KiB manifest "
          f"{median(gets) * 1000:.1f} ms", flush=True)

    # pull when nothing is new
    p = repo(os.path.join(work, f"{kind}-pull"), big, env, endpoint)
    t = time.perf_counter()
    run(["pull"], p, env)
    first = time.perf_counter() - t
    again = [run(["pull"], p, env) for _ in range(a.repeat)]
    nothing = [run(["--version"], p, env) for _ in range(a.repeat)]
    print(f"[{kind}] pull with nothing new, {a.segments} segments: {median(again):.3f}s (target <= 0.3s; "
          f"zcas --version alone {median(nothing):.3f}s; the first pull, indexing {a.runs} runs, {first:.1f}s)",
          flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=100_000)
    ap.add_argument("--segments", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--s3-only", action="store_true")
    ap.add_argument("--file-only", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="zcas-bench-lookup-")
    proc = None
    try:
        if not a.s3_only:
            bench("file", lambda n: f"file://{work}/remote-{n}", ENV, None, a, work)
        if not a.file_only:
            proc, endpoint = s3server.start()
            s3server.make_bucket(endpoint)
            env = dict(ENV, **s3server.env_for(endpoint))
            bench("s3", lambda n: f"s3://{s3server.BUCKET}/{n}", env, None, a, work)  # (endpoint: in env)
    finally:
        if proc is not None:
            proc.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

"""Remote benchmarks (issue 6): push and pull to an S3-protocol server on 127.0.0.1.

Run:  python benchmarks/bench_remote.py [--data DIR] [--quick]

Starts moto's S3 server (pip install -e '.[test]'), then measures `zcas push` and `zcas
pull` of the 10,000 small files and of the 1 GiB data, beside plain obstore puts and gets
of the same bytes to the same server in the same run (16 requests in flight), and `dvc
push`/`dvc pull` where DVC is installed.

`--baseline REV` also pulls the same remote with zcas as it was at git revision REV
(extracted to a temporary folder and run from there), alternating with the current pull,
so the cost of a change (say, verifying every pulled record) is a same-run ratio.
"""

from __future__ import annotations

import argparse
import os
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
    """The environment that runs zcas as it was at ``rev`` (its packages laid out as they
    install: zcas/, zcas/cas, zcas/lineage, zcas/runners)."""
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
    return {"PYTHONPATH": os.path.join(dest, "pkg")}


def fresh(path: str, url: str, env: dict) -> str:
    os.makedirs(path)
    subprocess.run(ZCAS + ["init"], cwd=path, env=env, check=True, stdout=subprocess.DEVNULL)
    subprocess.run(ZCAS + ["remote", "add", "origin", url], cwd=path, env=env, check=True)
    return path


def one(name: str, src: str, work: str, env: dict, bucket_url: str, baseline: dict | None = None) -> None:
    url = f"{bucket_url}/{name}-zcas"
    a = fresh(os.path.join(work, f"{name}-a"), url, env)
    b = fresh(os.path.join(work, f"{name}-b"), url, env)
    subprocess.run(ZCAS + ["add", src], cwd=a, env=env, check=True, stdout=subprocess.DEVNULL)
    push = timed(ZCAS + ["push"], a, env)
    pull = timed(ZCAS + ["pull"], b, env)
    if baseline is not None:  # alternate: now, then, now, then ... and compare medians
        import statistics

        now, then = [pull], []
        for i in range(3):
            old_env = {**env, **baseline}
            then.append(timed(ZCAS + ["pull"], fresh(os.path.join(work, f"{name}-old{i}"), url, old_env), old_env))
            if i < 2:
                now.append(timed(ZCAS + ["pull"], fresh(os.path.join(work, f"{name}-new{i}"), url, env), env))
        pull = statistics.median(now)
        print(f"{name:<12} pull now {pull:7.2f}s (runs {', '.join(f'{x:.2f}' for x in now)})  |  "
              f"baseline {statistics.median(then):7.2f}s (runs {', '.join(f'{x:.2f}' for x in then)})  |  "
              f"now/baseline {pull / statistics.median(then):.2f}x", flush=True)
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
    a = ap.parse_args()
    d = bench_cas.prepare(a.data + ("-quick" if a.quick else ""), a.quick)
    proc, endpoint = s3server.start()
    try:
        s3server.make_bucket(endpoint, "bench")
        env = {**ENV, **s3server.env_for(endpoint)}
        os.environ.update(s3server.env_for(endpoint))
        with tempfile.TemporaryDirectory(prefix="zcas-bench-remote-") as work:
            base = old_zcas(a.baseline, os.path.join(work, "baseline")) if a.baseline else None
            print("targets: small files push <= 5.5 s, pull <= 8 s; 1 GiB push and pull within 1.5x of plain obstore"
                  + ("; verified pull within 1.3x of the baseline's" if base else ""))
            one("small-10k", d["small"], work, env, "s3://bench", base)
            one("big-1GiB", d["big"], work, env, "s3://bench", base)
    finally:
        proc.terminate()


if __name__ == "__main__":
    main()

"""Distributed runs through the store (issue 14): a Dask scheduler and 2 single-thread
workers as separate processes on 127.0.0.1, the moto S3 server, a client repository the
workers are never told about.

Run:  python benchmarks/bench_distributed.py [--fan 200] [--cpu-steps 32] [--seconds 0.5]
                                             [--big-mb 200] [--big-steps 100] [--parts overhead,cpu,big]

Prints, with same-run baselines:
- per-step overhead: a fan-out of --fan empty command steps (``true``), and of steps
  writing one small output each, ``zcas run -j 8`` on the dask stack against the local
  runner (target: <= 20 ms a step over local);
- a fan-out of --cpu-steps CPU-bound Python steps: speed-up over a sequential loop of the
  same function, on the stack through the store and on a local 2-worker dask cluster
  sharing the folder (target: >= 1.8x);
- bytes the workers downloaded for --big-steps command steps reading one --big-mb input
  (target: <= 2 x input x workers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
sys.path.insert(0, ROOT)

import runners_flow as flow  # noqa: E402
from common import ENV, ZCAS  # noqa: E402

BIN = os.path.dirname(sys.executable)
CREDS = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench-secret", "AWS_REGION": "us-east-1",
         "AWS_ALLOW_HTTP": "true", "ZCAS_NO_REMOTE_CACHE": "1"}


class Procs:
    """Processes this benchmark started (each its own process group), stopped at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, argv: list[str], cwd: str, env: dict[str, str]) -> subprocess.Popen:
        p = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self) -> None:
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in self.procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_all(base: str, procs: Procs) -> tuple[str, str, dict[str, str]]:
    """(S3 endpoint, scheduler address, the environment workers and client share)."""
    import urllib.request

    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    procs.start([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)], base, dict(os.environ))
    env = {**ENV, **CREDS, "AWS_ENDPOINT_URL": endpoint, "PYTHONPATH": HERE}
    deadline = time.time() + 30
    while True:
        try:
            urllib.request.urlopen(urllib.request.Request(f"{endpoint}/zcas-bench", method="PUT"), timeout=2)
            break
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.2)
    sched_file = os.path.join(base, "scheduler.json")
    procs.start([f"{BIN}/dask", "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                 "--scheduler-file", sched_file], base, env)
    while not os.path.exists(sched_file):
        time.sleep(0.1)
    time.sleep(0.3)
    with open(sched_file) as f:
        address = json.load(f)["address"]
    for name in ("w1", "w2"):
        where = os.path.join(base, name)
        os.makedirs(where)
        procs.start([f"{BIN}/dask", "worker", address, "--host", "127.0.0.1", "--nthreads", "1", "--no-nanny",
                     "--no-dashboard", "--name", name, "--local-directory", where], where, env)
    import distributed

    with distributed.Client(address, timeout="30s") as c:
        c.wait_for_workers(2, timeout=60)
    return endpoint, address, env


def zcas(cwd: str, env: dict[str, str], *args: str) -> float:
    t = time.perf_counter()
    res = subprocess.run([*ZCAS, *args], cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    if res.returncode != 0:
        raise SystemExit(f"zcas {' '.join(args)} failed: {res.stderr.strip()[-500:]}")
    return took


def repo(base: str, name: str, env: dict[str, str], toml: str, address: str | None) -> str:
    d = os.path.join(base, name)
    os.makedirs(d)
    zcas(d, env, "init")
    with open(os.path.join(d, "zcas.toml"), "w") as f:
        f.write(toml)
    if address:
        zcas(d, env, "stack", "register", "d", "--store", f"s3://zcas-bench/{name}", "--runner", "dask",
             "--scheduler", address)
        zcas(d, env, "stack", "set", "d")
    return d


def worker_downloads(address: str) -> int:
    import distributed

    from zcas.runners.workercache import stats

    with distributed.Client(address, timeout="30s") as c:
        return sum(s["downloaded"] for s in c.run(stats).values())


def overhead(base: str, env: dict[str, str], address: str, fan: int) -> None:
    print(f"\nper-step overhead, fan-out of {fan} command steps, zcas run -j 8 (one process each):")
    for label, make in (("empty (`true`)", lambda i: 'cmd = "true"\n'),
                        ("one small output", lambda i: f'cmd = "echo {i} > o{i}.txt"\noutputs = ["o{i}.txt"]\n')):
        toml = "".join(f"[steps.e{i}]\n{make(i)}\n" for i in range(fan))
        tag = "empty" if "true" in label else "small"
        local = repo(base, f"{tag}-local", env, toml, None)
        dist = repo(base, f"{tag}-dask", env, toml, address)
        t_local = zcas(local, env, "run", "-j", "8")
        t_dask = zcas(dist, env, "run", "-j", "8")
        t_hits = zcas(dist, env, "run", "-j", "8")
        per = (t_dask - t_local) / fan * 1e3
        print(f"  {label}:")
        print(f"    local runner              {t_local:7.2f} s  {t_local / fan * 1e3:6.1f} ms/step")
        print(f"    dask through the store    {t_dask:7.2f} s  {t_dask / fan * 1e3:6.1f} ms/step"
              f"  -> {per:+.1f} ms/step over local (target <= 20)")
        print(f"    rerun on dask (all hits)  {t_hits:7.2f} s  {t_hits / fan * 1e3:6.1f} ms/step")


def cpu(base: str, env: dict[str, str], address: str, steps: int, seconds: float) -> None:
    from zcas.repository import Repository
    from zcas.stacks import Stack, register

    spin = flow.calibrate(seconds)
    t = time.perf_counter()
    for i in range(steps):
        flow.burn.fn(i, spin)
    seq = time.perf_counter() - t
    print(f"\n{steps} CPU-bound Python steps of ~{seconds}s; sequential loop without zcas: {seq:.2f} s")
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith(("AWS_", "ZCAS_"))})
    try:
        for label, stack in (("dask through the store (2 workers)", Stack("s", "s3://zcas-bench/cpu", "dask", address)),
                             ("dask sharing the folder (LocalCluster, 2)", Stack("s", None, "dask", None))):
            d = os.path.join(base, "cpu-" + ("store" if stack.store else "shared"))
            r = Repository.init(d)
            register(r.cas, stack)
            os.environ["ZCAS_RUN_JOBS"] = "2"
            r.executor("s")  # the client (and a local cluster) started outside the timing
            t = time.perf_counter()
            flow.fan(steps, spin, repo=r, stack="s")
            cold = time.perf_counter() - t
            r.close()
            print(f"  {label:<42} {cold:6.2f} s  {seq / cold:5.2f}x over sequential (target >= 1.8)")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def big(base: str, env: dict[str, str], address: str, mb: int, steps: int) -> None:
    toml = "".join(f'[steps.b{i}]\ncmd = "mkdir -p o; wc -c < big.bin > o/{i}.txt"\ninputs = ["big.bin"]\n'
                   f'outputs = ["o/{i}.txt"]\n\n' for i in range(steps))
    d = repo(base, "big", env, toml, address)
    with open(os.path.join(d, "big.bin"), "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))
    size = mb << 20
    before = worker_downloads(address)
    took = zcas(d, env, "run", "-j", "4")
    got = worker_downloads(address) - before
    with open(os.path.join(d, "o", "0.txt")) as f:
        assert int(f.read()) == size
    print(f"\n{steps} command steps reading one {mb} MiB input, 2 workers: {took:.1f} s")
    print(f"  downloaded by the workers: {got / 2**20:.0f} MiB = {got / size:.2f} x the input "
          f"(bound: 2 x input x 2 workers = {4 * mb} MiB; without a cache: {steps} x = {steps * mb} MiB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fan", type=int, default=200)
    ap.add_argument("--cpu-steps", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=0.5)
    ap.add_argument("--big-mb", type=int, default=200)
    ap.add_argument("--big-steps", type=int, default=100)
    ap.add_argument("--parts", default="overhead,cpu,big", help="which figures (comma-separated; default: all)")
    a = ap.parse_args()
    parts = set(a.parts.split(","))
    print("load average at start:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    base = tempfile.mkdtemp(prefix="zcas-bench-dist-")
    procs = Procs()
    try:
        _, address, env = start_all(base, procs)
        if "overhead" in parts:
            overhead(base, env, address, a.fan)
        if "cpu" in parts:
            cpu(base, env, address, a.cpu_steps, a.seconds)
        if "big" in parts:
            big(base, env, address, a.big_mb, a.big_steps)
    finally:
        procs.stop()
        shutil.rmtree(base, ignore_errors=True)
    print("\nload average at end:", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()

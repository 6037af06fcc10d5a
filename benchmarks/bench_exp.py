"""Experiments benchmark (issue 15): `zcas exp show` over 10,000 runs of one pipeline.

Run:  python benchmarks/bench_exp.py [--runs 10000] [--dvc 100] [--no-dvc] [--baseline TREE]

With ``--baseline TREE`` (an older zcas laid out as installed, e.g. ``git archive COMMIT``
with cas/, lineage/ and runners/ linked into its zcas/), each repository is made twice,
once by each zcas, and every command is timed for both in turns.

The records are made through the library (``Lineage.record_runs``), as a real pipeline
would leave them: each of N pipeline runs has 20 params and 10 metrics and names 4 step
runs (prepare, featurize, train, evaluate; train has the 20 params, evaluate the metrics),
so the index holds 5 N runs. Timed, as whole processes (best of 5, output to /dev/null):

- ``zcas exp show PIPELINE`` (the pipeline's runs: N rows);
- ``zcas exp show PIPELINE --json``;
- ``zcas exp show`` of a zcas.toml pipeline of the same 4 steps as command steps, N
  sessions of ``zcas run`` (rows grouped from the step runs);
- for scale, ``dvc exp show`` on 100 experiments of a 4-stage DVC pipeline with the same
  params and metrics, if DVC is installed (``pip install 'zcas[bench]'``, or a DVC on
  PATH / ``--dvc-bin``); otherwise it says why it is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import ENV, ZCAS  # noqa: E402

STEPS = ("prepare", "featurize", "train", "evaluate")
N_PARAMS, N_METRICS = 20, 10


def proc_time(cmd: list[str], cwd: str, n: int = 5, env: dict[str, str] | None = None) -> float:
    best = 1e9
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(cmd, cwd=cwd, env=env or ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t)
    return best


def seed(root: str, runs: int, pipeline: bool) -> None:
    """N experiments through the library: Python pipeline runs (pipeline=True), or sessions
    of zcas.toml command steps."""
    from zcas.cas.repo import Repo
    from zcas.lineage.records import Run
    from zcas.lineage.store import Lineage

    rng = random.Random(15)
    lin = Lineage(Repo(root))
    t0 = time.time_ns() - runs * 60 * 10**9
    batch: list[Run] = []
    for i in range(runs):
        start = t0 + i * 60 * 10**9
        params = {f"p{j:02d}": rng.choice([0.1, 0.01, 1, 10, "adam", "sgd", True]) for j in range(N_PARAMS)}
        metrics = {f"eval.m{j}": rng.random() for j in range(N_METRICS)}
        session = os.urandom(16).hex()
        step_runs = []
        for k, step in enumerate(STEPS):
            name = step if not pipeline else f"flow.{step}"
            step_runs.append(Run(
                step=name, kind="command" if not pipeline else "python", status="ran", started_ns=start + k,
                ended_ns=start + k + 10**6, params=params if step == "train" else {"n": 1},
                metrics=metrics if step == "evaluate" else {}, session=session, host="bench", user="bench",
                outputs={"out": os.urandom(32).hex()}, cache_key=os.urandom(32).hex(),
            ))
        batch.extend(step_runs)
        if pipeline:
            from zcas.cas.oid import hash_bytes
            from zcas.lineage import serde

            batch.append(Run(step="flow.main", kind="pipeline", status="ran", started_ns=start, ended_ns=start + 10**7,
                             params=params, metrics=metrics, session=session, host="bench", user="bench",
                             steps={r.step: hash_bytes(serde.encode(r)).hex() for r in step_runs}))
        if len(batch) >= 5000:
            lin.record_runs(batch)
            batch = []
    if batch:
        lin.record_runs(batch)
    lin.close()


def dvc_figure(n: int, dvc_bin: str | None) -> str:
    exe = dvc_bin or shutil.which("dvc") or (os.path.join(os.path.dirname(sys.executable), "dvc"))
    if not exe or not os.path.exists(exe):
        return "dvc exp show: skipped (DVC is not installed: pip install 'zcas[bench]' or pass --dvc-bin)"
    tmp = tempfile.mkdtemp(prefix="bench-dvc-")
    try:
        env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
               "GIT_COMMITTER_EMAIL": "b@b", "DVC_NO_ANALYTICS": "1"}

        def sh(*cmd: str) -> None:
            subprocess.run(cmd, cwd=tmp, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        sh("git", "init", "-q")
        sh(exe, "init", "-q")
        params = {f"p{j:02d}": 0.1 for j in range(N_PARAMS)}
        with open(os.path.join(tmp, "params.yaml"), "w") as f:
            json.dump(params, f)  # JSON is YAML
        stages = {}
        prev = "params.yaml"
        for s in STEPS:
            out = f"{s}.out"
            cmd = f"cat {prev} > {out}"
            st: dict = {"cmd": cmd, "deps": [prev], "outs": [out]}
            if s == "train":
                st["params"] = list(params)
            if s == "evaluate":
                cmd = ("python3 -c \"import json,random; json.dump({'m%d' % j: random.random() for j in range(10)}, "
                       "open('metrics.json','w'))\" && " + cmd)
                st.update(cmd=cmd, metrics=[{"metrics.json": {"cache": False}}])
            stages[s] = st
            prev = out
        with open(os.path.join(tmp, "dvc.yaml"), "w") as f:
            json.dump({"stages": stages}, f)
        sh(exe, "repro", "-q")
        sh("git", "add", "-A")
        sh("git", "commit", "-qm", "base")
        t = time.perf_counter()
        for i in range(n):
            sh(exe, "exp", "run", "-q", "-S", f"p00={i}", "-S", f"p01={i % 7}")
        made = time.perf_counter() - t
        best = proc_time([exe, "exp", "show", "--no-pager"], tmp, n=3, env=env)
        return (f"dvc exp show ({n} experiments, {N_PARAMS} params, {N_METRICS} metrics): {best * 1000:.0f} ms "
                f"(making them took {made:.0f} s)")
    except subprocess.CalledProcessError as e:
        return f"dvc exp show: skipped (a DVC command failed: {' '.join(map(str, e.cmd))[:120]})"
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def make_repo(runs: int, pipeline: bool, baseline: str | None = None) -> str:
    """A repository of ``runs`` experiments, seeded by this zcas, or by the zcas whose package
    tree is ``baseline`` (on PYTHONPATH: its own index format, as that zcas writes it)."""
    tmp = tempfile.mkdtemp(prefix="bench-exp-")
    if baseline is None:
        from zcas.cas.repo import init

        init(tmp)
        if not pipeline:
            with open(os.path.join(tmp, "zcas.toml"), "w") as f:
                for s in STEPS:
                    f.write(f'[steps.{s}]\ncmd = "true"\n\n')
        seed(tmp, runs, pipeline)
    else:
        shutil.rmtree(tmp)
        subprocess.run([sys.executable, __file__, "--seed-into", tmp, "--runs", str(runs)]
                       + ([] if pipeline else ["--toml"]), env=_with_path(baseline), check=True)
    return tmp


def _with_path(tree: str | None) -> dict[str, str]:
    env = dict(ENV)
    if tree:
        env["PYTHONPATH"] = tree
    return env


def interleaved(cmd: list[str], where: dict[str, tuple[str, dict[str, str]]], n: int = 7) -> dict[str, float]:
    """Best of ``n`` for each (cwd, env), the runs taking turns (load drifts alike)."""
    best = {k: 1e9 for k in where}
    for _ in range(n):
        for k, (cwd, env) in where.items():
            t = time.perf_counter()
            subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            best[k] = min(best[k], time.perf_counter() - t)
    return best


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--runs", type=int, default=10_000)
    ap.add_argument("--dvc", type=int, default=100, help="experiments for the DVC figure")
    ap.add_argument("--no-dvc", action="store_true")
    ap.add_argument("--dvc-bin", help="a dvc executable (default: on PATH or beside this Python)")
    ap.add_argument("--baseline", metavar="TREE", help="also time the zcas whose package tree is TREE (a folder "
                    "holding zcas/ with cas, lineage and runners inside, as installed), in turns with this one")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--seed-into", help=argparse.SUPPRESS)
    ap.add_argument("--toml", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.seed_into:  # (run by --baseline under the baseline's PYTHONPATH)
        from zcas.cas.repo import init

        init(a.seed_into)
        if a.toml:
            with open(os.path.join(a.seed_into, "zcas.toml"), "w") as f:
                for s in STEPS:
                    f.write(f'[steps.{s}]\ncmd = "true"\n\n')
        seed(a.seed_into, a.runs, not a.toml)
        return
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {_load()}")
    for pipeline in (True, False):
        t = time.perf_counter()
        repos = {"zcas": make_repo(a.runs, pipeline)}
        made = time.perf_counter() - t
        if a.baseline:
            repos["baseline"] = make_repo(a.runs, pipeline, a.baseline)
        try:
            kind = "Python pipeline" if pipeline else "zcas.toml pipeline"
            print(f"{kind}: {a.runs:,} experiments ({a.runs * (5 if pipeline else 4):,} runs indexed) recorded in "
                  f"{made:.1f} s")
            target = ["flow.main"] if pipeline else []
            where = {k: (d, _with_path(a.baseline if k == "baseline" else None)) for k, d in repos.items()}
            for k, (d, env) in where.items():
                rows = json.loads(subprocess.run([*ZCAS, "exp", "show", *target, "--json"], cwd=d, env=env,
                                                 check=True, capture_output=True).stdout)
                assert len(rows) == a.runs and len(rows[0]["metrics"]) == N_METRICS, (k, len(rows), rows[0])
                assert len(rows[0]["params"]) >= N_PARAMS
            for extra in ([], ["--json"], ["--sort-by", "eval.m3"]):
                best = interleaved([*ZCAS, "exp", "show", *target, *extra], where, a.rounds)
                shown = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in best.items())
                print(f"  zcas exp show {' '.join([*target, *extra])}: {shown} (whole process, best of {a.rounds})")
            best = interleaved([*ZCAS, "--help"], where, a.rounds)
            shown = ", ".join(f"{k} {v * 1000:.0f} ms" for k, v in best.items())
            print(f"  (zcas --help, for the process start: {shown}; load average {_load()})")
        finally:
            for d in repos.values():
                shutil.rmtree(d, ignore_errors=True)
    if not a.no_dvc:
        print(dvc_figure(a.dvc, a.dvc_bin))


if __name__ == "__main__":
    main()

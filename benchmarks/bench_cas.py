"""CAS benchmarks (issue 2): ingest, re-add, versioned CSV and checkout, beside baselines.

Run:  python benchmarks/bench_cas.py [--data DIR] [--only NAME] [--quick]

Every figure is the wall time of a whole ``zcas`` process (as a user sees it), measured
after the same warm-up as its baseline (``cp -r``, raw BLAKE3, zstd level 1, and DVC when
installed: ``pip install -e '.[bench]'``), in the same run, on the same files.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen  # noqa: E402

from common import ENV, ZCAS, warm  # noqa: E402
ROWS: list[tuple[str, str, str, str]] = []


def run(cmd, cwd=None, env=ENV) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def best(n: int, f) -> float:
    return min(f() for _ in range(n))


def report(name: str, value: str, baseline: str, ratio: str) -> None:
    ROWS.append((name, value, baseline, ratio))
    print(f"{name:<44} {value:>12}   {baseline:<34} {ratio}", flush=True)


def stored_bytes(repo: str) -> int:
    total = 0
    for dirpath, _, files in os.walk(os.path.join(repo, ".zcas", "objects", "packs")):
        total += sum(os.path.getsize(os.path.join(dirpath, n)) for n in files)
    return total


def fresh_repo(base: str, name: str) -> str:
    repo = os.path.join(base, name)
    shutil.rmtree(repo, ignore_errors=True)
    os.makedirs(repo)
    run(ZCAS + ["init"], cwd=repo)
    return repo


def prepare(data: str, quick: bool) -> dict[str, str]:
    os.makedirs(data, exist_ok=True)
    big = os.path.join(data, "big")
    small = os.path.join(data, "small")
    csv1 = os.path.join(data, "v1.csv")
    csv2 = os.path.join(data, "v2.csv")
    each = (64 if quick else 256) << 20
    if not os.path.isdir(big):
        os.makedirs(big + ".tmp", exist_ok=True)
        for i in range(4):
            gen.csv_file(os.path.join(big + ".tmp", f"part{i}.csv"), each, seed=10 + i)
        os.rename(big + ".tmp", big)
    if not os.path.isdir(small):
        gen.small_files(small + ".tmp")
        os.rename(small + ".tmp", small)
    if not os.path.exists(csv2):
        gen.csv_file(csv1, (50 if quick else 200) * 10**6, seed=3)
        gen.edited_copy(csv1, csv2, seed=4)
    return {"big": big, "small": small, "csv1": csv1, "csv2": csv2}


def bench_big(d, work):
    warm(d["big"])
    size = sum(os.path.getsize(os.path.join(d["big"], n)) for n in os.listdir(d["big"]))
    gib = size / (1 << 30)
    cp = best(3, lambda: (shutil.rmtree(f"{work}/cp", ignore_errors=True), run(["cp", "-r", d["big"], f"{work}/cp"]))[1])
    from blake3 import blake3
    import zstandard

    def raw_b3():
        t = time.perf_counter()
        for n in sorted(os.listdir(d["big"])):
            with open(os.path.join(d["big"], n), "rb") as f:
                blake3(f.read()).digest()
        return time.perf_counter() - t

    def zstd1():
        c = zstandard.ZstdCompressor(level=1)
        t = time.perf_counter()
        for n in sorted(os.listdir(d["big"])):
            with open(os.path.join(d["big"], n), "rb") as f:
                c.compress(f.read())
        return time.perf_counter() - t

    b3 = best(2, raw_b3)
    z1 = zstd1()

    def ingest():
        repo = fresh_repo(work, "repo-big")
        return run(ZCAS + ["add", d["big"]], cwd=repo), repo

    t, repo = min((ingest() for _ in range(2)), key=lambda x: x[0])
    ratio = stored_bytes(repo) / size
    report(f"ingest {gib:.2f} GiB (4 CSV files)", f"{t:.2f} s", f"cp -r {cp:.2f} s; b3 {b3:.2f} s; zstd-1x1 {z1:.2f} s", f"{t / cp:.1f}x cp; target <= 2.0 s")
    report("  stored / logical", f"{ratio:.3f}x", "", "target <= 0.40x")
    out = f"{work}/co-big"

    tree = subprocess.run(ZCAS + ["add", "--json", d["big"]], cwd=repo, check=True, capture_output=True, text=True).stdout
    import json

    oid = json.loads(tree)[0]["id"]

    def co():
        shutil.rmtree(out, ignore_errors=True)
        return run(ZCAS + ["checkout", oid, out], cwd=repo)

    tco = best(3, co)
    report(f"checkout {gib:.2f} GiB", f"{tco:.2f} s", f"cp -r {cp:.2f} s", f"{tco / cp:.2f}x cp; target <= 0.7 s")
    dvc_big(d, work, gib)


def bench_small(d, work):
    warm(d["small"])

    def cp_once():
        shutil.rmtree(f"{work}/cp-small", ignore_errors=True)
        return run(["cp", "-r", d["small"], f"{work}/cp-small"])

    cp = best(3, cp_once)

    def ingest():
        repo = fresh_repo(work, "repo-small")
        return run(ZCAS + ["add", d["small"]], cwd=repo), repo

    t, repo = min((ingest() for _ in range(2)), key=lambda x: x[0])
    report("ingest 10k small files", f"{t:.2f} s", f"cp -r {cp:.2f} s", f"{t / cp:.2f}x cp; target <= 0.5x")
    readd = best(5, lambda: run(ZCAS + ["add", d["small"]], cwd=repo))
    report("re-add unchanged 10k files", f"{readd:.3f} s", "", "target <= 0.15 s")
    import json

    oid = json.loads(subprocess.run(ZCAS + ["add", "--json", d["small"]], cwd=repo, check=True, capture_output=True, text=True).stdout)[0]["id"]
    out = f"{work}/co-small"

    def co():
        shutil.rmtree(out, ignore_errors=True)
        return run(ZCAS + ["checkout", oid, out], cwd=repo)

    cp2 = best(3, cp_once)
    tco = best(3, co)
    report("checkout 10k small files", f"{tco:.2f} s", f"cp -r {cp2:.2f} s", f"{tco / cp2:.2f}x cp; target <= 1.2x")
    dvc_small(d, work)


def bench_versions(d, work):
    repo = fresh_repo(work, "repo-csv")
    shutil.copy(d["csv1"], os.path.join(repo, "data.csv"))
    run(ZCAS + ["add", "data.csv"], cwd=repo)
    first = stored_bytes(repo)
    shutil.copy(d["csv2"], os.path.join(repo, "data.csv"))
    run(ZCAS + ["add", "data.csv"], cwd=repo)
    both = stored_bytes(repo)
    raw = os.path.getsize(d["csv1"]) + os.path.getsize(d["csv2"])
    report("CSV v1 + v2 stored / v1 stored", f"{both / first:.3f}x", f"raw both {raw / 1e6:.0f} MB, stored {both / 1e6:.1f} MB", "target <= 1.05x")


def _dvc() -> str | None:
    return shutil.which("dvc")


def _dvc_repo(work: str, name: str) -> str:
    repo = os.path.join(work, name)
    shutil.rmtree(repo, ignore_errors=True)
    os.makedirs(repo)
    subprocess.run(["dvc", "init", "--no-scm", "-q"], cwd=repo, check=True)
    return repo


def dvc_big(d, work, gib):
    if not _dvc():
        report("dvc add (big)", "n/a", "DVC not installed", "pip install -e '.[bench]'")
        return
    repo = _dvc_repo(work, "dvc-big")
    shutil.copytree(d["big"], os.path.join(repo, "big"))
    t = run(["dvc", "add", "-q", "big"], cwd=repo)
    report(f"dvc add {gib:.2f} GiB", f"{t:.2f} s", "", "")


def dvc_small(d, work):
    if not _dvc():
        report("dvc add (small)", "n/a", "DVC not installed", "pip install -e '.[bench]'")
        return
    repo = _dvc_repo(work, "dvc-small")
    shutil.copytree(d["small"], os.path.join(repo, "small"))
    t = run(["dvc", "add", "-q", "small"], cwd=repo)
    t2 = run(["dvc", "add", "-q", "small"], cwd=repo)
    report("dvc add 10k small files", f"{t:.2f} s", f"re-add {t2:.2f} s", "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "zcas-bench-data"))
    ap.add_argument("--only", choices=["big", "small", "versions"])
    ap.add_argument("--quick", action="store_true", help="smaller files (a smoke test, not the targets)")
    a = ap.parse_args()
    d = prepare(a.data + ("-quick" if a.quick else ""), a.quick)
    with tempfile.TemporaryDirectory(prefix="zcas-bench-") as work:
        print(f"{'measure':<44} {'zcas':>12}   {'baseline (same run)':<34} ratio / target")
        for name, f in (("big", bench_big), ("small", bench_small), ("versions", bench_versions)):
            if a.only in (None, name):
                f(d, work)


if __name__ == "__main__":
    main()

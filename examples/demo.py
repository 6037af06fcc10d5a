"""The zcas demo: version a data folder, change it, and see what was stored and shared.

Run from the repository root:  .venv/bin/python examples/demo.py [WORKDIR]
Everything happens in WORKDIR (default: a new temporary folder); each step prints the
zcas command a person would type, then its output.
"""

from __future__ import annotations

import os
import random
import shlex
import subprocess
import sys
import tempfile


def zcas(*args: str, cwd: str) -> str:
    print(f"$ zcas {shlex.join(args)}", flush=True)
    p = subprocess.run([sys.executable, "-m", "zcas", *args], cwd=cwd, capture_output=True, text=True)
    out = p.stdout + p.stderr
    print(out.rstrip() + "\n" if out.strip() else "", flush=True)
    if p.returncode != 0:
        raise SystemExit(f"demo failed: zcas {' '.join(args)} exited {p.returncode}")
    return p.stdout


def write_csv(path: str, rows: int, seed: int) -> None:
    rnd = random.Random(seed)
    with open(path, "w") as f:
        f.write("id,city,temp_c,humidity\n")
        for i in range(rows):
            f.write(f"{i},{rnd.choice(['Oslo', 'Lima', 'Pune', 'Kyiv', 'Perth'])},{rnd.uniform(-10, 40):.2f},{rnd.randint(5, 100)}\n")


def main() -> None:
    """Runs in a temporary folder, removed at the end; ``demo.py DIR`` keeps it in DIR."""
    if len(sys.argv) > 1:
        run(sys.argv[1], keep=True)
        return
    import shutil

    work = tempfile.mkdtemp(prefix="zcas-demo-")
    try:
        run(work, keep=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work: str, keep: bool) -> None:
    os.makedirs(work, exist_ok=True)
    print(f"# working in {work}\n")
    zcas("init", cwd=work)

    data = os.path.join(work, "data")
    os.makedirs(os.path.join(data, "stations"), exist_ok=True)
    write_csv(os.path.join(data, "readings.csv"), 200_000, seed=1)  # ~5 MB: chunked
    for i in range(20):
        write_csv(os.path.join(data, "stations", f"s{i:02}.csv"), 300, seed=100 + i)
    print("# 1. version the data folder")
    v1 = zcas("add", "data", cwd=work).split()[0]
    zcas("tag", "v1", v1, cwd=work)

    print("# 2. change it: append rows to the big file, edit one small file")
    with open(os.path.join(data, "readings.csv"), "a") as f:
        f.write("200000,Oslo,3.50,80\n")
    write_csv(os.path.join(data, "stations", "s07.csv"), 310, seed=999)
    v2 = zcas("add", "data", cwd=work).split()[0]
    zcas("tag", "v2", v2, cwd=work)

    print("# 3. re-adding an unchanged folder reads nothing and gives the same id")
    zcas("add", "data", cwd=work)

    print("# 4. what was stored: both versions, deduplicated and compressed")
    zcas("du", cwd=work)

    print("# 5. bring back the first version, byte for byte, and check the store")
    zcas("checkout", "v1", "restored-v1", cwd=work)
    zcas("ls", "v1", cwd=work)
    zcas("fsck", cwd=work)

    print("# 6. a cached pipeline: two steps declared in zcas.toml")
    write_pipeline(work)
    zcas("run", cwd=work)
    print("# 7. run it again: nothing changed, so nothing runs")
    zcas("run", cwd=work)
    print("# 8. change one input: status and why say what changed; only what depends reruns")
    write_csv(os.path.join(data, "stations", "s03.csv"), 280, seed=333)
    zcas("status", cwd=work)
    zcas("why", "summary", cwd=work)
    zcas("run", cwd=work)
    print("# 9. where did the report come from?")
    zcas("log", "-n", "4", cwd=work)
    zcas("log", "--graph", "out/report.txt", cwd=work)
    if keep:
        print(f"# done: the repository is in {work}/.zcas")
    else:
        print("# done (the temporary folder is removed; run 'examples/demo.py DIR' to keep one to explore)")


SUMMARY = """
import csv, glob, json, sys
rows = [r for f in sorted(glob.glob("data/stations/*.csv")) for r in csv.DictReader(open(f))]
by_city = {}
for r in rows:
    by_city.setdefault(r["city"], []).append(float(r["temp_c"]))
json.dump({c: round(sum(v) / len(v), 2) for c, v in sorted(by_city.items())}, open(sys.argv[1], "w"), indent=1)
"""

REPORT = """
import json, sys
means = json.load(open(sys.argv[1]))
with open(sys.argv[2], "w") as f:
    for city, t in means.items():
        f.write(f"{city:<6} {t:6.2f} C  {'#' * int(max(t, 0))}\\n")
"""


def write_pipeline(work: str) -> None:
    with open(os.path.join(work, "summary.py"), "w") as f:
        f.write(SUMMARY)
    with open(os.path.join(work, "report.py"), "w") as f:
        f.write(REPORT)
    py = sys.executable
    with open(os.path.join(work, "zcas.toml"), "w") as f:
        f.write(f"""[steps.summary]
cmd = ["{py}", "summary.py", "out/means.json"]
inputs = ["data/stations"]
outputs = ["out/means.json"]

[steps.report]
cmd = ["{py}", "report.py", "out/means.json", "out/report.txt"]
inputs = ["out/means.json"]
outputs = ["out/report.txt"]
""")
    os.makedirs(os.path.join(work, "out"), exist_ok=True)


if __name__ == "__main__":
    main()

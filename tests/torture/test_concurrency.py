"""Concurrent writers on one repository: 4 processes running overlapping pipelines and
adds for ZCAS_TORTURE_SECONDS (30 by default), and gc --grace 0 running meanwhile.

Checked: every completed run recorded exactly once, no key executed by two processes at
the same time, no damaged or missing object, every process exits cleanly.
"""

import json
import subprocess
import sys
import time

from .harness import SECONDS, env, fsck_clean, note, ok, zcas_cmd

# Each step logs "start KEY t" / "end KEY t" around a short sleep, KEY standing for its
# cache key (its param and the content of its input), so overlapping executions of one key
# would show as interleaved intervals.
STEP = ("sh -c 'c=$(cksum < IN); k={name}-{{v}}-${{c%% *}}; echo start $k $(date +%s%N) >> exec.log; sleep 0.05; "
        "cat IN > {name}.out; echo {{v}} >> {name}.out; echo end $k $(date +%s%N) >> exec.log'")

WORKER = r'''
import json, os, random, subprocess, sys, time
root, who, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
rnd = random.Random(who)
done = []
deadline = time.time() + seconds
while time.time() < deadline:
    v = rnd.randint(0, 5)  # few values: processes keep reaching the same keys
    if rnd.random() < 0.3:
        name = f"add-{who}-{rnd.randint(0, 3)}.bin"
        open(os.path.join(root, name), "wb").write(os.urandom(rnd.randint(100, 200_000)))
        cmd = [sys.executable, "-m", "zcas", "add", name]
        p = subprocess.run(cmd, cwd=root, capture_output=True, text=True)
        if p.returncode != 0:
            print(json.dumps({"error": p.stderr}), flush=True)
            sys.exit(1)
        continue
    p = subprocess.run([sys.executable, "-m", "zcas", "run", "--json"], cwd=root, capture_output=True,
                       text=True, env=dict(os.environ, ZCAS_TORTURE_V=str(v)))
    if p.returncode != 0:
        print(json.dumps({"error": p.stderr}), flush=True)
        sys.exit(1)
    done.extend(r["run"] for r in json.loads(p.stdout))
print(json.dumps({"runs": done}), flush=True)
'''

TOML = """
[steps.a]
cmd = "{a}"
inputs = ["in.txt"]
outputs = ["a.out"]
env = ["ZCAS_TORTURE_V"]
params = {{ v = 0 }}

[steps.b]
cmd = "{b}"
inputs = ["a.out"]
outputs = ["b.out"]
env = ["ZCAS_TORTURE_V"]
"""


def test_four_writers_and_gc(repo_dir):
    (repo_dir / "in.txt").write_text("input\n")
    a = STEP.format(name="a").replace("{v}", "$ZCAS_TORTURE_V").replace("IN", "in.txt")
    b = STEP.format(name="b").replace("{v}", "$ZCAS_TORTURE_V").replace("IN", "a.out")
    (repo_dir / "zcas.toml").write_text(TOML.format(a=a, b=b))
    (repo_dir / "worker.py").write_text(WORKER)
    procs = [
        subprocess.Popen([sys.executable, "worker.py", str(repo_dir), f"w{i}", str(SECONDS)], cwd=repo_dir, env=env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    gcs = 0
    deadline = time.time() + SECONDS
    while time.time() < deadline:
        p = subprocess.run(zcas_cmd("gc", "--grace", "0"), cwd=repo_dir, env=env(), capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        gcs += 1
        time.sleep(0.5)
    results = []
    for p in procs:
        out, err = p.communicate(timeout=SECONDS + 120)
        assert p.returncode == 0, (out, err)
        results.append(json.loads(out.strip().splitlines()[-1]))
    completed = [r for res in results for r in res["runs"]]
    assert completed, "no run completed"
    logged = json.loads(ok(zcas_cmd("log", "--json", "-n", "0"), repo_dir).stdout)  # every run, not the newest 100
    ids = [x["id"] for x in logged]
    assert len(ids) == len(set(ids))
    assert set(completed) <= set(ids)  # every completed run is recorded, once
    # no key executed by two processes at the same time
    spans: dict[str, list] = {}
    open_: dict[str, int] = {}
    for line in (repo_dir / "exec.log").read_text().splitlines():
        kind, key, t = line.split()
        if kind == "start":
            assert key not in open_, f"{key} started twice at once"
            open_[key] = int(t)
        else:
            spans.setdefault(key, []).append((open_.pop(key), int(t)))
    fsck_clean(repo_dir)
    # and everything recorded is still there after the last gc
    p = subprocess.run(zcas_cmd("gc", "--grace", "0"), cwd=repo_dir, env=env(), capture_output=True, text=True)
    assert p.returncode == 0
    fsck_clean(repo_dir)
    def cat(oid):
        p = subprocess.run(zcas_cmd("cat", oid), cwd=repo_dir, env=env(), capture_output=True)
        assert p.returncode == 0
        return p.stdout

    # what is recorded under a key is what the key describes: each output is its recorded
    # input plus the run's value (no process rewrote a file another was reading or writing)
    from zcas.lineage.redact import env_digest

    value_of = {env_digest(str(v)): v for v in range(6)}  # records hold digests, never the value
    for r in logged:
        if r["status"] != "ran":
            continue
        [(_, inp)] = r["inputs"].items()
        [(_, out)] = r["outputs"].items()
        v = value_of[r["env"]["ZCAS_TORTURE_V"]]
        assert cat(out) == cat(inp) + f"{v}\n".encode(), r["step"]
    note("concurrent writers", processes=4, runs=len(completed), gc_passes=gcs + 1, seconds=int(SECONDS))

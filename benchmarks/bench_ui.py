"""zcas ui benchmarks (issue 16): the first page and a 1,000-node lineage graph, on a
repository of 100,000 runs generated as bench_lineage.py does.

Run:  python benchmarks/bench_ui.py [--runs 100000]

The graph: chains of 50 runs (each reading the previous run's output; every tenth also reads
20 source datasets), plus one chain of 100 runs each reading the previous output and 8 new
sources, whose last output's ancestry (depth 100) is 1,001 nodes. Figures:

- server time of the first page (the HTML, then the first page of /api/runs it fetches),
  through the ASGI app in-process, the first request after start (cold) and the median of
  20 (warm), beside a Starlette route answering "ok" through the same middleware (the floor);
- /api/lineage for the 1,001-node graph (server time), beside `zcas log --json` of the same
  artifact as a whole process;
- the lineage page in headless Chromium (Debian's chromium through Playwright): from
  navigation start until the graph is drawn and answers clicks, and a click on a node until
  its card shows.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from common import ENV, ZCAS  # noqa: E402


def generate(d: str, n_runs: int) -> tuple[str, int]:
    """100,000 runs as bench_lineage.py records them, plus the 1,000-node chain; returns its
    last output and the number of runs recorded."""
    from zcas.cas import codec
    from zcas.cas.repo import Repo, init
    from zcas.lineage.records import Run
    from zcas.lineage.store import Lineage

    rnd = random.Random(7)
    init(d)
    repo = Repo(d)
    lin = Lineage(repo)
    sources = [repo.db.put(codec.KIND_BLOB, f"source {i}".encode()).hex() for i in range(1000)]
    batch: list[Run] = []
    prev = ""
    t0 = 1_700_000_000 * 10**9
    for i in range(n_runs):
        pos = i % 50
        if pos == 0:
            prev = rnd.choice(sources)
        out = repo.db.put(codec.KIND_BLOB, f"output of run {i}".encode()).hex()
        inputs = {"in": prev}
        if pos % 10 == 9:
            inputs.update({f"src{j}": rnd.choice(sources) for j in range(20)})
        batch.append(Run(step=f"s{pos}", kind="python", status=rnd.choice(("ran", "ran", "cached", "failed")),
                         cache_key=os.urandom(32).hex(), inputs=inputs, outputs={"out": out}, params={"i": i},
                         started_ns=t0 + i * 10**6, ended_ns=t0 + i * 10**6 + 500, host="bench", user="bench"))
        prev = out
        if len(batch) == 1000:
            lin.record_runs(batch)
            batch = []
    prev = repo.db.put(codec.KIND_BLOB, b"the long chain starts here").hex()
    for i in range(100):
        out = repo.db.put(codec.KIND_BLOB, f"long chain output {i}".encode()).hex()
        inputs = {"in": prev}
        for j in range(8):
            inputs[f"src{j}"] = repo.db.put(codec.KIND_BLOB, f"long chain source {i}.{j}".encode()).hex()
        batch.append(Run(step=f"long{i}", kind="python", status="ran", cache_key=os.urandom(32).hex(), inputs=inputs,
                         outputs={"out": out}, started_ns=t0 + (n_runs + i) * 10**6, ended_ns=t0 + (n_runs + i) * 10**6 + 9))
        prev = out
    lin.record_runs(batch)
    repo.db.flush()
    n = lin.graph.count("runs")
    lin.close()
    repo.close()
    return prev, n


def server_times(d: str, deep: str) -> dict[str, float]:
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route
    from starlette.testclient import TestClient

    from zcas.repository import Repository
    from zcas.ui.app import create_app
    from zcas.ui.source import Source

    out: dict[str, float] = {}
    repo = Repository(d)
    app = create_app(Source(repo))
    app.router.routes.insert(0, Route("/floor", lambda req: PlainTextResponse("ok")))
    with TestClient(app, base_url="http://127.0.0.1") as c:
        urls = [("page", "/"), ("runs", "/api/runs"), ("floor", "/floor"),
                ("lineage", f"/api/lineage/{deep}?depth=100&direction=up"), ("run", "newest"),
                ("experiments", "/api/experiments?step=long5"), ("filtered", "/api/runs?step=s7&page=5")]
        for name, url in urls:
            if url == "newest":  # the newest run: its step ran once, so why looks as far back as it may
                url = f"/api/runs/{c.get('/api/runs?per_page=1').json()['runs'][0]['id']}"
            t = time.perf_counter()
            r = c.get(url)
            out[f"{name} cold"] = time.perf_counter() - t
            assert r.status_code == 200, r.text
            times = []
            for _ in range(20 if name in ("page", "runs", "floor") else 5):
                t = time.perf_counter()
                c.get(url)
                times.append(time.perf_counter() - t)
            out[f"{name} warm"] = statistics.median(times)
        out["nodes"] = len(c.get(f"/api/lineage/{deep}?depth=100&direction=up").json()["nodes"])
    repo.close()
    return out


def browser_times(d: str, deep: str) -> dict[str, float]:
    from tests.ui.browser import browser, chromium_path, live_server
    from zcas.repository import Repository
    from zcas.ui.app import create_app
    from zcas.ui.source import Source

    if chromium_path() is None:
        return {}
    out: dict[str, list[float]] = {"ready": [], "click": []}
    with Repository(d) as repo, live_server(create_app(Source(repo))) as url, browser() as b:
        for _ in range(3):
            page = b.new_page(viewport={"width": 1400, "height": 900})
            page.goto(f"{url}/lineage/{deep}?depth=100&direction=up")
            page.wait_for_selector("body[data-graph-at]", timeout=60_000)
            out["ready"].append(float(page.get_attribute("body", "data-graph-at") or 0) / 1e3)
            pos = page.evaluate(f"window.zcas.graph.getElementById('{deep}').renderedPosition()")
            box = page.locator("#graph").bounding_box()
            t = time.perf_counter()
            page.mouse.click(box["x"] + pos["x"], box["y"] + pos["y"])
            page.wait_for_selector("#selected h2")
            out["click"].append(time.perf_counter() - t)
            page.close()
    return {k: statistics.median(v) for k, v in out.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=100_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="zcas-bench-ui-") as d:
        t = time.perf_counter()
        deep, n = generate(d, a.runs)
        gen = time.perf_counter() - t
        s = server_times(d, deep)
        t_log = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run(ZCAS + ["log", deep, "--json", "--depth", "100"], cwd=d, env=ENV, check=True,
                           stdout=subprocess.DEVNULL)
            t_log.append(time.perf_counter() - t)
        br = browser_times(d, deep)
    print(f"repository: {n} runs (generated in {gen:.0f} s); lineage graph: {s['nodes']:.0f} nodes")
    print(f"{'measure':<52} {'cold':>9} {'warm':>9}   baseline (same run) / target")
    floor = f"floor (a route answering 'ok') {s['floor warm'] * 1e3:.1f} ms"
    ms = lambda k: f"{s[k] * 1e3:7.1f}ms"  # noqa: E731
    print(f"{'first page: GET / (server time)':<52} {ms('page cold')} {ms('page warm')}   {floor}  [target <= 200 ms]")
    print(f"{'first page: GET /api/runs (50 newest, server time)':<52} {ms('runs cold')} {ms('runs warm')}   [target <= 200 ms]")
    print(f"{'GET /api/lineage (1,001 nodes, server time)':<52} {ms('lineage cold')} {ms('lineage warm')}"
          f"   zcas log --json --depth 100 (process) {min(t_log) * 1e3:.0f} ms")
    print(f"{'a run page (its why: the previous run of its step)':<52} {ms('run cold')} {ms('run warm')}"
          "   looks back over 20,000 runs for one of its step (a step run once)")
    print(f"{'experiments of a step with one run':<52} {ms('experiments cold')} {ms('experiments warm')}   scans every run")
    print(f"{'runs filtered by step, page 5':<52} {ms('filtered cold')} {ms('filtered warm')}")
    if br:
        print(f"{'lineage page interactive in Chromium (1,001 nodes)':<52} {'':>9} {br['ready'] * 1e3:7.0f}ms   "
              "from navigation start, median of 3  [target <= 2000 ms]")
        print(f"{'click on a node until its card shows':<52} {'':>9} {br['click'] * 1e3:7.0f}ms")
    else:
        print("no Chromium here: the browser figure is skipped (apt-get install -y chromium)")


if __name__ == "__main__":
    main()

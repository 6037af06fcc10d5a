"""Screenshots of each page of zcas ui for docs/: ``python -m tests.ui.screenshots [DIR]``.

Builds the repository the UI tests use (tests/ui/conftest.py) in a temporary folder, serves
it, and saves one PNG per page into DIR (default: docs/)."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from tests.ui.browser import browser, live_server
from tests.ui.conftest import build_scene


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "docs"))
    from zcas.repository import Repository
    from zcas.ui.app import create_app
    from zcas.ui.source import Source

    with tempfile.TemporaryDirectory(prefix="zcas-ui-shots-") as d:
        s = build_scene(Path(d))
        csv = s.run("clean")["outputs"]["out/clean.csv"]
        pages = {
            "ui-runs.png": "/",
            "ui-run.png": f"/runs/{s.run('flow.train', 'ran')['id']}",
            "ui-artifact.png": f"/artifacts/{csv}",
            "ui-lineage.png": f"/lineage/{s.run('count')['id']}",
            "ui-pipeline.png": f"/lineage/{s.run('flow.main', nth=3)['id']}",
            "ui-experiments.png": "/experiments?step=flow.train",
            "ui-data.png": "/data",
        }
        with Repository(s.root) as repo, live_server(create_app(Source(repo))) as url, browser() as b:
            page = b.new_page(viewport={"width": 1280, "height": 760})
            for name, path in pages.items():
                page.goto(url + path)
                page.wait_for_selector("body[data-ready='1']", timeout=30_000)
                if "lineage" in path:
                    page.wait_for_selector("body[data-graph-nodes]")
                page.screenshot(path=str(out / name), full_page=name not in ("ui-lineage.png", "ui-pipeline.png"))
                print(out / name)


if __name__ == "__main__":
    main()

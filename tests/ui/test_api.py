"""The JSON API over a real repository: what each page is built from."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette", reason="the ui extra (pip install 'zcas[ui]') is not installed")
pytest.importorskip("httpx", reason="Starlette's test client needs httpx")

from starlette.testclient import TestClient  # noqa: E402

from zcas.repository import Repository  # noqa: E402
from zcas.ui.app import create_app  # noqa: E402
from zcas.ui.source import Source  # noqa: E402


@pytest.fixture(scope="module")
def client(scene):
    repo = Repository(scene.root)
    with TestClient(create_app(Source(repo)), base_url="http://127.0.0.1") as c:
        yield c
    repo.close()


def test_smoke(client, scene):
    r = client.get("/api/runs")
    assert r.status_code == 200, r.text
    print(r.json())

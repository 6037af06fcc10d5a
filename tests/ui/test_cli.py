"""``zcas ui`` from the command line: the server really listens, the token is enforced when
bound beyond loopback, bad input is one line, and nothing of the web stack loads for
``zcas --help``."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import assert_one_line_error, run_zcas

pytest.importorskip("starlette", reason="the ui extra (pip install 'zcas[ui]') is not installed")


def _env() -> dict:
    e = dict(os.environ)
    e.pop("ZCAS_DIR", None)
    e.pop("ZCAS_UI_TOKEN", None)
    return e


def _start(cwd, *args):
    p = subprocess.Popen([sys.executable, "-m", "zcas", "ui", "--port", "0", *args], cwd=cwd, env=_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = p.stderr.readline()
    m = re.search(r"at (http://\S+)", line)
    if m is None:
        p.kill()
        raise AssertionError(line + p.stderr.read())
    return p, m.group(1)


def _get(url, headers=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=20) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _stop(p):
    p.terminate()
    p.wait(20)


def test_serves_on_loopback_without_token(scene):
    p, url = _start(scene.root)
    try:
        assert url.startswith("http://127.0.0.1:") and "token" not in url
        status, body = _get(url + "api/runs?per_page=1")
        assert status == 200 and json.loads(body)["runs"][0]["id"] == scene.runs[0]["id"]
        status, body = _get(url)
        assert status == 200 and b'data-page="runs"' in body
    finally:
        _stop(p)


def test_beyond_loopback_a_generated_token_is_required(scene):
    p, url = _start(scene.root, "--host", "0.0.0.0")
    try:
        m = re.fullmatch(r"http://0\.0\.0\.0:(\d+)/\?token=([\w-]{20,})", url)
        assert m, url
        base, token = f"http://127.0.0.1:{m.group(1)}/", m.group(2)
        status, body = _get(base + "api/runs")
        assert status == 401 and "a token is needed" in json.loads(body)["error"]
        assert _get(base + "api/runs", {"Authorization": f"Bearer {token}"})[0] == 200
        assert _get(base + f"api/runs?token={token}")[0] == 200
        conn = http.client.HTTPConnection("127.0.0.1", int(m.group(1)), timeout=20)
        conn.request("GET", f"/runs?token={token}")
        r = conn.getresponse()  # the printed address: the token goes into a cookie, out of the address bar
        assert r.status == 303 and r.getheader("Location") == "/runs" and token in r.getheader("Set-Cookie")
        conn.close()
    finally:
        _stop(p)


def test_bad_input_is_one_line(scene):
    assert_one_line_error(run_zcas("ui", "--token", "short", cwd=scene.root), "at least 16 characters", code=2)
    assert_one_line_error(run_zcas("ui", "--remote", "nope", cwd=scene.root), "no remote named nope", code=1)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = str(busy.getsockname()[1])
        assert_one_line_error(run_zcas("ui", "--port", port, cwd=scene.root), f"cannot listen on 127.0.0.1:{port}", code=1)


def test_without_the_extra_one_line_names_it(scene):
    code = "import sys; sys.modules['starlette'] = None; from zcas.cli import main; main(['ui'])"
    p = subprocess.run([sys.executable, "-c", code], cwd=scene.root, env=_env(), capture_output=True, text=True)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert p.stderr.strip() == "zcas: error: zcas ui needs the ui extra (starlette not installed): pip install 'zcas[ui]'"


def test_help_loads_no_web_stack():
    code = "import sys, zcas.cli; print(sorted(m for m in ('starlette', 'uvicorn', 'jinja2', 'zcas.ui') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    res = run_zcas("ui", "--help")
    assert res.code == 0 and "--remote NAME" in res.out and "--token TOKEN" in res.out


def test_ctrl_c_stops_it(scene):
    p, url = _start(scene.root)
    p.send_signal(2)
    deadline = time.monotonic() + 20
    while p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert p.poll() in (0, 130)
    assert "Traceback" not in p.stderr.read()

"""A real S3-protocol server on 127.0.0.1 for the tests (moto's server mode).

.ci/run starts one and exports ZCAS_TEST_S3_ENDPOINT; a test session without it starts
its own on a free port and stops it at the end.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

BUCKET = "zcas-test"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_REGION": "us-east-1"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(endpoint: str, timeout: float = 30) -> None:
    deadline = time.time() + timeout
    while True:
        try:
            urllib.request.urlopen(endpoint + "/", timeout=2)
            return
        except urllib.error.HTTPError:
            return  # it answered
        except OSError as e:
            if time.time() > deadline:
                raise RuntimeError(f"S3 test server at {endpoint} did not start") from e
            time.sleep(0.2)


def start() -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_up(endpoint)
    return proc, endpoint


def make_bucket(endpoint: str, bucket: str = BUCKET) -> None:
    req = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")
    try:
        urllib.request.urlopen(req, timeout=10)
    except urllib.error.HTTPError as e:
        if e.code != 409:  # already there
            raise


def env_for(endpoint: str) -> dict[str, str]:
    return {**CREDS, "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true"}


if __name__ == "__main__":  # used by .ci/run: start, print the endpoint, run until stopped
    import signal

    p, ep = start()

    def stop(*_):
        p.terminate()  # the server is our child: never leave it running
        p.wait(10)
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    make_bucket(ep)
    print(ep, flush=True)
    p.wait()

"""Serving the view: the socket, the token, uvicorn.

The socket is bound here before uvicorn starts, so a port in use is one clear line (not a
log record) and port 0 prints the port actually chosen. Anything but a loopback address is
served only with a token: one is generated (and printed) when none is given.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from zcas.cas.errors import UsageError, ZcasError

if TYPE_CHECKING:
    from zcas.repository import Repository

EXTRA = "pip install 'zcas[ui]'"


def check_installed() -> None:
    """One line naming what is missing when the ``ui`` extra is not installed."""
    import importlib

    missing = []
    for name in ("starlette", "jinja2", "uvicorn"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ZcasError(f"zcas ui needs the ui extra ({', '.join(missing)} not installed): {EXTRA}")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: {e.strerror}") from None
    family, _, _, _, addr = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError as e:
        sock.close()
        raise ZcasError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(128)
    return sock


def url_of(sock: socket.socket, host: str, token: str | None) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"http://{shown}:{port}/" + (f"?token={token}" if token else "")


def serve(repository: Repository, host: str = "127.0.0.1", port: int = 8080, remote: str | None = None,
          token: str | None = None, say: Callable[[str], None] = print, open_browser: bool = False) -> None:
    """Serve the view until interrupted."""
    check_installed()
    import uvicorn

    from .app import create_app
    from .source import Source

    if token is not None and len(token) < 16:
        raise UsageError("--token must be at least 16 characters (or leave it out to have one generated)")
    if token is None and not is_loopback(host):
        token = secrets.token_urlsafe(24)
    src = Source(repository, remote=remote)
    app = create_app(src, token=token)
    sock = bind(host, port)
    url = url_of(sock, host, token)
    where = f"remote {remote} (through {repository.root})" if remote else repository.root
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", server_header=False)
    server = uvicorn.Server(config)

    def announce() -> None:
        # Said once uvicorn is serving, its signal handlers in place: a Ctrl-C from then on
        # always stops it cleanly (one sent while asyncio starts up could be lost).
        while not server.started:
            if server.should_exit:
                return
            time.sleep(0.01)
        say(f"zcas ui: serving {where} at {url}  (read-only; Ctrl-C stops it)")
        if token is not None:
            say("zcas ui: every request needs the token: open the address above, or send 'Authorization: Bearer TOKEN'")
        if open_browser:
            import webbrowser

            webbrowser.open(url)

    threading.Thread(target=announce, name="zcas-ui-announce", daemon=True).start()
    server.run(sockets=[sock])

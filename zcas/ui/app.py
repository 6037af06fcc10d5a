"""The web application: pages, static files, the API, and the checks every request passes.

Pages are small shells rendered by Jinja2 (autoescaped); the page's script fills them from
the API, so pages and scripts see the same data. Static files are read from the package
once, at start, into a fixed table: no request names a file on disk. Every response carries
a strict Content-Security-Policy (scripts and styles only from this server, nothing
inline, no frames), and every request is checked before it reaches a route: the token when
one is set (served anywhere but loopback), else a loopback Host header (a page on another
site cannot rebind its name to 127.0.0.1 and read the view).
"""

from __future__ import annotations

import hmac
import mimetypes
import re
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any
from urllib.parse import quote, urlencode

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from zcas._version import __version__

from . import api
from .source import Source

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
COOKIE = "zcas_ui_token"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}
_ID = re.compile(r"[0-9A-Za-z._-]{1,200}")  # an id, a prefix or a tag name: checked again by the API
PAGES = {"runs": "Runs", "run": "Run", "artifact": "Artifact", "lineage": "Lineage", "experiments": "Experiments",
         "data": "Data versions", "tree": "Folder"}


def _static() -> dict[str, tuple[bytes, str]]:
    """name -> (bytes, content type) of every packaged static file, read once."""
    out: dict[str, tuple[bytes, str]] = {}
    top = resources.files("zcas.ui") / "static"
    todo = [(top, "")]
    while todo:
        folder, prefix = todo.pop()
        for item in folder.iterdir():
            if item.is_dir():
                todo.append((item, f"{prefix}{item.name}/"))
            elif not item.name.startswith("."):
                mime = mimetypes.guess_type(item.name)[0] or "application/octet-stream"
                if mime in ("application/javascript", "text/javascript"):
                    mime = "text/javascript; charset=utf-8"
                elif mime.startswith("text/"):
                    mime += "; charset=utf-8"
                out[prefix + item.name] = (item.read_bytes(), mime)
    return out


def _host(req: Request) -> str:
    host = req.headers.get("host", "")
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _same_site(path: str) -> str:
    """``path`` as a redirect that stays on this site: ``//evil.com/`` (or ``/\\evil.com``,
    or a tab between slashes, which browsers drop) would name another host, so the path is
    percent-encoded and starts with exactly one slash."""
    return "/" + quote(path, safe="/%:@!$&'()*+,;=-._~").lstrip("/")


def guard(token: str | None) -> Callable[[Request, Callable[[Request], Awaitable[Response]]], Awaitable[Response]]:
    """The check every request passes, and the headers every response gets."""

    async def dispatch(req: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        set_cookie = False
        if token is not None:
            given = req.headers.get("authorization", "").removeprefix("Bearer ").strip() or req.cookies.get(COOKIE, "")
            from_query = req.query_params.get("token", "")
            if from_query and hmac.compare_digest(from_query.encode(), token.encode()):
                set_cookie = True
            elif not (given and hmac.compare_digest(given.encode(), token.encode())):
                return _secure(JSONResponse({"error": "a token is needed: open the address zcas ui printed "
                                                      "(…?token=...), or send 'Authorization: Bearer TOKEN'"},
                                            status_code=401))
        elif _host(req) not in LOOPBACK:
            return _secure(JSONResponse({"error": f"Host {_host(req)[:100]!r} refused: without --token the view "
                                                  "answers only to localhost"}, status_code=403))
        if set_cookie and not req.url.path.startswith("/api/"):
            # the address printed at start: keep the token in a cookie, not in the address bar
            rest = [(k, v) for k, v in req.query_params.multi_items() if k != "token"]
            resp: Response = RedirectResponse(_same_site(req.url.path) + ("?" + urlencode(rest) if rest else ""),
                                              status_code=303)
        else:
            resp = await call_next(req)
        if set_cookie:
            assert token is not None
            resp.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")
        return _secure(resp)

    return dispatch


def _secure(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["X-Frame-Options"] = "DENY"
    resp.headers.setdefault("Cache-Control", "no-store")
    return resp


def create_app(src: Source, token: str | None = None, title: str = "zcas") -> Starlette:
    """The application over ``src``; with ``token``, every request must present it."""
    env = Environment(loader=PackageLoader("zcas.ui", "templates"), autoescape=select_autoescape(["html"]))
    static = _static()
    where = f"remote {src.remote_name}" if src.remote_name else src.repository.root

    def page(name: str, ident: str | None = None) -> Response:
        if ident is not None and not _ID.fullmatch(ident):
            return HTMLResponse(env.get_template("error.html").render(
                title=title, where=where, message="not an id or a tag name", version=__version__), status_code=404)
        html = env.get_template("page.html").render(page=name, heading=PAGES[name], ident=ident or "", title=title,
                                                    where=where, version=__version__)
        return HTMLResponse(html)

    async def runs(req: Request) -> Response:
        return page("runs")

    def by_id(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(req: Request) -> Response:
            return page(name, req.path_params["id"])
        return handler

    async def experiments(req: Request) -> Response:
        return page("experiments")

    async def data(req: Request) -> Response:
        return page("data")

    async def static_file(req: Request) -> Response:
        found = static.get(req.path_params["name"])
        if found is None:
            return JSONResponse({"error": "no such static file"}, status_code=404)
        return Response(found[0], media_type=found[1], headers={"Cache-Control": "max-age=3600"})

    async def favicon(req: Request) -> Response:
        return Response(status_code=204)

    async def unknown_api(req: Request) -> Response:
        return api.error(404, f"no API route {req.url.path[:200]} (see docs/ui.md)")

    routes: list[Any] = [
        Route("/", runs), Route("/runs", runs), Route("/runs/{id}", by_id("run")),
        Route("/artifacts/{id}", by_id("artifact")), Route("/lineage/{id}", by_id("lineage")),
        Route("/trees/{id}", by_id("tree")), Route("/experiments", experiments), Route("/data", data),
        Route("/static/{name:path}", static_file), Route("/favicon.ico", favicon),
        *api.routes(src),
        Route("/api/{rest:path}", unknown_api),
    ]
    return Starlette(routes=routes, middleware=[Middleware(BaseHTTPMiddleware, dispatch=guard(token))])

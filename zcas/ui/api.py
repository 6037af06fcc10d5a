"""The JSON API under ``/api/``: each route is one call into ``queries``, nothing more.

Every answer is JSON; a bad parameter is a 400 and an unknown id a 404, each as
``{"error": message}``. Only GET exists: nothing here can change the repository. The
queries run one at a time in a worker thread (``Source.lock``), so the event loop stays free
and the object index and LMDB cursors are never shared between threads mid-read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from zcas.cas.errors import UsageError, ZcasError

from . import graphs
from . import preview as pv
from . import queries as q
from .source import Source

WHOLE_BEFORE_SENDING = 64 << 20  # files up to this are verified whole before the first byte is sent
MAX_IMAGE = 32 << 20  # larger files are not served as images (413): a browser preview, not a download


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def status_of(e: Exception) -> int:
    if isinstance(e, LookupError) and not isinstance(e, UsageError):
        return 404
    if isinstance(e, (UsageError, ValueError)):
        return 400
    return 500


async def answer(src: Source, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Response:
    def locked() -> Any:
        with src.lock:
            return fn(src, *args, **kwargs)

    try:
        return JSONResponse(await run_in_threadpool(locked))
    except ZcasError as e:
        return error(status_of(e), str(e))
    except (ValueError, OverflowError) as e:  # a parameter no query checked: the request's fault, said in one line
        return error(400, f"bad request: {str(e)[:200]}")


def _int(req: Request, name: str, default: int) -> int:
    text = req.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{name}: expected a whole number, got {text!r:.40}") from None


def _str(req: Request, name: str) -> str | None:
    return req.query_params.get(name) or None


def routes(src: Source) -> list[Route]:
    """The API's routes over one source."""

    async def runs(req: Request) -> Response:
        try:
            page, per = _int(req, "page", 1), _int(req, "per_page", q.PER_PAGE)
        except UsageError as e:
            return error(400, str(e))
        return await answer(src, q.runs, step=_str(req, "step"), pipeline=_str(req, "pipeline"),
                            status=_str(req, "status"), since=_str(req, "since"), until=_str(req, "until"),
                            page=page, per_page=per)

    async def steps(req: Request) -> Response:
        return await answer(src, q.steps)

    async def run(req: Request) -> Response:
        return await answer(src, q.run, req.path_params["id"])

    async def artifact(req: Request) -> Response:
        return await answer(src, q.artifact, req.path_params["id"], name=req.query_params.get("name", ""))

    async def tree(req: Request) -> Response:
        return await answer(src, q.tree, req.path_params["id"])

    async def lineage(req: Request) -> Response:
        try:
            depth = _int(req, "depth", 3)
        except UsageError as e:
            return error(400, str(e))
        return await answer(src, graphs.lineage, req.path_params["id"], depth=depth,
                            direction=req.query_params.get("direction", "both"))

    async def experiments(req: Request) -> Response:
        try:
            limit = _int(req, "limit", 200)
        except UsageError as e:
            return error(400, str(e))
        return await answer(src, q.experiments, req.query_params.get("step", ""), limit=limit,
                            failed=req.query_params.get("failed", "1") != "0")

    async def data(req: Request) -> Response:
        return await answer(src, q.data, req.query_params.get("q", ""))

    async def history(req: Request) -> Response:
        return await answer(src, q.history, req.query_params.get("path", ""))

    async def raw(req: Request) -> Response:
        return await _raw(src, req.path_params["id"], image=req.url.path.endswith("/image"))

    return [
        Route("/api/runs", runs), Route("/api/steps", steps), Route("/api/runs/{id}", run),
        Route("/api/artifacts/{id}", artifact), Route("/api/artifacts/{id}/raw", raw),
        Route("/api/artifacts/{id}/image", raw), Route("/api/trees/{id}", tree),
        Route("/api/lineage/{id}", lineage), Route("/api/experiments", experiments),
        Route("/api/data", data), Route("/api/history", history),
    ]


def _filename(names: list[str], oid: str) -> str:
    """A download's file name: the last part of a path it was known by, in safe characters."""
    base = names[0].rsplit("/", 1)[-1] if names else oid[:12]
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[:100] or oid[:12]


async def _raw(src: Source, text: str, image: bool) -> Response:
    """A file's exact bytes, verified: small files wholly before sending (a damaged object is
    an error, never a partial download), larger ones block by block. As an image: only up to
    ``MAX_IMAGE`` bytes, and only when its first bytes declare one (read before anything else)."""

    def open_() -> tuple[str, int, list[str], bytes | None, str | None]:
        with src.lock:
            oid = src.resolve(text)
            found = src.entry(oid)
            if found is None or found[0] != "file":
                raise q.NotFoundError(f"{text!r:.80} is no stored file here")
            names = q.names_of(src, oid)
            size = found[1]
            if image:
                if size > MAX_IMAGE:
                    return oid.hex(), size, names, None, None
                return oid.hex(), size, names, None, pv.image_type(src.head(oid, 16)) or ""
            whole = b"".join(src.read(oid)) if size <= WHOLE_BEFORE_SENDING else None
            return oid.hex(), size, names, whole, None

    try:
        h, size, names, whole, mime = await run_in_threadpool(open_)
    except ZcasError as e:
        return error(status_of(e), str(e))
    headers = {"Content-Disposition": f'attachment; filename="{_filename(names, h)}"', "Content-Length": str(size)}
    if image:
        if mime is None:
            return error(413, f"{h[:12]} is {size} bytes: images over {MAX_IMAGE >> 20} MiB are not shown; "
                              "download it instead")
        if not mime:
            return error(415, f"{h[:12]} is not a PNG, JPEG, GIF or WebP image")
        headers["Content-Disposition"] = "inline"
        return StreamingResponse(_blocks(src, bytes.fromhex(h)), media_type=mime, headers=headers)
    if whole is not None:
        return Response(whole, media_type="application/octet-stream", headers=headers)
    return StreamingResponse(_blocks(src, bytes.fromhex(h)), media_type="application/octet-stream", headers=headers)


def _blocks(src: Source, oid: bytes) -> Iterator[bytes]:
    """A file's verified blocks, each read under the source's lock."""
    it = src.read(oid)
    while True:
        with src.lock:
            block = next(it, None)
        if block is None:
            return
        yield block

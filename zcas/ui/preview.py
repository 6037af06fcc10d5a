"""Previews of stored files: the first rows of a table, the start of a text, a picture.

A preview reads only the head of a file (``HEAD`` bytes; a Parquet footer needs the whole
file, so only files up to ``PARQUET_MAX`` are read). What it returns is data, never markup:
the page puts it in the document as text, so a stored file cannot inject anything. Images
are named by type only when their first bytes say so (SVG, which can hold script, is shown
as text).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from typing import Any

HEAD = 64 * 1024
ROWS = 50
COLS = 50
PARQUET_MAX = 64 << 20
JSON_MAX = 1 << 20

IMAGES = {b"\x89PNG\r\n\x1a\n": "image/png", b"\xff\xd8\xff": "image/jpeg", b"GIF87a": "image/gif",
          b"GIF89a": "image/gif"}


def image_type(head: bytes) -> str | None:
    """The image type a file's first bytes declare (PNG, JPEG, GIF, WebP), else None."""
    for magic, mime in IMAGES.items():
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None


def _suffix(names: list[str]) -> str:
    for n in names:
        base = n.rsplit("/", 1)[-1].lower()
        if "." in base:
            return base.rsplit(".", 1)[-1]
    return ""


def preview(names: list[str], size: int, head: Callable[[int], bytes], whole: Callable[[], bytes]) -> dict[str, Any]:
    """{"type": "csv"|"json"|"parquet"|"image"|"text"|"binary", ...} for a file known by
    ``names`` (paths it was written or added at), reading ``head(n)`` bytes, or ``whole()``."""
    ext = _suffix(names)
    if ext == "parquet" or (ext == "" and size >= 8 and head(4) == b"PAR1"):
        return _parquet(size, whole)
    data = head(HEAD)
    mime = image_type(data)
    if mime:
        return {"type": "image", "mime": mime}
    if b"\0" in data[:8192]:
        return {"type": "binary"}
    text = data.decode("utf-8", "replace")
    if size > len(data):  # cut inside a character: drop the partial one
        text = text[: max(0, len(text) - 1)] if text.endswith("\ufffd") else text
    truncated = size > len(data)
    if ext in ("csv", "tsv"):
        return _csv(text, "\t" if ext == "tsv" else ",", truncated)
    if ext == "json" or (not ext and text.lstrip()[:1] in ("{", "[")):
        if size <= JSON_MAX:
            return _json(head(JSON_MAX) if truncated else data, text, truncated)
    return {"type": "text", "text": text, "truncated": truncated}


def _csv(text: str, sep: str, truncated: bool) -> dict[str, Any]:
    lines = text.splitlines()
    if truncated and lines:
        lines = lines[:-1]  # the last line read may be cut short
    rows = []
    for row in csv.reader(io.StringIO("\n".join(lines[: ROWS + 1])), delimiter=sep):
        rows.append(row[:COLS])
    if not rows:
        return {"type": "text", "text": text, "truncated": truncated}
    return {"type": "table", "format": "csv", "columns": rows[0], "rows": rows[1:],
            "truncated": truncated or len(lines) > ROWS + 1}


def _json(data: bytes, text: str, truncated: bool) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        return {"type": "text", "text": text, "truncated": truncated}
    pretty = json.dumps(value, indent=2, ensure_ascii=False)
    return {"type": "json", "text": pretty[:HEAD], "truncated": len(pretty) > HEAD}


def _parquet(size: int, whole: Callable[[], bytes]) -> dict[str, Any]:
    if size > PARQUET_MAX:
        return {"type": "none", "reason": f"a Parquet file over {PARQUET_MAX >> 20} MiB is not previewed"}
    try:
        import pyarrow.parquet as pq  # optional: only for this preview
    except ImportError:
        return {"type": "none", "reason": "install pyarrow to preview Parquet files"}
    try:
        table = pq.read_table(io.BytesIO(whole()))
    except Exception as e:  # noqa: BLE001 - any failure to parse is "not previewable", said in words
        return {"type": "none", "reason": f"not a readable Parquet file ({type(e).__name__})"}
    head = table.slice(0, ROWS)
    cols = head.column_names[:COLS]
    data = {c: head.column(c).to_pylist() for c in cols}
    rows = [[_cell(data[c][i]) for c in cols] for i in range(head.num_rows)]
    return {"type": "table", "format": "parquet", "columns": cols, "rows": rows,
            "truncated": table.num_rows > ROWS or len(table.column_names) > COLS, "total_rows": table.num_rows}


def _cell(v: object) -> str:
    return "" if v is None else str(v)

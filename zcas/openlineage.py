"""Sending zcas's OpenLineage RunEvents to a collector (Marquez, or any OpenLineage HTTP
endpoint), and finding what the events link to beyond the runs exported.

One POST per event, in order, as OpenLineage's own HTTP transport does, so a collector sees
each START before its COMPLETE. The API key, if any, comes from ``OPENLINEAGE_API_KEY``
(as the OpenLineage clients read it) and is never written anywhere: redirects are refused
(urllib would follow a 302 from the POST as a GET to whatever host it names, key and all),
and a URL holding credentials (``user:pass@host``) is refused before anything is sent.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from zcas.cas.errors import UsageError, ZcasError
from zcas.cas.objstore import check_no_credentials, masked
from zcas.cas.safetext import printable

TIMEOUT = 30.0  # seconds per request


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A 3xx answer comes back as an HTTPError: nothing is sent to the address it names."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def check_url(url: str) -> str:
    try:
        check_no_credentials(url, "--emit URL")
    except UsageError:
        raise UsageError(f"--emit URL {printable(masked(url))} holds credentials: zcas never prints or sends them "
                         "so; remove the user:password@ part and set OPENLINEAGE_API_KEY") from None
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"--emit needs an http:// or https:// URL of an OpenLineage endpoint, not {printable(url)!r} "
                         "(Marquez: http://HOST:5000/api/v1/lineage)")
    return url


def post_events(events: list[dict[str, Any]], url: str, timeout: float = TIMEOUT) -> int:
    """POST each event as JSON to ``url``; the number sent. Stops at the first refusal with
    an error naming the event and what the endpoint answered."""
    check_url(url)
    headers = {"Content-Type": "application/json", "User-Agent": "zcas"}
    key = os.environ.get("OPENLINEAGE_API_KEY")
    if key:
        headers["Authorization"] = f"Bearer {key}"
    for i, ev in enumerate(events, 1):
        req = urllib.request.Request(url, data=json.dumps(ev, sort_keys=True).encode(), headers=headers, method="POST")
        what = f"event {i} of {len(events)} ({ev['eventType']} {printable(ev['job']['name'])})"
        try:
            with _opener.open(req, timeout=timeout) as resp:  # scheme checked above
                resp.read()
        except urllib.error.HTTPError as e:
            if 300 <= e.code < 400:
                where = printable(str(e.headers.get("Location", "")))[:200]
                raise ZcasError(f"OpenLineage endpoint {printable(url)} answered {what} with a redirect (HTTP {e.code} "
                                f"to {where or 'nowhere'}); zcas does not follow redirects: use the address the "
                                f"endpoint names; sent {i - 1} of {len(events)} events") from None
            body = printable(e.read(300).decode("utf-8", "replace").replace("\n", " "))
            raise ZcasError(f"OpenLineage endpoint {printable(url)} refused {what}: HTTP {e.code} {body}".rstrip()) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ZcasError(f"cannot reach OpenLineage endpoint {printable(url)} ({printable(str(reason))}); "
                            f"sent {i - 1} of {len(events)} events") from None
    return len(events)


def producer_lookup(lineage: Any) -> Any:
    """artifact id -> (step, kind, output name) of a run that made it, from the lineage
    index: names an input whose producer is not among the runs exported."""
    def find(oid: str) -> tuple[str, str, str] | None:
        for rid in lineage.graph.producers(bytes.fromhex(oid)):
            r = lineage.run_dict(rid) or {}
            for slot, o in r.get("outputs", {}).items():
                if o == oid and r.get("kind") != "pipeline":
                    return r["step"], r["kind"], slot
        return None

    return find


def pipelines_of(lineage: Any, runs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The pipeline runs whose sessions these step runs belong to, when not among them: the
    events' ``parent`` facets name them."""
    have = {r.get("session") for r in runs.values() if r.get("kind") == "pipeline"}
    want = {r.get("session") for r in runs.values() if r.get("kind") != "pipeline" and r.get("session")} - have
    if not want:
        return {}
    since = min(r["started_ns"] for r in runs.values() if r.get("session") in want) - 86_400 * 10**9
    return {rid.hex(): r for rid, r in lineage.runs(since_ns=max(0, since))
            if r.get("kind") == "pipeline" and r.get("session") in want}


__all__ = ["check_url", "pipelines_of", "post_events", "producer_lookup"]

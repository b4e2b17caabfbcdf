"""One log line per request, written once the answer has left: method, path, status, time.

uvicorn's own access line (off in `ctscan serve`) carried the path as sent, so a
StudyInstanceUID in `/v1/models/{name}/pacs/studies/{study_uid}` reached the log, and it was
formatted and written before the response left: ~0.13 ms of a lone request's round trip on
2 cores. Here DICOM UIDs in the path are masked, the query string is left out,
and the line is written in the event loop's next turn, after the buffered response has been
flushed (`app.http_protocol`)."""

from __future__ import annotations

import asyncio
import logging
import re
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("app.access")
# DICOM UID syntax (digits and dots) with at least one dot, unlike `app.api.dicomweb.UID`, which
# validates a UID and accepts a bare number: here a bare number is a version and stays.
UID_SEGMENT = re.compile(r"[0-9]+(\.[0-9]+)+")
MAX_PATH_CHARS = 200


class AccessLog:
    """ASGI middleware: one INFO line per HTTP request on the `app.access` logger (the request
    id is added by the log filter, as to every line)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not log.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the server answers if the app fails before it starts a response

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            elapsed = time.perf_counter() - started
            # in this request's context (its id), after the turn's writes have been flushed
            asyncio.get_running_loop().call_soon(write_line, scope, status, elapsed)


def write_line(scope: Scope, status: int, elapsed_s: float) -> None:
    """The request's access line: method, path (see `logged_path`), status, milliseconds."""
    log.info("%s %s %d %.1f ms", scope["method"], logged_path(scope), status, elapsed_s * 1000)


def logged_path(scope: Scope) -> str:
    """The request's decoded path without the query string: every segment shaped like a DICOM
    UID, or routed to a path parameter named `*_uid`, replaced by `{uid}`; control and
    non-ASCII characters escaped; cut at MAX_PATH_CHARS."""
    params = scope.get("path_params") or {}
    routed = {str(value) for name, value in params.items() if name.endswith("_uid")}
    segments = str(scope.get("path", "")).split("/")
    path = "/".join("{uid}" if s in routed or UID_SEGMENT.fullmatch(s) else s for s in segments)
    return path.encode("unicode_escape").decode("ascii")[:MAX_PATH_CHARS]

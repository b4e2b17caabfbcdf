"""A request id per request: accepted from `X-Request-ID` or generated, echoed back, logged."""

from __future__ import annotations

import contextvars
import logging
import random
import re

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
# Ids, not secrets: a generator seeded once from the OS, instead of uuid4, which reads the OS's
# random source (a system call) for every request.
_ids = random.Random()  # noqa: S311  # nosec B311


class RequestIdMiddleware:
    """Sets the request id for the duration of the request and adds it to the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers", [])).get(HEADER.encode(), b"").decode("latin-1")
        current = given if _SAFE_ID.match(given) else f"{_ids.getrandbits(128):032x}"
        token = request_id.set(current)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).append("X-Request-ID", current)
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id.reset(token)


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every log record."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id.get()
        return True

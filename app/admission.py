"""Admission control: a cap on POST requests in progress, so the wait of an admitted request
stays bounded under overload. The excess gets 503 at once: its body is read and dropped (so the
client, still uploading, gets the answer rather than a reset connection), never decoded or
queued."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import Overloaded, error_response


class InFlight:
    """How many POST requests are in progress (touched only from the event loop thread)."""

    def __init__(self) -> None:
        self.count = 0


class InFlightLimit:
    """ASGI middleware: at most `limit` POST requests in progress; more get 503 + Retry-After.
    It keeps the count in `in_flight`, which the app may share to read it."""

    def __init__(
        self, app: ASGIApp, limit: int, retry_after_s: int, in_flight: InFlight | None = None
    ) -> None:
        self.app = app
        self.limit = limit
        self.retry_after = str(retry_after_s)
        self.in_flight = in_flight or InFlight()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        if self.in_flight.count >= self.limit:
            refusal = Overloaded(
                f"{self.in_flight.count} requests are in progress; retry shortly",
                headers={"Retry-After": self.retry_after},
            )
            await drain(receive)
            await error_response(refusal)(scope, receive, send)
            return
        self.in_flight.count += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight.count -= 1


async def drain(receive: Receive) -> None:
    """Read and drop the request body; stop quietly if it is refused (too large, too slow)."""
    try:
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return
    except Exception:  # the 503 goes out whatever cut the body short
        return

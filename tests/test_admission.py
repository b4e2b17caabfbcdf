"""Admission control: requests beyond the in-flight cap get 503 + Retry-After at once."""

from __future__ import annotations

import asyncio
import json

from starlette.types import Message, Receive, Scope, Send

from app.admission import InFlightLimit


def scope(method: str = "POST") -> Scope:
    return {"type": "http", "method": method, "path": "/predict", "headers": []}


async def call(app: InFlightLimit, method: str = "POST", chunks: int = 1) -> list[Message]:
    sent: list[Message] = []
    left = chunks

    async def receive() -> Message:
        nonlocal left
        left -= 1
        return {"type": "http.request", "body": b"x" * 1000, "more_body": left > 0}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope(method), receive, send)
    return sent


def test_requests_over_the_cap_are_refused_and_later_ones_admitted() -> None:
    release = asyncio.Event()

    async def slow_app(scope: Scope, receive: Receive, send: Send) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def scenario() -> None:
        limited = InFlightLimit(slow_app, limit=2, retry_after_s=3)
        admitted = [asyncio.create_task(call(limited)) for _ in range(2)]
        await asyncio.sleep(0.05)
        refused = await call(limited, chunks=5)  # its body is read to the end, then refused
        assert refused[0]["status"] == 503
        headers = dict(refused[0]["headers"])
        assert headers[b"retry-after"] == b"3"
        assert headers[b"content-type"] == b"application/problem+json"
        assert "2 requests are in progress" in json.loads(refused[1]["body"])["detail"]
        reading = asyncio.create_task(call(limited, "GET"))  # GETs are never refused
        release.set()
        assert [(await t)[0]["status"] for t in admitted] == [200, 200]
        assert (await reading)[0]["status"] == 200
        assert limited.in_flight.count == 0
        assert (await call(limited))[0]["status"] == 200

    asyncio.run(scenario())

"""The turn-buffered transport under `ctscan serve` (app/http_protocol.py), over a real socket."""

from __future__ import annotations

import asyncio
from typing import Any

from app.http_protocol import FLUSH_BYTES, TurnBufferedTransport


class CountingTransport:
    """The real transport, with the sizes of the writes that reach it noted."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.writes: list[int] = []

    def write(self, data: bytes) -> None:
        self.writes.append(len(data))
        self.transport.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class Answering(asyncio.Protocol):
    """On any request, writes the chunks it was given in one turn, then closes if told to."""

    def __init__(self, chunks: list[bytes], close: bool, seen: list[CountingTransport]) -> None:
        self.chunks, self.close, self.seen = chunks, close, seen

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        counting = CountingTransport(transport)  # type: ignore[arg-type]
        self.seen.append(counting)
        self.transport = TurnBufferedTransport(counting, asyncio.get_running_loop())  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        for chunk in self.chunks:
            self.transport.write(chunk)
        if self.close:
            self.transport.close()


async def exchange(chunks: list[bytes], close: bool = False) -> tuple[bytes, list[int]]:
    """What a client receives for one request, and the writes that reached the socket."""
    loop = asyncio.get_running_loop()
    seen: list[CountingTransport] = []
    server = await loop.create_server(lambda: Answering(chunks, close, seen), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"ask")
    expected = sum(len(c) for c in chunks)
    received = await asyncio.wait_for(reader.readexactly(expected), 5)
    if close:
        assert await asyncio.wait_for(reader.read(), 5) == b""  # closed after the data
    writer.close()
    server.close()
    await server.wait_closed()
    return received, seen[0].writes


def test_a_head_and_a_body_written_in_one_turn_leave_in_one_write() -> None:
    received, writes = asyncio.run(exchange([b"HTTP/1.1 200 OK\r\n\r\n", b'{"label": "x"}']))
    assert received == b'HTTP/1.1 200 OK\r\n\r\n{"label": "x"}' and writes == [len(received)]


def test_large_writes_go_out_without_waiting_for_the_turn() -> None:
    chunks = [bytes([i]) * (FLUSH_BYTES // 2 + 1) for i in range(3)]
    received, writes = asyncio.run(exchange(chunks))
    assert received == b"".join(chunks)
    assert writes == [FLUSH_BYTES + 2, FLUSH_BYTES // 2 + 1]  # the third waited for the turn


def test_closing_sends_what_waits_first() -> None:
    received, writes = asyncio.run(exchange([b"last ", b"words"], close=True))
    assert received == b"last words" and writes == [10]

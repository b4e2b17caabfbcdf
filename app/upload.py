"""Upload limits enforced while the body streams in, before anything is buffered whole: a size
cap (413) and a deadline for the whole body (408), so a stalled or trickling client cannot hold
a request open."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

from fastapi import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import BadRequest, PayloadTooLarge, error_response
from app.multipart import boundary_of, form_files

MULTIPART_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class BodyLimit:
    """The most bytes a request body may have, and the seconds it may take to arrive."""

    max_body: int
    timeout_s: float = 60.0


class BodySizeLimit:
    """ASGI middleware: 413 for a declared or streamed request body above the limit's bytes,
    408 when the body has not fully arrived the limit's seconds after the request began. Study
    uploads (paths ending in `/studies`) have their own, larger limit."""

    def __init__(
        self,
        app: ASGIApp,
        max_body: int,
        timeout_s: float = 60.0,
        study: BodyLimit | None = None,
    ) -> None:
        self.app = app
        self.default = BodyLimit(max_body, timeout_s)
        self.study = study or self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.study if scope.get("path", "").endswith("/studies") else self.default
        declared = _content_length(scope)
        if declared is not None and declared > limit.max_body:
            await error_response(PayloadTooLarge(_detail(limit)))(scope, receive, send)
            return
        await self.app(scope, _counting(receive, limit), send)


def _counting(receive: Receive, limit: BodyLimit) -> Receive:
    received, complete = 0, False
    loop_deadline = asyncio.get_running_loop().time() + limit.timeout_s

    async def counted() -> Message:
        nonlocal received, complete
        if complete:  # after the body only a disconnect can come: no deadline
            return await receive()
        try:
            async with asyncio.timeout_at(loop_deadline):
                message = await receive()
        except TimeoutError:
            detail = f"the request body did not arrive within {limit.timeout_s:g} s"
            raise HTTPException(408, detail) from None
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit.max_body:
                raise HTTPException(413, _detail(limit))
            complete = not message.get("more_body", False)
        return message

    return counted


def _detail(limit: BodyLimit) -> str:
    return f"the request body exceeds {limit.max_body - MULTIPART_OVERHEAD} bytes"


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def read_form_file(request: Request, max_bytes: int, field: str = "file") -> bytes:
    """The one file of the multipart form's field `field`: the body is read whole (within the
    multipart allowance) and parsed in one pass; 400 for a malformed form or anything but one
    such file, 413 for a file over `max_bytes`."""
    boundary = boundary_of(request.headers.get("content-type"))
    capped = capped_chunks(request, max_bytes + MULTIPART_OVERHEAD, "request body")
    files = form_files(b"".join([chunk async for chunk in capped]), boundary, field)
    if len(files) != 1:
        raise BadRequest(f"send exactly one file in the `{field}` field")
    if len(files[0]) > max_bytes:
        raise PayloadTooLarge(f"the file exceeds the {max_bytes}-byte upload limit")
    return files[0]


def is_multipart(content_type: str | None) -> bool:
    """Whether the upload comes as a multipart form; any other body is the image itself (curl's
    `--data-binary` labels it `application/x-www-form-urlencoded` unless told otherwise)."""
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "multipart/form-data"


async def capped_chunks(
    request: Request, max_bytes: int, what: str = "file"
) -> AsyncIterator[bytes]:
    """The request body's chunks as they arrive; 413 as soon as they pass `max_bytes`."""
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            raise PayloadTooLarge(f"the {what} exceeds the {max_bytes}-byte upload limit")
        yield chunk


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The request body taken as the upload itself (`curl --data-binary @slice.dcm`): 413 as
    soon as it passes `max_bytes`, 400 when it is empty."""
    chunks = [chunk async for chunk in capped_chunks(request, max_bytes)]
    total = sum(len(chunk) for chunk in chunks)
    if not total:
        raise BadRequest(
            "no image: send it as the request body or as the multipart form field `file`"
        )
    return b"".join(chunks)

"""Domain errors and their RFC 9457 problem+json rendering."""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of every error the service reports to clients."""

    status: ClassVar[int] = 500
    title: ClassVar[str] = "Internal error"
    slug: ClassVar[str] = "internal-error"

    def __init__(self, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.headers = headers or {}


class BadRequest(ServiceError):
    status, title, slug = 400, "Bad request", "bad-request"


class NotFound(ServiceError):
    status, title, slug = 404, "Not found", "not-found"


class ModelNotFound(ServiceError):
    status, title, slug = 404, "Unknown model", "model-not-found"


class Conflict(ServiceError):
    status, title, slug = 409, "Conflict", "conflict"


class PayloadTooLarge(ServiceError):
    status, title, slug = 413, "Upload too large", "payload-too-large"


class UnsupportedMediaType(ServiceError):
    status, title, slug = 415, "Unsupported file type", "unsupported-media-type"


class InvalidImage(ServiceError):
    status, title, slug = 422, "Invalid image", "invalid-image"


class OutsideDomain(ServiceError):
    """The model cannot judge this input (only with the setting that refuses such answers)."""

    status, title, slug = 422, "Outside the model's domain", "outside-domain"


class NotReady(ServiceError):
    status, title, slug = 503, "Service not ready", "not-ready"


class Overloaded(ServiceError):
    status, title, slug = 503, "Service overloaded", "overloaded"


class InferenceFailed(ServiceError):
    status, title, slug = 500, "Inference failed", "inference-failed"


class ClientGone(ServiceError):
    status, title, slug = 499, "Client closed request", "client-closed-request"


class ModelLoadError(Exception):
    """A model directory that cannot be served (bad card, checksum, graph)."""


def problem(status: int, title: str, detail: str, slug: str, **extra: Any) -> dict[str, Any]:
    """An RFC 9457 problem document."""
    return {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        **extra,
    }


def problem_response(
    status: int, title: str, detail: str, slug: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """A problem document as a response with the problem+json media type."""
    body = problem(status, title, detail, slug)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def error_response(exc: ServiceError) -> JSONResponse:
    """The problem+json response for a domain error (also for ASGI middleware, which runs
    outside FastAPI's exception handlers)."""
    return problem_response(exc.status, exc.title, exc.detail, exc.slug, exc.headers)


async def _service_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, ServiceError):
        return await _unexpected_error(request, exc)
    return error_response(exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, StarletteHTTPException):
        return await _unexpected_error(request, exc)
    titles = {
        404: "Not found",
        405: "Method not allowed",
        408: "Request timeout",
        413: "Upload too large",
    }
    title = titles.get(exc.status_code, "HTTP error")
    slug = title.lower().replace(" ", "-")
    headers = dict(exc.headers) if exc.headers else None
    if exc.status_code == 405:  # Starlette names only the first route of the path
        headers = {**(headers or {}), "Allow": ", ".join(allowed_methods(request))}
    return problem_response(exc.status_code, title, str(exc.detail), slug, headers)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the request's path answers."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match != Match.NONE:
            methods |= set(getattr(route, "methods", None) or ())
    return sorted(methods)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    if not isinstance(exc, RequestValidationError):
        return await _unexpected_error(request, exc)
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
    return error_response(BadRequest("; ".join(parts)))


async def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(500, "Internal error", "unexpected server error", "internal-error")


def install_error_handlers(app: FastAPI) -> None:
    """Render every error the app can raise as problem+json."""
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)

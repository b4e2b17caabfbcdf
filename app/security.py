"""Optional API keys: `Authorization: Bearer KEY` or `X-API-Key: KEY`, compared in constant time."""

from __future__ import annotations

import hmac

from fastapi import Depends, Request

from app.config import Settings
from app.errors import ServiceError


class Unauthorized(ServiceError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


def _presented(request: Request) -> str | None:
    """The key the request carries: `X-API-Key`, else `Authorization: Bearer`."""
    if x_api_key := request.headers.get("x-api-key"):
        return x_api_key
    authorization = request.headers.get("authorization")
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return None


def _matches(key: str | None, allowed: list[str]) -> bool:
    if key is None:
        return False
    found = False
    for candidate in allowed:  # no early exit: timing does not reveal which key matched
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


def _challenge(detail: str) -> Unauthorized:
    return Unauthorized(detail, headers={"WWW-Authenticate": 'Bearer realm="ctscan"'})


async def require_api_key(request: Request) -> None:
    """Pass when no API keys are configured, or the request carries a user or admin key."""
    settings: Settings = request.app.state.settings
    allowed = [*settings.api_keys, *settings.admin_keys]
    if settings.api_keys and not _matches(_presented(request), allowed):
        raise _challenge("a valid API key is required (Authorization: Bearer, or X-API-Key)")


async def require_admin_key(request: Request) -> None:
    """Pass only with an admin key; with none configured, admin endpoints are closed."""
    settings: Settings = request.app.state.settings
    if not _matches(_presented(request), settings.admin_keys):
        raise _challenge("an admin API key is required (CTSCAN_ADMIN_KEYS)")


AdminKey = Depends(require_admin_key)

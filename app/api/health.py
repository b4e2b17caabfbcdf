"""Liveness and readiness."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from app.api.deps import StoreDep
from app.api.schemas import Readiness

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "alive"}


@router.get(
    "/ready",
    response_model=Readiness,
    summary="Every model loaded and warmed up",
    responses={503: {"model": Readiness, "description": "Loading, or no model could be loaded"}},
)
async def ready(store: StoreDep) -> JSONResponse:
    """200 once loading finished and models serve; 503 before, with the reason per model."""
    body = store.readiness()
    return JSONResponse(body, status_code=200 if body["ready"] else 503)

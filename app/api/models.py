"""Model cards: what is served, in which versions, on which provider."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter

from app.api.deps import StoreDep
from app.api.schemas import ModelSummary, problem_responses
from app.errors import ModelNotFound
from app.inference.store import ModelStore
from app.security import AdminKey

router = APIRouter(prefix="/v1/models", tags=["models"])
admin_router = APIRouter(prefix="/v1/models", tags=["admin"], dependencies=[AdminKey])


def summarise(store: ModelStore, name: str) -> ModelSummary:
    model = store.get(name)
    return ModelSummary(
        name=name,
        version=model.card.version,
        versions=sorted(store.models[name]),
        provider=model.provider,
        card=model.card.model_dump(mode="json"),
    )


@router.get("", response_model=list[ModelSummary], summary="Every served model and its card")
async def list_models(store: StoreDep) -> list[ModelSummary]:
    return [summarise(store, name) for name in sorted(store.models)]


@router.get(
    "/{name}",
    response_model=ModelSummary,
    summary="One model's card (default version)",
    responses=problem_responses(404),
)
async def get_model(name: str, store: StoreDep) -> ModelSummary:
    return summarise(store, name)


@admin_router.post(
    "/{name}/reload",
    summary="Load new version folders of a model (admin key); in-flight requests finish first",
    responses=problem_responses(401, 404),
)
async def reload_model(name: str, store: StoreDep) -> dict[str, list[str]]:
    changes = await asyncio.to_thread(store.refresh, name)
    if name not in store.models:
        raise ModelNotFound(f"no model named {name!r} after reload; failed: {store.failures}")
    return changes

"""Model cards: what is served, in which versions, on which provider."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import StoreDep
from app.api.schemas import ModelSummary, problem_responses
from app.inference.store import ModelStore

router = APIRouter(prefix="/v1/models", tags=["models"])


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

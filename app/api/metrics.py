"""`GET /metrics` in Prometheus text format."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.deps import BatchersDep, RunnerDep, StoreDep
from app.metrics import Metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(
    request: Request, store: StoreDep, batchers: BatchersDep, runner: RunnerDep
) -> Response:
    registry: Metrics = request.app.state.metrics
    registry.queue_depth.labels("decode").set(runner.pending)
    for key, depth in batchers.depths().items():
        registry.queue_depth.labels(f"batch:{key}").set(depth)
    for model in store.all_models():
        version = str(model.card.version)
        registry.model_info.labels(model.card.name, version, model.provider).set(1)
        registry.load_seconds.labels(model.card.name, version).set(model.load_seconds)
    return Response(registry.render(), media_type=CONTENT_TYPE_LATEST)

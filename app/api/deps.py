"""Dependencies that hand the lifespan's objects to routes (tests can override them).

They are `async def` on purpose: FastAPI runs a plain `def` dependency in its thread pool, one
thread hop per dependency per request (about 0.3 ms each at concurrency 1)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.inference.batchers import Batchers
from app.inference.pool import WorkerPool
from app.inference.store import ModelStore
from app.metrics import Metrics


async def get_store(request: Request) -> ModelStore:
    store: ModelStore = request.app.state.store
    return store


async def get_runner(request: Request) -> WorkerPool:
    runner: WorkerPool = request.app.state.runner
    return runner


async def get_batchers(request: Request) -> Batchers:
    batchers: Batchers = request.app.state.batchers
    return batchers


async def get_metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


StoreDep = Annotated[ModelStore, Depends(get_store)]
RunnerDep = Annotated[WorkerPool, Depends(get_runner)]
BatchersDep = Annotated[Batchers, Depends(get_batchers)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]

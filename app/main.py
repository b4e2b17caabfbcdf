"""The FastAPI application factory and its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp

from app import __version__
from app.access_log import AccessLog
from app.admission import InFlight, InFlightLimit
from app.api import (
    dicomweb,
    docs,
    explain,
    health,
    jobs,
    metrics,
    models,
    oip,
    predict,
    studies,
    web,
)
from app.config import Settings, get_settings
from app.errors import install_error_handlers
from app.inference.batchers import Batchers
from app.inference.pool import WorkerPool
from app.inference.store import ModelStore
from app.memory import limit_malloc_arenas, trim_when_idle
from app.metrics import Metrics
from app.pacs.routing import Routing
from app.request_context import RequestIdMiddleware
from app.security import require_api_key
from app.upload import MULTIPART_OVERHEAD, BodyLimit, BodySizeLimit

log = logging.getLogger(__name__)

DESCRIPTION = """Classifies CT slices (and chest X-rays) with ONNX models run by onnxruntime.

Upload one image (PNG, JPEG, TIFF, BMP, WebP or DICOM) as the multipart field `file` or as the
whole request body; the answer gives every class's probability. Errors are
`application/problem+json` (RFC 9457).

**Research use, not for diagnosis.**"""


class ServiceApp(FastAPI):
    """FastAPI with the request id outermost. Starlette puts its ServerErrorMiddleware outside
    every middleware added with `add_middleware`, so there an unexpected error's log line and
    its 500 answer came without the request's id."""

    def build_middleware_stack(self) -> ASGIApp:
        return RequestIdMiddleware(super().build_middleware_stack())


def create_app(settings: Settings | None = None, store: ModelStore | None = None) -> FastAPI:
    """Build the service; models load in the background once the lifespan starts."""
    settings = settings or get_settings()
    limit_malloc_arenas(settings.malloc_arenas)  # before the decode and model threads start
    app = ServiceApp(
        title="CT-scan classification service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
        docs_url=None,  # served by app.api.docs with local assets
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.store = store or ModelStore(settings)
    app.state.metrics = Metrics()
    app.state.in_flight = InFlight()
    # created again by each lifespan run; these serve callers that run no lifespan
    app.state.runner = WorkerPool(settings.decoders, settings.max_queue, settings.retry_after_s)
    app.state.batchers = Batchers(settings, app.state.metrics)
    app.state.study_slots = asyncio.Semaphore(settings.max_concurrent_studies)
    app.state.routing = Routing.from_file(settings.routing_file)  # a bad file fails the start
    _add_middleware(app, settings)
    install_error_handlers(app)
    protected = [Depends(require_api_key)]
    for path, endpoint in predict.served_routes(checks=[require_api_key]):  # matched first
        app.add_route(path, endpoint, methods=["POST"], include_in_schema=False)
    app.include_router(predict.router, dependencies=protected)
    app.include_router(explain.router, dependencies=protected)
    app.include_router(studies.router, dependencies=protected)
    app.include_router(jobs.router, dependencies=protected)
    app.include_router(dicomweb.router, dependencies=protected)
    app.include_router(oip.router, dependencies=protected)
    app.include_router(oip.open_router)
    app.include_router(models.router, dependencies=protected)
    app.include_router(models.admin_router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(web.router)
    app.include_router(docs.router)
    return app


def _add_middleware(app: FastAPI, settings: Settings) -> None:
    app.add_middleware(
        InFlightLimit,
        limit=settings.max_in_flight,
        retry_after_s=settings.retry_after_s,
        in_flight=app.state.in_flight,
    )
    app.add_middleware(  # outside the in-flight cap: its size and deadline bound the drain
        BodySizeLimit,
        max_body=settings.max_upload_bytes + MULTIPART_OVERHEAD,
        timeout_s=settings.body_timeout_s,
        study=BodyLimit(
            settings.max_study_bytes + MULTIPART_OVERHEAD, settings.study_body_timeout_s
        ),
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "X-API-Key", "X-Request-ID", "Content-Type"],
        )
    if settings.access_log:
        app.add_middleware(AccessLog)  # inside the request id (ServiceApp): its lines carry it


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    store: ModelStore = app.state.store
    app.state.runner = WorkerPool(settings.decoders, settings.max_queue, settings.retry_after_s)
    app.state.batchers = Batchers(settings, app.state.metrics)
    app.state.study_slots = asyncio.Semaphore(settings.max_concurrent_studies)  # this loop's
    app.state.jobs = _start_jobs(settings, store)
    loading = asyncio.create_task(asyncio.to_thread(_load_models, store))
    polling = asyncio.create_task(_poll(store, settings.poll_interval_s))
    trimming = asyncio.create_task(
        trim_when_idle(app.state.runner, app.state.batchers, settings.trim_idle_s)
    )
    try:
        yield
    finally:
        for task in (polling, trimming):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await loading
        if app.state.jobs is not None:
            app.state.jobs.close()
        app.state.runner.shutdown()
        app.state.batchers.close()


def _start_jobs(settings: Settings, store: ModelStore) -> jobs.StudyJobs | None:
    """The study job store and runner; without a usable data folder the service still runs
    and job requests answer 503."""
    try:
        return jobs.StudyJobs(settings, store, studies.study_limits(settings))
    except (OSError, sqlite3.Error) as exc:
        log.error("study jobs are off: data folder %s unusable (%s)", settings.data_dir, exc)
        return None


def _load_models(store: ModelStore) -> None:
    if not store.loaded.is_set():
        store.load_all()


async def _poll(store: ModelStore, interval: float) -> None:
    """Rescan the model store every `interval` seconds (0: never)."""
    if interval <= 0:
        return
    while True:
        await asyncio.sleep(interval)
        if store.loaded.is_set():
            changes = await asyncio.to_thread(store.refresh)
            if changes["added"] or changes["removed"]:
                log.info("model store changed: %s", changes)

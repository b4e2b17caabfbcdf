"""The FastAPI application factory and its lifespan."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app import __version__
from app.api import health, models, predict
from app.config import Settings, get_settings
from app.errors import install_error_handlers
from app.inference.batchers import Batchers
from app.inference.pool import WorkerPool
from app.inference.store import ModelStore
from app.upload import MULTIPART_OVERHEAD, BodySizeLimit

log = logging.getLogger(__name__)

DESCRIPTION = """Classifies CT slices (and chest X-rays) with ONNX models run by onnxruntime.

Upload one image as the multipart field `file` (PNG, JPEG, TIFF, BMP, WebP or DICOM); the answer
gives every class's probability. Errors are `application/problem+json` (RFC 9457).

**Research use, not for diagnosis.**"""


def create_app(settings: Settings | None = None, store: ModelStore | None = None) -> FastAPI:
    """Build the service; models load in the background once the lifespan starts."""
    settings = settings or get_settings()
    store = store or ModelStore(settings)
    app = FastAPI(
        title="CT-scan classification service",
        version=__version__,
        description=DESCRIPTION,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    app.state.store = store
    app.add_middleware(BodySizeLimit, max_body=settings.max_upload_bytes + MULTIPART_OVERHEAD)
    install_error_handlers(app)
    for router in (predict.router, models.router, health.router):
        app.include_router(router)
    return app


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    store: ModelStore = app.state.store
    app.state.runner = WorkerPool(settings.decoders, settings.max_queue, settings.retry_after_s)
    app.state.batchers = Batchers(settings)
    loading = asyncio.create_task(asyncio.to_thread(_load_models, store))
    try:
        yield
    finally:
        await loading
        app.state.runner.shutdown()
        app.state.batchers.close()


def _load_models(store: ModelStore) -> None:
    if not store.loaded.is_set():
        store.load_all()

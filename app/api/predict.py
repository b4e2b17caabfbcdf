"""Classify an uploaded image."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from app.admission import InFlight
from app.api.schemas import Prediction, problem_responses
from app.api.window_query import WINDOW_PARAMETERS, window_from_query
from app.config import Settings
from app.errors import ClientGone, OutsideDomain, ServiceError
from app.inference.applicability import OUTSIDE
from app.inference.batchers import Batchers
from app.inference.batching import DynamicBatcher, Ticket
from app.inference.pool import WorkerPool
from app.inference.predict import (
    PreparedInput,
    Scored,
    build_result,
    prepare,
    prepare_and_run_alone,
)
from app.inference.store import LoadedModel, ModelStore
from app.metrics import Metrics
from app.upload import is_multipart, read_body, read_form_file

router = APIRouter(tags=["predict"])
# Turns of the event loop a lone request lets pass before it runs on the loop itself: a client
# that connected meanwhile is accepted in one turn, read in the next, and its request starts
# after that. With 1 turn, a burst of new connections found each request alone in turn and ran
# them one by one (tests/test_cli.py, abandoned requests); 2 sufficed; 3 for margin.
TURNS_BEFORE_RUNNING_HERE = 3
# The hot routes read their one upload from the parsed form themselves and answer with a
# JSONResponse built from the result dict. `openapi_extra=UPLOAD_BODY` and `response_model` still
# document both, but FastAPI no longer validates the body field and re-serialises every answer
# through pydantic on the event loop: about 0.9 ms less per request at concurrency 1. The DICOM
# window query parameters are read by hand too (app/api/window_query.py).

RAW_IMAGE: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "One image, either as the multipart field `file` or as the whole body "
        "(any other content type; the format is judged by the bytes, never the declared type)",
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "string",
                            "format": "binary",
                            "description": "One image: PNG, JPEG, TIFF, BMP, WebP or DICOM",
                        }
                    },
                }
            },
            "image/*": RAW_IMAGE,
            "application/dicom": RAW_IMAGE,
            "application/octet-stream": RAW_IMAGE,
        },
    },
    "parameters": WINDOW_PARAMETERS,
}
ERRORS = problem_responses(400, 404, 408, 413, 415, 422, 503)


@dataclass
class Pipeline:
    """Everything a prediction request needs, injected once."""

    store: ModelStore
    runner: WorkerPool
    batchers: Batchers
    settings: Settings
    metrics: Metrics
    in_flight: InFlight
    request: Request

    async def predict(self, name: str, version: int | None) -> JSONResponse:
        """Classify the request's upload; count and time it."""
        started = time.perf_counter()
        status, label_version = 500, "-" if version is None else str(version)
        try:
            result = await self._predict(name, version)
        except ServiceError as exc:
            status = exc.status
            raise
        else:
            status, label_version = 200, str(result["version"])
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)
            return JSONResponse(result)
        finally:
            self.metrics.requests.labels(name, label_version, str(status)).inc()

    async def prepared(self, name: str, version: int | None) -> tuple[LoadedModel, PreparedInput]:
        """The model and the upload decoded and preprocessed for it."""
        window = window_from_query(self.request.query_params)
        model = self.store.get(name, version)
        data = await self._upload_bytes()
        limit = self.settings.max_image_pixels
        return model, await self.runner.run(prepare, model, data, limit, window)

    async def _upload_bytes(self) -> bytes:
        """The uploaded image: the multipart form's one `file`, or else the whole body."""
        if not is_multipart(self.request.headers.get("content-type")):
            return await read_body(self.request, self.settings.max_upload_bytes)
        return await read_form_file(self.request, self.settings.max_upload_bytes)

    async def _predict(self, name: str, version: int | None) -> dict[str, Any]:
        window = window_from_query(self.request.query_params)
        model = self.store.get(name, version)
        limit = self.settings.max_image_pixels
        data = await self._upload_bytes()  # announced below only once it has fully arrived
        batcher = self.batchers.for_model(model)
        with batcher.expecting() as ticket:
            work = (model, data, limit, window, ticket)
            if await self._may_run_here(batcher, data):
                prepared = self.runner.run_here(prepare_and_run_alone, *work)
                described, scored = await answered(ticket, prepared)
            else:
                with self._abandoned_if_client_leaves():
                    job = self.runner.run(prepare_and_run_alone, *work)
                    del data, work  # neither the upload nor its pixels wait for the batch
                    described, scored = await answered(ticket, await job)
        return self.checked(build_result(model, described, scored))

    async def _may_run_here(self, batcher: DynamicBatcher, data: bytes) -> bool:
        """Whether the event loop may decode and run this upload itself: it is small and alone
        (no other POST in progress, nothing being decoded, queued or batched). A lone request
        then skips the hand-offs to a decode thread and back (about 0.25 ms on 2 cores); a
        request arriving meanwhile waits at most one small image's decode and run. The loop
        first lets requests that have just arrived start, so that those that came while it was
        busy count: else each would find itself alone in turn and none would be batched."""
        if len(data) > self.settings.inline_max_bytes or self.in_flight.count > 1:
            return False
        for _ in range(TURNS_BEFORE_RUNNING_HERE):
            await asyncio.sleep(0)
        return self.in_flight.count == 1 and self.runner.pending == 0 and batcher.is_alone()

    def checked(self, result: dict[str, Any]) -> dict[str, Any]:
        """Count the answer's applicability verdict; refuse an outside one when so set."""
        verdict = result["applicability"]
        self.metrics.count_verdicts(result["model"], [verdict["verdict"]])
        if verdict["verdict"] == OUTSIDE and self.settings.reject_outside:
            raise OutsideDomain(
                f"model {result['model']} cannot judge this image: {verdict['reason']}"
            )
        return result

    @contextlib.contextmanager
    def _abandoned_if_client_leaves(self) -> Iterator[None]:
        """Cancel the work inside when the client disconnects (a decode not yet started or an
        image not yet batched is dropped) and raise ClientGone: abandoned requests must not hold
        capacity that waiting clients need. Call it once the body has been read."""
        task = asyncio.current_task()
        if task is None:  # not running as a task: nothing to cancel
            yield
            return
        watcher = asyncio.ensure_future(self._cancel_when_client_leaves(task))
        try:
            yield
        except asyncio.CancelledError:
            if not watcher.done() or watcher.cancelled():
                raise  # cancelled for another reason, e.g. shutdown
            task.uncancel()
            raise ClientGone("the client closed the connection before the answer") from None
        finally:
            watcher.cancel()

    async def _cancel_when_client_leaves(self, task: asyncio.Task[Any]) -> None:
        while (await self.request.receive())["type"] != "http.disconnect":
            continue  # after the body, only a disconnect can come
        task.cancel()


async def get_pipeline(request: Request) -> Pipeline:
    """The request's pipeline from the lifespan's objects: one dependency, resolved on the event
    loop (FastAPI calls a class or a plain `def` dependency in its thread pool)."""
    app = request.app.state
    return Pipeline(
        app.store, app.runner, app.batchers, app.settings, app.metrics, app.in_flight, request
    )


PipelineDep = Annotated[Pipeline, Depends(get_pipeline)]


@router.post(
    "/v1/models/{name}/predict",
    response_model=Prediction,
    responses=ERRORS,
    openapi_extra=UPLOAD_BODY,
    summary="Classify one image with the model's default (highest) version",
)
async def predict(name: str, pipeline: PipelineDep) -> JSONResponse:
    return await pipeline.predict(name, None)


@router.post(
    "/v1/models/{name}/versions/{version}/predict",
    response_model=Prediction,
    responses=ERRORS,
    openapi_extra=UPLOAD_BODY,
    summary="Classify one image with a pinned model version",
)
async def predict_version(name: str, version: int, pipeline: PipelineDep) -> JSONResponse:
    return await pipeline.predict(name, version)


@router.post(
    "/predict",
    response_model=Prediction,
    responses=ERRORS,
    openapi_extra=UPLOAD_BODY,
    summary="Classify one image with the default model",
)
async def predict_default(pipeline: PipelineDep) -> JSONResponse:
    return await pipeline.predict(pipeline.store.default_name(), None)


Check = Callable[[Request], Awaitable[None]]
ServedRoute = tuple[str, Callable[[Request], Awaitable[Response]]]


def served_routes(checks: Sequence[Check]) -> list[ServedRoute]:
    """The three routes above as plain Starlette (path, endpoint) pairs, for the app to match
    before its FastAPI routes: the FastAPI declarations document them in OpenAPI and still answer
    what these do not match (a version that is not a number gets their 400). These skip
    FastAPI's per-request routing context, dependency solving and parameter validation: about
    0.2 ms less per lone request on 2 cores. `checks` (the API key) run first, as the
    routers' dependencies do."""

    async def answer(request: Request, name: str | None, version: int | None) -> Response:
        for check in checks:
            await check(request)
        pipeline = await get_pipeline(request)
        return await pipeline.predict(name or pipeline.store.default_name(), version)

    async def by_name(request: Request) -> Response:
        return await answer(request, request.path_params["name"], None)

    async def pinned(request: Request) -> Response:
        return await answer(request, request.path_params["name"], request.path_params["version"])

    async def default(request: Request) -> Response:
        return await answer(request, None, None)

    return [
        ("/v1/models/{name}/predict", by_name),
        ("/v1/models/{name}/versions/{version:int}/predict", pinned),
        ("/predict", default),
    ]


async def answered(
    ticket: Ticket, prepared: tuple[np.ndarray, dict[str, Any], Scored | None]
) -> tuple[dict[str, Any], Scored]:
    """The upload's description and its answer: already run alone, or else from the batch it
    joins (others were about when it was ready)."""
    tensor, described, alone = prepared
    if alone is not None:
        return described, alone
    scored: Scored = await asyncio.wrap_future(ticket.submit(tensor))
    return described, scored

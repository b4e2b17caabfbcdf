"""Classify an uploaded image."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile

from app.api.deps import BatchersDep, MetricsDep, RunnerDep, SettingsDep, StoreDep
from app.api.schemas import Prediction, problem_responses
from app.errors import BadRequest, ServiceError
from app.imaging.dicom import WINDOW_PRESETS, Window
from app.inference.predict import PreparedInput, build_result, prepare
from app.inference.store import LoadedModel
from app.upload import read_upload

router = APIRouter(tags=["predict"])

UploadDep = Annotated[
    UploadFile, File(description="One image: PNG, JPEG, TIFF, BMP, WebP or DICOM")
]
ERRORS = problem_responses(400, 404, 408, 413, 415, 422, 503)


@dataclass
class Pipeline:
    """Everything a prediction request needs, injected once."""

    store: StoreDep
    runner: RunnerDep
    batchers: BatchersDep
    settings: SettingsDep
    metrics: MetricsDep
    request: Request

    async def predict(
        self, name: str, version: int | None, file: UploadFile, window: Window | None = None
    ) -> dict[str, Any]:
        started = time.perf_counter()
        status, label_version = 500, "-" if version is None else str(version)
        try:
            result = await self._predict(name, version, file, window)
        except ServiceError as exc:
            status = exc.status
            raise
        else:
            status, label_version = 200, str(result["version"])
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)
            return result
        finally:
            self.metrics.requests.labels(name, label_version, str(status)).inc()

    async def prepared(
        self, name: str, version: int | None, file: UploadFile, window: Window | None = None
    ) -> tuple[LoadedModel, PreparedInput]:
        """The model and the upload decoded and preprocessed for it."""
        model = self.store.get(name, version)
        return model, await self._prepare(model, file, window)

    async def _prepare(
        self, model: LoadedModel, file: UploadFile, window: Window | None
    ) -> PreparedInput:
        await self._one_file_only()
        data = await read_upload(file, self.settings.max_upload_bytes)
        limit = self.settings.max_image_pixels
        return await self.runner.run(prepare, model, data, limit, window)

    async def _one_file_only(self) -> None:
        form = await self.request.form()  # already parsed by FastAPI: cached, not re-read
        if len(form.getlist("file")) > 1:
            raise BadRequest("send exactly one file in the `file` field")

    async def _predict(
        self, name: str, version: int | None, file: UploadFile, window: Window | None
    ) -> dict[str, Any]:
        model = self.store.get(name, version)
        with self.batchers.for_model(model).expecting() as ticket:
            prepared = await self._prepare(model, file, window)
            future = ticket.submit(prepared.tensor)
        probabilities = await asyncio.wrap_future(future)
        return build_result(model, prepared.decoded, probabilities)


PipelineDep = Annotated[Pipeline, Depends()]


def window_query(
    window: Annotated[
        str | None, Query(description=f"DICOM window preset: {', '.join(WINDOW_PRESETS)}")
    ] = None,
    window_center: Annotated[float | None, Query(description="DICOM window center (HU)")] = None,
    window_width: Annotated[float | None, Query(gt=0, description="DICOM window width")] = None,
) -> Window | None:
    """The DICOM window asked for: a preset, or center + width; None = the model's default."""
    custom = (window_center, window_width)
    if window is not None:
        if custom != (None, None):
            raise BadRequest("give either a window preset or window_center + window_width")
        if window not in WINDOW_PRESETS:
            raise BadRequest(f"unknown window {window!r}; presets: {', '.join(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[window]
    if (window_center is None) != (window_width is None):
        raise BadRequest("window_center and window_width must be given together")
    if window_center is None or window_width is None:
        return None
    return (window_center, window_width)


WindowDep = Annotated[Window | None, Depends(window_query)]


@router.post(
    "/v1/models/{name}/predict",
    response_model=Prediction,
    responses=ERRORS,
    summary="Classify one image with the model's default (highest) version",
)
async def predict(
    name: str, file: UploadDep, pipeline: PipelineDep, window: WindowDep
) -> dict[str, Any]:
    return await pipeline.predict(name, None, file, window)


@router.post(
    "/v1/models/{name}/versions/{version}/predict",
    response_model=Prediction,
    responses=ERRORS,
    summary="Classify one image with a pinned model version",
)
async def predict_version(
    name: str, version: int, file: UploadDep, pipeline: PipelineDep, window: WindowDep
) -> dict[str, Any]:
    return await pipeline.predict(name, version, file, window)


@router.post(
    "/predict",
    response_model=Prediction,
    responses=ERRORS,
    summary="Classify one image with the default model",
)
async def predict_default(
    file: UploadDep, pipeline: PipelineDep, window: WindowDep
) -> dict[str, Any]:
    return await pipeline.predict(pipeline.store.default_name(), None, file, window)

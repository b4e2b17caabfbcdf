"""Classify an uploaded image."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, UploadFile

from app.api.deps import BatchersDep, MetricsDep, RunnerDep, SettingsDep, StoreDep
from app.api.schemas import Prediction, problem_responses
from app.errors import ServiceError
from app.inference.predict import build_result, prepare
from app.upload import read_upload

router = APIRouter(tags=["predict"])

UploadDep = Annotated[
    UploadFile, File(description="One image: PNG, JPEG, TIFF, BMP, WebP or DICOM")
]
ERRORS = problem_responses(400, 404, 413, 415, 422, 503)


@dataclass
class Pipeline:
    """Everything a prediction request needs, injected once."""

    store: StoreDep
    runner: RunnerDep
    batchers: BatchersDep
    settings: SettingsDep
    metrics: MetricsDep

    async def predict(self, name: str, version: int | None, file: UploadFile) -> dict[str, Any]:
        started = time.perf_counter()
        status, label_version = 500, "-" if version is None else str(version)
        try:
            result = await self._predict(name, version, file)
        except ServiceError as exc:
            status = exc.status
            raise
        else:
            status, label_version = 200, str(result["version"])
            self.metrics.latency.labels(name).observe(time.perf_counter() - started)
            return result
        finally:
            self.metrics.requests.labels(name, label_version, str(status)).inc()

    async def _predict(self, name: str, version: int | None, file: UploadFile) -> dict[str, Any]:
        model = self.store.get(name, version)
        data = await read_upload(file, self.settings.max_upload_bytes)
        prepared = await self.runner.run(prepare, model, data, self.settings.max_image_pixels)
        future = self.batchers.for_model(model).submit(prepared.tensor)
        probabilities = await asyncio.wrap_future(future)
        return build_result(model, prepared.decoded, probabilities)


PipelineDep = Annotated[Pipeline, Depends()]


@router.post(
    "/v1/models/{name}/predict",
    response_model=Prediction,
    responses=ERRORS,
    summary="Classify one image with the model's default (highest) version",
)
async def predict(name: str, file: UploadDep, pipeline: PipelineDep) -> dict[str, Any]:
    return await pipeline.predict(name, None, file)


@router.post(
    "/v1/models/{name}/versions/{version}/predict",
    response_model=Prediction,
    responses=ERRORS,
    summary="Classify one image with a pinned model version",
)
async def predict_version(
    name: str, version: int, file: UploadDep, pipeline: PipelineDep
) -> dict[str, Any]:
    return await pipeline.predict(name, version, file)


@router.post(
    "/predict",
    response_model=Prediction,
    responses=ERRORS,
    summary="Classify one image with the default model",
)
async def predict_default(file: UploadDep, pipeline: PipelineDep) -> dict[str, Any]:
    return await pipeline.predict(pipeline.store.default_name(), None, file)

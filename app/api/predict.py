"""Classify an uploaded image."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, UploadFile

from app.api.deps import RunnerDep, SettingsDep, StoreDep
from app.api.schemas import Prediction, problem_responses
from app.config import Settings
from app.inference.predict import predict_bytes
from app.inference.runner import InferenceRunner
from app.inference.store import ModelStore
from app.upload import read_upload

router = APIRouter(tags=["predict"])

UploadDep = Annotated[
    UploadFile, File(description="One image: PNG, JPEG, TIFF, BMP, WebP or DICOM")
]
ERRORS = problem_responses(400, 404, 413, 415, 422, 503)


async def _predict(
    name: str,
    version: int | None,
    file: UploadFile,
    store: ModelStore,
    runner: InferenceRunner,
    settings: Settings,
) -> dict[str, Any]:
    model = store.get(name, version)
    data = await read_upload(file, settings.max_upload_bytes)
    result: dict[str, Any] = await runner.run(predict_bytes, model, data, settings.max_image_pixels)
    return result


@router.post(
    "/v1/models/{name}/predict",
    response_model=Prediction,
    responses=ERRORS,
    summary="Classify one image with the model's default (highest) version",
)
async def predict(
    name: str, file: UploadDep, store: StoreDep, runner: RunnerDep, settings: SettingsDep
) -> dict[str, Any]:
    return await _predict(name, None, file, store, runner, settings)


@router.post(
    "/v1/models/{name}/versions/{version}/predict",
    response_model=Prediction,
    responses=ERRORS,
    summary="Classify one image with a pinned model version",
)
async def predict_version(
    name: str,
    version: int,
    file: UploadDep,
    store: StoreDep,
    runner: RunnerDep,
    settings: SettingsDep,
) -> dict[str, Any]:
    return await _predict(name, version, file, store, runner, settings)


@router.post(
    "/predict",
    response_model=Prediction,
    responses=ERRORS,
    summary="Classify one image with the default model",
)
async def predict_default(
    file: UploadDep, store: StoreDep, runner: RunnerDep, settings: SettingsDep
) -> dict[str, Any]:
    return await _predict(store.default_name(), None, file, store, runner, settings)

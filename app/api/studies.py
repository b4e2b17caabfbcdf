"""`POST /v1/models/{name}/studies`: a DICOM series (zip, or many multipart `file` parts, or a
single file) in; the series used, every slice's answer in order and the study's answer out. With
`Prefer: respond-async`, the upload is spooled into a job and the answer is 202 (app.api.jobs)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import IO, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from app.api.jobs import BODY_FILE, accepted, get_jobs, save_parts
from app.api.predict import ERRORS, PipelineDep
from app.config import Settings
from app.errors import BadRequest, PayloadTooLarge
from app.studies.pipeline import StudySettings, analyse_study
from app.studies.sources import (
    ZIP_MAGIC,
    PartsSource,
    StudyLimits,
    StudySource,
    ZipSource,
)
from app.upload import is_multipart

router = APIRouter(tags=["studies"])
SPOOL_IN_MEMORY = 8 * 1024 * 1024  # larger uploads go to a temporary file
STUDY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A zip of the study's DICOM files (any folder layout), or the files as "
        "many multipart `file` parts, or one DICOM file",
        "content": {
            "application/zip": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "The DICOM files of one study",
                        }
                    },
                }
            },
            "application/dicom": {"schema": {"type": "string", "format": "binary"}},
        },
    }
}


def study_limits(settings: Settings) -> StudyLimits:
    return StudyLimits(
        settings.max_study_files, 2 * settings.max_study_bytes, settings.max_zip_ratio
    )


async def spool_body(request: Request, max_bytes: int) -> IO[bytes]:
    """The request body in a spooled temporary file (on disk past 8 MiB); 413 past the cap."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 (returned)
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > max_bytes:
            spool.close()
            raise PayloadTooLarge(f"the study exceeds the {max_bytes}-byte upload limit")
        spool.write(chunk)
    if not total:
        spool.close()
        raise BadRequest("no study: send a zip, multipart `file` parts or a DICOM file")
    spool.seek(0)
    return spool


def body_source(spool: IO[bytes], limits: StudyLimits) -> StudySource:
    """A zip archive, else one DICOM file."""
    is_zip = spool.read(4) == ZIP_MAGIC
    spool.seek(0)
    if is_zip:
        return ZipSource(spool, limits)

    def whole() -> bytes:
        spool.seek(0)
        return spool.read()

    return PartsSource([whole], limits)


def parts_source(files: list[Any], limits: StudyLimits) -> StudySource:
    """The uploaded `file` parts (Starlette spools each to disk past 1 MiB)."""
    uploads = [f for f in files if isinstance(f, UploadFile)]
    if not uploads:
        raise BadRequest("send the study's files as multipart `file` parts")

    def reader(upload: UploadFile) -> Any:
        def read() -> bytes:
            upload.file.seek(0)
            return upload.file.read()

        return read

    return PartsSource([reader(u) for u in uploads], limits)


async def classify_study(pipeline: Any, name: str, version: int | None) -> JSONResponse:
    settings: Settings = pipeline.settings
    model = pipeline.store.get(name, version)
    limits = study_limits(settings)
    request: Request = pipeline.request
    if "respond-async" in request.headers.get("prefer", "").lower():
        return await queue_study(request, settings, model.card.name, model.card.version)
    run = StudySettings(settings.study_batch_size, settings.max_study_slices)
    slots = _study_slots(request, settings)
    if is_multipart(request.headers.get("content-type")):
        form = await request.form(max_files=settings.max_study_files + 1)
        try:
            source = parts_source(form.getlist("file"), limits)
            async with slots:
                answer = await asyncio.to_thread(analyse_study, model, source, run)
        finally:
            await form.close()
    else:
        spool = await spool_body(request, settings.max_study_bytes)
        try:
            async with slots:
                source = await asyncio.to_thread(body_source, spool, limits)
                try:
                    answer = await asyncio.to_thread(analyse_study, model, source, run)
                finally:
                    source.close()
        finally:
            spool.close()
    count_verdicts(pipeline, answer)
    return JSONResponse(answer)


async def queue_study(
    request: Request, settings: Settings, name: str, version: int
) -> JSONResponse:
    """Spool the upload into a new job's folder and queue it: 202 + Location."""
    jobs = get_jobs(request)
    job_id = jobs.store.create(name, version)
    folder = jobs.store.upload_dir(job_id)
    try:
        if is_multipart(request.headers.get("content-type")):
            await save_form_parts(request, settings, folder)
        else:
            await save_body(request, settings.max_study_bytes, folder / BODY_FILE)
    except BaseException:
        jobs.store.remove(job_id)
        raise
    jobs.runner.submit()
    return accepted(jobs.store.get(job_id) or {"id": job_id})


async def save_form_parts(request: Request, settings: Settings, folder: Path) -> None:
    form = await request.form(max_files=settings.max_study_files + 1)
    try:
        uploads = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        if not uploads:
            raise BadRequest("send the study's files as multipart `file` parts")
        if len(uploads) > settings.max_study_files:
            raise PayloadTooLarge(
                f"{len(uploads)} files sent; the limit is {settings.max_study_files}"
            )
        save_parts(folder, [await upload.read() for upload in uploads])
    finally:
        await form.close()


async def save_body(request: Request, max_bytes: int, path: Path) -> None:
    """The request body streamed into `path`; 413 past the cap, 400 when empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    total = 0
    with path.open("wb") as handle:
        async for chunk in request.stream():
            total += len(chunk)
            if total > max_bytes:
                raise PayloadTooLarge(f"the study exceeds the {max_bytes}-byte upload limit")
            handle.write(chunk)
    if not total:
        raise BadRequest("no study: send a zip, multipart `file` parts or a DICOM file")


def _study_slots(request: Request, settings: Settings) -> asyncio.Semaphore:
    state = request.app.state
    if getattr(state, "study_slots", None) is None:
        state.study_slots = asyncio.Semaphore(settings.max_concurrent_studies)
    slots: asyncio.Semaphore = state.study_slots
    return slots


def count_verdicts(pipeline: Any, answer: dict[str, Any]) -> None:
    counter = pipeline.metrics.verdicts
    for row in answer["slices"]:
        counter.labels(answer["model"], row["applicability"]["verdict"]).inc()


@router.post(
    "/v1/models/{name}/studies",
    responses=ERRORS,
    openapi_extra=STUDY_BODY,
    summary="Classify a whole DICOM series: every slice in order and the study",
)
async def study(name: str, pipeline: PipelineDep) -> JSONResponse:
    return await classify_study(pipeline, name, None)


@router.post(
    "/v1/models/{name}/versions/{version}/studies",
    responses=ERRORS,
    openapi_extra=STUDY_BODY,
    summary="Classify a whole DICOM series with a pinned model version",
)
async def study_version(name: str, version: int, pipeline: PipelineDep) -> JSONResponse:
    return await classify_study(pipeline, name, version)

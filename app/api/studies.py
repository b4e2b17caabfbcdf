"""`POST /v1/models/{name}/studies`: a DICOM series (zip, or many multipart `file` parts, or a
single file) in; the series used, every slice's answer in order and the study's answer out. With
`Prefer: respond-async`, the upload is spooled into a job and the answer is 202 (app.api.jobs)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.api.jobs import BODY_FILE, accepted, get_jobs, save_parts
from app.api.predict import ERRORS, RAW_IMAGE, PipelineDep
from app.api.study_answers import answer_study, wants_dicom
from app.api.study_uploads import (
    body_source,
    parts_source,
    read_related,
    save_body,
    save_form_parts,
    spool_body,
)
from app.config import Settings
from app.pacs.delivery import JobOptions
from app.studies.pipeline import StudySettings
from app.studies.related import related_boundary
from app.studies.sources import (
    PartsSource,
    StudyLimits,
    StudySource,
)
from app.upload import is_multipart

router = APIRouter(tags=["studies"])
STUDY_EXAMPLE: dict[str, Any] = {
    "model": "head-ct-hemorrhage",
    "version": 3,
    "series": {
        "study_instance_uid": "1.2.826.0.1.3680043.10.1234.1",
        "series_instance_uid": "1.2.826.0.1.3680043.10.1234.1.2",
        "series_number": 2,
        "modality": "CT",
        "slices": 32,
        "ordered_by": "ImagePositionPatient along the slice normal",
        "notes": [],
    },
    "skipped": [
        {"series_instance_uid": "1.2.826.0.1.3680043.10.1234.1.2.99", "slices": 1,
         "reason": "localizer (scout) images"},
        {"file": "README.txt", "reason": "not a DICOM file"},
    ],
    "slices": [
        {"index": 0, "position_mm": -100.0, "instance_number": 32, "frame": None,
         "sop_instance_uid": "1.2.826.0.1.3680043.10.1234.1.2.1",
         "probabilities": {"hemorrhage": 0.02, "normal": 0.98},
         "applicability": {"verdict": "in_domain", "score": 1.3, "threshold": 4.0,
                           "reason": None}},
    ],
    "study": {
        "label": "normal", "probabilities": {"hemorrhage": 0.08, "normal": 0.92},
        "rule": {"rule": "smoothed_max", "finding": "hemorrhage", "window": 3, "key_slices": 3},
        "judgeable_slices": 30, "left_out": {"outside": 2}, "key_slices": [11, 12, 13],
        "note": "The study-level rule is not validated on study labels: the models were trained "
        "and judged on single slices.",
    },
}  # fmt: skip
STUDY_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    200: {
        "description": "The series used, what was skipped, every slice in order, the study; "
        "with `?output=dicom`, the DICOM results",
        "content": {
            "application/json": {"example": STUDY_EXAMPLE},
            "application/zip": RAW_IMAGE,
            'multipart/related; type="application/dicom"': RAW_IMAGE,
        },
    },
    202: {"description": "With `Prefer: respond-async`: the job, at `Location: /v1/jobs/{id}`"},
}
STUDY_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "A zip of the study's DICOM files (any folder layout), or the files as "
        "many multipart `file` parts, or as a multipart/related (STOW-RS) body, or one DICOM "
        "file, one Enhanced CT object or one NIfTI volume",
        "content": {
            "application/zip": RAW_IMAGE,
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
            "application/dicom": RAW_IMAGE,
            'multipart/related; type="application/dicom"': RAW_IMAGE,
        },
    },
    "parameters": [
        {
            "name": "heatmaps",
            "in": "query",
            "required": False,
            "schema": {"type": "boolean", "default": False},
            "description": "Add the key slices' class activation overlays (PNG, base64) to "
            "`study.key_slice_heatmaps` (synchronous answers)",
        },
        {
            "name": "output",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "enum": ["json", "dicom"], "default": "json"},
            "description": "`dicom`: the results as DICOM objects in the source study (a "
            "Structured Report and a Secondary Capture per key slice), zipped, or as "
            'multipart/related with `Accept: multipart/related; type="application/dicom"`; '
            "with `Prefer: respond-async` the job keeps them at `/v1/jobs/{id}/results`",
        },
    ],
}


def study_limits(settings: Settings) -> StudyLimits:
    return StudyLimits(
        settings.max_study_files, 2 * settings.max_study_bytes, settings.max_zip_ratio
    )


async def classify_study(pipeline: Any, name: str, version: int | None) -> Response:
    settings: Settings = pipeline.settings
    model = pipeline.store.get(name, version)
    limits = study_limits(settings)
    request: Request = pipeline.request
    dicom = wants_dicom(request)
    if "respond-async" in request.headers.get("prefer", "").lower():
        options = JobOptions(dicom=dicom)
        return await queue_study(request, settings, model.card.name, model.card.version, options)
    heatmaps = request.query_params.get("heatmaps", "").lower() in ("1", "true", "yes")
    run = StudySettings.of(settings, heatmaps=dicom or heatmaps)
    async with contextlib.AsyncExitStack() as held:
        source = await open_source(request, settings, limits, held)
        return await answer_study(pipeline, model, source, run, dicom)


async def open_source(
    request: Request, settings: Settings, limits: StudyLimits, held: contextlib.AsyncExitStack
) -> StudySource:
    """The upload as a study source, whatever its shape; what it holds open (the parts, the
    form, the spooled body, the archive) is closed when `held` closes."""
    content_type = request.headers.get("content-type")
    boundary = related_boundary(content_type)
    if boundary is not None:
        parts = await read_related(request, boundary, settings)
        held.callback(parts.close)
        return PartsSource(parts.readers(), limits)
    if is_multipart(content_type):
        form = await request.form(max_files=settings.max_study_files + 1)
        held.push_async_callback(form.close)
        return parts_source(form.getlist("file"), limits)
    spool = await spool_body(request, settings.max_study_bytes)
    held.callback(spool.close)
    source = await asyncio.to_thread(body_source, spool, limits)
    held.callback(source.close)
    return source


async def queue_study(
    request: Request, settings: Settings, name: str, version: int, options: JobOptions
) -> JSONResponse:
    """Spool the upload into a new job's folder and queue it: 202 + Location."""
    jobs = get_jobs(request)
    job_id = jobs.queue(name, version, options)
    folder = jobs.store.upload_dir(job_id)
    boundary = related_boundary(request.headers.get("content-type"))
    try:
        if boundary is not None:
            parts = await read_related(request, boundary, settings)
            try:
                readers = parts.readers()
                await asyncio.to_thread(save_parts, folder, (read() for read in readers))
            finally:
                parts.close()
        elif is_multipart(request.headers.get("content-type")):
            await save_form_parts(request, settings, folder)
        else:
            await save_body(request, settings.max_study_bytes, folder / BODY_FILE)
    except BaseException:
        jobs.store.remove(job_id)
        raise
    jobs.runner.submit()
    return accepted(jobs.store.get(job_id) or {"id": job_id})


@router.post(
    "/v1/models/{name}/studies",
    responses=STUDY_RESPONSES,
    openapi_extra=STUDY_BODY,
    summary="Classify a whole DICOM series: every slice in order and the study",
)
async def study(name: str, pipeline: PipelineDep) -> Response:
    return await classify_study(pipeline, name, None)


@router.post(
    "/v1/models/{name}/versions/{version}/studies",
    responses=STUDY_RESPONSES,
    openapi_extra=STUDY_BODY,
    summary="Classify a whole DICOM series with a pinned model version",
)
async def study_version(name: str, version: int, pipeline: PipelineDep) -> Response:
    return await classify_study(pipeline, name, version)

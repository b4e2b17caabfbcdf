"""The service in a PACS. Pull: `POST /v1/models/{name}/pacs/studies/{uid}` fetches a study
from the configured PACS (WADO-RS) and classifies it; with `store=true` (always a job) the SR
and captures go back to the PACS (STOW-RS). Receive: `POST /dicomweb/studies` is a STOW-RS
endpoint: each study pushed becomes a job for the model the routing rules choose, whose results
go back to the PACS when one is configured."""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response

from app.api.jobs import accepted, get_jobs, job_url, save_parts
from app.api.predict import ERRORS, RAW_IMAGE, PipelineDep
from app.api.schemas import problem_responses
from app.api.studies import study_limits
from app.api.study_answers import answer_study, wants_dicom
from app.api.study_uploads import read_related
from app.errors import BadRequest, ModelNotFound, UnsupportedMediaType
from app.inference.store import ModelStore
from app.pacs.client import PacsNotConfigured
from app.pacs.delivery import NO_PACS, JobOptions
from app.pacs.received import (
    CANNOT_UNDERSTAND,
    DICOM_JSON,
    NOT_ROUTED,
    Instance,
    group_by_study,
    stow_answer,
    stow_status,
)
from app.pacs.routing import Routing, Rule, describe
from app.studies.pipeline import StudySettings
from app.studies.related import related_boundary
from app.studies.sources import PartsSource

log = logging.getLogger(__name__)
router = APIRouter(tags=["pacs"])
UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


@router.post(
    "/v1/models/{name}/pacs/studies/{study_uid}",
    responses={**ERRORS, 202: {"description": "The job, at `Location: /v1/jobs/{id}`"}},
    summary="Fetch a study from the PACS and classify it; store=true sends the results back",
)
async def pull_study(
    name: str,
    study_uid: str,
    pipeline: PipelineDep,
    store: Annotated[
        bool, Query(description="Send the SR and captures to the PACS (always a job)")
    ] = False,
) -> Response:
    request: Request = pipeline.request
    if not UID.match(study_uid) or len(study_uid) > 64:
        raise BadRequest("study_uid is not a DICOM UID (digits and dots, at most 64)")
    model = pipeline.store.get(name, None)
    jobs = get_jobs(request)
    if jobs.pacs is None:
        raise PacsNotConfigured(NO_PACS)
    dicom = wants_dicom(request) or store
    if store or "respond-async" in request.headers.get("prefer", "").lower():
        options = JobOptions(pacs_study=study_uid, dicom=dicom, store=store)
        job_id = jobs.queue(model.card.name, model.card.version, options)
        jobs.runner.submit()
        return accepted(jobs.store.get(job_id) or {"id": job_id})
    settings = pipeline.settings
    run = StudySettings.of(settings, heatmaps=dicom)
    parts = await asyncio.to_thread(
        jobs.pacs.retrieve_study, study_uid, settings.max_study_files, settings.max_study_bytes
    )
    try:
        source = PartsSource(parts.readers(), study_limits(settings))
        return await answer_study(pipeline, model, source, run, dicom)
    finally:
        parts.close()


STOW_RESPONSES: dict[int | str, dict[str, Any]] = {
    **problem_responses(400, 401, 413, 415, 503),
    200: {"description": "Every instance taken (DICOM JSON); a `Link` header per job"},
    202: {"description": "Some instances taken; the others in FailedSOPSequence with a reason"},
    409: {"description": "None taken: not DICOM (0xC000) or no routing rule (0x0110)"},
}


@router.post(
    "/dicomweb/studies",
    responses=STOW_RESPONSES,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {'multipart/related; type="application/dicom"': RAW_IMAGE},
        }
    },
    summary="STOW-RS: a PACS pushes studies; each routed study becomes a job",
)
async def receive_studies(request: Request) -> Response:
    settings = request.app.state.settings
    boundary = related_boundary(request.headers.get("content-type"))
    if boundary is None:
        raise UnsupportedMediaType('STOW-RS takes multipart/related; type="application/dicom"')
    jobs = get_jobs(request)
    routing: Routing = request.app.state.routing
    store: ModelStore = request.app.state.store
    parts = await read_related(request, boundary, settings)
    try:
        studies, unreadable = await asyncio.to_thread(group_by_study, parts.readers())
        taken: list[Instance] = []
        failed = [(instance, CANNOT_UNDERSTAND) for instance in unreadable]
        links = []
        for study in studies.values():
            rule = routing.route(study.series.values())
            why = "no rule matched" if rule is None else unserved(store, rule)
            if rule is None or why:
                log.warning("study not routed (%s): %s", why, describe(study.series.values()))
                failed += [(instance, NOT_ROUTED) for instance in study.instances]
                continue
            options = JobOptions(dicom=True, store=jobs.pacs is not None)
            job_id = jobs.queue(rule.model, rule.version, options)
            folder = jobs.store.upload_dir(job_id)
            await asyncio.to_thread(save_parts, folder, (i.read() for i in study.instances))
            jobs.runner.submit()
            taken += study.instances
            links.append(f'<{job_url(job_id)}>; rel="monitor"')
    finally:
        parts.close()
    return JSONResponse(
        stow_answer(taken, failed),
        status_code=stow_status(len(taken), len(failed)),
        media_type=DICOM_JSON,
        headers={"Link": ", ".join(links)} if links else None,
    )


def unserved(store: ModelStore, rule: Rule) -> str | None:
    """Why the rule's model cannot take the study (not served), or None; 503 while loading."""
    try:
        store.get(rule.model, rule.version)
    except ModelNotFound as exc:
        return exc.detail
    return None

"""Study jobs over HTTP: `Prefer: respond-async` on the study endpoints answers 202 with
`Location: /v1/jobs/{id}`; `GET /v1/jobs/{id}` gives status, progress and, once done, the study
answer; `DELETE /v1/jobs/{id}` cancels a queued or running job, or removes a finished one."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from app.api.schemas import problem_responses
from app.api.study_answers import analyse, dicom_response
from app.config import Settings
from app.errors import Conflict, NotFound, NotReady
from app.inference.store import ModelStore
from app.pacs.client import DicomWebClient, PacsConfig, PacsNotConfigured
from app.pacs.delivery import (
    NO_PACS,
    JobOptions,
    deliver,
    load_options,
    save_options,
    save_results,
    saved_results,
    undelivered,
)
from app.studies.jobs import ACTIVE, JobRunner, JobStore
from app.studies.pipeline import StudySettings
from app.studies.sources import PartsSource, StudyLimits, StudySource, open_path

router = APIRouter(prefix="/v1/jobs", tags=["studies"])
RAW: dict[str, Any] = {"schema": {"type": "string", "format": "binary"}}
BODY_FILE = "body.bin"


class StudyJobs:
    """The job store of the data directory, the thread that runs its jobs and the PACS they
    fetch from and store to (when configured)."""

    def __init__(self, settings: Settings, models: ModelStore, limits: StudyLimits) -> None:
        self.store = JobStore(settings.data_dir)
        self.store.recover(settings.job_retention_s)
        self._models = models
        self._limits = limits
        self._settings = settings
        config = PacsConfig.from_settings(settings)
        self.pacs = DicomWebClient(config) if config else None
        self.runner = JobRunner(self.store, self._work)

    def queue(self, model: str, version: int | None, options: JobOptions) -> str:
        """A new job with its options saved; fill its upload folder, then `runner.submit()`."""
        job_id = self.store.create(model, version)
        save_options(self.store.job_dir(job_id), options)
        return job_id

    def _work(self, job_id: str, progress: Any) -> dict[str, Any]:
        job = self.store.get(job_id) or {}
        kept = self.store.job_dir(job_id)
        options = load_options(kept)
        previous = job.get("result")
        if previous and undelivered(previous):
            return self._store_again(job_id, previous)  # a retry of the delivery
        model = self._models.get(job["model"], job["version"])
        run = StudySettings.of(self._settings, heatmaps=options.dicom)
        with self._source(job_id, options) as source:
            answer, files = analyse(model, source, run, options.dicom, progress)
        if files is None:
            return answer
        save_results(kept, files)
        answer["study"].pop("key_slice_heatmaps", None)  # they are in the captures
        answer["dicom_results"] = deliver(self.pacs, files, options.store, results_url(job_id))
        return answer

    def _store_again(self, job_id: str, previous: dict[str, Any]) -> dict[str, Any]:
        files = saved_results(self.store.job_dir(job_id))
        previous["dicom_results"] = deliver(self.pacs, files, True, results_url(job_id))
        return previous

    @contextlib.contextmanager
    def _source(self, job_id: str, options: JobOptions) -> Iterator[StudySource]:
        """The job's study: fetched from the PACS, or its spooled upload."""
        if options.pacs_study is not None:
            if self.pacs is None:
                raise PacsNotConfigured(NO_PACS)
            parts = self.pacs.retrieve_study(
                options.pacs_study,
                self._settings.max_study_files,
                self._settings.max_study_bytes,
            )
            try:
                yield PartsSource(parts.readers(), self._limits)
            finally:
                parts.close()
            return
        folder = self.store.upload_dir(job_id)
        body = folder / BODY_FILE
        source = open_path(body if body.is_file() else folder, self._limits)
        try:
            yield source
        finally:
            source.close()

    def close(self) -> None:
        self.runner.close()
        self.store.close()
        if self.pacs is not None:
            self.pacs.close()


def results_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}/results"


def get_jobs(request: Request) -> StudyJobs:
    jobs: StudyJobs | None = getattr(request.app.state, "jobs", None)
    if jobs is None:
        raise NotReady("study jobs are not running", headers={"Retry-After": "1"})
    return jobs


JobsDep = Annotated[StudyJobs, Depends(get_jobs)]


def job_url(job_id: str) -> str:
    return f"/v1/jobs/{job_id}"


def accepted(job: dict[str, Any]) -> JSONResponse:
    """202 for a job just queued, pointing at where its answer will be."""
    return JSONResponse(job, status_code=202, headers={"Location": job_url(job["id"])})


def save_parts(folder: Path, parts: Iterable[bytes]) -> None:
    """Write each part as it comes (pass a generator: one part in memory at a time)."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, data in enumerate(parts):
        (folder / f"part-{index + 1:05d}").write_bytes(data)


@router.get("/{job_id}", responses=problem_responses(404, 503), summary="A study job")
async def get_job(job_id: str, jobs: JobsDep) -> dict[str, Any]:
    job = jobs.store.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r} (finished jobs are kept for a while, then removed)")
    return job


@router.delete(
    "/{job_id}",
    responses=problem_responses(404, 503),
    summary="Cancel a queued or running job, or remove a finished one",
)
async def delete_job(job_id: str, jobs: JobsDep) -> Response:
    job = jobs.store.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    if job["status"] in ACTIVE:
        jobs.store.update(job_id, status="cancelled")
        return JSONResponse(jobs.store.get(job_id))
    jobs.store.remove(job_id)
    return Response(status_code=204)


@router.post(
    "/{job_id}/retry",
    responses=problem_responses(404, 409, 503),
    summary="Run a failed or interrupted job again, or send its kept results to the PACS again",
)
async def retry_job(job_id: str, jobs: JobsDep) -> JSONResponse:
    job = jobs.store.get(job_id)
    if job is None:
        raise NotFound(f"no job {job_id!r}")
    if job["status"] not in ("failed", "interrupted") and not undelivered(job.get("result")):
        raise Conflict(
            f"the job is {job['status']}: only failed, interrupted or undelivered jobs are retried"
        )
    jobs.store.requeue(job_id)
    jobs.runner.submit()
    return accepted(jobs.store.get(job_id) or {"id": job_id})


@router.get(
    "/{job_id}/results",
    responses={
        **problem_responses(404, 503),
        200: {
            "description": "The job's DICOM results (SR, then the key slices' captures): a zip, "
            'or multipart/related with `Accept: multipart/related; type="application/dicom"`',
            "content": {"application/zip": RAW, 'multipart/related; type="application/dicom"': RAW},
        },
    },
    summary="The DICOM results a job kept",
)
async def job_results(job_id: str, request: Request, jobs: JobsDep) -> Response:
    files = saved_results(jobs.store.job_dir(job_id)) if jobs.store.get(job_id) else []
    if not files:
        raise NotFound(f"no DICOM results for job {job_id!r} (asked with output=dicom, done?)")
    return dicom_response(files, request.headers.get("accept", ""))

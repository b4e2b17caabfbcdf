"""Study jobs over HTTP: `Prefer: respond-async` on the study endpoints answers 202 with
`Location: /v1/jobs/{id}`; `GET /v1/jobs/{id}` gives status, progress and, once done, the study
answer; `DELETE /v1/jobs/{id}` cancels a queued or running job, or removes a finished one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from app.api.schemas import problem_responses
from app.config import Settings
from app.errors import NotFound, NotReady
from app.inference.store import ModelStore
from app.studies.jobs import ACTIVE, JobRunner, JobStore
from app.studies.pipeline import StudySettings, analyse_study
from app.studies.sources import StudyLimits, open_path

router = APIRouter(prefix="/v1/jobs", tags=["studies"])
BODY_FILE = "body.bin"


class StudyJobs:
    """The job store of the data directory and the thread that runs its jobs."""

    def __init__(self, settings: Settings, models: ModelStore, limits: StudyLimits) -> None:
        self.store = JobStore(settings.data_dir)
        self.store.recover(settings.job_retention_s)
        self._models = models
        self._limits = limits
        self._run = StudySettings(settings.study_batch_size, settings.max_study_slices)
        self.runner = JobRunner(self.store, self._work)

    def _work(self, job_id: str, progress: Any) -> dict[str, Any]:
        job = self.store.get(job_id) or {}
        model = self._models.get(job["model"], job["version"])
        folder = self.store.upload_dir(job_id)
        body = folder / BODY_FILE
        source = open_path(body if body.is_file() else folder, self._limits)
        try:
            return analyse_study(model, source, self._run, progress)
        finally:
            source.close()

    def close(self) -> None:
        self.runner.close()
        self.store.close()


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


def save_parts(folder: Path, parts: list[bytes]) -> None:
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

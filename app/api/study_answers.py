"""One way to answer a study, whatever brought it (an upload, a PACS pull, a job): the
analysis with, when asked for, its DICOM results encoded; the answer counted and sent as JSON,
a zip or multipart/related."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response

from app.errors import BadRequest
from app.inference.store import LoadedModel
from app.studies.pipeline import Progress, StudySettings, run_study
from app.studies.sources import StudySource


def wants_dicom(request: Request) -> bool:
    """`?output=dicom` (DICOM results) or `?output=json` (the default)."""
    output = request.query_params.get("output", "json").lower()
    if output not in ("json", "dicom"):
        raise BadRequest(f"output is 'json' or 'dicom', not {output!r}")
    return output == "dicom"


def analyse(
    model: LoadedModel,
    source: StudySource,
    run: StudySettings,
    dicom: bool,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], list[bytes] | None]:
    """The study answer and, when asked for, its DICOM results encoded."""
    answer, chosen = run_study(model, source, run, progress)
    if not dicom:
        return answer, None
    from app.results.bundle import encoded, study_results  # highdicom: the dicom extra

    return answer, [encoded(d) for d in study_results(model, source, chosen, answer)]


async def answer_study(
    pipeline: Any, model: LoadedModel, source: StudySource, run: StudySettings, dicom: bool
) -> Response:
    """Analyse the study within the service's study slots, count its verdicts and answer."""
    request: Request = pipeline.request
    async with request.app.state.study_slots:
        answer, results = await asyncio.to_thread(analyse, model, source, run, dicom)
    verdicts = [row["applicability"]["verdict"] for row in answer["slices"]]
    pipeline.metrics.count_verdicts(answer["model"], verdicts)
    if results is not None:
        return dicom_response(results, request.headers.get("accept", ""))
    return JSONResponse(answer)


def dicom_response(results: list[bytes], accept: str) -> Response:
    """The results as multipart/related when the client accepts it, else as a zip."""
    from app.results.files import related_body, results_zip

    if "multipart/related" in accept.lower():
        body, content_type = related_body(results)
        return Response(body, media_type=content_type)
    return Response(
        results_zip(results),
        media_type="application/zip",
        headers={"Content-Disposition": 'attachment; filename="results.zip"'},
    )

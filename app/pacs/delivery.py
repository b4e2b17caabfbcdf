"""What a study job keeps in its folder (its options, its DICOM results) and the delivery of
those results to the PACS, whose outcome the job's answer reports."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app.errors import ServiceError, problem
from app.pacs.client import DicomWebClient

OPTIONS_FILE = "options.json"
RESULTS_FOLDER = "results"


class JobOptions(BaseModel):
    """How a job runs: where its study comes from and what becomes of its results."""

    pacs_study: str | None = None  # fetch this StudyInstanceUID from the PACS first
    dicom: bool = False  # build and keep the DICOM results
    store: bool = False  # send them to the PACS (STOW-RS)


def save_options(folder: Path, options: JobOptions) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / OPTIONS_FILE).write_text(options.model_dump_json())


def load_options(folder: Path) -> JobOptions:
    path = folder / OPTIONS_FILE
    return JobOptions.model_validate_json(path.read_text()) if path.is_file() else JobOptions()


def save_results(folder: Path, files: list[bytes]) -> None:
    """The SR first, then the captures, in the order they were built."""
    results = folder / RESULTS_FOLDER
    results.mkdir(parents=True, exist_ok=True)
    for number, data in enumerate(files):
        (results / f"{number:04d}.dcm").write_bytes(data)


def saved_results(folder: Path) -> list[bytes]:
    return [path.read_bytes() for path in sorted((folder / RESULTS_FOLDER).glob("*.dcm"))]


def undelivered(result: dict[str, Any] | None) -> bool:
    """Whether a job's answer has DICOM results the PACS did not take (to send again)."""
    return "store_error" in (result or {}).get("dicom_results", {})


def deliver(
    client: DicomWebClient | None, files: list[bytes], store: bool, url: str
) -> dict[str, Any]:
    """Store the results when asked; what happened, for the job's answer. A refusal or a PACS
    that stays down leaves them kept at `url`, and says so."""
    report: dict[str, Any] = {"objects": len(files), "url": url, "stored": False}
    if not store:
        return report
    if client is None:
        report["store_error"] = problem(409, "No PACS", NO_PACS, "no-pacs")
        return report
    try:
        client.store(files)
    except ServiceError as exc:
        report["store_error"] = problem(exc.status, exc.title, exc.detail, exc.slug)
    else:
        report["stored"] = True
    return report


NO_PACS = "the service has no PACS configured (CTSCAN_PACS_URL)"

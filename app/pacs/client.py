"""A small DICOMweb client over httpx: WADO-RS to fetch a study, STOW-RS to store objects.
Requests time out, and 5xx answers and connection errors are retried with exponential backoff;
credentials go in headers only, and nothing of a request (URL, UIDs) is logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from app.config import Settings
from app.errors import NotFound, PayloadTooLarge, ServiceError
from app.pacs.received import DICOM_JSON, FAILED_SOP_SEQUENCE, FAILURE_REASON
from app.results.files import related_body
from app.studies.related import RelatedParts, related_boundary

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
T = TypeVar("T")
DICOM_PARTS = 'multipart/related; type="application/dicom"; transfer-syntax=*'


class PacsUnavailable(ServiceError):
    status, title, slug = 502, "PACS unavailable", "pacs-unavailable"


class PacsNotConfigured(ServiceError):
    status, title, slug = 409, "No PACS configured", "no-pacs"


class PacsRefused(ServiceError):
    status, title, slug = 502, "PACS refused the request", "pacs-refused"


@dataclass(frozen=True)
class PacsConfig:
    url: str
    headers: dict[str, str]  # Authorization, when configured
    auth: tuple[str, str] | None
    timeout_s: float
    retries: int
    backoff_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> PacsConfig | None:
        if not settings.pacs_url:
            return None
        token = settings.pacs_token.get_secret_value() if settings.pacs_token else None
        password = settings.pacs_password.get_secret_value() if settings.pacs_password else ""
        return cls(
            url=settings.pacs_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"} if token else {},
            auth=(settings.pacs_username, password) if settings.pacs_username else None,
            timeout_s=settings.pacs_timeout_s,
            retries=settings.pacs_retries,
            backoff_s=settings.pacs_backoff_s,
        )

    def __repr__(self) -> str:  # never the credentials
        return f"PacsConfig(retries={self.retries}, timeout_s={self.timeout_s})"


class DicomWebClient:
    """One PACS's DICOMweb service."""

    def __init__(self, config: PacsConfig, sleep: Callable[[float], None] = time.sleep) -> None:
        import httpx  # here: it loads its command line's libraries too, ~5 MB resident

        self._config = config
        self._sleep = sleep
        self._no_connection = httpx.TransportError
        self._http = httpx.Client(
            base_url=config.url,
            headers=config.headers,
            auth=config.auth,
            timeout=config.timeout_s,
        )

    def close(self) -> None:
        self._http.close()

    def retrieve_study(self, study_uid: str, max_files: int, max_bytes: int) -> RelatedParts:
        """The study's instances (WADO-RS), each part spooled; 404 when the PACS has no such
        study; PacsUnavailable once the retries are spent."""

        def attempt() -> RelatedParts:
            headers = {"Accept": DICOM_PARTS}
            with self._http.stream("GET", f"/studies/{study_uid}", headers=headers) as response:
                raise_if_retryable(response)
                return read_parts(response, max_files, max_bytes)

        return self._with_retries("retrieve the study", attempt)

    def store(self, files: list[bytes]) -> None:
        """Store the objects (STOW-RS); PacsRefused naming what the PACS said when it refuses
        any, PacsUnavailable once the retries are spent."""
        body, content_type = related_body(files)
        headers = {"Content-Type": content_type, "Accept": DICOM_JSON}

        def attempt() -> None:
            response = self._http.post("/studies", content=body, headers=headers)
            raise_if_retryable(response)
            refused_parts(response, len(files))

        self._with_retries("store the results", attempt)
        self._with_retries("check the stored results", lambda: self._check_held(files))

    def _check_held(self, files: list[bytes]) -> None:
        """PacsRefused unless the PACS now holds every object (QIDO-RS): a PACS may answer a
        store with success yet drop objects (Orthanc's filters do)."""
        wanted = instance_keys(files)
        held = set()
        for study, series in {(study, series) for study, series, _ in wanted}:
            response = self._http.get(
                f"/studies/{study}/series/{series}/instances",
                headers={"Accept": DICOM_JSON},
            )
            raise_if_retryable(response)
            if response.status_code == 200 and response.content:
                held |= {(study, series, uid) for uid in sop_instance_uids(response.json())}
        missing = len(set(wanted) - held)
        if missing:
            raise PacsRefused(
                f"the PACS answered the store with success but does not hold {missing} of "
                f"{len(wanted)} objects"
            )

    def _with_retries(self, what: str, attempt: Callable[[], T]) -> T:
        """`attempt()`, tried again after a 5xx or a connection error with exponential backoff;
        PacsUnavailable with the last reason once the retries are spent."""
        reason = "no answer"
        tries = self._config.retries + 1
        for number in range(tries):
            if number:
                wait = self._config.backoff_s * 2 ** (number - 1)
                log.warning("PACS: %s; retry %d of %d in %.1f s", reason, number, tries - 1, wait)
                self._sleep(wait)
            try:
                return attempt()
            except Retryable as exc:
                reason = str(exc)
            except self._no_connection as exc:
                reason = f"{type(exc).__name__} (no connection)"
        raise PacsUnavailable(f"could not {what} after {tries} tries; last: {reason}")


class Retryable(Exception):
    """A PACS answer worth another try (5xx)."""


def raise_if_retryable(response: httpx.Response) -> None:
    if response.status_code >= 500:
        raise Retryable(f"HTTP {response.status_code}")


def read_parts(response: httpx.Response, max_files: int, max_bytes: int) -> RelatedParts:
    """A WADO-RS answer's parts, at most `max_files` and `max_bytes`."""
    if response.status_code == 404:
        raise NotFound("the PACS has no such study")
    if response.status_code >= 400:
        raise PacsRefused(f"the PACS answered HTTP {response.status_code} to WADO-RS")
    boundary = related_boundary(response.headers.get("content-type"))
    if boundary is None:
        raise PacsRefused("the PACS did not answer with multipart/related DICOM parts")
    parts = RelatedParts(boundary, max_files)
    received = 0
    try:
        for chunk in response.iter_bytes():
            received += len(chunk)
            if received > max_bytes:
                raise PayloadTooLarge(f"the study is larger than the {max_bytes}-byte limit")
            parts.feed(chunk)
    except BaseException:
        parts.close()
        raise
    return parts


def refused_parts(response: httpx.Response, sent: int) -> None:
    """PacsRefused when a STOW-RS answer says some or all objects were not stored."""
    if response.status_code in (200, 204):
        failed = failed_count(response)
        if not failed:
            return
    else:
        failed = failed_count(response) or sent
    reasons = failure_reasons(response)
    detail = f"the PACS stored {sent - failed} of {sent} objects (HTTP {response.status_code})"
    raise PacsRefused(f"{detail}; failure reasons {reasons}" if reasons else detail)


def _sequence(response: httpx.Response) -> list[dict[str, Any]]:
    try:
        body = response.json()
    except ValueError:
        return []
    if isinstance(body, list):
        body = body[0] if body else {}
    value = body.get(FAILED_SOP_SEQUENCE, {}).get("Value", []) if isinstance(body, dict) else []
    return [item for item in value if isinstance(item, dict)]


def failed_count(response: httpx.Response) -> int:
    return len(_sequence(response))


def failure_reasons(response: httpx.Response) -> list[int]:
    return [
        int(item[FAILURE_REASON]["Value"][0])
        for item in _sequence(response)
        if item.get(FAILURE_REASON, {}).get("Value")
    ]


def instance_keys(files: list[bytes]) -> list[tuple[str, str, str]]:
    """(study, series, SOP instance) UIDs of each encoded object."""
    import io

    from pydicom import dcmread

    keys = []
    for data in files:
        header = dcmread(io.BytesIO(data), stop_before_pixels=True)
        keys.append((header.StudyInstanceUID, header.SeriesInstanceUID, header.SOPInstanceUID))
    return keys


def sop_instance_uids(answer: Any) -> set[str]:
    """The SOPInstanceUIDs (0008,0018) of a QIDO-RS answer."""
    items = answer if isinstance(answer, list) else []
    return {
        str(item["00080018"]["Value"][0])
        for item in items
        if isinstance(item, dict) and item.get("00080018", {}).get("Value")
    }

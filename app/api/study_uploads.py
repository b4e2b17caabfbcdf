"""Study uploads off the wire: a body spooled to a temporary file (zip or one file), the
parts of a multipart form or of a multipart/related (STOW-RS shaped) body, and what a queued job
keeps of them in its folder."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import IO, Any

from fastapi import Request
from starlette.datastructures import UploadFile

from app.api.jobs import save_parts
from app.config import Settings
from app.errors import BadRequest, PayloadTooLarge
from app.studies.related import RelatedParts
from app.studies.sources import ZIP_MAGIC, PartsSource, StudyLimits, StudySource, ZipSource
from app.upload import capped_chunks

SPOOL_IN_MEMORY = 8 * 1024 * 1024  # larger uploads go to a temporary file
NO_STUDY = "no study: send a zip, multipart `file` parts or a DICOM file"


async def spool_body(request: Request, max_bytes: int) -> IO[bytes]:
    """The request body in a spooled temporary file (on disk past 8 MiB); 413 past the cap."""
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 (returned)
    try:
        async for chunk in capped_chunks(request, max_bytes, "study"):
            spool.write(chunk)
        if not spool.tell():
            raise BadRequest(NO_STUDY)
    except BaseException:
        spool.close()
        raise
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


async def read_related(request: Request, boundary: bytes, settings: Settings) -> RelatedParts:
    """A multipart/related (STOW-RS shaped) body, parsed as it streams in; 413 past the cap."""
    parts = RelatedParts(boundary, settings.max_study_files)
    try:
        async for chunk in capped_chunks(request, settings.max_study_bytes, "study"):
            parts.feed(chunk)
    except BaseException:
        parts.close()
        raise
    return parts


async def save_body(request: Request, max_bytes: int, path: Path) -> None:
    """The request body streamed into `path`; 413 past the cap, 400 when empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        async for chunk in capped_chunks(request, max_bytes, "study"):
            handle.write(chunk)
        empty = not handle.tell()
    if empty:
        raise BadRequest(NO_STUDY)

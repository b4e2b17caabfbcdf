"""DICOM results on the wire: zipped one file per object, or as a multipart/related body."""

from __future__ import annotations

import io
import uuid
import zipfile


def results_zip(results: list[bytes]) -> bytes:
    """One DICOM file per object (encoded): `SR.dcm`, then `SC-1.dcm`, `SC-2.dcm`, ..."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for number, data in enumerate(results):
            archive.writestr("SR.dcm" if number == 0 else f"SC-{number}.dcm", data)
    return buffer.getvalue()


def related_body(files: list[bytes]) -> tuple[bytes, str]:
    """A multipart/related body of `application/dicom` parts (STOW-RS, WADO-RS) and its type."""
    boundary = uuid.uuid4().hex
    chunks = [
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
        for data in files
    ]
    chunks.append(f"--{boundary}--\r\n".encode())
    content_type = f'multipart/related; type="application/dicom"; boundary={boundary}'
    return b"".join(chunks), content_type

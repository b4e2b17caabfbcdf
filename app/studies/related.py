"""The DICOMweb STOW-RS body shape, `multipart/related; type="application/dicom"`: parsed as it
streams in (python-multipart), each part spooled to its own temporary file."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import IO, Any

from python_multipart.multipart import MultipartParser, parse_options_header

from app.errors import BadRequest, PayloadTooLarge

SPOOL_IN_MEMORY = 1024 * 1024


def related_boundary(content_type: str | None) -> bytes | None:
    """The boundary of a `multipart/related` body, or None for any other body; 400 when the
    type is right but the boundary is missing."""
    media_type, options = parse_options_header(content_type or "")
    if media_type.lower() != b"multipart/related":
        return None
    boundary = options.get(b"boundary")
    if not boundary:
        raise BadRequest("a multipart/related body needs a boundary parameter")
    return bytes(boundary)


class RelatedParts:
    """The parts of one multipart/related body, at most `max_files` of them."""

    def __init__(self, boundary: bytes, max_files: int) -> None:
        self.parts: list[IO[bytes]] = []
        self._max_files = max_files
        callbacks: Any = {
            "on_part_begin": self._begin,
            "on_part_data": self._data,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def _begin(self) -> None:
        if len(self.parts) >= self._max_files:
            raise PayloadTooLarge(
                f"more than {self._max_files} parts; the limit is {self._max_files}"
            )
        self.parts.append(tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY))  # noqa: SIM115

    def _data(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1].write(data[start:end])

    def feed(self, chunk: bytes) -> None:
        try:
            self._parser.write(chunk)
        except (PayloadTooLarge, BadRequest):
            raise
        except Exception as exc:  # python-multipart's parse errors
            raise BadRequest(f"the multipart/related body is malformed ({exc})") from exc

    def readers(self) -> list[Callable[[], bytes]]:
        """One reader per part (each reads the whole part, from its start)."""

        def reader(part: IO[bytes]) -> Callable[[], bytes]:
            def read() -> bytes:
                part.seek(0)
                return part.read()

            return read

        if not self.parts:
            raise BadRequest("the multipart/related body has no parts")
        return [reader(part) for part in self.parts]

    def close(self) -> None:
        for part in self.parts:
            part.close()

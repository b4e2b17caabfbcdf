"""Recognise an upload's file type from its first bytes, never from its name."""

from __future__ import annotations

from app.errors import InvalidImage, UnsupportedMediaType

RASTER_FORMATS = ("PNG", "JPEG", "TIFF", "BMP", "WEBP")
SUPPORTED = (*RASTER_FORMATS, "DICOM")

_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"II+\x00", "TIFF"),
    (b"MM\x00+", "TIFF"),
    (b"BM", "BMP"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"%PDF", "PDF"),
    (b"PK\x03\x04", "ZIP"),
)


def sniff_format(data: bytes) -> str:
    """The file type of `data` judged by content, or raise a 415/422 domain error."""
    if not data:
        raise InvalidImage("the uploaded file is empty")
    if len(data) >= 132 and data[128:132] == b"DICM":
        return "DICOM"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    for magic, name in _MAGIC:
        if data.startswith(magic):
            if name in SUPPORTED:
                return name
            raise UnsupportedMediaType(_unsupported(name))
    raise UnsupportedMediaType(_unsupported("unrecognised content"))


def _unsupported(what: str) -> str:
    return f"{what} is not a supported image; send one of {', '.join(SUPPORTED)}"

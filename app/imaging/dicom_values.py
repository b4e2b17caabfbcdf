"""A parsed DICOM header's values, read from pydicom's raw elements.

pydicom turns an element into a typed value on its first access (dictionary look-ups, value
checks, a new element object): 10-20 µs each, more than parsing a CT header itself. A study's
header pass reads some 25 tags of every file, so the few kinds it needs (text, numbers written
as text, unsigned shorts) are decoded here from the raw bytes; an element pydicom has already
converted, one of an unexpected value representation or a big-endian one goes through pydicom.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from typing import Any

TAGS = {
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
    "SOPInstanceUID": 0x00080018,
    "SOPClassUID": 0x00080016,
    "Modality": 0x00080060,
    "ImageType": 0x00080008,
    "BodyPartExamined": 0x00180015,
    "PatientID": 0x00100020,
    "PatientName": 0x00100010,
    "PatientBirthDate": 0x00100030,
    "SeriesNumber": 0x00200011,
    "InstanceNumber": 0x00200013,
    "ImagePositionPatient": 0x00200032,
    "ImageOrientationPatient": 0x00200037,
    "NumberOfFrames": 0x00280008,
    "SamplesPerPixel": 0x00280002,
    "PhotometricInterpretation": 0x00280004,
    "Rows": 0x00280010,
    "Columns": 0x00280011,
    "BitsAllocated": 0x00280100,
    "BitsStored": 0x00280101,
    "PixelRepresentation": 0x00280103,
    "WindowCenter": 0x00281050,
    "WindowWidth": 0x00281051,
    "RescaleIntercept": 0x00281052,
    "RescaleSlope": 0x00281053,
}
TEXT_VRS = {"AE", "AS", "CS", "DA", "DS", "IS", "LO", "PN", "SH", "TM", "UI"}
PADDING = " \x00"


class HeaderValues:
    """Typed reads of the tags in `TAGS` from a dataset pydicom has parsed."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset

    def texts(self, keyword: str) -> list[str]:
        """The values of a text element (codes, UIDs, names, numbers as text), stripped; [] when
        absent or empty."""
        raw = self._raw(keyword, TEXT_VRS)
        if raw is None:
            return [str(v).strip() for v in as_list(self._converted(keyword))]
        text = raw.decode("latin-1").strip(PADDING)
        return [v.strip(PADDING) for v in text.split("\\")] if text else []

    def text(self, keyword: str) -> str:
        """A single-valued text element, "" when absent (several values: joined by "\\")."""
        return "\\".join(self.texts(keyword))

    def numbers(self, keyword: str) -> list[float]:
        """A decimal-string element's values (ValueError when one is not a number)."""
        return [float(v) for v in self.texts(keyword)]

    def integer(self, keyword: str) -> int | None:
        """An integer-string element's first value, None when absent or not an integer."""
        values = self.texts(keyword)
        try:
            number = float(values[0]) if values else None
        except ValueError:
            return None
        return int(number) if number is not None and number.is_integer() else None

    def unsigned(self, keyword: str) -> int | None:
        """An unsigned-short element (US), None when absent."""
        raw = self._raw(keyword, {"US"})
        if raw is None:
            value = self._converted(keyword)
            return None if value in (None, "") else int(value)
        return int.from_bytes(raw[:2], "little") if len(raw) >= 2 else None

    def _raw(self, keyword: str, vrs: set[str]) -> bytes | None:
        """The element's raw little-endian bytes; None when pydicom must convert it (absent
        elements included: `_converted` says None)."""
        try:
            element = self.dataset.get_item(TAGS[keyword])
        except Exception:  # pydicom converts a deferred element here, and it may be malformed
            return None
        if element is None or not getattr(element, "is_raw", False):
            return None
        if not element.is_little_endian or element.VR not in vrs | {None}:
            return None
        value = element.value
        return value if isinstance(value, bytes) else None

    def _converted(self, keyword: str) -> Any:
        try:
            return self.dataset.get(keyword)
        except Exception:  # a malformed element raises when it is decoded
            return None


def as_list(value: Any) -> list[Any]:
    """pydicom's value as a list: a multi-valued element's values, else the one value."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, MutableSequence | tuple) else [value]

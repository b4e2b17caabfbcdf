"""One DICOM file's header as a `SliceHeader` (pixels not read), or the reason it is not one."""

from __future__ import annotations

import hashlib
import io
from typing import Any

from app.imaging.dicom import NativeImage, native_image
from app.imaging.dicom_values import HeaderValues, as_list
from app.studies.series import SliceHeader

HEADER_CUT = "the DICOM header runs past the bytes read"
PIXEL_GROUP = (b"\xe0\x7f", b"\x7f\xe0")  # (7FE0,xxxx), little and big endian: pixel data


def read_header(member: str, data: bytes, head: bool = False) -> list[SliceHeader] | str:
    """The slices of an image file (one; a multi-frame object's frames; a NIfTI volume's axial
    slices), or why the file is skipped (not DICOM, no pixels, ...). With `head`, `data` is only
    the file's start: unless the header ends at the pixel data within it, HEADER_CUT."""
    from app.errors import InvalidImage
    from app.studies.volumes import enhanced_headers, is_nifti, nifti_headers

    if is_nifti(data):
        try:
            return nifti_headers(member, data)
        except InvalidImage as exc:
            return exc.detail
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError:
        return "DICOM support is not installed (extra 'dicom')"
    stream = io.BytesIO(data)
    try:
        dataset = pydicom.dcmread(stream, stop_before_pixels=True)
    except InvalidDicomError:
        return "not a DICOM file"
    except Exception:  # untrusted headers fail in pydicom in many ways
        return "the DICOM header cannot be parsed"
    if head and data[stream.tell() : stream.tell() + 2] not in PIXEL_GROUP:
        return HEADER_CUT
    if "Rows" not in dataset or "Columns" not in dataset:
        return "a DICOM file without an image"
    header = _slice_header(member, dataset, native_image(dataset, data, stream.tell()))
    if isinstance(header, str) or (HeaderValues(dataset).integer("NumberOfFrames") or 1) <= 1:
        return header if isinstance(header, str) else [header]
    try:
        return enhanced_headers(member, dataset, header)
    except InvalidImage as exc:
        return exc.detail
    except Exception:  # a malformed element fails when pydicom converts it
        return "the DICOM header holds invalid values"


def _slice_header(member: str, dataset: Any, pixels: NativeImage | None) -> SliceHeader | str:
    values = HeaderValues(dataset)
    try:
        return SliceHeader(
            member=member,
            study_uid=values.text("StudyInstanceUID"),
            series_uid=values.text("SeriesInstanceUID"),
            sop_uid=values.text("SOPInstanceUID"),
            modality=values.text("Modality").upper(),
            image_type=tuple(values.texts("ImageType")),
            sop_class=values.text("SOPClassUID"),
            instance_number=values.integer("InstanceNumber"),
            position=_floats(values, "ImagePositionPatient", 3),  # type: ignore[arg-type]
            orientation=_floats(values, "ImageOrientationPatient", 6),
            size=(_required(values.unsigned("Rows")), _required(values.unsigned("Columns"))),
            patient_key=patient_key(values),
            series_number=values.integer("SeriesNumber"),
            pixels=pixels,
        )
    except (TypeError, ValueError, OverflowError):
        return "the DICOM header holds invalid values"


def patient_key(values: HeaderValues) -> str:
    """A digest of the patient's identity tags (as stored, padding stripped): compared between
    the files of one upload, never shown or logged."""
    parts = [values.text(k) for k in ("PatientID", "PatientName", "PatientBirthDate")]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _floats(values: HeaderValues, keyword: str, count: int) -> tuple[float, ...] | None:
    try:
        numbers = values.numbers(keyword)
    except ValueError:
        return None
    return tuple(numbers) if len(numbers) == count else None


def _required(value: int | None) -> int:
    if value is None:
        raise ValueError("a required tag is empty")
    return value


def floats_of(value: Any, count: int) -> tuple[float, ...] | None:
    """A multi-valued numeric tag as `count` floats, or None when absent or malformed."""
    items = as_list(value)
    if len(items) != count:
        return None
    try:
        return tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None

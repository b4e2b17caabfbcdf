"""One DICOM file's header as a `SliceHeader` (pixels not read), or the reason it is not one."""

from __future__ import annotations

import hashlib
import io
from typing import Any

from app.studies.series import SliceHeader


def read_header(member: str, data: bytes) -> list[SliceHeader] | str:
    """The slices of an image file (one; a multi-frame object's frames; a NIfTI volume's axial
    slices), or why the file is skipped (not DICOM, no pixels, ...). `data` may be only the
    file's start: a header that runs past it "cannot be parsed"."""
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
    try:
        dataset = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
    except InvalidDicomError:
        return "not a DICOM file"
    except Exception:  # untrusted headers fail in pydicom in many ways
        return "the DICOM header cannot be parsed"
    if "Rows" not in dataset or "Columns" not in dataset:
        return "a DICOM file without an image"
    header = _slice_header(member, dataset)
    if isinstance(header, str) or int(_value(dataset, "NumberOfFrames") or 1) <= 1:
        return header if isinstance(header, str) else [header]
    try:
        return enhanced_headers(member, dataset, header)
    except InvalidImage as exc:
        return exc.detail


def _slice_header(member: str, dataset: Any) -> SliceHeader | str:
    try:
        return SliceHeader(
            member=member,
            study_uid=str(_value(dataset, "StudyInstanceUID") or ""),
            series_uid=str(_value(dataset, "SeriesInstanceUID") or ""),
            sop_uid=str(_value(dataset, "SOPInstanceUID") or ""),
            modality=str(_value(dataset, "Modality") or "").upper(),
            image_type=tuple(str(v) for v in _list(_value(dataset, "ImageType"))),
            sop_class=str(_value(dataset, "SOPClassUID") or ""),
            instance_number=_int(_value(dataset, "InstanceNumber")),
            position=floats_of(_value(dataset, "ImagePositionPatient"), 3),  # type: ignore[arg-type]
            orientation=floats_of(_value(dataset, "ImageOrientationPatient"), 6),
            size=(int(dataset.Rows), int(dataset.Columns)),
            patient_key=patient_key(dataset),
            series_number=_int(_value(dataset, "SeriesNumber")),
        )
    except (TypeError, ValueError, OverflowError):
        return "the DICOM header holds invalid values"


def patient_key(dataset: Any) -> str:
    """A digest of the patient's identity tags: compared, never shown or logged."""
    parts = [
        str(_value(dataset, k) or "") for k in ("PatientID", "PatientName", "PatientBirthDate")
    ]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _value(dataset: Any, keyword: str) -> Any:
    try:
        return dataset.get(keyword)
    except Exception:  # a malformed element raises when it is decoded
        return None


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str | bytes):
        return [value]
    try:
        return list(value)
    except TypeError:
        return [value]


def _int(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def floats_of(value: Any, count: int) -> tuple[float, ...] | None:
    """A multi-valued numeric tag as `count` floats, or None when absent or malformed."""
    items = _list(value)
    if len(items) != count:
        return None
    try:
        return tuple(float(v) for v in items)
    except (TypeError, ValueError):
        return None

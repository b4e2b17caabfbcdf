"""Series that come as one object: a multi-frame Enhanced CT (per-frame position and value
transformation from its functional groups) or a NIfTI volume (nibabel; reoriented so each axial
slice is displayed as a standard DICOM axial image: patient's right on the image's left,
anterior at the top). Both become one `SliceHeader` per frame, read back by `FrameReader`."""

from __future__ import annotations

import gzip
import io
import threading
from typing import Any

import numpy as np

from app.errors import InvalidImage, ServiceError
from app.imaging.decode import DecodedImage
from app.imaging.dicom import Window, apply_window, pixel_array, rescaled
from app.studies.headers import floats_of
from app.studies.series import SliceHeader

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
GZIP_MAGIC = b"\x1f\x8b"
NIFTI_MAGICS = (b"n+1\x00", b"ni1\x00", b"n+2\x00")
MAX_VOLUME_BYTES = 2 * 1024**3


def is_nifti(data: bytes) -> bool:
    """NIfTI-1/2 by the magic at byte 344 (NIfTI-1) or 4 (NIfTI-2), or gzip-compressed."""
    return data[:2] == GZIP_MAGIC or data[344:348] in NIFTI_MAGICS or data[4:8] in NIFTI_MAGICS


def nifti_image(data: bytes) -> Any:
    """The volume as a nibabel image, in LPS+ voxel order; InvalidImage when unreadable."""
    import importlib

    nib: Any = importlib.import_module("nibabel")  # untyped

    try:
        if data[:2] == GZIP_MAGIC:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                data = stream.read(MAX_VOLUME_BYTES + 1)
            if len(data) > MAX_VOLUME_BYTES:
                raise InvalidImage("the NIfTI volume expands past 2 GiB")
        image = nib.Nifti1Image.from_bytes(data)
        if len(image.shape) < 3:
            raise InvalidImage(f"the NIfTI image has shape {image.shape}, not a volume")
        order = nib.orientations.axcodes2ornt(("L", "P", "S"))
        current = nib.orientations.io_orientation(image.affine)
        return image.as_reoriented(nib.orientations.ornt_transform(current, order))
    except InvalidImage:
        raise
    except Exception as exc:  # nibabel raises many types for malformed or short files
        raise InvalidImage(f"the NIfTI file cannot be read ({type(exc).__name__})") from exc


def nifti_headers(member: str, data: bytes) -> list[SliceHeader]:
    """One header per axial slice, inferior to superior."""
    image = nifti_image(data)
    columns, rows, slices = image.shape[:3]
    affine = np.asarray(image.affine)
    return [
        SliceHeader(
            member=member,
            study_uid="",
            series_uid=f"nifti:{member}",
            sop_uid="",
            modality="",
            image_type=("ORIGINAL", "PRIMARY", "AXIAL"),
            sop_class="",
            instance_number=k + 1,
            position=_lps(affine @ np.array([0.0, 0.0, k, 1.0])),
            orientation=AXIAL,
            size=(rows, columns),
            patient_key="",
            frame=k,
        )
        for k in range(slices)
    ]


def _lps(ras: np.ndarray) -> tuple[float, float, float]:
    return (-float(ras[0]), -float(ras[1]), float(ras[2]))


def enhanced_headers(member: str, dataset: Any, base: SliceHeader) -> list[SliceHeader]:
    """One header per frame of a multi-frame object, from its functional groups."""
    shared = _first(dataset.get("SharedFunctionalGroupsSequence"))
    frames = dataset.get("PerFrameFunctionalGroupsSequence") or []
    if not frames:
        raise InvalidImage("the multi-frame object has no per-frame functional groups")
    headers = []
    for index, group in enumerate(frames):
        position = _group_value(group, shared, "PlanePositionSequence", "ImagePositionPatient")
        orientation = _group_value(
            group, shared, "PlaneOrientationSequence", "ImageOrientationPatient"
        )
        headers.append(
            _replace(
                base,
                member=member,
                instance_number=index + 1,
                position=floats_of(position, 3),
                orientation=floats_of(orientation, 6),
                frame=index,
            )
        )
    return headers


def _replace(base: SliceHeader, **changes: Any) -> SliceHeader:
    from dataclasses import replace

    return replace(base, **changes)


def _first(sequence: Any) -> Any:
    return sequence[0] if sequence else None


def _group_value(group: Any, shared: Any, sequence: str, keyword: str) -> Any:
    for holder in (group, shared):
        item = _first(holder.get(sequence)) if holder is not None else None
        if item is not None and keyword in item:
            return item.get(keyword)
    return None


class FrameReader:
    """Grey pixels of one slice, windowed; keeps the last multi-frame object or volume read,
    since the slices of one object come one after another in slice order."""

    def __init__(self, read: Any) -> None:
        self._read = read
        self._member: str | None = None
        self._cached: Any = None
        self._lock = threading.Lock()  # decode threads share the object read last

    def decoded(self, header: SliceHeader, window: Window | None) -> DecodedImage:
        """The slice's grey pixels; InvalidImage for whatever in its file cannot be read."""
        try:
            return self._decoded(header, window)
        except ServiceError:
            raise
        except Exception as exc:  # untrusted values fail late in pydicom and nibabel
            raise InvalidImage(f"a slice cannot be decoded ({type(exc).__name__})") from exc

    def _decoded(self, header: SliceHeader, window: Window | None) -> DecodedImage:
        if header.frame is None:
            return _single_frame(self._read(header.member), header, window)
        with self._lock:
            if header.member != self._member:
                self._cached = self._load(header.member)
                self._member = header.member
            cached = self._cached
        if isinstance(cached, np.ndarray):
            return _window(cached[:, :, header.frame].T, window, None, "NIfTI")
        return _enhanced_frame(cached, header.frame, window)

    def _load(self, member: str) -> Any:
        data = self._read(member)
        if is_nifti(data):
            return np.asarray(nifti_image(data).get_fdata(dtype=np.float32))
        return _parse(data)


def _single_frame(data: bytes, header: SliceHeader, window: Window | None) -> DecodedImage:
    """Read where the header pass found the pixels, else parsed again and decoded by pydicom."""
    from app.imaging.dicom import decode_dataset

    decoded = header.pixels.decoded(data, window) if header.pixels else None
    return decoded if decoded is not None else decode_dataset(_parse(data), window)


def _parse(data: bytes) -> Any:
    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(data))
    except Exception as exc:  # read once already; a file that fails late
        raise InvalidImage("a DICOM file cannot be parsed") from exc


def _enhanced_frame(dataset: Any, frame: int, window: Window | None) -> DecodedImage:
    frames = pixel_array(dataset)
    if frames.ndim < 3 or frame >= len(frames):
        raise InvalidImage(f"frame {frame + 1} cannot be decoded (the pixel data holds fewer)")
    stored = frames[frame]
    shared = _first(dataset.get("SharedFunctionalGroupsSequence"))
    group = dataset.PerFrameFunctionalGroupsSequence[frame]
    slope = _group_value(group, shared, "PixelValueTransformationSequence", "RescaleSlope")
    intercept = _group_value(group, shared, "PixelValueTransformationSequence", "RescaleIntercept")
    values = rescaled(stored, float(slope or 1.0), float(intercept or 0.0))
    center = _group_value(group, shared, "FrameVOILUTSequence", "WindowCenter")
    width = _group_value(group, shared, "FrameVOILUTSequence", "WindowWidth")
    own = (_number(center), _number(width)) if center is not None and width is not None else None
    decoded = _window(values, window, own, "DICOM")
    if str(dataset.get("PhotometricInterpretation", "")) == "MONOCHROME1":
        return DecodedImage(1.0 - decoded.pixels, decoded.format, "MONOCHROME1", decoded.window)
    return decoded


def _number(value: Any) -> float:
    try:
        return float(value[0])
    except TypeError:
        return float(value)


def _window(
    values: np.ndarray, window: Window | None, own: Window | None, kind: str
) -> DecodedImage:
    chosen = window or own
    label = "file window" if window is None and own else "model window"
    if chosen is None:
        low, high = float(values.min()), float(values.max())
        chosen, label = ((low + high) / 2, max(high - low, 1.0)), "full range"
    grey = apply_window(values, chosen)
    text = f"{label}: center {chosen[0]:g}, width {chosen[1]:g}"
    return DecodedImage(pixels=grey, format=kind, mode="MONOCHROME2", window=text)

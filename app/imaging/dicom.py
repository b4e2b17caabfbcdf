"""DICOM slices → grey [0, 1]: modality LUT to Hounsfield units, then a window."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InvalidImage, ServiceError, UnsupportedMediaType
from app.imaging.decode import DecodedImage
from app.imaging.dicom_native import NativeLayout, native_layout
from app.imaging.dicom_values import HeaderValues

# pydicom's warnings can quote header values (patient data): never let them reach the logs.
# Set once for the process; warnings.catch_warnings() is not thread-safe.
warnings.filterwarnings("ignore", module=r"pydicom(\..*)?$")

Window = tuple[float, float]  # (center, width)
WINDOW_PRESETS: dict[str, Window] = {
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "brain": (40.0, 80.0),
    "subdural": (80.0, 200.0),
    "bone": (300.0, 2000.0),
}
GREY_INTERPRETATIONS = ("MONOCHROME1", "MONOCHROME2")


def decode_dicom(data: bytes, window: Window | None = None) -> DecodedImage:
    """One DICOM frame, windowed by `window`, else the file's own VOI window, else its range."""
    try:
        return _decode(data, window)
    except ServiceError:
        raise
    except Exception as exc:  # untrusted header values fail in pydicom in many ways
        raise InvalidImage(f"the DICOM file is malformed ({type(exc).__name__})") from exc


def _decode(data: bytes, window: Window | None) -> DecodedImage:
    """The header parsed once; the pixels read from `data` where they lie (uncompressed, little
    endian), else decoded by pydicom from a full parse."""
    header, position = _read(data, stop_before_pixels=True)
    native = native_image(header, data, position)
    decoded = native.decoded(data, window) if native else None
    if decoded is not None:
        return decoded
    return decode_dataset(_read(data)[0], window)


@dataclass(frozen=True)
class GreyTags:
    """What turns a grey image's stored values into grey levels (the photometric
    interpretation, the modality LUT, the file's own window), and the two tags the
    applicability gate reads."""

    interpretation: str
    slope: float
    intercept: float
    file_window: Window | None
    modality: str | None
    body_part: str | None


def grey_tags(dataset: Any) -> GreyTags:
    """The tags of a parsed dataset (pydicom); InvalidImage for a colour image."""
    values = HeaderValues(dataset)
    interpretation = "MONOCHROME2"
    if "PhotometricInterpretation" in dataset:
        interpretation = values.text("PhotometricInterpretation")
    if interpretation not in GREY_INTERPRETATIONS:
        raise InvalidImage(f"photometric interpretation {interpretation} is not supported")
    center, width = values.numbers("WindowCenter"), values.numbers("WindowWidth")
    return GreyTags(
        interpretation=interpretation,
        slope=_first_or(values.numbers("RescaleSlope"), 1.0),
        intercept=_first_or(values.numbers("RescaleIntercept"), 0.0),
        file_window=(center[0], width[0]) if center and width else None,
        modality=_code(values, "Modality"),
        body_part=_code(values, "BodyPartExamined"),
    )


def _first_or(numbers: list[float], default: float) -> float:
    return numbers[0] if numbers and numbers[0] else default


def _code(values: HeaderValues, keyword: str) -> str | None:
    """A short code-string tag, upper case, or None when absent or empty."""
    return values.text(keyword).upper()[:16] or None


@dataclass(frozen=True)
class NativeImage:
    """A grey frame whose pixels are read from its file's bytes without pydicom."""

    layout: NativeLayout
    tags: GreyTags

    def decoded(self, data: bytes, window: Window | None) -> DecodedImage | None:
        """As `decode_dataset` decodes it; None when `data` ends before its last pixel."""
        stored = self.layout.stored(data)
        return None if stored is None else decode_grey(stored, self.tags, window)


def native_image(dataset: Any, head: bytes, position: int) -> NativeImage | None:
    """`dataset`'s frame as a `NativeImage` (see `native_layout` for the arguments), or None
    when pydicom must decode it or its tags are not a grey image's."""
    layout = native_layout(dataset, head, position)
    if layout is None:
        return None
    try:
        return NativeImage(layout, grey_tags(dataset))
    except (InvalidImage, TypeError, ValueError, OverflowError):
        return None  # pydicom's path refuses it with the reason


def decode_dataset(dataset: Any, window: Window | None = None) -> DecodedImage:
    """One parsed single-frame DICOM dataset (pydicom), windowed as `decode_dicom` does. Its
    callers (`decode_dicom`, a study's `FrameReader`) turn a malformed value's error into
    InvalidImage."""
    return decode_grey(pixel_array(dataset), grey_tags(dataset), window)


def decode_grey(stored: np.ndarray, tags: GreyTags, window: Window | None) -> DecodedImage:
    """Stored values → modality units → `window` (else the file's, else the range) → [0, 1]."""
    if stored.ndim != 2 or stored.size == 0:
        raise InvalidImage(f"the DICOM pixel data has shape {stored.shape}, expected one slice")
    values = rescaled(stored, tags.slope, tags.intercept)
    chosen, label = _choose_window(tags.file_window, values, window)
    grey = apply_window(values, chosen, out=values)  # our own array: windowed in place
    if tags.interpretation == "MONOCHROME1":
        np.subtract(1.0, grey, out=grey)
    return DecodedImage(
        pixels=grey,
        format="DICOM",
        mode=tags.interpretation,
        window=label,
        modality=tags.modality,
        body_part=tags.body_part,
    )


def _read(data: bytes, stop_before_pixels: bool = False) -> tuple[Any, int]:
    """The parsed dataset and where the reader stopped: at the Pixel Data element with
    `stop_before_pixels`; else the whole file, checked to hold one frame."""
    try:
        import pydicom
        from pydicom.errors import InvalidDicomError
    except ImportError as exc:
        raise UnsupportedMediaType("DICOM support is not installed (extra 'dicom')") from exc
    stream = io.BytesIO(data)
    try:
        dataset = pydicom.dcmread(stream, stop_before_pixels=stop_before_pixels)
        has_pixels = "PixelData" in dataset
    except InvalidDicomError as exc:
        raise InvalidImage(f"not a valid DICOM file ({exc})") from exc
    except Exception as exc:  # malformed headers raise many pydicom and struct error types
        raise InvalidImage(f"the DICOM file cannot be parsed ({type(exc).__name__})") from exc
    if stop_before_pixels:
        return dataset, stream.tell()
    if not has_pixels:
        raise InvalidImage("the DICOM file has no pixel data")
    if int(getattr(dataset, "NumberOfFrames", 1) or 1) > 1:
        raise InvalidImage("multi-frame DICOM is not supported; send one frame")
    return dataset, stream.tell()


def pixel_array(dataset: Any) -> np.ndarray:
    """pydicom's `pixel_array` (every frame); InvalidImage when the pixels cannot be decoded."""
    try:
        stored: np.ndarray = dataset.pixel_array
    except Exception as exc:  # pydicom raises many types for bad or undecodable pixel data
        raise InvalidImage(f"the DICOM pixel data cannot be decoded ({exc})") from exc
    except BaseException as exc:  # a Rust codec's panic (pyo3's PanicException) is no Exception
        if type(exc).__name__ != "PanicException":
            raise
        raise InvalidImage("the DICOM pixel data cannot be decoded (its codec failed)") from exc
    return stored


def rescaled(stored: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """Stored values → modality units as one new float32 array, worked on in place (float32
    holds every 16-bit stored value exactly; the float64 temporaries it replaced made a 512 x
    512 slice's decode 5 x slower)."""
    values = np.array(stored, dtype=np.float32)
    if slope != 1.0:
        values *= slope
    if intercept != 0.0:
        values += intercept
    return values


def _choose_window(
    file_window: Window | None, values: np.ndarray, window: Window | None
) -> tuple[Window, str]:
    if window is not None:
        return window, f"center {window[0]:g}, width {window[1]:g}"
    if file_window is not None:
        return file_window, f"file window: center {file_window[0]:g}, width {file_window[1]:g}"
    low, high = float(values.min()), float(values.max())
    return ((low + high) / 2, max(high - low, 1.0)), "full range"


def apply_window(values: np.ndarray, window: Window, out: np.ndarray | None = None) -> np.ndarray:
    """Linear window (center, width) → [0, 1] float32, clipped outside; into `out` (a float32
    array of the same shape, `values` itself allowed) or one new array."""
    center, width = window
    if width <= 0:
        raise InvalidImage(f"window width must be positive, got {width}")
    low = center - width / 2
    grey: np.ndarray = np.subtract(values, low, out=out, dtype=np.float32)
    grey /= width
    np.clip(grey, 0.0, 1.0, out=grey)
    return grey

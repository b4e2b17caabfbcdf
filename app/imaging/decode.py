"""Decode raster uploads into a grey float32 array in [0, 1], whatever their mode or depth."""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

from app.errors import InvalidImage
from app.imaging.formats import sniff_format

__all__ = ["DecodedImage", "decode_image", "sniff_format"]

# What Pillow's format plugins raise on malformed files (KeyError: found by the fuzzer, an
# unknown TIFF compression code).
_DECODE_ERRORS = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    struct.error,
    IndexError,
    TypeError,
    KeyError,
    AttributeError,
    ZeroDivisionError,
    OverflowError,
)


@dataclass(frozen=True)
class DecodedImage:
    """A decoded upload: grey pixels in [0, 1] plus what the file was."""

    pixels: np.ndarray  # float32, shape (height, width)
    format: str
    mode: str
    window: str | None = None
    modality: str | None = None  # DICOM only: Modality and BodyPartExamined, for the
    body_part: str | None = None  # applicability gate (never patient data)

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def decode_image(
    data: bytes, max_pixels: int = 64_000_000, window: tuple[float, float] | None = None
) -> DecodedImage:
    """Decode image or DICOM bytes to grey float32 in [0, 1]; raise domain errors.

    `window` (center, width) applies to DICOM only."""
    kind = sniff_format(data)
    if kind == "DICOM":
        from app.imaging.dicom import decode_dicom

        decoded: DecodedImage = decode_dicom(data, window)
        return decoded
    if kind == "PNG" and b"IEND" not in data[-64:]:
        raise InvalidImage("the PNG file is truncated (no IEND chunk)")
    image = _open(data, kind, max_pixels)
    try:
        pixels = _to_grey(image)
    except _DECODE_ERRORS as exc:
        raise InvalidImage(f"the {kind} file is truncated or corrupt ({exc})") from exc
    if not np.isfinite(pixels).all():
        raise InvalidImage("the image holds NaN or infinite values")
    return DecodedImage(pixels=pixels, format=kind, mode=image.mode)


def _open(data: bytes, kind: str, max_pixels: int) -> Image.Image:
    # No warnings.catch_warnings() here: it swaps process-global state and is not thread-safe
    # (decoding runs in worker threads). Warnings that are raised as errors (a strict filter,
    # as in the tests) are mapped to 422 like any other decoding failure.
    try:
        image = Image.open(io.BytesIO(data))
        _check_size(image, max_pixels)
        frames = int(getattr(image, "n_frames", 1))
        if frames > 1:
            raise InvalidImage(f"the {kind} file holds {frames} frames; send one")
        image.load()
        return ImageOps.exif_transpose(image)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise InvalidImage(f"the image is too large to decode safely ({exc})") from exc
    except (*_DECODE_ERRORS, Warning) as exc:
        raise InvalidImage(f"the {kind} file cannot be decoded ({exc})") from exc


def _check_size(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width < 1 or height < 1:
        raise InvalidImage(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        raise InvalidImage(f"the image has {width * height} pixels, more than {max_pixels}")


def _to_grey(image: Image.Image) -> np.ndarray:
    """Any Pillow mode to grey float32 in [0, 1]; alpha is composited onto black."""
    mode = image.mode
    if mode.startswith("I;16"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    if mode in ("I", "F"):
        return _scale_wide(np.asarray(image, dtype=np.float64))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        image = _flatten_alpha(image)
    elif mode != "L":
        image = image.convert("RGB").convert("L")
    grey: np.ndarray = np.divide(np.asarray(image), np.float32(255), dtype=np.float32)
    return grey  # one pass from the 8-bit pixels


def _flatten_alpha(image: Image.Image) -> Image.Image:
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    if rgba.getchannel("A").getextrema() == (255, 255):  # opaque: nothing to composite
        return rgba.convert("L")
    black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
    return Image.alpha_composite(black, rgba).convert("L")


def _scale_wide(values: np.ndarray) -> np.ndarray:
    """32-bit integer or float pixels: the 8- or 16-bit range they fit, else their own range."""
    low, high = float(values.min()), float(values.max())
    if low >= 0 and high <= 65535 and np.all(values == np.round(values)):
        return (values / (255.0 if high <= 255 else 65535.0)).astype(np.float32)
    if not np.isfinite(low) or not np.isfinite(high):
        raise InvalidImage("the image holds NaN or infinite values")
    span = high - low
    return ((values - low) / span if span > 0 else values * 0).astype(np.float32)

"""Pixels to model input, as the model card's input contract says. Training reuses this."""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

Percent = Annotated[float, Field(ge=0, le=100)]
_RESAMPLE = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "area": Image.Resampling.BOX,
}


class InputSpec(BaseModel):
    """The input contract of a model: what `to_model_input` produces and the graph expects."""

    model_config = ConfigDict(extra="forbid")

    name: str = "image"
    layout: Literal["NHWC"] = "NHWC"
    height: int = Field(gt=0, le=4096)
    width: int = Field(gt=0, le=4096)
    channels: Literal[1] = 1
    dtype: Literal["float32"] = "float32"
    colour: Literal["grey"] = "grey"
    value_range: tuple[float, float] = (0.0, 1.0)
    resize: Literal["bilinear", "bicubic", "area"] = "bilinear"
    crop_foreground: bool = Field(
        False,
        description="First crop to the body: the rows and columns where at least 2 % of the "
        "pixels are brighter than a tenth of the image's range (black borders and empty field "
        "of view go, whatever their size: the anatomy fills the input at every zoom)",
    )
    keep_aspect: bool = Field(
        False,
        description="Pad to a square before resizing, with the image's dark level (its low "
        "percentile, not its single darkest pixel, which re-encoding moves)",
    )
    intensity: Literal["percentile", "minmax", "none"] = Field(
        "percentile", description="Per-image contrast stretch applied after resizing"
    )
    percentiles: tuple[Percent, Percent] = (1.0, 99.0)
    in_graph: list[str] = Field(
        default_factory=list, description="Preprocessing done inside the ONNX graph"
    )


def to_model_input(grey: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Grey pixels in [0, 1] (H, W) to one model input (height, width, channels) float32."""
    resized = _resize(framed(grey, spec), spec)
    stretched = _stretch(resized, spec)
    return stretched[:, :, np.newaxis].astype(np.float32, copy=False)


def framed(grey: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The part of the image the model sees, before resizing: cropped to the body and padded to
    a square when the spec says so (heat maps are drawn over this)."""
    if spec.crop_foreground:
        grey = crop_to_foreground(grey)
    if spec.keep_aspect:
        grey = _pad_square(grey, dark_level(grey, spec.percentiles[0]))
    return grey


FOREGROUND_LEVEL = 0.1  # of the image's range, above its darkest value
FOREGROUND_SHARE = 0.02  # of a row or column that must be foreground for it to be kept


def crop_to_foreground(grey: np.ndarray) -> np.ndarray:
    """The bounding box of the bright content; a stray mark (text, a speck) in an otherwise
    dark row or column does not widen it. A flat or all-dark image is returned whole."""
    low, high = float(grey.min()), float(grey.max())
    if high - low < 1e-6:
        return grey
    bright = grey > low + FOREGROUND_LEVEL * (high - low)
    height, width = bright.shape  # shares from counts: no float copy of the mask
    rows = np.flatnonzero(_counts(bright, axis=1) / width >= FOREGROUND_SHARE)
    columns = np.flatnonzero(_counts(bright, axis=0) / height >= FOREGROUND_SHARE)
    if rows.size == 0 or columns.size == 0:
        return grey
    return grey[rows[0] : rows[-1] + 1, columns[0] : columns[-1] + 1]


def _counts(mask: np.ndarray, axis: int) -> np.ndarray:
    """`np.count_nonzero(mask, axis=axis)`, summed as bytes into the narrowest integer that
    holds it (3 x faster on a 512 x 512 slice: count_nonzero goes through int64 per axis)."""
    wide = np.uint16 if mask.shape[axis] < 2**16 else np.uint32
    counts: np.ndarray = np.add.reduce(mask.view(np.uint8), axis=axis, dtype=wide)
    return counts


PAD_SAMPLE = 16384  # pixels sampled (on a regular grid) to find the dark level


def dark_level(grey: np.ndarray, percentile: float) -> float:
    """The image's `percentile`-th percentile from a grid sample of about PAD_SAMPLE pixels:
    a JPEG's ringing or one stray pixel moves the minimum, not this."""
    step = max(1, int(np.sqrt(grey.size / PAD_SAMPLE)))
    (level,) = percentiles(grey[::step, ::step], (percentile,))
    return level


def percentiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """`np.percentile(values, qs)` (linear interpolation; the same numbers, computed as numpy
    computes them) from one partial sort: `np.percentile` copies and partitions the pixels
    again for every call."""
    flat = values.ravel()
    last = flat.size - 1
    positions = [last * (q / 100) for q in qs]
    below = [min(int(p), last) for p in positions]
    kth = sorted({k for b in below for k in (b, min(b + 1, last))})
    ordered = np.partition(flat, kth)
    return [
        _lerp(ordered[b], ordered[min(b + 1, last)], p - b)
        for p, b in zip(positions, below, strict=True)
    ]


def _lerp(low: np.floating, high: np.floating, t: float) -> float:
    """numpy's interpolation between two neighbours: their difference in the values' own
    type, the rest in float64, exact at both ends."""
    difference = float(high - low)
    if t >= 0.5:
        return float(high) - difference * (1 - t)
    return float(low) + difference * t


def _pad_square(grey: np.ndarray, value: float) -> np.ndarray:
    height, width = grey.shape
    side = max(height, width)
    if height == width:
        return grey
    canvas = np.full((side, side), value, dtype=np.float32)
    top, left = (side - height) // 2, (side - width) // 2
    canvas[top : top + height, left : left + width] = grey
    return canvas


def _resize(grey: np.ndarray, spec: InputSpec) -> np.ndarray:
    if grey.shape == (spec.height, spec.width):
        return np.asarray(grey, dtype=np.float32)
    image = Image.fromarray(np.asarray(grey, dtype=np.float32))
    resized = image.resize((spec.width, spec.height), resample=_RESAMPLE[spec.resize])
    return np.asarray(resized, dtype=np.float32)


def _stretch(pixels: np.ndarray, spec: InputSpec) -> np.ndarray:
    """The contrast stretch into one new array (`pixels` may be the caller's)."""
    if spec.intensity == "none":
        return np.asarray(np.clip(pixels, 0.0, 1.0), dtype=np.float32)
    if spec.intensity == "minmax":
        low, high = float(pixels.min()), float(pixels.max())
    else:
        low, high = percentiles(pixels, spec.percentiles)
    if high - low < 1e-6:
        return np.zeros_like(pixels)
    stretched: np.ndarray = np.subtract(pixels, low, dtype=np.float32)
    np.divide(stretched, high - low, out=stretched)
    np.clip(stretched, 0.0, 1.0, out=stretched)
    return stretched

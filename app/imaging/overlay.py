"""Heatmaps over slices: colour mapping, resizing and PNG encoding (no matplotlib)."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

# A perceptual blue → cyan → yellow → red ramp (anchor colours, linearly interpolated).
_ANCHORS = np.array(
    [[0, 0, 130], [0, 90, 255], [0, 220, 220], [250, 230, 0], [255, 60, 0], [170, 0, 0]],
    dtype=np.float32,
)


def normalise_map(activation: np.ndarray) -> np.ndarray:
    """Positive evidence only, scaled to [0, 1] (all zeros when there is none)."""
    positive = np.maximum(activation.astype(np.float32), 0.0)
    peak = float(positive.max())
    return positive / peak if peak > 0 else positive


def colourise(heat: np.ndarray) -> np.ndarray:
    """[0, 1] heat (H, W) → RGB uint8 (H, W, 3)."""
    position = np.clip(heat, 0, 1) * (len(_ANCHORS) - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, len(_ANCHORS) - 1)
    weight = (position - low)[..., np.newaxis]
    mixed = (1 - weight) * _ANCHORS[low] + weight * _ANCHORS[high]
    return np.asarray(mixed, dtype=np.uint8)


def resize_map(heat: np.ndarray, width: int, height: int) -> np.ndarray:
    image = Image.fromarray(heat.astype(np.float32))
    return np.asarray(image.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)


def overlay_png(
    grey: np.ndarray, heat: np.ndarray, max_side: int | None = None, alpha: float = 0.45
) -> bytes:
    """The slice (grey [0, 1]) with the heatmap blended on top, as PNG bytes, at the slice's
    own size (or shrunk to `max_side`)."""
    height, width = grey.shape
    scale = min(1.0, max_side / max(height, width)) if max_side else 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    base = Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8)).resize(size)
    heat_rgb = colourise(resize_map(heat, *size))
    weight = (alpha * resize_map(heat, *size))[..., np.newaxis]
    rgb = np.asarray(base.convert("RGB"), dtype=np.float32)
    blended = (1 - weight) * rgb + weight * heat_rgb
    buffer = io.BytesIO()
    Image.fromarray(blended.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()

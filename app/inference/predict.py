"""The one prediction path: bytes → pixels → model input → session.run → probabilities."""

from __future__ import annotations

from typing import Any

import numpy as np

from app.errors import InferenceFailed
from app.imaging.decode import DecodedImage, decode_image
from app.imaging.preprocess import to_model_input
from app.inference.store import LoadedModel


def predict_bytes(model: LoadedModel, data: bytes, max_pixels: int) -> dict[str, Any]:
    """Decode one upload and classify it with `model`; raise domain errors on bad input."""
    decoded = decode_image(data, max_pixels=max_pixels, window=default_window(model))
    return predict_pixels(model, decoded)


def default_window(model: LoadedModel) -> tuple[float, float] | None:
    """The model card's default DICOM window (center, width), if it names one."""
    dicom = model.card.dicom
    if dicom is None or dicom.default_window is None:
        return None
    return dicom.presets.get(dicom.default_window)


def predict_pixels(model: LoadedModel, decoded: DecodedImage) -> dict[str, Any]:
    """Classify already decoded pixels."""
    spec = model.card.input
    batch = to_model_input(decoded.pixels, spec)[np.newaxis]
    (output,) = model.session.run([model.card.output.name], {spec.name: batch})
    probabilities = normalise(np.asarray(output[0], dtype=np.float64))
    classes = model.card.classes
    return {
        "model": model.card.name,
        "version": model.card.version,
        "label": classes[int(np.argmax(probabilities))],
        "probabilities": {c: float(p) for c, p in zip(classes, probabilities, strict=True)},
        "input": {
            "format": decoded.format,
            "mode": decoded.mode,
            "width": decoded.width,
            "height": decoded.height,
            "window": decoded.window,
        },
        "provider": model.provider,
    }


def normalise(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities that sum to 1 in float64 (float32 softmax can be off by ~1e-7)."""
    clipped = np.clip(probabilities, 0.0, None)
    total = clipped.sum()
    if not np.isfinite(total) or total <= 0:
        raise InferenceFailed("the model returned no valid probabilities for this image")
    return np.asarray(clipped / total, dtype=np.float64)

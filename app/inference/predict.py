"""The one prediction path: bytes → pixels → model input → session.run → probabilities.

The API runs the same steps, with `run_batch` fed by the dynamic batcher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InferenceFailed
from app.imaging.decode import DecodedImage, decode_image
from app.imaging.preprocess import to_model_input
from app.inference.session import bucket_size, pads_batches
from app.inference.store import LoadedModel


@dataclass(frozen=True)
class PreparedInput:
    """One upload, decoded and turned into the model's input (H, W, C)."""

    decoded: DecodedImage
    tensor: np.ndarray


def predict_bytes(model: LoadedModel, data: bytes, max_pixels: int) -> dict[str, Any]:
    """Decode one upload and classify it with `model`; raise domain errors on bad input."""
    prepared = prepare(model, data, max_pixels)
    probabilities = run_batch(model, prepared.tensor[np.newaxis])[0]
    return build_result(model, describe_input(prepared.decoded), probabilities)


def prepare(
    model: LoadedModel, data: bytes, max_pixels: int, window: tuple[float, float] | None = None
) -> PreparedInput:
    """Decode and preprocess as the model card says (DICOM windowed by `window` or the card)."""
    decoded = decode_image(data, max_pixels=max_pixels, window=window or default_window(model))
    return PreparedInput(decoded, to_model_input(decoded.pixels, model.card.input))


def default_window(model: LoadedModel) -> tuple[float, float] | None:
    """The model card's default DICOM window (center, width), if it names one."""
    dicom = model.card.dicom
    if dicom is None or dicom.default_window is None:
        return None
    return dicom.presets.get(dicom.default_window)


def run_batch(model: LoadedModel, batch: np.ndarray) -> np.ndarray:
    """(N, H, W, C) inputs → (N, classes) probabilities, rows summing to 1 in float64. On a
    provider that needs few shapes (CUDA) the batch runs padded to a power of two."""
    spec = model.card.input
    rows = len(batch)
    feed = pad_rows(batch, bucket_size(rows)) if pads_batches(model.provider) else batch
    (output,) = model.session.run([model.card.output.name], {spec.name: feed})
    return np.stack([normalise(np.asarray(row, dtype=np.float64)) for row in output[:rows]])


def run_in_chunks(model: LoadedModel, batch: np.ndarray, chunk: int) -> np.ndarray:
    """`run_batch` over slices of at most `chunk` rows, for a client's own batch (OIP): one
    `session.run` then holds one chunk's activations, not the whole request's (chest CT, one
    session.run: 261 MB peak resident at batch 4, 850 MB at 32, 1.1 GB at 170; a 32 MiB request
    holds 512 of its inputs)."""
    parts = [
        run_batch(model, batch[start : start + chunk]) for start in range(0, len(batch), chunk)
    ]
    return np.concatenate(parts)


def pad_rows(batch: np.ndarray, size: int) -> np.ndarray:
    """`batch` with rows of zeros appended up to `size` rows."""
    if len(batch) >= size:
        return batch
    padding = np.zeros((size - len(batch), *batch.shape[1:]), dtype=batch.dtype)
    return np.concatenate([batch, padding])


def prepare_for_batch(
    model: LoadedModel,
    data: bytes,
    max_pixels: int,
    window: tuple[float, float] | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """The model input and the answer's description of the upload, without the full-resolution
    pixels: those need not wait in the batch queue (about 1 MB per 512 x 512 image)."""
    prepared = prepare(model, data, max_pixels, window)
    return prepared.tensor, describe_input(prepared.decoded)


def describe_input(decoded: DecodedImage) -> dict[str, Any]:
    """What the answer says about the uploaded file."""
    return {
        "format": decoded.format,
        "mode": decoded.mode,
        "width": decoded.width,
        "height": decoded.height,
        "window": decoded.window,
    }


def build_result(
    model: LoadedModel, described: dict[str, Any], probabilities: np.ndarray
) -> dict[str, Any]:
    """The JSON answer for one image (`described`: see `describe_input`)."""
    classes = model.card.classes
    return {
        "model": model.card.name,
        "version": model.card.version,
        "label": classes[int(np.argmax(probabilities))],
        "probabilities": {c: float(p) for c, p in zip(classes, probabilities, strict=True)},
        "input": described,
        "provider": model.provider,
    }


def normalise(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities that sum to 1 in float64 (float32 softmax can be off by ~1e-7)."""
    clipped = np.clip(probabilities, 0.0, None)
    total = clipped.sum()
    if not np.isfinite(total) or total <= 0:
        raise InferenceFailed("the model returned no valid probabilities for this image")
    return np.asarray(clipped / total, dtype=np.float64)

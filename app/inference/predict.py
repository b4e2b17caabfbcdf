"""The one prediction path: bytes → pixels → model input → session.run → probabilities.

The API runs the same steps, with `run_batch` fed by the dynamic batcher."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import InferenceFailed
from app.imaging.decode import DecodedImage, decode_image
from app.imaging.preprocess import to_model_input
from app.inference.applicability import OUTSIDE, not_assessed
from app.inference.batching import Ticket
from app.inference.session import bucket_size, pads_batches
from app.inference.store import LoadedModel


@dataclass(frozen=True)
class PreparedInput:
    """One upload, decoded and turned into the model's input (H, W, C)."""

    decoded: DecodedImage
    tensor: np.ndarray


@dataclass(frozen=True)
class Outputs:
    """What one `session.run` gives for a batch: probabilities and, where the model has an
    applicability check, each input's score."""

    probabilities: np.ndarray  # (N, classes), rows summing to 1
    scores: np.ndarray | None  # (N,)
    extra: tuple[np.ndarray, ...] = ()  # other graph outputs asked for, in the order asked

    def rows(self) -> list[Scored]:
        """One (probabilities, score) pair per input."""
        scores = [None] * len(self.probabilities) if self.scores is None else self.scores
        return [
            Scored(p, None if s is None else float(s))
            for p, s in zip(self.probabilities, scores, strict=True)
        ]


@dataclass(frozen=True)
class Scored:
    """One input's probabilities and applicability score (None: the model has no check)."""

    probabilities: np.ndarray
    score: float | None


def predict_bytes(model: LoadedModel, data: bytes, max_pixels: int) -> dict[str, Any]:
    """Decode one upload and classify it with `model`; raise domain errors on bad input."""
    prepared = prepare(model, data, max_pixels)
    (scored,) = run_model(model, prepared.tensor[np.newaxis]).rows()
    return build_result(model, describe_input(prepared.decoded), scored)


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
    """(N, H, W, C) inputs → (N, classes) probabilities, rows summing to 1 in float64."""
    return run_model(model, batch).probabilities


def run_rows(model: LoadedModel, batch: np.ndarray) -> list[Scored]:
    """`run_model`, one (probabilities, score) per input: what the batcher hands back."""
    return run_model(model, batch).rows()


def run_model(model: LoadedModel, batch: np.ndarray, extra: tuple[str, ...] = ()) -> Outputs:
    """(N, H, W, C) inputs → probabilities, applicability scores and the `extra` graph outputs
    (e.g. activation maps) in one `session.run`. On a provider that needs few shapes (CUDA) the
    batch runs padded to a power of two."""
    spec, check = model.card.input, model.applicability
    rows = len(batch)
    feed = pad_rows(batch, bucket_size(rows)) if pads_batches(model.provider) else batch
    names = [model.card.output.name, *extra] + ([check.spec.feature_output] if check else [])
    output, *others = model.session.run(names, {spec.name: feed})
    probabilities = np.stack(
        [normalise(np.asarray(row, dtype=np.float64)) for row in output[:rows]]
    )
    scores = check.scores(np.asarray(others[-1][:rows])) if check else None
    return Outputs(probabilities, scores, tuple(np.asarray(o[:rows]) for o in others[: len(extra)]))


def run_in_chunks(model: LoadedModel, batch: np.ndarray, chunk: int) -> Outputs:
    """`run_batch` over slices of at most `chunk` rows, for a client's own batch (OIP): one
    `session.run` then holds one chunk's activations, not the whole request's (chest CT, one
    session.run: 261 MB peak resident at batch 4, 850 MB at 32, 1.1 GB at 170; a 32 MiB request
    holds 512 of its inputs)."""
    parts = [
        run_model(model, batch[start : start + chunk]) for start in range(0, len(batch), chunk)
    ]
    scores = [p.scores for p in parts if p.scores is not None]
    return Outputs(
        np.concatenate([p.probabilities for p in parts]),
        np.concatenate(scores) if len(scores) == len(parts) else None,
    )


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


def prepare_and_run_alone(
    model: LoadedModel,
    data: bytes,
    max_pixels: int,
    window: tuple[float, float] | None,
    ticket: Ticket,
) -> tuple[np.ndarray, dict[str, Any], Scored | None]:
    """`prepare_for_batch`, then, in the same thread, the answer when the image is alone
    (`Ticket.run_alone`); None for it when the image must join a batch."""
    tensor, described = prepare_for_batch(model, data, max_pixels, window)
    return tensor, described, ticket.run_alone(tensor)


def describe_input(decoded: DecodedImage) -> dict[str, Any]:
    """What the answer says about the uploaded file (for DICOM: its Modality and
    BodyPartExamined, which the applicability check reads; never patient data)."""
    described: dict[str, Any] = {
        "format": decoded.format,
        "mode": decoded.mode,
        "width": decoded.width,
        "height": decoded.height,
        "window": decoded.window,
    }
    if decoded.format == "DICOM":
        described["modality"], described["body_part"] = decoded.modality, decoded.body_part
    return described


def build_result(model: LoadedModel, described: dict[str, Any], scored: Scored) -> dict[str, Any]:
    """The JSON answer for one image (`described`: see `describe_input`). Outside the model's
    domain, `label` is null: the probabilities stay, for research, but name no diagnosis."""
    classes = model.card.classes
    applicability = judge(model, scored.score, described)
    top = classes[int(np.argmax(scored.probabilities))]
    return {
        "model": model.card.name,
        "version": model.card.version,
        "label": None if applicability["verdict"] == OUTSIDE else top,
        "probabilities": {c: float(p) for c, p in zip(classes, scored.probabilities, strict=True)},
        "applicability": applicability,
        "input": described,
        "provider": model.provider,
    }


def judge(model: LoadedModel, score: float | None, described: dict[str, Any]) -> dict[str, Any]:
    """The `applicability` object: the model's verdict on this input."""
    if model.applicability is None or score is None:
        return not_assessed()
    return model.applicability.judge(score, described)


def normalise(probabilities: np.ndarray) -> np.ndarray:
    """Probabilities that sum to 1 in float64 (float32 softmax can be off by ~1e-7)."""
    clipped = np.clip(probabilities, 0.0, None)
    total = clipped.sum()
    if not np.isfinite(total) or total <= 0:
        raise InferenceFailed("the model returned no valid probabilities for this image")
    return np.asarray(clipped / total, dtype=np.float64)

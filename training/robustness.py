"""Cross-validated accuracy under acquisition shifts: each fold's model, taken out of the shipped
ensemble, scores its own held-out fold as recorded, zoomed out (black border), zoomed in (centre
crop) and with another display curve (gamma). The recorded score says how a model does on images
like the training ones; these rows say how fast it falls when other scanners or exports frame and
window the same anatomy differently, as held-back data from other sources may."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from app.imaging.decode import decode_image
from app.imaging.preprocess import InputSpec, to_model_input
from training.arrays import load_arrays
from training.compare import write_evaluation
from training.data import Sample, clean, discover, fingerprint, grouped_folds, near_duplicate_groups
from training.tasks import TASKS

Shift = Callable[[np.ndarray], np.ndarray]


def zoom_out(pixels: np.ndarray, factor: float) -> np.ndarray:
    """The image centred on a black canvas `factor` times its size: the anatomy looks smaller."""
    height, width = pixels.shape
    canvas = np.zeros((round(height * factor), round(width * factor)), dtype=np.float32)
    top, left = (canvas.shape[0] - height) // 2, (canvas.shape[1] - width) // 2
    canvas[top : top + height, left : left + width] = pixels
    return canvas


def zoom_in(pixels: np.ndarray, factor: float) -> np.ndarray:
    """The centre 1 / `factor` of the image: the anatomy looks larger and its edges are cut."""
    height, width = pixels.shape
    keep_h, keep_w = max(1, round(height / factor)), max(1, round(width / factor))
    top, left = (height - keep_h) // 2, (width - keep_w) // 2
    return pixels[top : top + keep_h, left : left + keep_w]


UNSHIFTED = "as recorded"
SHIFTS: dict[str, Shift] = {
    "zoom out 1.25 x": lambda p: zoom_out(p, 1.25),
    "zoom out 1.5 x": lambda p: zoom_out(p, 1.5),
    "zoom in 1.25 x": lambda p: zoom_in(p, 1.25),
    "zoom in 1.5 x": lambda p: zoom_in(p, 1.5),
    "gamma 0.7": lambda p: np.power(p, 0.7, dtype=np.float32),
    "gamma 1.4": lambda p: np.power(p, 1.4, dtype=np.float32),
}


def member_logits_session(model_path: Path) -> tuple[ort.InferenceSession, int]:
    """The shipped ensemble with one output per member: the logits its temperature-scaled mean
    is made of (each member's mirror mean when the graph has test-time mirroring)."""
    model = onnx.load(str(model_path))
    producer = {output: node for node in model.graph.node for output in node.output}
    scale = producer[producer["probabilities"].input[0]]  # softmax(mean logits * 1 / T)

    def leaves(name: str) -> list[str]:
        node = producer.get(name)
        if node is not None and node.op_type == "Add" and "mean_logits" in node.name:
            return leaves(node.input[0]) + leaves(node.input[1])
        return [name]

    names = leaves(scale.input[0])
    del model.graph.output[:]
    model.graph.output.extend(
        onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None) for name in names
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session, len(names)


def shifted_cross_validation(
    model_dir: Path, data: Path, cache_dir: Path | None = None, shifts: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """Per shift: accuracy mean and std over folds, per-fold accuracies and per-class recall,
    each fold scored by its own members (as `ctscan train` scored it); `shifts` picks some of
    SHIFTS. The folds are rebuilt from the card; the unshifted row, always first and scored on
    the very inputs training used, must reproduce the card's cross-validated accuracy."""
    folds = rebuild_folds(model_dir, data, cache_dir)
    spec, card, x, y, splits = folds.spec, folds.card, folds.x, folds.y, folds.splits
    classes = list(card["classes"])
    session, members = member_logits_session(model_dir / "model.onnx")
    predicted = fold_predictions(session, spec.name, x, splits, folds.per_fold(members))
    rows = {UNSHIFTED: _summary(predicted, y, splits, classes)}
    _check_reproduces_card(rows[UNSHIFTED], card)
    pixels = [decode_image(s.path.read_bytes()).pixels for s in folds.samples]
    for label in shifts or SHIFTS:
        inputs = np.stack([to_model_input(SHIFTS[label](p), spec) for p in pixels])
        predicted = fold_predictions(session, spec.name, inputs, splits, folds.per_fold(members))
        rows[label] = _summary(predicted, y, splits, classes)
    return rows


@dataclass(frozen=True)
class RebuiltFolds:
    """A shipped model's training images, as training preprocessed them, and its folds."""

    card: dict[str, Any]
    spec: InputSpec
    samples: list[Sample]
    x: np.ndarray
    y: np.ndarray
    splits: list[tuple[np.ndarray, np.ndarray]]

    def per_fold(self, members: int) -> int:
        """Members per fold; member k (from 0) belongs to fold k // per_fold."""
        per_fold = members // len(self.splits)
        if per_fold < 1 or per_fold * len(self.splits) != members:
            raise ValueError(f"{members} members do not split over {len(self.splits)} folds")
        return per_fold


def rebuild_folds(model_dir: Path, data: Path, cache_dir: Path | None) -> RebuiltFolds:
    """The images and folds `ctscan train` used for the model in `model_dir` (card's rules)."""
    card = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
    spec = InputSpec(**card["input"])
    training = card["training"]
    samples, _ = clean(discover(data, *_labelling(card)), data)
    classes = list(card["classes"])
    y = np.array([classes.index(s.label) for s in samples])
    x = load_arrays(samples, spec, cache_dir)
    splits = grouped_folds(
        y, near_duplicate_groups(fingerprint(x)), training["folds"], training["config"]["seed"]
    )
    return RebuiltFolds(card, spec, samples, x, y, splits)


def _labelling(card: dict[str, Any]) -> tuple[dict[str, str] | None, str | None]:
    """The label map and label column training used for this model's dataset."""
    preset = TASKS.get(card["name"])
    if preset is None:
        return card["training"].get("label_map"), None
    return preset.label_map, preset.label_column


def fold_predictions(
    session: ort.InferenceSession,
    input_name: str,
    inputs: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    per_fold: int,
) -> np.ndarray:
    """Each sample's class from the mean logits of the members of the fold that held it out."""
    predicted = np.full(len(inputs), -1)
    for fold, (_, held_out) in enumerate(splits):
        outputs = session.run(None, {input_name: inputs[held_out]})
        mine = np.mean(outputs[fold * per_fold : (fold + 1) * per_fold], axis=0)
        predicted[held_out] = mine.argmax(axis=1)
    return predicted


def _summary(
    predicted: np.ndarray,
    y: np.ndarray,
    splits: list[tuple[np.ndarray, np.ndarray]],
    classes: list[str],
) -> dict[str, Any]:
    accuracies = [float((predicted[v] == y[v]).mean()) for _, v in splits]
    return {
        "accuracy_mean": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "per_fold": accuracies,
        "recall": {c: float((predicted[y == i] == i).mean()) for i, c in enumerate(classes)},
    }


def _check_reproduces_card(row: dict[str, Any], card: dict[str, Any]) -> None:
    recorded = card["evaluation"]["cross_validation"]["accuracy"]["mean"]
    if abs(row["accuracy_mean"] - recorded) > 1e-6:
        raise ValueError(
            f"the rebuilt folds score {row['accuracy_mean']:.4f}, the card records "
            f"{recorded:.4f}: the data or the fold rules differ from training"
        )


def write_robustness(model_dir: Path, rows: dict[str, dict[str, Any]]) -> None:
    """Put the rows into the card (`evaluation.shift_robustness`) and the report."""
    write_evaluation(model_dir, "shift_robustness", rows, markdown(rows), "shift-robustness")


def markdown(rows: dict[str, dict[str, Any]]) -> str:
    """The rows as a markdown section."""
    classes = list(next(iter(rows.values()))["recall"])
    lines = [
        "## Under acquisition shifts",
        "",
        "Each fold scored by its own members, its images as recorded and shifted "
        "(`ctscan robustness`).",
        "",
        f"| shift | CV accuracy | recall ({' / '.join(classes)}) |",
        "|---|---|---|",
    ]
    for label, row in rows.items():
        recall = " / ".join(f"{row['recall'][c]:.2f}" for c in classes)
        accuracy = f"{row['accuracy_mean']:.3f} ± {row['accuracy_std']:.3f}"
        lines.append(f"| {label} | {accuracy} | {recall} |")
    return "\n".join(lines) + "\n"

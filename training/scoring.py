"""Score an exported model on labelled files through the service's own prediction path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.inference.predict import predict_bytes
from app.inference.store import LoadedModel, load_model_dir
from training.data import DatasetReport, Sample, clean, discover
from training.evaluate import classification_metrics


def open_model_dir(model_dir: Path) -> LoadedModel:
    """The exported model in `<models>/<name>/<version>/`, checked and loaded as the service
    would, with as many threads as this process may use."""
    name, version = model_dir.parent.name, int(model_dir.name)
    return load_model_dir(model_dir, name, version, Settings(intra_op_threads=0))


def labelled_samples(
    data: Path, classes: list[str], label_map: dict[str, str] | None
) -> tuple[list[Sample], DatasetReport]:
    """The deduplicated, conflict-free images under `data` whose label the model knows."""
    samples, report = clean(discover(data, label_map), data)
    return [s for s in samples if s.label in classes], report


def score_model_dir(
    model_dir: Path, data: Path, label_map: dict[str, str] | None = None
) -> dict[str, Any]:
    """Accuracy, per-class scores and ECE of `model_dir` on every image under `data`."""
    model = open_model_dir(model_dir)
    classes = model.card.classes
    samples, report = labelled_samples(data, classes, label_map)
    probs = np.array(
        [
            list(predict_bytes(model, s.path.read_bytes(), 10**9)["probabilities"].values())
            for s in samples
        ]
    )
    y = np.array([classes.index(s.label) for s in samples])
    metrics = classification_metrics(y, probs, classes)
    metrics["data"] = {"files": report.files, "kept": len(samples)}
    return metrics

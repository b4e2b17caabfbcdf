"""Score an exported model on labelled files through the service's own prediction path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from app.config import Settings
from app.inference.predict import predict_bytes
from app.inference.store import load_model_dir
from training.data import clean, discover
from training.evaluate import classification_metrics


def score_model_dir(
    model_dir: Path, data: Path, label_map: dict[str, str] | None = None
) -> dict[str, Any]:
    """Accuracy, per-class scores and ECE of `model_dir` on every image under `data`."""
    name, version = model_dir.parent.name, int(model_dir.name)
    model = load_model_dir(model_dir, name, version, Settings(intra_op_threads=0))
    classes = model.card.classes
    samples, report = clean(discover(data, label_map), data)
    samples = [s for s in samples if s.label in classes]
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

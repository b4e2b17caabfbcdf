"""`ctscan pretrain`: one backbone learned from other tasks' images (the compact CNN from random
weights, or EfficientNet-Lite0 from its ImageNet weights).

The classes are the source datasets' classes side by side (`head_ct/1`, `sarscov2_ct/covid`,
...). Images of the datasets named in `exclude` (the task the backbone will be fine-tuned on)
are left out by content hash, so cross-validation of that task stays free of leakage. The
weights file is what `ctscan train --arch ARCH --weights PATH` starts from (same ARCH); a JSON
file beside it says how it was made, and the model card repeats it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.imaging.preprocess import InputSpec
from training.architectures import EFFICIENTNET_LITE0, pretrained_backbone
from training.arrays import load_arrays
from training.data import DatasetReport, Sample, clean, discover
from training.train import TrainConfig, fit

log = logging.getLogger(__name__)

WEIGHTS_SUFFIX = ".weights.h5"
PRETRAINABLE = ("compact", EFFICIENTNET_LITE0)


@dataclass
class PretrainRequest:
    sources: list[Path]
    exclude: list[Path]
    output: Path
    config: TrainConfig
    spec: InputSpec
    cache_dir: Path | None = Path("cache")


def provenance_path(weights: Path) -> Path:
    """`x.weights.h5` → `x.json`: how the backbone was made."""
    return weights.with_name(weights.name.removesuffix(WEIGHTS_SUFFIX) + ".json")


def read_provenance(weights: str) -> dict[str, Any] | None:
    """The JSON written beside a pretrained backbone, if `weights` is one."""
    if weights in ("none", "imagenet"):
        return None
    found = provenance_path(Path(weights))
    return json.loads(found.read_text()) if found.is_file() else None


def pretraining_samples(
    sources: list[Path], exclude: list[Path]
) -> tuple[list[Sample], DatasetReport, int]:
    """Every clean sample of `sources`, labelled `<dataset>/<class>`, minus any file whose
    content is also in `exclude`; returns the samples, the cleaning report and how many were
    left out for being in `exclude`."""
    found = [
        Sample(s.path, f"{root.name}/{s.label}", s.sha256)
        for root in sources
        for s in discover(root)
    ]
    excluded = {s.sha256 for root in exclude for s in discover(root)}
    allowed = [s for s in found if s.sha256 not in excluded]
    common = Path(os.path.commonpath([str(root) for root in sources]))
    samples, report = clean(allowed, common)
    return samples, report, len(found) - len(allowed)


def pretrain(request: PretrainRequest) -> Path:
    """Train a classifier over the sources' classes and save its backbone weights."""
    if not request.output.name.endswith(WEIGHTS_SUFFIX):
        raise ValueError(f"the output file name must end with {WEIGHTS_SUFFIX}")
    started = time.perf_counter()
    samples, report, left_out = pretraining_samples(request.sources, request.exclude)
    classes = sorted({s.label for s in samples})
    x = load_arrays(samples, request.spec, request.cache_dir)
    y = np.array([classes.index(s.label) for s in samples])
    log.info("pretraining on %d images, %d classes", len(y), len(classes))
    work = request.output.parent / f".{request.output.name}.work"
    fitted = fit(x, y, len(classes), request.config, None, work)
    request.output.parent.mkdir(parents=True, exist_ok=True)
    pretrained_backbone(fitted.model).save_weights(str(request.output))
    shutil.rmtree(work, ignore_errors=True)
    provenance = {
        "method": "supervised classification over the source datasets' classes",
        "arch": request.config.arch,
        "initialisation": initialisation(request.config),
        "sources": [root.name for root in request.sources],
        "excluded_datasets": [root.name for root in request.exclude],
        "excluded_images_by_content": left_out,
        "classes": report.counts,
        "images": len(y),
        "file_list_sha256": report.file_list_sha256,
        "image_size": request.spec.height,
        "width": request.config.width,
        "epochs": request.config.epochs,
        **fine_tuning(request.config),
        "final_training_accuracy": fitted.history["accuracy"][-1],
        "seconds": round(time.perf_counter() - started, 1),
    }
    provenance_path(request.output).write_text(json.dumps(provenance, indent=2))
    return request.output


def initialisation(config: TrainConfig) -> str | dict[str, Any]:
    """Where the pretraining started: random weights, or the ImageNet checkpoint's record."""
    if not config.pretrained:
        return "random weights (no ImageNet weights)"
    from training.efficientnet_lite import provenance

    return provenance()


def fine_tuning(config: TrainConfig) -> dict[str, Any]:
    """The fine-tuning stage of an ImageNet start (head first on frozen features)."""
    if not config.pretrained:
        return {}
    return {
        "fine_tune_layers": config.fine_tune_layers,
        "fine_tune_epochs": config.fine_tune_epochs,
        "fine_tune_learning_rate": config.fine_tune_learning_rate,
    }

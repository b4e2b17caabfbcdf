"""`ctscan train` end to end: data → cross-validation → calibration → final fit → export."""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

from app.imaging.preprocess import InputSpec
from app.inference.store import sha256_file
from training.arrays import load_arrays
from training.card import build_card
from training.crossval import CrossValidation, cross_validate
from training.data import (
    DatasetReport,
    Sample,
    clean,
    discover,
    fingerprint,
    near_duplicate_groups,
)
from training.evaluate import calibrate, classification_metrics, fold_summary
from training.export import export_served, kept_member_path
from training.latency import onnx_latency_ms
from training.pretrain import read_provenance
from training.report import write_report
from training.tasks import TASKS
from training.train import TrainConfig, fit

log = logging.getLogger(__name__)


@dataclass
class TrainRequest:
    data: Path
    name: str
    output: Path
    config: TrainConfig
    spec: InputSpec
    folds: int = 5
    max_folds: int | None = None
    cache_dir: Path | None = Path("cache")
    label_map: dict[str, str] | None = None
    max_samples: int | None = None
    runs_dir: Path = Path("runs")
    ship: str = "final"  # "final": refit on all data; "ensemble": the k fold models
    members_per_fold: int = 1  # models per fold, seeds config.seed + 0, 1, ...; ensemble only

    def __post_init__(self) -> None:
        if self.members_per_fold < 1:
            raise ValueError("members per fold must be at least 1")
        if self.members_per_fold > 1 and (self.ship != "ensemble" or self.folds < 2):
            raise ValueError(
                "several members per fold need --ship ensemble and cross-validation: the "
                "cross-validated score must describe the shipped ensemble"
            )
        if not 0 <= self.config.inner_validation <= 0.5:
            raise ValueError("--inner-validation is a fraction between 0 and 0.5")
        if self.config.inner_validation > 0 and self.folds < 2:
            raise ValueError("--inner-validation needs cross-validation (--folds 2 or more)")


def run(request: TrainRequest) -> Path:
    """Train, evaluate and export a new version; returns its folder. Nothing is left behind
    in `output` if any step fails."""
    started = time.perf_counter()
    version = next_version(request.output / request.name)
    staging = request.output / request.name / f".staging-{version}"
    try:
        folder = _run_into(request, version, staging, started)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def _run_into(request: TrainRequest, version: int, staging: Path, started: float) -> Path:
    samples, classes, report = _load_samples(request)
    x = load_arrays(samples, request.spec, request.cache_dir)
    y = np.array([classes.index(s.label) for s in samples])
    groups = near_duplicate_groups(fingerprint(x))
    work = staging / "work"
    cv = None
    if request.folds >= 2:
        cv = cross_validate(
            x,
            y,
            groups,
            classes,
            request.config,
            request.folds,
            work,
            request.max_folds,
            request.members_per_fold,
        )
    metrics, temperature = _cv_metrics(cv, y, classes, report.__dict__)
    members, history, notes, fit_seconds = _shipped_members(request, cv, x, y, classes, work)
    onnx_path = staging / "model.onnx"
    served, metrics["parity_max_abs_diff"] = export_served(
        members, temperature, request.config.tta_flip, onnx_path, x[:16]
    )
    metrics["latency_ms_batch1_cpu"] = onnx_latency_ms(onnx_path, x[:1])
    metrics["seconds"] = {
        "cross_validation": cv.seconds if cv else 0.0,
        "final_fit": fit_seconds,
        "total": time.perf_counter() - started,
    }
    metrics["shipped"] = {"mode": request.ship, "members": len(members), **notes}
    before, after = _oof_probs(cv, temperature)
    histories = cv.histories if cv else [history]
    write_report(staging / "report", request.name, classes, x, y, before, after, histories, metrics)
    card = build_card(
        request.name,
        version,
        classes,
        request.spec,
        sha256_file(onnx_path),
        temperature,
        _architecture(request, served, len(members)),
        _training(request, report.__dict__, metrics["shipped"]),
        _evaluation(metrics, request.config.inner_validation),
        [f"v{version}: trained by `ctscan train`"],
        "class_activation" if len(served.outputs) > 1 else None,
    )
    (staging / "metadata.json").write_text(card.model_dump_json(indent=2))
    _keep_keras(request, version, members)
    shutil.rmtree(work)
    folder = staging.parent / str(version)
    staging.rename(folder)
    log.info("wrote %s in %.0fs", folder, time.perf_counter() - started)
    return folder


def _load_samples(request: TrainRequest) -> tuple[list[Sample], list[str], DatasetReport]:
    preset = TASKS.get(request.name)
    label_map = request.label_map or (preset.label_map if preset else None)
    found = discover(request.data, label_map, preset.label_column if preset else None)
    samples, report = clean(found, request.data)
    if request.max_samples:
        samples = samples[:: max(1, len(samples) // request.max_samples)]
    classes = list(preset.classes) if preset else sorted({s.label for s in samples})
    unknown = {s.label for s in samples} - set(classes)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} are not classes of {request.name}: {classes}")
    return samples, classes, report


def _shipped_members(
    request: TrainRequest,
    cv: CrossValidation | None,
    x: np.ndarray,
    y: np.ndarray,
    classes: list[str],
    work: Path,
) -> tuple[list[Any], dict[str, list[float]], dict[str, Any], float]:
    """The fold models (ship=ensemble) or one model fitted on all data (ship=final)."""
    if request.ship == "ensemble" and cv is not None and cv.models:
        return cv.models, cv.histories[0], {"epochs": cv.best_epochs}, 0.0
    epochs = int(np.median(cv.best_epochs)) if cv and cv.best_epochs else None
    final = fit(x, y, len(classes), request.config, None, work / "final", epochs=epochs)
    ran = len(final.history["loss"])  # of the fine-tuning stage, for a pretrained backbone
    return [final.model], final.history, {"epochs": ran, **final.notes}, final.seconds


def _keep_keras(request: TrainRequest, version: int, members: list[Any]) -> None:
    """Keep the Keras logits models (for `ctscan export` and later fine-tuning)."""
    keep = request.runs_dir / request.name / str(version)
    keep.mkdir(parents=True, exist_ok=True)
    for index, member in enumerate(members):
        member.save(kept_member_path(keep, index + 1))


def _cv_metrics(
    cv: CrossValidation | None, y: np.ndarray, classes: list[str], data: dict[str, Any]
) -> tuple[dict[str, Any], float]:
    metrics: dict[str, Any] = {"data": data}
    if cv is None:
        return metrics, 1.0
    seen = cv.fold_of >= 0
    calibration = calibrate(cv.logits[seen], y[seen])
    metrics["cross_validation"] = fold_summary(cv.per_fold, classes)
    metrics["per_fold"] = cv.per_fold
    metrics["out_of_fold"] = classification_metrics(
        y[seen], softmax(cv.logits[seen] / calibration["temperature"], axis=1), classes
    )
    metrics["calibration"] = calibration
    metrics["stage_notes"] = cv.notes
    return metrics, calibration["temperature"]


def _oof_probs(cv: CrossValidation | None, temperature: float) -> tuple[np.ndarray, np.ndarray]:
    if cv is None:
        return np.zeros((0, 0)), np.zeros((0, 0))
    logits = np.nan_to_num(cv.logits)
    return softmax(logits, axis=1), softmax(logits / temperature, axis=1)


def _architecture(request: TrainRequest, served: Any, members: int) -> dict[str, Any]:
    config = request.config
    return {
        "name": config.arch,
        "head": config.head,
        "width": config.width,
        "weights_init": config.weights,
        "pretraining": _pretrained_source(config),
        "ensemble_members": members,
        "test_time_augmentation": "horizontal flip" if config.tta_flip else None,
        "parameters": int(served.count_params()),
    }


def _pretrained_source(config: Any) -> dict[str, Any] | None:
    """Where the starting weights came from: `ctscan pretrain`'s record, or the package and
    checksum of EfficientNet-Lite0's ImageNet checkpoint."""
    if config.arch == "efficientnet-lite0" and config.weights == "imagenet":
        from training.efficientnet_lite import provenance

        return provenance()
    return read_provenance(config.weights)


def _training(
    request: TrainRequest, data: dict[str, Any], shipped: dict[str, Any]
) -> dict[str, Any]:
    return {
        "dataset": request.data.name,
        "counts": data["counts"],
        "duplicate_groups_merged": len(data["duplicates"]),
        "label_conflicts_dropped": data["conflicts"],
        "file_list_sha256": data["file_list_sha256"],
        "config": request.config.as_dict(),
        "folds": request.folds,
        "members_per_fold": request.members_per_fold,
        "shipped": shipped,
        "leakage_note": TASKS[request.name].leakage_note if request.name in TASKS else "",
    }


def _evaluation(metrics: dict[str, Any], inner_validation: float) -> dict[str, Any]:
    keep = (
        "cross_validation",
        "calibration",
        "out_of_fold",
        "parity_max_abs_diff",
        "latency_ms_batch1_cpu",
        "seconds",
    )
    summary = {k: metrics[k] for k in keep if k in metrics}
    stopped_on = (
        f"a grouped {inner_validation:.0%} of its own training images (nested: the scored "
        "fold decides nothing)"
        if inner_validation
        else "the fold it is scored on (which flatters the score)"
    )
    summary["protocol"] = (
        "grouped stratified k-fold on deduplicated data; exact duplicates "
        "merged, label conflicts dropped, near-duplicates kept in one fold; each fold "
        f"chose its epoch (early stopping, kept checkpoint) on {stopped_on}"
    )
    return summary


def next_version(model_dir: Path) -> int:
    """One more than the highest integer version folder (1 when none)."""
    versions = [int(p.name) for p in model_dir.glob("*") if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1

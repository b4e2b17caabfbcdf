"""Grouped stratified k-fold cross-validation producing out-of-fold logits."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import softmax

from training.data import grouped_folds
from training.evaluate import classification_metrics
from training.train import TrainConfig, fit, predict_logits

log = logging.getLogger(__name__)


@dataclass
class CrossValidation:
    """Out-of-fold logits for every sample, and what each fold measured."""

    logits: np.ndarray
    fold_of: np.ndarray
    per_fold: list[dict[str, Any]] = field(default_factory=list)
    histories: list[dict[str, list[float]]] = field(default_factory=list)
    best_epochs: list[int] = field(default_factory=list)
    seconds: float = 0.0
    notes: list[dict[str, Any]] = field(default_factory=list)
    models: list[Any] = field(default_factory=list)


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    classes: list[str],
    config: TrainConfig,
    folds: int,
    work_dir: Path,
    max_folds: int | None = None,
    members_per_fold: int = 1,
) -> CrossValidation:
    """Train `members_per_fold` models per fold (all folds, or the first `max_folds`), each
    from its own seed (`config.seed` + member; the folds come from `config.seed` alone), and
    predict the fold's held-out part with their mean logits, as the shipped ensemble averages
    them; samples of unrun folds keep NaN logits."""
    started = time.perf_counter()
    result = CrossValidation(
        np.full((len(y), len(classes)), np.nan, dtype=np.float64), np.full(len(y), -1)
    )
    splits = grouped_folds(y, groups, folds, config.seed)[: max_folds or folds]
    for index, (train_idx, val_idx) in enumerate(splits):
        log.info(
            "fold %d/%d: %d train, %d validation",
            index + 1,
            len(splits),
            len(train_idx),
            len(val_idx),
        )
        member_logits, seconds = [], 0.0
        for member in range(members_per_fold):
            fitted = fit(
                x[train_idx],
                y[train_idx],
                len(classes),
                replace(config, seed=config.seed + member),
                (x[val_idx], y[val_idx]),
                work_dir / f"fold{index + 1}" / f"member{member + 1}",
            )
            member_logits.append(predict_logits(fitted.model, x[val_idx], config.tta_flip))
            seconds += fitted.seconds
            result.histories.append(fitted.history)
            result.best_epochs.append(fitted.best_epoch)
            result.notes.append(fitted.notes)
            result.models.append(fitted.model)
        logits = np.mean(member_logits, axis=0)
        result.logits[val_idx], result.fold_of[val_idx] = logits, index
        metrics = classification_metrics(y[val_idx], softmax(logits, axis=1), classes)
        metrics["seconds"] = seconds
        best = result.best_epochs[-members_per_fold:]
        metrics["best_epoch"] = best[0] if members_per_fold == 1 else best  # one per member
        log.info(
            "fold %d accuracy %.3f macro F1 %.3f (%.0fs, %d member%s)",
            index + 1,
            metrics["accuracy"],
            metrics["macro_f1"],
            seconds,
            members_per_fold,
            "" if members_per_fold == 1 else "s",
        )
        result.per_fold.append(metrics)
    result.seconds = time.perf_counter() - started
    return result

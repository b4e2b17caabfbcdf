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
from training.train import TrainConfig, best_epoch, fit, predict_logits, stopping_starts

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
        fit_idx, stop_idx = stopping_split(train_idx, val_idx, y, groups, config)
        watched = (x[val_idx], y[val_idx]) if config.inner_validation > 0 else None
        member_logits, seconds = [], 0.0
        for member in range(members_per_fold):
            fitted = fit(
                x[fit_idx],
                y[fit_idx],
                len(classes),
                replace(config, seed=config.seed + member),
                (x[stop_idx], y[stop_idx]),
                work_dir / f"fold{index + 1}" / f"member{member + 1}",
                watched=watched,
            )
            member_logits.append(predict_logits(fitted.model, x[val_idx], config.tta_flip))
            seconds += fitted.seconds
            if watched is not None:
                fitted.notes["epoch_choice"] = choice = epoch_choice(fitted.history, config)
                log.info(
                    "kept epoch %d scores %.3f; chosen on the scored fold: epoch %d, %.3f",
                    choice["epoch_kept"],
                    choice["scored_accuracy_kept"],
                    choice["epoch_if_chosen_on_scored"],
                    choice["scored_accuracy_if_chosen_on_scored"],
                )
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


def stopping_split(
    train_idx: np.ndarray,
    val_idx: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    config: TrainConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """(images to fit on, images to stop on) for one fold: with `config.inner_validation`, a
    grouped stratified part of the fold's training images is set aside to stop on, so the
    scored fold decides nothing; without, the scored fold itself (`val_idx`) is stopped on."""
    if config.inner_validation <= 0:
        return train_idx, val_idx
    parts = max(2, round(1 / config.inner_validation))
    fit_part, stop_part = grouped_folds(y[train_idx], groups[train_idx], parts, config.seed)[0]
    return train_idx[fit_part], train_idx[stop_part]


def epoch_choice(history: dict[str, list[float]], config: TrainConfig) -> dict[str, float]:
    """The scored fold's accuracy at the epoch kept (chosen on the stopping images) and at the
    epoch it would have been kept had the scored fold been stopped on: their difference is the
    optimism of stopping on the images that are scored (no mirror averaging, one member)."""
    start = stopping_starts(config)
    kept = best_epoch(history, start)
    self_chosen = best_epoch(history, start, key="scored_loss")
    accuracy = history["scored_accuracy"]
    return {
        "epoch_kept": kept,
        "epoch_if_chosen_on_scored": self_chosen,
        "scored_accuracy_kept": accuracy[kept - 1],
        "scored_accuracy_if_chosen_on_scored": accuracy[self_chosen - 1],
    }

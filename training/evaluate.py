"""Metrics from predicted probabilities: accuracy, per-class scores, ROC AUC, calibration."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
    roc_auc_score,
)


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """ECE with equal-width confidence bins (top-class confidence)."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    total = 0.0
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence > low) & (confidence <= high)
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of `y` (bounded to [0.05, 20])."""

    def nll(temperature: float) -> float:
        return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(y)), y].mean())

    result = minimize_scalar(nll, bounds=(0.05, 20.0), method="bounded")
    return float(result.x)


def classification_metrics(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro F1, per-class precision / recall / F1, confusion matrix, AUC, ECE."""
    predicted = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y, predicted, labels=labels, zero_division=0
    )
    return {
        "accuracy": float(accuracy_score(y, predicted)),
        "macro_f1": float(f1_score(y, predicted, average="macro", labels=labels, zero_division=0)),
        "per_class": {
            c: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, c in enumerate(classes)
        },
        "confusion_matrix": confusion_matrix(y, predicted, labels=labels).tolist(),
        "roc_auc": roc_auc(y, probs, classes),
        "ece": expected_calibration_error(y, probs),
        "n": len(y),
    }


def roc_auc(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, float | None]:
    """One-vs-rest AUC per class (None when a class is absent)."""
    scores: dict[str, float | None] = {}
    for i, name in enumerate(classes):
        positives = y == i
        scores[name] = (
            float(roc_auc_score(positives, probs[:, i])) if 0 < positives.sum() < len(y) else None
        )
    return scores


def fold_summary(per_fold: list[dict[str, Any]], classes: list[str]) -> dict[str, Any]:
    """Mean and standard deviation across folds of accuracy, macro F1 and per-class recall."""

    def spread(values: list[float]) -> dict[str, float]:
        return {
            "mean": float(np.mean(values)),
            "std": float(np.std(values)),
            "min": float(np.min(values)),
            "max": float(np.max(values)),
        }

    return {
        "folds": len(per_fold),
        "accuracy": spread([f["accuracy"] for f in per_fold]),
        "macro_f1": spread([f["macro_f1"] for f in per_fold]),
        "recall": {c: spread([f["per_class"][c]["recall"] for f in per_fold]) for c in classes},
    }


def calibrate(logits: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Temperature fitted on out-of-fold logits, with ECE before and after."""
    temperature = fit_temperature(logits, y)
    return {
        "temperature": temperature,
        "ece_before": expected_calibration_error(y, softmax(logits, axis=1)),
        "ece_after": expected_calibration_error(y, softmax(logits / temperature, axis=1)),
    }

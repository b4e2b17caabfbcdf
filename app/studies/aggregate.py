"""Study-level answers from slice-level ones, by the rule the model card declares. Only slices
the model can judge count. The datasets are slice-level: no rule here is validated on study
labels, and the answer says so."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

NOT_VALIDATED = (
    "The study-level rule is not validated on study labels: the models were trained and judged "
    "on single slices."
)


class StudyRule(BaseModel):
    """The card's `study` section.

    - `smoothed_max` (a finding anywhere makes the study positive, e.g. hemorrhage): the
      `finding` class's probability, averaged over `window` neighbouring judgeable slices to damp
      single-slice noise, and its maximum along the series.
    - `abnormal_max` (multi-class with a `normal` class, e.g. cancer subtypes): the study is
      abnormal as strongly as its most abnormal stretch of slices (smoothed 1 - P(normal)); the
      abnormal classes share that probability as they do, on average, on the key slices.
    - `mean` (images that each show the whole question, e.g. one radiograph): the mean."""

    model_config = ConfigDict(extra="forbid")

    rule: Literal["smoothed_max", "abnormal_max", "mean"] = "mean"
    finding: str | None = None  # smoothed_max: the positive class
    normal: str | None = None  # abnormal_max: the normal class
    window: int = 3
    key_slices: int = 3


def aggregate(rule: StudyRule, classes: list[str], probabilities: np.ndarray) -> dict[str, Any]:
    """(S, classes) probabilities of the judgeable slices, in slice order → the study answer
    (`key_slices` index into those S rows)."""
    if rule.rule == "smoothed_max":
        study, evidence = _smoothed_max(rule, classes, probabilities)
    elif rule.rule == "abnormal_max":
        study, evidence = _abnormal_max(rule, classes, probabilities)
    else:
        study = probabilities.mean(axis=0)
        evidence = probabilities.max(axis=1)
    keys = np.argsort(-evidence, kind="stable")[: rule.key_slices]
    return {
        "label": classes[int(np.argmax(study))],
        "probabilities": {c: float(p) for c, p in zip(classes, study, strict=True)},
        "key_slices": sorted(int(k) for k in keys),
    }


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Moving average along the slices (the window shrinks at the ends)."""
    if window <= 1 or len(values) < 2:
        return values
    kernel = np.ones(window)
    sums = np.convolve(values, kernel, mode="same")
    counts = np.convolve(np.ones_like(values), kernel, mode="same")
    return np.asarray(sums / counts)


def _smoothed_max(
    rule: StudyRule, classes: list[str], probabilities: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    finding = classes.index(rule.finding or classes[0])
    evidence = smooth(probabilities[:, finding], rule.window)
    positive = float(evidence.max())
    study = np.zeros(len(classes))
    study[finding] = positive
    others = [i for i in range(len(classes)) if i != finding]
    shares = probabilities[:, others].mean(axis=0)
    study[others] = (1 - positive) * shares / max(float(shares.sum()), 1e-12)
    return study, evidence


def _abnormal_max(
    rule: StudyRule, classes: list[str], probabilities: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    normal = classes.index(rule.normal or "normal")
    evidence = smooth(1 - probabilities[:, normal], rule.window)
    abnormal = float(evidence.max())
    keys = np.argsort(-evidence, kind="stable")[: rule.key_slices]
    others = [i for i in range(len(classes)) if i != normal]
    shares = probabilities[keys][:, others].mean(axis=0)
    study = np.zeros(len(classes))
    study[normal] = 1 - abnormal
    study[others] = abnormal * shares / max(float(shares.sum()), 1e-12)
    return study, evidence

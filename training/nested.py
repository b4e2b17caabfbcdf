"""The honest estimate of a shipped recipe, written into its card.

A shipped card's cross-validation comes from folds that chose their epoch (early stopping, the
kept checkpoint) on the very images they were scored on. Run the same recipe again with
`ctscan train --inner-validation F` and each fold stops on part of its own training images
instead, so the scored fold decides nothing. That run's cross-validation estimates accuracy on
new images from the same sources, leaning low for the shipped members (they fit on more images);
this module copies it into the shipped card as
`evaluation.nested_cross_validation` (so `/v1/models` shows it beside the optimistic figure) and
into the card's report.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from app.inference.card import read_card
from training.compare import NotComparable, write_evaluation

SECTION = "nested-cross-validation"  # the report's marked section this module owns
MEANING = (
    "the shipped recipe trained again with each fold stopping on a grouped, stratified part of "
    "its own training images, so the scored fold decides nothing: an estimate for new images from "
    "the same sources that leans low for the shipped members, which fit on more images"
)


def nested_estimate(run: Path, shipped: Path) -> dict[str, Any]:
    """The cross-validation of `run` (an exported model folder trained with an inner
    validation split) as the estimate for the shipped model in `shipped`."""
    card, target = read_card(run / "metadata.json"), read_card(shipped / "metadata.json")
    if (card.name, card.classes) != (target.name, target.classes):
        raise NotComparable(f"{run} is a {card.name} model, not a {target.name} one")
    fraction = float(card.training.get("config", {}).get("inner_validation", 0.0))
    if fraction <= 0:
        raise NotComparable(
            f"{run} was trained without --inner-validation: its folds chose their epoch on the "
            "images they were scored on, which is what this estimate must not do"
        )
    cv = card.evaluation.get("cross_validation")
    if not cv:
        raise NotComparable(f"{run}: the card has no cross-validation")
    metrics = _metrics(run)
    calibration = card.evaluation.get("calibration", {})
    return {
        "run": str(run),
        "trained": card.created,
        "meaning": MEANING,
        "inner_validation": fraction,
        "folds_run": cv["folds"],
        "folds_planned": card.training.get("folds", cv["folds"]),
        "accuracy": _stat(cv["accuracy"]),
        "accuracy_per_fold": [round(fold["accuracy"], 4) for fold in metrics.get("per_fold", [])],
        "macro_f1": _stat(cv["macro_f1"]),
        "recall": {name: round(stat["mean"], 4) for name, stat in cv["recall"].items()},
        "ece_before": _rounded(calibration.get("ece_before")),
        "ece_after": _rounded(calibration.get("ece_after")),
        "epoch_choice_optimism": epoch_choice_optimism(metrics),
        "train_seconds": round(card.evaluation.get("seconds", {}).get("total", 0.0), 1),
    }


def epoch_choice_optimism(metrics: dict[str, Any]) -> float | None:
    """Mean over the run's members of the scored fold's accuracy at the epoch it would have
    chosen itself minus at the epoch kept (`stage_notes[].epoch_choice`); None without notes."""
    gains = [
        note["epoch_choice"]["scored_accuracy_if_chosen_on_scored"]
        - note["epoch_choice"]["scored_accuracy_kept"]
        for note in metrics.get("stage_notes", [])
        if "epoch_choice" in note
    ]
    return round(statistics.fmean(gains), 4) if gains else None


def write_nested(shipped: Path, estimate: dict[str, Any]) -> None:
    """Put the estimate into the shipped card and its report (replacing an earlier one)."""
    write_evaluation(
        shipped, "nested_cross_validation", estimate, nested_markdown(estimate), SECTION
    )


def nested_markdown(estimate: dict[str, Any]) -> str:
    """The estimate as a markdown section."""
    accuracy, f1 = estimate["accuracy"], estimate["macro_f1"]
    folds = ", ".join(f"{value:.3f}" for value in estimate["accuracy_per_fold"])
    recall = ", ".join(f"{name} {value:.2f}" for name, value in estimate["recall"].items())
    lines = [
        "## Nested cross-validation (the honest estimate)",
        "",
        f"Accuracy **{accuracy['mean']:.3f} ± {accuracy['std']:.3f}** over "
        f"{estimate['folds_run']} of {estimate['folds_planned']} folds ({folds}); macro F1 "
        f"{f1['mean']:.3f} ± {f1['std']:.3f}; recall {recall}.",
        "",
        f"The shipped recipe trained again with each fold stopping on "
        f"{estimate['inner_validation']:.0%} of its own training images (grouped, stratified), "
        "so the scored fold decides nothing. Each member fit on "
        f"{_fit_share(estimate):.0%} of the images; the shipped members fit on more (each stops "
        "on the fold it leaves out), so for them this estimate leans low.",
    ]
    if estimate["ece_after"] is not None:
        lines.append(
            f"Calibration on its out-of-fold logits: ECE {estimate['ece_before']:.3f} before "
            f"the temperature, {estimate['ece_after']:.3f} after."
        )
    if estimate["epoch_choice_optimism"] is not None:
        lines.append(
            "Choosing each member's epoch on its scored fold instead would have added "
            f"{estimate['epoch_choice_optimism']:+.3f} to that fold's accuracy (mean over "
            "members, measured epoch by epoch in the same run)."
        )
    lines.append(f"Run folder (not shipped): `{estimate['run']}`, trained {estimate['trained']}.")
    return "\n".join(lines) + "\n"


def _fit_share(estimate: dict[str, Any]) -> float:
    """The share of all images each nested member fits on."""
    folds = int(estimate["folds_planned"])
    return (folds - 1) / folds * (1 - float(estimate["inner_validation"]))


def _metrics(run: Path) -> dict[str, Any]:
    path = run / "report" / "metrics.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _stat(stat: dict[str, float]) -> dict[str, float]:
    return {key: round(stat[key], 4) for key in ("mean", "std", "min", "max") if key in stat}


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 4)

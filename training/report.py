"""The evaluation report: PNG plots, metrics.json and report.md in `<version>/report/`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from training import plots


def write_report(
    folder: Path,
    name: str,
    classes: list[str],
    x: np.ndarray,
    y: np.ndarray,
    probs_before: np.ndarray,
    probs_after: np.ndarray,
    histories: list[dict[str, list[float]]],
    metrics: dict[str, Any],
) -> None:
    """Write every figure and the two text summaries for out-of-fold predictions."""
    folder.mkdir(parents=True, exist_ok=True)
    oof = metrics.get("out_of_fold")
    figures = {}
    if oof:
        figures["confusion_matrix"] = plots.confusion(
            oof["confusion_matrix"], classes, folder / "confusion_matrix.png"
        )
        figures["roc"] = plots.roc_curves(y, probs_after, classes, folder / "roc.png")
        figures["reliability"] = plots.reliability(
            y, probs_before, probs_after, folder / "reliability.png"
        )
        figures["samples"] = plots.sample_grid(
            x, y, probs_after, classes, folder / "sample_predictions.png"
        )
    if histories:
        folds_run = len(metrics.get("per_fold", [])) or len(histories)
        figures["learning_curves"] = plots.learning_curves(
            histories, folder / "learning_curves.png", len(histories) // folds_run
        )
    metrics["figures"] = figures
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (folder / "report.md").write_text(markdown(name, classes, metrics))


def markdown(name: str, classes: list[str], metrics: dict[str, Any]) -> str:
    """A short human summary of the metrics."""
    lines = [f"# {name}: evaluation report", "", "Research use, not for diagnosis.", ""]
    data = metrics.get("data", {})
    lines += [
        f"Data: {data.get('kept')} images kept of {data.get('files')} files; "
        f"{len(data.get('duplicates', []))} duplicate groups merged, "
        f"{len(data.get('conflicts', []))} label conflicts dropped. "
        f"Counts: {data.get('counts')}.",
        "",
    ]
    cv = metrics.get("cross_validation")
    if cv:
        lines += [
            f"## Cross-validation ({cv['folds']} folds, grouped and stratified)",
            "",
            "| metric | mean | std | min | max |",
            "|---|---|---|---|---|",
        ]
        rows = [("accuracy", cv["accuracy"]), ("macro F1", cv["macro_f1"])]
        rows += [(f"recall {c}", cv["recall"][c]) for c in classes]
        lines += [
            f"| {label} | {v['mean']:.3f} | {v['std']:.3f} | {v['min']:.3f} | {v['max']:.3f} |"
            for label, v in rows
        ]
        lines.append("")
    calibration = metrics.get("calibration")
    if calibration:
        lines += [
            f"Calibration: temperature {calibration['temperature']:.3f}; out-of-fold ECE "
            f"{calibration['ece_before']:.3f} before, {calibration['ece_after']:.3f} after.",
            "",
        ]
    if metrics.get("notes"):
        lines += ["## Notes", "", *[f"- {note}" for note in metrics["notes"]], ""]
    for label, file in metrics.get("figures", {}).items():
        lines.append(f"![{label}]({file})")
    return "\n".join(lines) + "\n"

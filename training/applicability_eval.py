"""Judge a fitted applicability check and install it into a shipped model folder: the graph
with its `features` output, the statistics file, the card's `applicability` section and the
evaluation in card and report."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from app.imaging.decode import decode_image
from app.inference.applicability import ApplicabilityStats
from training import outside_sets
from training.applicability import (
    FeatureRun,
    FittedCheck,
    auroc,
    cross_validated_acceptance,
    inputs_of,
)
from training.compare import write_evaluation
from training.feature_output import BLOCKS
from training.robustness import RebuiltFolds, fold_predictions, member_logits_session
from training.tasks import TASKS

STATS_FILE = "applicability.npz"


def outside_scores(
    run: FeatureRun, stats: ApplicabilityStats, folds: RebuiltFolds, others: list[Path]
) -> dict[str, np.ndarray]:
    """The served score of every image of every outside set (other datasets by folder name)."""
    sets = outside_sets.synthetic_sets()
    own = [decode_image(s.path.read_bytes()).pixels for s in folds.samples]
    sets["wrong_window"] = outside_sets.wrong_window(own)
    for folder in others:
        sets[folder.name] = list(outside_sets.dataset_images(folder))
    scores = {}
    for name, pixels in sets.items():
        _, features = run.features(inputs_of(pixels, folds.spec))
        scores[name] = stats.score(features)
    return scores


def evaluation(
    check: FittedCheck,
    threshold: float,
    quantile: float,
    outside: dict[str, np.ndarray],
    correct: np.ndarray,
) -> dict[str, Any]:
    """In-domain acceptance (cross-validated), rejection and AUROC per outside set, and the
    accuracy on the in-domain images accepted (`correct`: out-of-fold prediction right)."""
    inside = check.oof_scores
    accepted = inside <= threshold
    per_fold = cross_validated_acceptance(check, quantile)
    pooled = np.concatenate(list(outside.values()))
    return {
        "measured": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "in_domain": {
            "images": len(inside),
            "accepted_cross_validated": {"mean": float(np.mean(per_fold)), "per_fold": per_fold},
            "accepted_in_sample": float(accepted.mean()),
            "accuracy_all": float(correct.mean()),
            "accuracy_accepted": float(correct[accepted].mean()),
        },
        "outside": {
            name: {
                "images": len(scores),
                "rejected": float((scores > threshold).mean()),
                "auroc": round(auroc(inside, scores), 4),
            }
            for name, scores in outside.items()
        },
        "auroc_pooled": round(auroc(inside, pooled), 4),
    }


def oof_correct(model_path: Path, folds: RebuiltFolds) -> np.ndarray:
    """Whether each image's out-of-fold class (its fold's members) is right."""
    session, members = member_logits_session(model_path)
    predicted = fold_predictions(
        session, folds.spec.name, folds.x, folds.splits, folds.per_fold(members)
    )
    return np.asarray(predicted == folds.y)


def install(
    model_dir: Path,
    tapped: onnx.ModelProto,
    check: FittedCheck,
    threshold: float,
    quantile: float,
    report: dict[str, Any],
) -> None:
    """Write the tapped graph, the statistics and the card section into `model_dir`."""
    stats_bytes = check.stats.to_bytes()
    (model_dir / STATS_FILE).write_bytes(stats_bytes)
    graph_bytes = tapped.SerializeToString()
    (model_dir / "model.onnx").write_bytes(graph_bytes)
    card_path = model_dir / "metadata.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["sha256"] = hashlib.sha256(graph_bytes).hexdigest()
    card["applicability"] = card_section(card, check, threshold, quantile, stats_bytes)
    card["changelog"].append(
        f"{report['measured']}: applicability check added by `ctscan applicability` (graph "
        "output `features`, same probabilities; statistics in applicability.npz)"
    )
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    write_evaluation(model_dir, "applicability", report, markdown(report), "applicability")


def card_section(
    card: dict[str, Any], check: FittedCheck, threshold: float, quantile: float, stats: bytes
) -> dict[str, Any]:
    """The card's `applicability` section (validated by app.inference.applicability)."""
    preset = TASKS.get(card["name"])
    return {
        "method": "mahalanobis",
        "file": STATS_FILE,
        "sha256": hashlib.sha256(stats).hexdigest(),
        "feature_output": "features",
        "threshold": float(threshold),
        "modalities": list(preset.modalities) if preset else [],
        "body_parts": list(preset.body_parts) if preset else [],
        "threshold_rule": (
            f"the {quantile:g} quantile of the out-of-fold scores of the {len(check.oof_scores)} "
            "training images (each scored only by the members that never saw it)"
        ),
        "features": (
            f"channel means and standard deviations of {', '.join(BLOCKS)} of each of the "
            f"{check.stats.layers[0].members} members; per block the smallest "
            "class-conditional Mahalanobis distance (shared Ledoit-Wolf covariance) divided by "
            "the member's held-out median; the score is the largest over layers of these "
            "ratios averaged over members"
        ),
    }


def markdown(report: dict[str, Any]) -> str:
    """The evaluation as the report's section."""
    inside = report["in_domain"]
    lines = [
        "## Applicability (when the model should not answer)",
        "",
        f"In domain ({inside['images']} images, out of fold): "
        f"{inside['accepted_cross_validated']['mean']:.1%} accepted (threshold chosen on the "
        f"other folds); accuracy {inside['accuracy_accepted']:.3f} on the accepted images, "
        f"{inside['accuracy_all']:.3f} on all. AUROC against every outside image: "
        f"{report['auroc_pooled']:.4f}.",
        "",
        "| outside set | images | rejected | AUROC |",
        "|---|---|---|---|",
    ]
    for name, row in report["outside"].items():
        lines.append(f"| {name} | {row['images']} | {row['rejected']:.1%} | {row['auroc']:.4f} |")
    return "\n".join(lines) + "\n"

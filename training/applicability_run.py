"""`ctscan applicability`: fit, judge and install the check of one shipped model version."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import onnx

from training.applicability import FeatureRun, feature_run, fit_check
from training.applicability_eval import evaluation, install, markdown, oof_correct, outside_scores
from training.feature_output import FEATURES
from training.robustness import rebuild_folds
from training.tasks import TASKS

log = logging.getLogger(__name__)


def run_applicability(model_dir: Path, datasets: Path, quantile: float, cache: Path) -> str:
    """Fit the check on the model's own dataset, judge it on the outside sets, install it;
    return the report's markdown section."""
    card = json.loads((model_dir / "metadata.json").read_text(encoding="utf-8"))
    own = datasets / card["training"]["dataset"]
    others = [datasets / t.dataset for t in TASKS.values() if t.dataset and t.dataset != own.name]
    model = onnx.load(str(model_dir / "model.onnx"))
    if FEATURES in {o.name for o in model.graph.output}:
        raise ValueError(f"{model_dir} already has an applicability check")
    folds = rebuild_folds(model_dir, own, cache)
    run = feature_run(model, folds.spec, card["output"]["name"])
    probabilities, features = run.features(folds.x)
    check = fit_check(folds, features, run.layers)
    threshold = float(np.quantile(check.oof_scores, quantile))
    log.info("threshold %.3f; scoring the outside sets", threshold)
    outside = outside_scores(run, check.stats, folds, [d for d in others if d.is_dir()])
    correct = oof_correct(model_dir / "model.onnx", folds)
    report = evaluation(check, threshold, quantile, outside, correct)
    check_same_probabilities(model, folds.x[:64], probabilities[:64], run)
    install(model_dir, run.graph, check, threshold, quantile, report)
    return markdown(report)


def check_same_probabilities(
    original: onnx.ModelProto, x: np.ndarray, tapped: np.ndarray, run: FeatureRun
) -> None:
    """The tapped graph must give the probabilities the original gives."""
    import onnxruntime as ort

    session = ort.InferenceSession(original.SerializeToString(), providers=["CPUExecutionProvider"])
    (before,) = session.run([run.output_name], {run.input_name: x})
    difference = float(np.abs(tapped - before).max())
    log.info("probabilities changed by at most %.2g", difference)
    if difference > 1e-6:
        raise ValueError(f"the tapped graph changed probabilities by {difference:.3g}")

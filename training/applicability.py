"""Fit and judge a shipped model's applicability check (`ctscan applicability`).

Member k of the ensemble never saw its fold's images, so its statistics are fitted on the other
folds' features and its held-out fold gives honest in-domain distances. The threshold is a
quantile of these out-of-fold scores; the acceptance it gives is itself cross-validated (each
fold judged by a threshold chosen on the other folds)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from app.imaging.preprocess import InputSpec, to_model_input
from app.inference.applicability import (
    ApplicabilityStats,
    LayerStats,
    LowerTriangular,
    largest_layer_mean,
)
from training.feature_output import FEATURES, PIECES, TappedLayer, add_features_output
from training.robustness import RebuiltFolds

log = logging.getLogger(__name__)
BATCH = 32


@dataclass(frozen=True)
class FeatureRun:
    """A model graph with its `features` output, ready to run."""

    session: ort.InferenceSession
    input_name: str
    output_name: str
    layers: list[TappedLayer]
    graph: onnx.ModelProto  # the tapped graph, as it will be installed

    def features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, features) of (N, H, W, C) inputs, run in batches."""
        probabilities, features = [], []
        for start in range(0, len(x), BATCH):
            p, f = self.session.run(
                [self.output_name, FEATURES], {self.input_name: x[start : start + BATCH]}
            )
            probabilities.append(p)
            features.append(f)
        return np.concatenate(probabilities), np.concatenate(features).astype(np.float64)


def feature_run(model: onnx.ModelProto, spec: InputSpec, output: str) -> FeatureRun:
    """A CPU session of `model` given the `features` output."""
    tapped, layers = add_features_output(model)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(
        tapped.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    return FeatureRun(session, spec.name, output, layers, tapped)


def fit_member(vectors: np.ndarray, labels: np.ndarray, classes: int) -> tuple[Any, Any]:
    """Whitened class means (K, D) and the whitening W (precision = W Wᵀ) of the shared
    class-centred covariance, shrunk (Ledoit-Wolf: a member sees fewer images than its width)."""
    from sklearn.covariance import LedoitWolf

    means = np.stack([vectors[labels == c].mean(axis=0) for c in range(classes)])
    precision = LedoitWolf(assume_centered=True).fit(vectors - means[labels]).precision_
    whiten = np.linalg.cholesky(precision)
    return (means @ whiten).astype(np.float32), whiten.astype(np.float32)


@dataclass(frozen=True)
class FittedCheck:
    """The statistics to ship and the in-domain out-of-fold scores they give."""

    stats: ApplicabilityStats
    oof_scores: np.ndarray  # (N,) each image scored by the members that never saw it
    fold_of: np.ndarray


def fit_check(folds: RebuiltFolds, features: np.ndarray, layers: list[TappedLayer]) -> FittedCheck:
    """Fit every member's statistics, layer by layer, on the folds it was trained on; score each
    image by the members that held it out."""
    per_fold = folds.per_fold(len(layers[0].tensors))
    edges = np.cumsum([0] + [layer.width for layer in layers])
    fold_of = np.full(len(features), -1)
    for fold, (_, held_idx) in enumerate(folds.splits):
        fold_of[held_idx] = fold
    fitted, held_ratios = [], []
    for index, layer in enumerate(layers):
        part = features[:, edges[index] : edges[index + 1]]
        stats, ratios = fit_layer(folds, part, len(layer.tensors), per_fold)
        fitted.append(stats)
        held_ratios.append(ratios)
    return FittedCheck(ApplicabilityStats(fitted), largest_layer_mean(held_ratios), fold_of)


def fit_layer(
    folds: RebuiltFolds, part: np.ndarray, members: int, per_fold: int
) -> tuple[LayerStats, np.ndarray]:
    """One layer's statistics, and (N, per_fold) ratios of each image by its fold's members."""
    classes = len(folds.card["classes"])
    width = part.shape[1] // members
    shell = LayerStats(
        np.zeros((members, classes, width)),
        LowerTriangular.from_dense(np.zeros((members, 1, 1))),
        np.ones(members),
        PIECES,
    )
    vectors = shell.member_vectors(part)  # (members, N, D)
    means, whitens, scales = [], [], []
    ratios = np.zeros((len(part), per_fold))
    for member in range(members):
        train_idx, held_idx = folds.splits[member // per_fold]
        mean, whiten = fit_member(vectors[member][train_idx], folds.y[train_idx], classes)
        one = LayerStats(mean[None], LowerTriangular.from_dense(whiten[None]), np.ones(1), 1)
        held = one.ratios(vectors[member][held_idx])[:, 0]
        scales.append(float(np.median(held)))
        ratios[held_idx, member % per_fold] = held / scales[-1]
        means.append(mean)
        whitens.append(whiten)
    whiten = LowerTriangular.from_dense(np.stack(whitens))
    layer = LayerStats(np.stack(means), whiten, np.array(scales), PIECES)
    return layer, ratios


def cross_validated_acceptance(check: FittedCheck, quantile: float) -> list[float]:
    """Per fold: the share of its images accepted by a threshold set on the other folds."""
    shares = []
    for fold in np.unique(check.fold_of):
        mine = check.fold_of == fold
        threshold = np.quantile(check.oof_scores[~mine], quantile)
        shares.append(float((check.oof_scores[mine] <= threshold).mean()))
    return shares


def auroc(inside: np.ndarray, outside: np.ndarray) -> float:
    """The chance that an outside image scores higher than an in-domain one (ties count half)."""
    from sklearn.metrics import roc_auc_score

    labels = np.r_[np.zeros(len(inside)), np.ones(len(outside))]
    return float(roc_auc_score(labels, np.r_[inside, outside]))


def inputs_of(pixels: list[np.ndarray], spec: InputSpec) -> np.ndarray:
    """Grey pixel arrays → the model's inputs, through the service's preprocessing."""
    return np.stack([to_model_input(p, spec) for p in pixels])

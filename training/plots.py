"""Report figures: confusion matrix, ROC curves, reliability diagram, learning curves, samples."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve


def _save(fig: Figure, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def confusion(matrix: list[list[int]], classes: list[str], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(1.4 * len(classes) + 2, 1.2 * len(classes) + 1.5))
    values = np.asarray(matrix)
    ax.imshow(values, cmap="Blues")
    for (i, j), count in np.ndenumerate(values):
        ax.text(
            j,
            i,
            str(count),
            ha="center",
            va="center",
            color="white" if count > values.max() / 2 else "black",
        )
    ax.set(
        xticks=range(len(classes)),
        yticks=range(len(classes)),
        xlabel="predicted",
        ylabel="true",
        title="Out-of-fold confusion matrix",
    )
    ax.set_xticklabels(classes, rotation=30, ha="right")
    ax.set_yticklabels(classes)
    return _save(fig, path)


def roc_curves(y: np.ndarray, probs: np.ndarray, classes: list[str], path: Path) -> str:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    for i, name in enumerate(classes):
        if 0 < (y == i).sum() < len(y):
            fpr, tpr, _ = roc_curve(y == i, probs[:, i])
            ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, one vs rest")
    ax.legend(fontsize=8)
    return _save(fig, path)


def reliability(
    y: np.ndarray, before: np.ndarray, after: np.ndarray, path: Path, bins: int = 10
) -> str:
    fig, ax = plt.subplots(figsize=(5, 4.5))
    edges = np.linspace(0, 1, bins + 1)
    for probs, label in ((before, "before temperature"), (after, "after temperature")):
        confidence, correct = probs.max(axis=1), probs.argmax(axis=1) == y
        index = np.clip(np.digitize(confidence, edges) - 1, 0, bins - 1)
        points = [
            (confidence[index == b].mean(), correct[index == b].mean())
            for b in range(bins)
            if (index == b).any()
        ]
        ax.plot(*zip(*points, strict=True), "o-", label=label)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set(xlabel="confidence", ylabel="accuracy", title="Reliability (out of fold)")
    ax.legend(fontsize=8)
    return _save(fig, path)


def learning_curves(
    histories: list[dict[str, list[float]]], path: Path, members_per_fold: int = 1
) -> str:
    """Loss and accuracy per epoch; the members of one fold share its colour."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for index, history in enumerate(histories):
        fold, member = divmod(index, members_per_fold)
        label = f"fold {fold + 1} train" if member == 0 else None
        for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
            ax.plot(history[key], color=f"C{fold}", lw=1, label=label)
            if f"val_{key}" in history:
                ax.plot(history[f"val_{key}"], color=f"C{fold}", lw=1, ls="--")
    for ax, key in zip(axes, ("loss", "accuracy"), strict=True):
        ax.set(xlabel="epoch", ylabel=key, title=f"{key} (solid train, dashed validation)")
    axes[0].legend(fontsize=7)
    return _save(fig, path)


def sample_grid(
    images: np.ndarray,
    y: np.ndarray,
    probs: np.ndarray,
    classes: list[str],
    path: Path,
    count: int = 16,
) -> str:
    rng = np.random.default_rng(0)
    chosen = rng.choice(len(images), size=min(count, len(images)), replace=False)
    cols = 4
    rows = int(np.ceil(len(chosen) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows))
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, i in zip(np.ravel(axes), chosen, strict=False):
        guess = int(probs[i].argmax())
        ax.imshow(images[i, :, :, 0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(
            f"true {classes[y[i]]}\npred {classes[guess]} {probs[i, guess]:.2f}",
            fontsize=7,
            color="green" if guess == y[i] else "red",
        )
    return _save(fig, path)

"""Whether a model can judge an input: how far its features lie from its training images'.

The graph output `features` holds, for several layers of every ensemble member, the channel
means and standard deviations. Per layer and member, they are compared with the class means of
the images that member was trained on: the smallest class-conditional Mahalanobis distance
(shared, shrunk covariance; Lee et al. 2018, with features from several layers), divided by the
median distance of that member's held-out images. The score averages these ratios over members,
layer by layer, and takes the largest layer: near 1 for an image like the training ones, far
above for an image of another kind. The card names the file, its
checksum and the threshold chosen on data."""

from __future__ import annotations

import io
import itertools
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from app.errors import ModelLoadError

IN_DOMAIN = "in_domain"
OUTSIDE = "outside"
NOT_ASSESSED = "not_assessed"
Verdict = Literal["in_domain", "outside", "not_assessed"]


class ApplicabilitySpec(BaseModel):
    """The card's `applicability` section: what the score needs and how its threshold was set."""

    model_config = ConfigDict(extra="allow")

    method: Literal["mahalanobis"] = "mahalanobis"
    file: str = Field("applicability.npz", pattern=r"^[A-Za-z0-9_.-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    feature_output: str = "features"
    threshold: float = Field(gt=0)
    modalities: list[str] = Field(default_factory=list, description="DICOM Modality accepted")
    body_parts: list[str] = Field(
        default_factory=list, description="DICOM BodyPartExamined accepted, where present"
    )
    threshold_rule: str = ""


@dataclass(frozen=True)
class LowerTriangular:
    """One lower-triangular (D, D) matrix per member, kept without most of the zeros above the
    diagonal: split into column blocks, block j holds its columns from row `starts[j]` (its
    first column) down. At 8 blocks that is 56 % of the dense size (the shipped models' whitening
    matrices: 13 MB instead of 23), and x @ L reads only that."""

    blocks: tuple[np.ndarray, ...]  # (members, D - start, block width)
    starts: tuple[int, ...]

    @classmethod
    def from_dense(cls, dense: np.ndarray, count: int = 8) -> LowerTriangular:
        """Pack (members, D, D) lower-triangular matrices; ValueError if one is not."""
        if np.any(np.triu(dense, 1)):
            raise ValueError("the whitening matrices are not lower-triangular")
        size = dense.shape[-1]
        edges = [round(i * size / count) for i in range(count + 1)]
        starts = tuple(a for a, b in itertools.pairwise(edges) if b > a)
        ends = [*starts[1:], size]
        blocks = tuple(
            np.ascontiguousarray(dense[:, a:, a:b], dtype=np.float32)
            for a, b in zip(starts, ends, strict=True)
        )
        return cls(blocks, starts)

    @property
    def shape(self) -> tuple[int, int, int]:
        members, size = self.blocks[0].shape[:2]
        return members, size, size

    def times(self, vectors: np.ndarray) -> np.ndarray:
        """(members, N, D) vectors @ each member's matrix."""
        parts = [
            np.matmul(vectors[:, :, start:], block)
            for start, block in zip(self.starts, self.blocks, strict=True)
        ]
        return np.concatenate(parts, axis=2)

    def dense(self) -> np.ndarray:
        members, size, _ = self.shape
        full = np.zeros((members, size, size), np.float32)
        for start, block in zip(self.starts, self.blocks, strict=True):
            full[:, start:, start : start + block.shape[2]] = block
        return full


@dataclass(frozen=True)
class LayerStats:
    """One pooled layer of every member. Its slice of `features` is `pieces` runs (channel
    means, then channel standard deviations), each holding every member's C values in member
    order; a member's vector is its C values of each piece (D = pieces x C). Per member: the
    class means and the whitening W (precision = W Wᵀ) of the shared class-centred covariance,
    the means already whitened, and the median distance of its held-out images."""

    means: np.ndarray  # (members, classes, D), whitened
    whiten: LowerTriangular  # (members, D, D)
    scales: np.ndarray  # (members,)
    pieces: int = 1

    @property
    def members(self) -> int:
        return int(self.means.shape[0])

    @property
    def width(self) -> int:
        return int(self.members * self.means.shape[2])

    def member_vectors(self, part: np.ndarray) -> np.ndarray:
        """(N, width) slice of `features` → (members, N, D)."""
        runs = np.split(part, self.pieces, axis=1)
        stacked = [run.reshape(len(part), self.members, -1) for run in runs]
        return np.concatenate(stacked, axis=2).transpose(1, 0, 2)

    def ratios(self, part: np.ndarray) -> np.ndarray:
        """(N, members): smallest squared Mahalanobis distance to a class mean / the median."""
        whitened = self.whiten.times(self.member_vectors(part.astype(np.float32)))
        gaps = whitened[:, :, None, :] - self.means[:, None, :, :]  # (M, N, K, D)
        squared = np.einsum("mnkd,mnkd->mnk", gaps, gaps).min(axis=2)
        return np.asarray(squared.T / self.scales, dtype=np.float64)


@dataclass(frozen=True)
class ApplicabilityStats:
    """The statistics of every tapped layer, in the order of the `features` output."""

    layers: list[LayerStats]

    @property
    def width(self) -> int:
        return sum(layer.width for layer in self.layers)

    def layer_ratios(self, features: np.ndarray) -> list[np.ndarray]:
        """Per layer, (N, members) distance ratios."""
        if features.shape[1] != self.width:
            raise ValueError(f"features of width {features.shape[1]}, expected {self.width}")
        edges = np.cumsum([0] + [layer.width for layer in self.layers])
        return [
            layer.ratios(features[:, edges[i] : edges[i + 1]])
            for i, layer in enumerate(self.layers)
        ]

    def score(self, features: np.ndarray) -> np.ndarray:
        """(N,) applicability score: of the layers, the largest mean over members of distance /
        held-out median."""
        return largest_layer_mean(self.layer_ratios(features))

    def to_bytes(self) -> bytes:
        arrays: dict[str, np.ndarray] = {"layers": np.array(len(self.layers))}
        for i, layer in enumerate(self.layers):
            arrays[f"means_{i}"], arrays[f"whiten_{i}"] = layer.means, layer.whiten.dense()
            arrays[f"scales_{i}"], arrays[f"pieces_{i}"] = layer.scales, np.array(layer.pieces)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # type: ignore[arg-type]
        return buffer.getvalue()


def largest_layer_mean(ratios: list[np.ndarray]) -> np.ndarray:
    """Per layer (N, members) ratios → (N,) the largest over layers of the member mean."""
    return np.asarray(np.stack([r.mean(axis=1) for r in ratios], axis=1).max(axis=1))


def load_stats(path: Path) -> ApplicabilityStats:
    """The statistics file of a model folder; ModelLoadError when unreadable."""
    try:
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as arrays:
            layers = [_layer(arrays, i) for i in range(int(arrays["layers"]))]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"applicability statistics {path.name} unreadable: {exc}") from exc
    for layer in layers:
        members, _, width = layer.means.shape
        if layer.whiten.shape != (members, width, width) or layer.scales.shape != (members,):
            raise ModelLoadError(f"applicability statistics {path.name}: inconsistent shapes")
    return ApplicabilityStats(layers)


def _layer(arrays: Any, index: int) -> LayerStats:
    return LayerStats(
        np.asarray(arrays[f"means_{index}"], dtype=np.float32),
        LowerTriangular.from_dense(np.asarray(arrays[f"whiten_{index}"], dtype=np.float32)),
        np.asarray(arrays[f"scales_{index}"], dtype=np.float64),
        int(arrays[f"pieces_{index}"]),
    )


@dataclass(frozen=True)
class Applicability:
    """A served model's applicability check: the statistics and the card's rules."""

    spec: ApplicabilitySpec
    stats: ApplicabilityStats

    def scores(self, features: np.ndarray) -> np.ndarray:
        return self.stats.score(features)

    def inside(self, scores: np.ndarray) -> np.ndarray:
        """Whether each score is within the threshold (the pixels' part of the verdict)."""
        return np.asarray(scores <= self.spec.threshold)

    def judge(self, score: float, header: dict[str, str | None] | None) -> dict[str, Any]:
        """The answer's `applicability` object for one input (`header`: DICOM tags, if any)."""
        reason = header_mismatch(self.spec, header or {})
        if reason is None and not self.inside(np.asarray(score)):
            reason = (
                f"the image is unlike the images this model was trained on (score {score:.3g} "
                f"above the threshold {self.spec.threshold:.3g})"
            )
        return {
            "verdict": OUTSIDE if reason else IN_DOMAIN,
            "score": round(float(score), 4),
            "threshold": round(self.spec.threshold, 4),
            "reason": reason,
        }


def header_mismatch(spec: ApplicabilitySpec, header: dict[str, str | None]) -> str | None:
    """Why the DICOM header alone rules the input out, or None (no header: nothing to check)."""
    modality = (header.get("modality") or "").upper()
    if modality and spec.modalities and modality not in spec.modalities:
        return f"DICOM Modality {modality} is not {' or '.join(spec.modalities)}"
    body_part = (header.get("body_part") or "").upper()
    if body_part and spec.body_parts and body_part not in spec.body_parts:
        return f"DICOM BodyPartExamined {body_part} is not {' or '.join(spec.body_parts)}"
    return None


def not_assessed() -> dict[str, Any]:
    """The `applicability` object of a model whose card declares no check."""
    return {
        "verdict": NOT_ASSESSED,
        "score": None,
        "threshold": None,
        "reason": "this model version has no applicability check",
    }

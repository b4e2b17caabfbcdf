"""Rebuild a model version's ONNX graph from its kept Keras models, and refresh its card."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import keras
import numpy as np

from app.inference.card import ModelCard
from app.inference.store import sha256_file
from training.arrays import load_arrays
from training.card import framework_versions
from training.data import clean, discover
from training.export import KEPT_MEMBER, export_served
from training.latency import interleaved_latency_ms, onnx_latency_ms


def reexport(run: Path, model_dir: Path, data: Path | None = None) -> float:
    """Export `run/logits-*.keras` into `model_dir` with the card's temperature and TTA."""
    card = ModelCard.model_validate_json((model_dir / "metadata.json").read_bytes())
    members = [keras.saving.load_model(p) for p in kept_members(run)]
    if not members:
        raise FileNotFoundError(f"no logits-*.keras in {run}")
    tta = bool(card.architecture.get("test_time_augmentation"))
    sample = _parity_sample(card, data)
    with tempfile.TemporaryDirectory(dir=model_dir) as scratch:
        staged = Path(scratch) / "model.onnx"
        served, difference = export_served(members, card.output.temperature, tta, staged, sample)
        before, after = _latencies(model_dir / "model.onnx", staged, sample[:1])
        staged.replace(model_dir / "model.onnx")
    card.sha256 = sha256_file(model_dir / "model.onnx")
    card.output.activation_map = "class_activation" if len(served.outputs) > 1 else None
    card.framework = framework_versions()
    card.evaluation["parity_max_abs_diff"] = difference
    card.evaluation["latency_ms_batch1_cpu"] = after
    stamp = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    speed = f"; batch-1 CPU latency {before:.1f} → {after:.1f} ms in turns" if before else ""
    card.changelog.append(
        f"{stamp}: graph re-exported by `ctscan export` (same weights, parity {difference:.1e}"
        f"{speed})"
    )
    (model_dir / "metadata.json").write_text(card.model_dump_json(indent=2))
    return difference


def kept_members(run: Path) -> list[Path]:
    """`run/logits-N.keras` in member order (N = 1, 2, ..., 10, not 1, 10, 2): the graph's
    member order is what maps each member to its cross-validation fold."""
    numbered = {}
    for path in run.iterdir():
        match = KEPT_MEMBER.fullmatch(path.name)
        if match:
            numbered[int(match[1])] = path
    return [numbered[index] for index in sorted(numbered)]


def _latencies(old: Path, new: Path, sample: np.ndarray) -> tuple[float | None, float]:
    """Batch-1 CPU milliseconds of the previous graph (None if there was none) and the new one,
    measured in turns."""
    if not old.is_file():
        return None, onnx_latency_ms(new, sample)
    before, after = interleaved_latency_ms([(old, sample, "image"), (new, sample, "image")])
    return before, after


def _parity_sample(card: ModelCard, data: Path | None) -> np.ndarray:
    spec = card.input
    if data is None:
        rng = np.random.default_rng(0)
        return rng.random((8, spec.height, spec.width, spec.channels), dtype=np.float32)
    samples, _ = clean(discover(data), data)
    return load_arrays(samples[:: max(1, len(samples) // 16)][:16], spec, None)

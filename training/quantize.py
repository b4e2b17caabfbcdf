"""An int8 variant of an exported model: onnxruntime static quantisation (QDQ, per-channel
weights) calibrated on training images, measured against the float model on other images.

The variant is a model of its own, `<name>-int8/<version>`, so a deployment chooses it by name;
its card says what it came from and what quantisation changed (accuracy, agreement, speed, size).
"""

from __future__ import annotations

import json
import logging
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from app.config import Settings
from app.inference.predict import prepare, run_batch
from app.inference.store import LoadedModel, load_model_dir, sha256_file
from training.data import Sample
from training.scoring import labelled_samples, open_model_dir

log = logging.getLogger(__name__)

QUANTIZED_OPS = ["Conv", "MatMul", "Gemm"]


class TensorReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds calibration batches to onnxruntime's quantiser."""

    def __init__(self, name: str, tensors: np.ndarray, batch: int = 8) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            {name: tensors[i : i + batch]} for i in range(0, len(tensors), batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def quantize_model_dir(
    model_dir: Path,
    data: Path,
    output: Path,
    label_map: dict[str, str] | None = None,
    calibration_images: int = 128,
    seed: int = 0,
) -> Path:
    """Write `<output>/<name>-int8/<version>/` from `model_dir` and return it."""
    model = open_model_dir(model_dir)
    name, version = model.card.name, model.card.version
    calibration, held = split_samples(model, data, label_map, calibration_images, seed)
    log.info("calibrating on %d images, measuring on %d", len(calibration), len(held))
    target = output / f"{name}-int8" / str(version)
    staging = target.parent / f".staging-{version}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    write_int8(model, tensors_of(model, calibration), staging / "model.onnx")
    card = variant_card(model, staging / "model.onnx")
    (staging / "metadata.json").write_text(json.dumps(card, indent=2))
    variant = load_model_dir(staging, card["name"], version, Settings(intra_op_threads=0))
    card["quantization"] = {
        **card["quantization"],
        **compare(model, variant, held),
        "calibration_images": len(calibration),
    }
    (staging / "metadata.json").write_text(json.dumps(card, indent=2))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    log.info("wrote %s", target)
    return target


def split_samples(
    model: LoadedModel, data: Path, label_map: dict[str, str] | None, count: int, seed: int
) -> tuple[list[Sample], list[Sample]]:
    """Calibration images and the other images (the comparison never sees calibration ones)."""
    samples, _ = labelled_samples(data, model.card.classes, label_map)
    order = np.random.default_rng(seed).permutation(len(samples))
    shuffled = [samples[i] for i in order]
    return shuffled[:count], shuffled[count:]


def tensors_of(model: LoadedModel, samples: list[Sample]) -> np.ndarray:
    """The model's inputs for these files, preprocessed exactly as the service does."""
    return np.stack([prepare(model, s.path.read_bytes(), 10**9).tensor for s in samples])


def write_int8(model: LoadedModel, calibration: np.ndarray, destination: Path) -> None:
    """Static QDQ quantisation: int8 per-channel weights, uint8 activations."""
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model.path / "model.onnx"), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(destination),
            TensorReader(model.card.input.name, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=QUANTIZED_OPS,
            nodes_to_exclude=norm_statistics_nodes(prepared),
        )


def norm_statistics_nodes(graph: Path) -> list[str]:
    """The matmuls that average a fused group norm's per-channel statistics (see
    `training.fused_norm`): normalisation statistics stay float."""
    return [
        node.name
        for node in onnx.load(str(graph)).graph.node
        if node.op_type == "MatMul" and "_norm" in node.name
    ]


def variant_card(model: LoadedModel, onnx_path: Path) -> dict[str, Any]:
    """The float model's card, renamed, re-hashed and marked as an int8 variant."""
    card = model.card.model_dump(mode="json")
    source = model.key
    card.update(
        name=f"{model.card.name}-int8",
        description=f"int8 variant of {source}. {model.card.description}".strip(),
        sha256=sha256_file(onnx_path),
        changelog=[*model.card.changelog, f"int8 static quantisation of {source}"],
        quantization={
            "source": source,
            "method": "onnxruntime quantize_static, QDQ, per-channel int8 weights, uint8 "
            f"activations, ops {QUANTIZED_OPS}, MinMax calibration",
            "size_bytes": {"float32": (model.path / "model.onnx").stat().st_size},
        },
    )
    card["quantization"]["size_bytes"]["int8"] = onnx_path.stat().st_size
    return card


def compare(reference: LoadedModel, variant: LoadedModel, samples: list[Sample]) -> dict[str, Any]:
    """Accuracy of both, how often they agree, the largest probability change, and speed."""
    classes = reference.card.classes
    tensors = tensors_of(reference, samples)
    truth = np.array([classes.index(s.label) for s in samples])
    before = batched(reference, tensors)
    after = batched(variant, tensors)
    return {
        "images": len(samples),
        "images_note": "training images not used for calibration; the float model may have "
        "been trained on them, so compare the two models, not the absolute accuracy",
        "accuracy": {
            "float32": round(float(np.mean(before.argmax(1) == truth)), 4),
            "int8": round(float(np.mean(after.argmax(1) == truth)), 4),
        },
        "agreement": round(float(np.mean(before.argmax(1) == after.argmax(1))), 4),
        "max_probability_change": round(float(np.abs(before - after).max()), 4),
        "latency_ms": {
            f"batch_{size}": paired_median_ms(reference, variant, tensors[:size]) for size in (1, 8)
        },
        "measured_on": f"{ort.get_device()}, onnxruntime {ort.__version__}",
    }


def batched(model: LoadedModel, tensors: np.ndarray, size: int = 16) -> np.ndarray:
    """Probabilities for many inputs, `size` at a time."""
    chunks = [run_batch(model, tensors[i : i + size]) for i in range(0, len(tensors), size)]
    return np.concatenate(chunks)


def paired_median_ms(
    reference: LoadedModel, variant: LoadedModel, batch: np.ndarray, runs: int = 15
) -> dict[str, float]:
    """Median `session.run` wall time of each model on this batch, runs interleaved so both
    see the same machine load."""
    times: dict[str, list[float]] = {"float32": [], "int8": []}
    for _ in range(runs + 1):  # the first round warms up and is dropped
        for key, model in (("float32", reference), ("int8", variant)):
            started = time.perf_counter()
            model.session.run([model.card.output.name], {model.card.input.name: batch})
            times[key].append(time.perf_counter() - started)
    return {key: round(statistics.median(t[1:]) * 1000, 2) for key, t in times.items()}

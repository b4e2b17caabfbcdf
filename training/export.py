"""Keras → ONNX with the calibration temperature and softmax inside, checked against Keras."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnx
import onnxruntime as ort
from keras import layers

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4


class ParityError(RuntimeError):
    """The ONNX graph does not reproduce the Keras model's outputs."""


@keras.saving.register_keras_serializable(package="ctscan")
class HorizontalFlip(layers.Layer):
    """Mirror images left-right (for test-time augmentation inside the graph)."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.flip(inputs, axis=2)


def probability_model(
    logits_models: keras.Model | list[keras.Model], temperature: float, tta_flip: bool = False
) -> keras.Model:
    """The served graph: mean logits of the models (and of the mirrored image with
    `tta_flip`) / temperature → softmax, output named `probabilities`."""
    members = logits_models if isinstance(logits_models, list) else [logits_models]
    if len(members) > 1:  # fold models share a name; the outer graph needs unique ones
        members = [
            keras.Model(m.inputs[0], m.outputs[0], name=f"member{i + 1}")
            for i, m in enumerate(members)
        ]
    inputs = keras.Input(members[0].input.shape[1:], name="image")
    views = [inputs, HorizontalFlip(name="mirror")(inputs)] if tta_flip else [inputs]
    logits = [member(view, training=False) for member in members for view in views]
    mean = logits[0] if len(logits) == 1 else layers.Average(name="mean_logits")(logits)
    scaled = layers.Rescaling(1.0 / temperature, name="temperature")(mean)
    outputs = layers.Softmax(name="probabilities")(scaled)
    return keras.Model(inputs, outputs, name="served")


def export_onnx(model: keras.Model, path: Path, sample: np.ndarray) -> float:
    """Write `model` as ONNX (input `image`, dynamic batch; output `probabilities`) and return
    the max abs difference to Keras on `sample`; raise ParityError above the tolerance."""
    model.predict(sample[:1], verbose=0)
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "raw.onnx"
        model.export(str(raw), format="onnx", opset_version=OPSET, verbose=False)
        graph = rename_io(onnx.load(str(raw)))
    onnx.checker.check_model(graph)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(path))
    difference = parity(model, path, sample)
    if difference > PARITY_TOLERANCE:
        path.unlink()
        raise ParityError(f"ONNX differs from Keras by {difference:.2e} > {PARITY_TOLERANCE}")
    log.info("exported %s; parity max |keras - onnx| = %.2e", path, difference)
    return difference


def rename_io(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Name the single input `image` and output `probabilities`, with a `batch` dimension."""
    (output,) = graph.graph.output
    old = output.name
    for node in graph.graph.node:
        node.output[:] = ["probabilities" if name == old else name for name in node.output]
    output.name = "probabilities"
    for value in (graph.graph.input[0], output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    graph.graph.input[0].name = graph.graph.input[0].name  # input is named by keras.Input
    return graph


def parity(model: keras.Model, path: Path, sample: np.ndarray) -> float:
    """Max abs difference between Keras and onnxruntime outputs on `sample`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = model.predict(sample, verbose=0)
    actual = session.run(["probabilities"], {"image": sample.astype(np.float32)})[0]
    return float(np.abs(expected - actual).max())

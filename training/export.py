"""Keras → ONNX with the calibration temperature and softmax inside, checked against Keras."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import keras
import numpy as np
import onnx
import onnxruntime as ort
from keras import layers

from training.fused_norm import fuse_group_norms

log = logging.getLogger(__name__)

OPSET = 17
PARITY_TOLERANCE = 1e-4


class ParityError(RuntimeError):
    """The ONNX graph does not reproduce the Keras model's outputs."""


@keras.saving.register_keras_serializable(package="ctscan")
class ClassActivation(layers.Layer):  # type: ignore[misc]  # keras is untyped
    """Class activation maps: the last feature map times the GAP head's dense kernel."""

    def __init__(self, dense: layers.Dense, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dense = dense

    def call(self, features: Any) -> Any:
        return keras.ops.matmul(features, self.dense.kernel)


OUTPUT_NAMES = ("probabilities", "class_activation")
KEPT_MEMBER = re.compile(r"logits-(\d+)\.keras")


def kept_member_path(run: Path, number: int) -> Path:
    """Where a run keeps the Keras logits model of member `number` (1, 2, ... in the order of
    the served graph's members, which maps each to its cross-validation fold)."""
    return run / f"logits-{number}.keras"


@keras.saving.register_keras_serializable(package="ctscan")
class WithMirror(layers.Layer):  # type: ignore[misc]  # keras is untyped
    """(N, ...) images → (2N, ...): the batch followed by its mirror image, so each model runs
    once on both views."""

    def call(self, inputs: Any) -> Any:
        return keras.ops.concatenate([inputs, keras.ops.flip(inputs, axis=2)], axis=0)


@keras.saving.register_keras_serializable(package="ctscan")
class MirrorMean(layers.Layer):  # type: ignore[misc]  # keras is untyped
    """(2N, ...) → (N, ...): mean of each item and its mirror's result (maps flipped back)."""

    def __init__(self, flip_back: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.flip_back = flip_back

    def call(self, inputs: Any) -> Any:
        direct, mirrored = keras.ops.split(inputs, 2, axis=0)
        if self.flip_back:
            mirrored = keras.ops.flip(mirrored, axis=2)
        return (direct + mirrored) / 2.0

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "flip_back": self.flip_back}


def probability_model(
    logits_models: keras.Model | list[keras.Model], temperature: float, tta_flip: bool = False
) -> keras.Model:
    """The served graph: mean logits of the models (each run once on the image and, with
    `tta_flip`, its mirror) / temperature → softmax as `probabilities`; for GAP heads also
    the mean class activation map as `class_activation` (N, h, w, classes)."""
    members = logits_models if isinstance(logits_models, list) else [logits_models]
    inputs = keras.Input(members[0].input.shape[1:], name="image")
    batch = WithMirror(name="with_mirror")(inputs) if tta_flip else inputs
    logits, maps = [], []
    for index, member in enumerate(members):
        outputs = _with_map(member, f"member{index + 1}")(batch, training=False)
        pair = outputs if isinstance(outputs, list) else [outputs]
        if tta_flip:
            pair = [MirrorMean(flip_back=i == 1)(out) for i, out in enumerate(pair)]
        logits.append(pair[0])
        maps.extend(pair[1:])
    mean = logits[0] if len(logits) == 1 else layers.Average(name="mean_logits")(logits)
    scaled = layers.Rescaling(1.0 / temperature, name="temperature")(mean)
    probabilities = layers.Softmax(name="probabilities")(scaled)
    if len(maps) != len(logits):
        return keras.Model(inputs, probabilities, name="served")
    cam = maps[0] if len(maps) == 1 else layers.Average(name="mean_cam")(maps)
    return keras.Model(inputs, [probabilities, cam], name="served")


def _with_map(member: keras.Model, name: str) -> keras.Model:
    """The member returning [logits, class activation map] when its head is GAP + dense."""
    names = {layer.name for layer in member.layers}
    if not {"gap", "logits"} <= names:
        return keras.Model(member.inputs[0], member.outputs[0], name=name)
    features = member.get_layer("gap").input
    cam = ClassActivation(member.get_layer("logits"), name="cam")(features)
    return keras.Model(member.inputs[0], [member.outputs[0], cam], name=name)


def export_served(
    members: list[keras.Model], temperature: float, tta_flip: bool, path: Path, sample: np.ndarray
) -> tuple[keras.Model, float]:
    """Write the served graph of `members` to `path` with their group normalisations fused
    (same function, faster in onnxruntime); return the served Keras model, unfused, and the max
    abs difference of the ONNX graph to it on `sample`."""
    reference = probability_model(members, temperature, tta_flip)
    fused = probability_model([fuse_group_norms(m) for m in members], temperature, tta_flip)
    return reference, export_onnx(fused, path, sample, reference)


def export_onnx(
    model: keras.Model, path: Path, sample: np.ndarray, reference: keras.Model | None = None
) -> float:
    """Write `model` as ONNX (input `image`, dynamic batch; output `probabilities`) and return
    the max abs difference to `reference` (default: `model`) on `sample`; raise ParityError
    above the tolerance."""
    model.predict(sample[:1], verbose=0)
    with tempfile.TemporaryDirectory() as scratch:
        raw = Path(scratch) / "raw.onnx"
        model.export(str(raw), format="onnx", opset_version=OPSET, verbose=False)
        graph = rename_io(onnx.load(str(raw)))
    onnx.checker.check_model(graph)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(path))
    difference = parity(model if reference is None else reference, path, sample)
    if difference > PARITY_TOLERANCE:
        path.unlink()
        raise ParityError(f"ONNX differs from Keras by {difference:.2e} > {PARITY_TOLERANCE}")
    log.info("exported %s; parity max |keras - onnx| = %.2e", path, difference)
    return difference


def rename_io(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Name the outputs `probabilities` (and `class_activation`), with a `batch` dimension;
    the input is already `image` (named by keras.Input)."""
    renames = {o.name: new for o, new in zip(graph.graph.output, OUTPUT_NAMES, strict=False)}
    for node in graph.graph.node:
        node.output[:] = [renames.get(name, name) for name in node.output]
    for output in graph.graph.output:
        output.name = renames[output.name]
    for value in (graph.graph.input[0], *graph.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = "batch"
    return graph


def parity(model: keras.Model, path: Path, sample: np.ndarray) -> float:
    """Max abs difference between Keras and onnxruntime outputs on `sample`."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = model.predict(sample, verbose=0)
    expected = expected if isinstance(expected, list) else [expected]
    actual = session.run(None, {"image": sample.astype(np.float32)})
    probability_gap = float(np.abs(expected[0] - actual[0]).max())
    if len(expected) > 1:  # maps are unnormalised logits: compare relative to their range
        span = float(np.abs(expected[1]).max()) or 1.0
        return max(probability_gap, float(np.abs(expected[1] - actual[1]).max()) / span)
    return probability_gap

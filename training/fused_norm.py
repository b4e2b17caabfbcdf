"""Group normalisation rewritten for the exported graph: the same function, cheaper in onnxruntime.

Keras' `GroupNormalization` exports as a 5-d reshape, moments over non-adjacent axes and a
subtraction broadcast over the few channels of a group: onnxruntime runs those slowly (over half of
a compact CNN's time). Here each image's per-channel mean and variance (two passes, as stable as
Keras' own) are taken over H and W, combined within each group by a (C, C) averaging matrix on the
tiny (N, C) tensors, and applied as one scale and shift per channel, broadcast over the full
channel axis. Training keeps Keras' layer; only the served copy of each member uses this one, with
the same weights, and export checks that both agree.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="ctscan")
class FusedGroupNorm(layers.GroupNormalization):  # type: ignore[misc]  # keras is untyped
    """`GroupNormalization` on channels-last images with static H, W and C, computed from
    per-channel moments; other inputs fall back to Keras' own computation."""

    def call(self, inputs: Any) -> Any:
        if not self._fusable(inputs):
            return super().call(inputs)
        channels = inputs.shape[-1]
        average = self._group_average(channels)
        channel_mean = ops.mean(inputs, axis=(1, 2))
        centred = inputs - ops.reshape(channel_mean, (-1, 1, 1, channels))
        channel_variance = ops.mean(ops.square(centred), axis=(1, 2))
        mean = ops.matmul(channel_mean, average)
        # law of total variance: the group's variance from its channels' means and variances
        variance = ops.matmul(channel_variance + ops.square(channel_mean - mean), average)
        scale = ops.rsqrt(variance + self.epsilon)
        if self.scale:
            scale = scale * self.gamma
        shift = -mean * scale
        if self.center:
            shift = shift + self.beta
        return inputs * ops.reshape(scale, (-1, 1, 1, channels)) + ops.reshape(
            shift, (-1, 1, 1, channels)
        )

    def _fusable(self, inputs: Any) -> bool:
        shape = inputs.shape
        last = self.axis in (-1, len(shape) - 1)
        return len(shape) == 4 and last and None not in shape[1:] and inputs.dtype == "float32"

    def _group_average(self, channels: int) -> np.ndarray:
        """(C, C) matrix: a row of channel statistics times it gives each channel its group's
        mean."""
        group = np.arange(channels) // (channels // self.groups)
        same = (group[:, None] == group[None, :]).astype(np.float32)
        average: np.ndarray = same / same.sum(axis=0, keepdims=True)
        return average


def fuse_group_norms(model: keras.Model) -> keras.Model:
    """A copy of `model` with each `GroupNormalization` replaced by `FusedGroupNorm` and the same
    weights; `model` itself when it has none (the ImageNet architectures)."""
    if not any(isinstance(layer, layers.GroupNormalization) for layer in _all_layers(model)):
        return model

    def clone(layer: layers.Layer) -> layers.Layer:
        kind = FusedGroupNorm if type(layer) is layers.GroupNormalization else type(layer)
        return kind.from_config(layer.get_config())

    copy = keras.models.clone_model(model, clone_function=clone, recursive=True)
    copy.set_weights(model.get_weights())
    return copy


def _all_layers(model: keras.Model) -> list[layers.Layer]:
    found = []
    for layer in model.layers:
        found.append(layer)
        if isinstance(layer, keras.Model):
            found.extend(_all_layers(layer))
    return found

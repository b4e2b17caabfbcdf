"""The input contract: shape, range, contrast stretch, aspect handling."""

from __future__ import annotations

import numpy as np
import pytest

from app.imaging.preprocess import InputSpec, to_model_input


def test_shape_and_range() -> None:
    grey = np.random.default_rng(0).random((50, 80)).astype(np.float32) * 0.3 + 0.2
    out = to_model_input(grey, InputSpec(height=32, width=24))
    assert out.shape == (32, 24, 1) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0


def test_percentile_stretch_undoes_a_window_change() -> None:
    base = np.random.default_rng(1).random((64, 64)).astype(np.float32)
    spec = InputSpec(height=32, width=32)
    narrow = base * 0.4 + 0.3  # the same picture at another contrast and level
    assert np.abs(to_model_input(base, spec) - to_model_input(narrow, spec)).max() < 1e-4


def test_flat_image_gives_zeros() -> None:
    out = to_model_input(np.full((10, 10), 0.7, np.float32), InputSpec(height=8, width=8))
    assert not out.any()


def test_none_intensity_keeps_values() -> None:
    spec = InputSpec(height=10, width=10, intensity="none")
    assert to_model_input(np.full((10, 10), 0.7, np.float32), spec) == pytest.approx(0.7)


def test_keep_aspect_pads_instead_of_stretching() -> None:
    wide = np.zeros((10, 40), np.float32)
    wide[:, 18:22] = 1.0  # a vertical bar in the middle
    spec = InputSpec(height=40, width=40, keep_aspect=True, intensity="none")
    out = to_model_input(wide, spec)[:, :, 0]
    assert out[:15].max() == 0.0 and out[15:25, 18:22].min() > 0.9

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


def test_keep_aspect_pads_with_a_dark_level_one_pixel_cannot_move() -> None:
    """A JPEG's ringing or a stray pixel darker than the rest must not change the padding (nor,
    through the contrast stretch, every pixel of the input)."""
    rng = np.random.default_rng(0)
    wide = (0.3 + 0.6 * rng.random((60, 90))).astype(np.float32)
    speck = wide.copy()
    speck[5, 5] = 0.0
    spec = InputSpec(height=32, width=32, keep_aspect=True)
    out, with_speck = to_model_input(wide, spec), to_model_input(speck, spec)
    assert np.abs(out - with_speck).mean() < 1e-3
    assert out[0, :, 0].max() == pytest.approx(0.0, abs=1e-6)  # the padding is the dark level


def body(height: int = 60, width: int = 80) -> np.ndarray:
    """A bright ellipse with some texture on black, like an axial slice."""
    yy, xx = np.mgrid[:height, :width]
    inside = ((yy - height / 2) / (height * 0.4)) ** 2 + ((xx - width / 2) / (width * 0.4)) ** 2
    texture = 0.5 + 0.4 * np.sin(xx / 3.0) * np.cos(yy / 5.0)
    return np.where(inside <= 1, texture, 0.0).astype(np.float32)


def test_crop_to_foreground_makes_the_input_zoom_invariant() -> None:
    spec = InputSpec(height=32, width=32, crop_foreground=True)
    slice_ = body()
    bordered = np.zeros((120, 160), np.float32)  # the same slice, zoomed out 2 x
    bordered[30:90, 40:120] = slice_
    same = to_model_input(bordered, spec)
    np.testing.assert_allclose(same, to_model_input(slice_, spec), atol=1e-5)
    plain = InputSpec(height=32, width=32)  # without the crop the two inputs differ
    assert np.abs(to_model_input(bordered, plain) - to_model_input(slice_, plain)).max() > 0.5


def test_a_stray_mark_does_not_widen_the_crop() -> None:
    from app.imaging.preprocess import crop_to_foreground

    slice_ = np.zeros((100, 100), np.float32)
    slice_[20:80, 30:70] = body(60, 40)
    marked = slice_.copy()
    marked[2, 95] = 1.0  # a speck of annotation text in a corner
    assert crop_to_foreground(marked).shape == crop_to_foreground(slice_).shape
    assert crop_to_foreground(slice_).shape[0] <= 60


def test_a_flat_image_is_kept_whole() -> None:
    from app.imaging.preprocess import crop_to_foreground

    flat = np.full((10, 12), 0.3, np.float32)
    assert crop_to_foreground(flat).shape == (10, 12)


def test_framed_is_what_the_model_sees_before_resizing() -> None:
    from app.imaging.preprocess import framed

    bordered = np.zeros((120, 160), np.float32)
    bordered[30:90, 40:120] = body()
    spec = InputSpec(height=32, width=32, crop_foreground=True, keep_aspect=True)
    view = framed(bordered, spec)
    assert view.shape[0] == view.shape[1] <= 80  # the body, padded to a square
    assert framed(bordered, InputSpec(height=32, width=32)).shape == (120, 160)


def test_a_model_cropping_to_the_body_answers_alike_with_a_black_border() -> None:
    """The shipped chest CT model's card asks for the crop: the service's predict path then gives
    the same answer for a slice and for the same slice zoomed out onto a black canvas."""
    import io

    from PIL import Image

    from app.inference.predict import predict_bytes
    from tests.factories import loaded_store

    model = loaded_store().get("chest-ct-cancer")
    assert model.card.input.crop_foreground
    slice_ = (body(120, 160) * 255).astype(np.uint8)
    bordered = np.zeros((300, 400), np.uint8)
    bordered[90:210, 120:280] = slice_

    def png(pixels: np.ndarray) -> bytes:
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="PNG")
        return buffer.getvalue()

    plain = predict_bytes(model, png(slice_), 10**9)["probabilities"]
    zoomed_out = predict_bytes(model, png(bordered), 10**9)["probabilities"]
    assert zoomed_out == pytest.approx(plain, abs=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_percentiles_are_numpys_numbers(dtype: type) -> None:
    """One partial sort for both ends of the stretch, bit for bit what `np.percentile` gives
    (the shipped models were trained on its numbers)."""
    from app.imaging.preprocess import percentiles

    rng = np.random.default_rng(7)
    for trial in range(400):
        shape = (int(rng.integers(1, 70)), int(rng.integers(1, 70)))
        values = rng.random(shape).astype(dtype)
        if trial % 3 == 0:
            values = np.round(values * 4) / 4  # ties
        qs = (0.0, 100.0) if trial % 7 == 0 else tuple(float(q) for q in rng.uniform(0, 100, 2))
        assert percentiles(values, qs) == [float(v) for v in np.percentile(values, qs)]


def test_the_stretch_leaves_the_callers_pixels_alone() -> None:
    grey = np.random.default_rng(3).random((16, 16)).astype(np.float32)  # already input size
    before = grey.copy()
    out = to_model_input(grey, InputSpec(height=16, width=16))
    assert np.array_equal(grey, before) and out.min() == 0.0 and out.max() == 1.0


def test_a_card_cannot_ask_for_a_percentile_outside_0_to_100() -> None:
    with pytest.raises(ValueError, match="100"):
        InputSpec(height=8, width=8, percentiles=(1.0, 101.0))


@pytest.mark.parametrize("shape", [(7, 5), (512, 512), (3, 70_000)])
def test_foreground_counts_are_count_nonzeros(shape: tuple[int, int]) -> None:
    from app.imaging.preprocess import _counts

    mask = np.random.default_rng(0).random(shape) > 0.3
    mask[0] = True  # a whole row of 70,000 would wrap a 16-bit count
    for axis in (0, 1):
        assert np.array_equal(_counts(mask, axis), np.count_nonzero(mask, axis=axis))

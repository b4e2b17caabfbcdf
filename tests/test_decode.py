"""Decoding every supported mode and depth, and refusing what is not a single clean image."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from app.errors import InvalidImage, ServiceError, UnsupportedMediaType
from app.imaging.decode import decode_image
from app.imaging.formats import sniff_format
from tests.factories import encode, grey_gradient

RAMP8 = grey_gradient().astype(np.uint8)


def ramp_image(mode: str) -> Image.Image:
    grey = Image.fromarray(RAMP8)
    if mode == "P":
        return grey.convert("P")
    return grey.convert(mode)


def writable_cases() -> list[tuple[str, str]]:
    """Every (mode, format) pair Pillow can write."""
    cases = []
    for mode in ("1", "L", "LA", "RGB", "RGBA", "P", "CMYK", "I", "F"):
        for fmt in ("PNG", "TIFF", "BMP", "WEBP", "JPEG"):
            try:
                encode(ramp_image(mode), fmt)
            except (OSError, ValueError, KeyError):
                continue
            cases.append((mode, fmt))
    return cases


@pytest.mark.parametrize(("mode", "fmt"), writable_cases())
def test_modes_and_formats_decode_to_grey(mode: str, fmt: str) -> None:
    data = encode(ramp_image(mode), fmt)
    decoded = decode_image(data)
    assert decoded.format == fmt and decoded.pixels.shape == (30, 40)
    assert decoded.pixels.dtype == np.float32
    assert decoded.pixels.min() >= 0.0 and decoded.pixels.max() <= 1.0
    if mode not in ("1",) and fmt not in ("JPEG", "WEBP"):
        # the ramp survives: left dark, right bright
        assert decoded.pixels[:, :5].mean() < 0.2 < 0.8 < decoded.pixels[:, -5:].mean()


def test_sixteen_bit_png_keeps_its_depth() -> None:
    ramp = grey_gradient(high=65535).astype(np.uint16)
    decoded = decode_image(encode(Image.fromarray(ramp), "PNG"))
    assert decoded.pixels.max() == pytest.approx(1.0)
    assert len(np.unique(decoded.pixels)) == len(np.unique(ramp))


def test_transparency_is_composited_on_black() -> None:
    image = Image.new("RGBA", (8, 8), (255, 255, 255, 0))
    assert decode_image(encode(image, "PNG")).pixels.max() == 0.0


def test_opaque_rgba_equals_its_rgb() -> None:
    pixels = np.random.default_rng(1).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    alpha = np.full((12, 10, 1), 255, dtype=np.uint8)
    rgba = Image.fromarray(np.concatenate([pixels, alpha], axis=2), "RGBA")
    as_rgba = decode_image(encode(rgba, "PNG")).pixels
    as_rgb = decode_image(encode(Image.fromarray(pixels, "RGB"), "PNG")).pixels
    assert np.array_equal(as_rgba, as_rgb)
    rgba.putpixel((0, 0), (255, 255, 255, 0))  # one transparent pixel: composited on black
    assert decode_image(encode(rgba, "PNG")).pixels[0, 0] == 0.0


def test_palette_with_transparency() -> None:
    image = Image.new("P", (8, 8), 1)
    image.putpalette([0, 0, 0, 255, 255, 255] * 128)
    image.info["transparency"] = 0
    assert decode_image(encode(image, "PNG", transparency=0)).pixels.min() == pytest.approx(1.0)


def test_exif_orientation_is_applied() -> None:
    tall = Image.fromarray(np.zeros((40, 20), dtype=np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    decoded = decode_image(encode(tall, "JPEG", exif=exif.tobytes()))
    assert decoded.pixels.shape == (20, 40)


def test_decompression_bomb_is_refused() -> None:
    data = encode(Image.new("L", (5000, 5000)), "PNG")
    with pytest.raises(InvalidImage, match="pixels"):
        decode_image(data, max_pixels=1_000_000)


def test_animated_images_are_refused() -> None:
    frames = [Image.new("L", (8, 8), v) for v in (0, 255)]
    apng = encode(frames[0], "PNG", save_all=True, append_images=frames[1:])
    with pytest.raises(InvalidImage, match="frames"):
        decode_image(apng)
    gif = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(UnsupportedMediaType):
        decode_image(gif)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"\x89PNG\r\n\x1a\n", "PNG"),
        (b"\xff\xd8\xff\xe0", "JPEG"),
        (b"II*\x00", "TIFF"),
        (b"MM\x00*", "TIFF"),
        (b"BM\x00", "BMP"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "WEBP"),
        (b"\x00" * 128 + b"DICM", "DICOM"),
    ],
)
def test_sniffing(data: bytes, kind: str) -> None:
    assert sniff_format(data) == kind


@pytest.mark.parametrize("data", [b"%PDF-1.7", b"PK\x03\x04zip", b'{"json": 1}', b"\x00\x01"])
def test_non_images_are_415(data: bytes) -> None:
    with pytest.raises(UnsupportedMediaType):
        sniff_format(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_any_bytes_give_an_image_or_a_domain_error(data: bytes) -> None:
    try:
        decoded = decode_image(data)
    except ServiceError as exc:
        assert 400 <= exc.status < 500
    else:
        assert decoded.pixels.ndim == 2


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=64), st.integers(min_value=8, max_value=400))
def test_corrupted_png_gives_a_domain_error(noise: bytes, at: int) -> None:
    data = bytearray(encode(Image.fromarray(RAMP8), "PNG"))
    at = min(at, len(data) - 1)
    data[at : at + len(noise)] = noise
    try:
        decode_image(bytes(data))
    except ServiceError as exc:
        assert 400 <= exc.status < 500


def test_png_written_by_pillow_roundtrips() -> None:
    buffer = io.BytesIO()
    Image.fromarray(RAMP8).save(buffer, format="PNG")
    assert np.allclose(decode_image(buffer.getvalue()).pixels * 255, RAMP8)


def test_concurrent_decoding_leaves_warning_filters_alone() -> None:
    """Decoding runs in worker threads; it must not swap the process-wide warning filters."""
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    before = list(warnings.filters)
    data = encode(Image.fromarray(RAMP8), "PNG")
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: decode_image(data), range(200)))
    assert list(warnings.filters) == before


def test_fuzzer_finding_tiff_unknown_compression() -> None:
    """Found by tests/fuzz/fuzz_decode.py: an unknown TIFF compression code raised KeyError."""
    from pathlib import Path

    data = (Path(__file__).parent / "data" / "fuzz-tiff-unknown-compression.bin").read_bytes()
    with pytest.raises(InvalidImage):
        decode_image(data)

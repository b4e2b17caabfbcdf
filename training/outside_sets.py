"""Images a model must refuse to judge, as grey pixels in [0, 1]: the other tasks' datasets,
natural photographs shipped by scikit-image, a CT phantom, blanks, noise, text documents, and the
task's own images in a wrong window (inverted, or a window far too narrow)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from app.imaging.decode import decode_image
from training.data import IMAGE_SUFFIXES

Pixels = np.ndarray
# Photographs bundled inside scikit-image's wheel (no download).
PHOTOS = (
    "astronaut.png", "brick.png", "camera.png", "cell.png", "chelsea.png", "coffee.png",
    "coins.png", "color.png", "grass.png", "gravel.png", "horse.png", "hubble_deep_field.jpg",
    "ihc.png", "logo.png", "microaneurysms.png", "moon.png", "motorcycle_left.png",
    "retina.jpg", "rocket.jpg", "clock_motion.png", "chessboard_GRAY.png",
)  # fmt: skip
FACES = 40  # of scikit-image's Labeled Faces in the Wild subset
SEEDS = 10


def skimage_data() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


def dataset_images(root: Path) -> Iterator[Pixels]:
    """Every image file under `root`, decoded as the service decodes uploads."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            yield decode_image(path.read_bytes()).pixels


def photographs() -> list[Pixels]:
    """scikit-image's bundled photographs and a few of its face crops."""
    folder = skimage_data()
    photos = [decode_image((folder / name).read_bytes()).pixels for name in PHOTOS]
    faces = np.load(folder / "lfw_subset.npy")[:FACES]
    return photos + [np.asarray(face, dtype=np.float32) for face in faces]


def phantom() -> list[Pixels]:
    """The Shepp-Logan CT phantom, as is and with mild noise."""
    image = decode_image((skimage_data() / "phantom.png").read_bytes()).pixels
    rng = np.random.default_rng(0)
    noisy = np.clip(image + rng.normal(0, 0.05, image.shape), 0, 1).astype(np.float32)
    return [image, noisy]


def blanks(side: int = 256) -> list[Pixels]:
    """Uniform images from black to white."""
    return [np.full((side, side), level, dtype=np.float32) for level in np.linspace(0, 1, 11)]


def noise(side: int = 256) -> list[Pixels]:
    """Uniform, Gaussian, salt-and-pepper and smooth (blurred) noise, ten seeds each."""
    images: list[Pixels] = []
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        images.append(rng.random((side, side), dtype=np.float32))
        images.append(np.clip(rng.normal(0.5, 0.2, (side, side)), 0, 1).astype(np.float32))
        images.append((rng.random((side, side)) > 0.5).astype(np.float32))
        coarse = Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8))
        images.append(
            np.asarray(coarse.resize((side, side), Image.Resampling.BICUBIC), np.float32) / 255
        )
    return images


def documents() -> list[Pixels]:
    """scikit-image's scanned page and text, and typed pages at several sizes and inks."""
    folder = skimage_data()
    scans = [decode_image((folder / name).read_bytes()).pixels for name in ("page.png", "text.png")]
    return scans + [_typed_page(seed) for seed in range(SEEDS)]


def _typed_page(seed: int, side: int = 512) -> Pixels:
    rng = np.random.default_rng(seed)
    page = Image.new("L", (side, side), int(rng.integers(200, 256)))
    draw = ImageDraw.Draw(page)
    font = ImageFont.load_default(size=int(rng.integers(10, 28)))
    words = ["patient", "report", "findings", "impression", "the", "of", "and", "scan", "normal"]
    for line in range(0, side, int(rng.integers(16, 40))):
        text = " ".join(rng.choice(words, size=12))
        draw.text((10, line), text, fill=int(rng.integers(0, 80)), font=font)
    return np.asarray(page, dtype=np.float32) / 255


WRONG_WINDOWS: dict[str, Callable[[Pixels], Pixels]] = {
    "inverted": lambda p: 1.0 - p,
    "window 1/8 as wide": lambda p: np.clip((p - 0.5) * 8 + 0.5, 0, 1).astype(np.float32),
}


def wrong_window(own: list[Pixels]) -> list[Pixels]:
    """The task's own images displayed as if windowed wrongly."""
    return [shift(p) for shift in WRONG_WINDOWS.values() for p in own]


def synthetic_sets() -> dict[str, list[Pixels]]:
    """The outside sets that need no dataset."""
    return {
        "photographs": photographs(),
        "ct_phantom": phantom(),
        "blank": blanks(),
        "noise": noise(),
        "documents": documents(),
    }

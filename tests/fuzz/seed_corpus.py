"""Write a small seed corpus (valid files of every supported format) for the fuzzer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.factories import dicom_bytes, encode


def main(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (12, 16), dtype=np.uint8))
    for fmt in ("PNG", "JPEG", "TIFF", "BMP", "WEBP"):
        (folder / f"seed.{fmt.lower()}").write_bytes(encode(image, fmt))
    (folder / "seed16.png").write_bytes(
        encode(Image.fromarray((np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)), "PNG")
    )
    (folder / "seed.dcm").write_bytes(dicom_bytes(np.arange(16, dtype=np.uint16).reshape(4, 4)))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

"""Where decoding and preprocessing spend their time, per stage (on demand, CPU, no HTTP).

    python -m tests.benchmarks.preprocess [--model chest-ct-cancer] [--rounds 30]

For the model's input contract and the shared test slices: per stage (the file opened and
decoded, the pixels made grey, the crop to the body, the resize, the contrast stretch) and for
the whole of `prepare`, the median per image over all rounds. Run it at two commits (e.g. with
`git stash`) to compare a change; the VM's drift between runs is of the same size as most
changes here, so compare medians of several runs."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from app.imaging.decode import _open, _to_grey
from app.imaging.formats import sniff_format
from app.imaging.preprocess import InputSpec, _resize, _stretch, framed
from app.inference.predict import default_window, prepare
from app.inference.store import LoadedModel
from tests.benchmarks.run import raw_model, sample_images


def stages(spec: InputSpec) -> list[tuple[str, Callable[[Any], Any]]]:
    """Each stage as a function of the previous stage's result, starting from the file."""
    return [
        ("open and decode", lambda data: _open(data, sniff_format(data), 10**9)),
        ("to grey float32", _to_grey),
        ("crop / pad (framed)", lambda grey: framed(grey, spec)),
        ("resize", lambda grey: _resize(grey, spec)),
        ("contrast stretch", lambda pixels: _stretch(pixels, spec)),
    ]


def stage_medians(spec: InputSpec, images: list[bytes], rounds: int) -> dict[str, float]:
    """Median ms per image of each stage."""
    steps = stages(spec)
    times: dict[str, list[float]] = {name: [] for name, _ in steps}
    for _ in range(rounds):
        for data in images:
            value: Any = data
            for name, stage in steps:
                started = time.perf_counter()
                value = stage(value)
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def prepare_median(model: LoadedModel, images: list[bytes], rounds: int) -> float:
    """Median ms per image of the service's `prepare` (decode + preprocessing, checks included)."""
    window = default_window(model)
    times = []
    for _ in range(rounds):
        for data in images:
            started = time.perf_counter()
            prepare(model, data, 10**9, window)
            times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="chest-ct-cancer")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    model = raw_model(args.models_dir, args.model)
    images = sample_images(48)
    prepare_median(model, images, 2)  # warm-up
    medians = stage_medians(model.card.input, images, args.rounds)
    medians["whole prepare"] = prepare_median(model, images, args.rounds)
    print(f"## Decode + preprocessing: {args.model} ({len(images)} slices, ms per image)\n")
    print("| stage | median ms |\n|---|---|")
    for name, ms in medians.items():
        print(f"| {name} | {ms:.3f} |")
    print(f"\n(input {model.card.input.height} x {model.card.input.width}, numpy {np.__version__})")


if __name__ == "__main__":
    main()

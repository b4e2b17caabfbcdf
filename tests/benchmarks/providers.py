"""`session.run` alone, per shipped model and batch size, under CUDA (where this onnxruntime
build offers it) and the CPU (on demand, no HTTP, bounded in time).

    python -m tests.benchmarks.providers
    python -m tests.benchmarks.providers --providers CUDAExecutionProvider --seconds 2

For each provider: the time to load every shipped model as the service loads it; then, per model
and batch size, the first run at that shape (a CUDA session searches cuDNN's convolution
algorithms once per new input shape) and the median of the runs after it; then decode +
preprocessing of one image on this machine's CPU. Each table is printed as soon as it is
measured, so a run cut short keeps what it measured. `tests.benchmarks.run` measures the
service itself."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.inference.predict import prepare, run_batch
from app.inference.store import LoadedModel, ModelStore
from tests.benchmarks.run import sample_images
from tests.factories import loaded_store

BATCHES = (1, 4, 16, 64)
DEFAULT_PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


@dataclass(frozen=True)
class Timing:
    """One model at one batch size: the first run at that shape and the median after it (ms)."""

    first_ms: float
    median_ms: float
    runs: int


def time_runs(run: Callable[[], object], seconds: float) -> Timing:
    """Time `run` once on its own, then repeatedly for `seconds`."""
    started = time.perf_counter()
    run()
    first = time.perf_counter() - started
    times: list[float] = []
    began = time.perf_counter()
    while time.perf_counter() - began < seconds or not times:
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return Timing(first * 1000, statistics.median(times) * 1000, len(times))


def load_store(models_dir: Path, provider: str) -> tuple[ModelStore, float]:
    """Every shipped model on `provider` (CPU as the fallback), and the seconds loading took."""
    started = time.perf_counter()
    store = loaded_store(models_dir, max_batch_size=1, providers=[provider])
    return store, time.perf_counter() - started


def batch_of(model: LoadedModel, images: list[bytes], size: int) -> np.ndarray:
    """`size` model inputs made from `images`, cycling through them."""
    tensors = [prepare(model, image, 10**9).tensor for image in images]
    return np.stack([tensors[i % len(tensors)] for i in range(size)])


def measure_provider(
    provider: str, args: argparse.Namespace, images: list[bytes]
) -> list[LoadedModel]:
    """Print the load time and one table row per model and batch size as each is measured."""
    store, load_s = load_store(args.models_dir, provider)
    failures = f"; failed: {store.failures}" if store.failures else ""
    print(f"\n### {provider}: every model loaded in {load_s:.2f} s{failures}\n", flush=True)
    print("| model | provider in use | batch | first run ms | median ms | images/s | runs |")
    print("|---|---|---|---|---|---|---|", flush=True)
    for model in store.all_models():
        for size in args.batches:
            inputs = batch_of(model, images, size)
            timing = time_runs(lambda m=model, x=inputs: run_batch(m, x), args.seconds)
            rate = size / timing.median_ms * 1000
            print(
                f"| {model.key} | {model.provider} | {size} | {timing.first_ms:.1f} | "
                f"{timing.median_ms:.2f} | {rate:.0f} | {timing.runs} |",
                flush=True,
            )
    return store.all_models()


def print_decode_time(model: LoadedModel, images: list[bytes], seconds: float) -> None:
    """Decode + preprocessing of one image into `model`'s input, on the CPU."""
    timing = time_runs(lambda: [prepare(model, image, 10**9) for image in images], seconds)
    per_image = timing.median_ms / len(images)
    print(f"\nDecode + preprocessing, {model.card.name}: {per_image:.2f} ms per image", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument(
        "--providers",
        default=",".join(p for p in DEFAULT_PROVIDERS if p in ort.get_available_providers()),
        help="comma-separated; default: CUDA (where this onnxruntime build offers it) and CPU",
    )
    parser.add_argument("--batches", type=int, nargs="+", default=list(BATCHES))
    parser.add_argument("--seconds", type=float, default=1.0, help="per model and batch size")
    args = parser.parse_args()
    images = sample_images()
    print(f"onnxruntime {ort.__version__}, {len(images)} images", flush=True)
    models: list[LoadedModel] = []
    for provider in args.providers.split(","):
        models = measure_provider(provider.strip(), args, images) or models
    if models:
        print_decode_time(models[0], images, args.seconds)


if __name__ == "__main__":
    main()

"""A 300-slice DICOM series posted as one zip, against the raw in-process pipeline on the same
slices (on demand, loopback only, bounded).

    python -m tests.benchmarks.study [--model chest-ct-cancer] [--slices 300] [--rounds 3]

Raw: read each DICOM file (pydicom), window, preprocess and `session.run` at batch 1, 4, 8, 16
and 32, in one process (the files as bytes: no zip to inflate, no header pass). Then the cost
per slice of each stage before `session.run`, in one thread, and the rate of the stages after
the header pass in 1, 2 and as many threads as there are cores. Service: a real `ctscan serve`
process at its default settings, the zip posted `--rounds` times, each round paired with a raw
run at its best batch; slices per second from the median round, its ratio to the raw best batch
and the median of each round's ratio to its own raw run (the fairer one on a VM whose speed
drifts), and the server's peak resident memory (VmHWM) over the whole run. The slices are the
model's own dataset's images written as a CT series through its window when the shared datasets
are here, else drawn patterns."""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from app.imaging.dicom import decode_dataset
from app.imaging.preprocess import to_model_input
from app.inference.predict import default_window, run_model
from app.inference.store import LoadedModel
from app.studies.pipeline import read_headers, slice_input
from app.studies.sources import StudyLimits, ZipSource
from app.studies.volumes import FrameReader
from tests.factories import SHIPPED_MODELS, loaded_store
from tests.series_factory import SeriesSpec, slice_file, zipped
from tests.server import start_server
from tests.test_shipped_models import DATASETS, FOLDERS

BATCHES = (1, 4, 8, 16, 32)


def slice_pixels(model: str, count: int, side: int = 512) -> list[np.ndarray]:
    """Grey slices in [0, 1]: the task's own images (cycled), else drawn ellipses."""
    images = (DATASETS / FOLDERS[model]).rglob("*") if model in FOLDERS else iter(())
    files = sorted(p for p in images if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    if files:
        return [
            np.asarray(
                Image.open(files[i % len(files)]).convert("L").resize((side, side)), np.float32
            )
            / 255
            for i in range(count)
        ]
    yy, xx = np.mgrid[:side, :side] / side
    return [
        ((xx - 0.5) ** 2 + (yy - 0.5 - i / count / 4) ** 2 < 0.16).astype(np.float32) * 0.7
        for i in range(count)
    ]


def series_zip(model: LoadedModel, count: int) -> tuple[bytes, list[bytes]]:
    """The series as files (through the model's window, so it sees what it was trained on)."""
    window = default_window(model) or (40.0, 400.0)
    spec = SeriesSpec([0.0] * count, spacing_mm=1.0)
    files = [
        slice_file(spec, i, count - i, pixels=p, window=window)
        for i, p in enumerate(slice_pixels(model.card.name, count))
    ]
    return zipped({f"DICOM/IM{i:05d}": f for i, f in enumerate(files)}), files


def raw_rate(model: LoadedModel, files: list[bytes], batch: int) -> float:
    """Slices per second: read + window + preprocess + session.run at `batch`, one process."""
    import pydicom

    window = default_window(model)
    started = time.perf_counter()
    for start in range(0, len(files), batch):
        tensors = [
            to_model_input(
                decode_dataset(pydicom.dcmread(io.BytesIO(f)), window).pixels, model.card.input
            )
            for f in files[start : start + batch]
        ]
        run_model(model, np.stack(tensors))
    return len(files) / (time.perf_counter() - started)


def stage_ms(model: LoadedModel, data: bytes) -> dict[str, float]:
    """Milliseconds per slice of what the study endpoint does before `session.run`, one thread:
    the header pass over the zip (serial in the service: it bounds any accelerator's rate), then
    per slice the member's inflation, reading its pixels and windowing them, and the
    preprocessing."""
    source = ZipSource(io.BytesIO(data), StudyLimits())
    window = default_window(model)
    timed: dict[str, float] = {}
    started = time.perf_counter()
    headers = read_headers(source)[0]
    timed["header pass"] = time.perf_counter() - started
    started = time.perf_counter()
    files = {h.member: source.read(h.member) for h in headers}
    timed["member inflation"] = time.perf_counter() - started
    reader = FrameReader(files.__getitem__)
    started = time.perf_counter()
    greys = [reader.decoded(header, window).pixels for header in headers]
    timed["pixels and window"] = time.perf_counter() - started
    started = time.perf_counter()
    for grey in greys:
        to_model_input(grey, model.card.input)
    timed["preprocessing"] = time.perf_counter() - started
    return {stage: seconds * 1000 / len(headers) for stage, seconds in timed.items()}


def decode_rate(model: LoadedModel, data: bytes, threads: int) -> float:
    """Slices per second through inflation, pixels, window and preprocessing in `threads`
    threads (the service's decode workers on an accelerator), after the header pass."""
    source = ZipSource(io.BytesIO(data), StudyLimits())
    headers, reader = read_headers(source)[0], FrameReader(source.read)
    with ThreadPoolExecutor(threads) as pool:
        started = time.perf_counter()
        list(pool.map(lambda header: slice_input(model, reader, header), headers))
        return len(headers) / (time.perf_counter() - started)


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="chest-ct-cancer")
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    model = loaded_store().get(args.model)  # the providers the service gets (CTSCAN_PROVIDERS)
    data, files = series_zip(model, args.slices)
    print(f"{args.slices}-slice zip of {len(data) / 1e6:.1f} MB, {model.key}", flush=True)
    rates = {batch: raw_rate(model, files, batch) for batch in BATCHES}
    best = max(rates, key=lambda b: rates[b])
    print(
        "raw slices/s by batch: " + ", ".join(f"{b}: {r:.1f}" for b, r in rates.items()), flush=True
    )
    stages = stage_ms(model, data)
    print(
        "per slice, one thread: "
        + ", ".join(f"{k} {v:.2f} ms" for k, v in stages.items())
        + f" (the serial header pass alone allows {1000 / stages['header pass']:.0f} slices/s)",
        flush=True,
    )
    threads = sorted({1, 2, os.cpu_count() or 1})
    decoding = {n: decode_rate(model, data, n) for n in threads}
    print(
        "decoding after the header pass, slices/s by threads: "
        + ", ".join(f"{n}: {r:.0f}" for n, r in decoding.items()),
        flush=True,
    )
    with tempfile.TemporaryDirectory() as data_dir:
        env = {"CTSCAN_DATA_DIR": data_dir}  # the service at its own study batch size
        server, base, _ = start_server(SHIPPED_MODELS, env=env, capture=False)
        try:
            seconds: list[float] = []
            raws: list[float] = []
            for _ in range(args.rounds):
                raw = raw_rate(model, files, best)
                raws.append(raw)
                started = time.perf_counter()
                response = httpx.post(
                    f"{base}/v1/models/{args.model}/studies", content=data, timeout=600
                )
                seconds.append(time.perf_counter() - started)
                response.raise_for_status()
                print(
                    f"  round: service {args.slices / seconds[-1]:.1f} slices/s, raw {raw:.1f}",
                    flush=True,
                )
            peak = peak_rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    service = args.slices / statistics.median(seconds)
    print(f"| raw best (batch {best}) | {rates[best]:.1f} slices/s |")
    ratio = service / rates[best]
    paired = statistics.median(args.slices / s / r for s, r in zip(seconds, raws, strict=True))
    print(
        f"| service, median of {args.rounds} | {service:.1f} slices/s | {ratio:.2f} x raw best, "
        f"{paired:.2f} x its round's raw (median) |"
    )
    print(f"| server peak resident memory | {peak:.0f} MB |")


if __name__ == "__main__":
    main()

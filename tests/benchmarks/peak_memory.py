"""Resident peak and throughput of `ctscan serve` under load, for several server environments
compared in alternated starts (on demand, loopback only, bounded in time; needs `wrk`).

    python -m tests.benchmarks.peak_memory --rounds 3 \\
        off=CTSCAN_CPU_MEM_ARENA=off shared=CTSCAN_CPU_MEM_ARENA=shared

Each argument is NAME=VARIABLE=VALUE[,VARIABLE=VALUE...] (NAME= for the defaults). Every round
starts one server per set-up, in turn, and drives it with wrk at concurrency 16, then 64, for
`--seconds` each; the peak resident size (VmHWM) is read after each. Alternating the starts
keeps a shared machine's drift from favouring one set-up. `--dicom` uploads each slice as a
512 x 512 CT DICOM file (16-bit, lung window range) instead of its PNG. Prints one line per
server and a markdown table."""

from __future__ import annotations

import argparse
import io
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from app.imaging.dicom import WINDOW_PRESETS
from tests.benchmarks.run import multipart, progress, resident_mb, sample_images, wrk_load
from tests.series_factory import SeriesSpec, slice_file
from tests.server import start_server


@dataclass(frozen=True)
class Start:
    """One server start: images/s and peak resident MB after c16, then after c64."""

    c16_rate: float
    c16_peak: float
    c64_rate: float
    c64_peak: float

    def summary(self) -> str:
        return (
            f"c16 {self.c16_rate:.1f} images/s, peak {self.c16_peak:.0f} MB; "
            f"c64 {self.c64_rate:.1f} images/s, peak {self.c64_peak:.0f} MB"
        )


def parse_setup(text: str) -> tuple[str, dict[str, str]]:
    """`NAME=VAR=VALUE,VAR=VALUE` → (NAME, {VAR: VALUE})."""
    name, _, spec = text.partition("=")
    pairs = [item.split("=", 1) for item in spec.split(",") if item]
    if not name or "=" not in text or any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected NAME=VAR=VALUE[,VAR=VALUE...], got {text!r}")
    return name, dict(pairs)


def measure(env: dict[str, str], models_dir: Path, model: str, bodies: Path, seconds: int) -> Start:
    """Start a server on `models_dir` with `env`, load it at c16 then c64, stop it."""
    server, base, _ = start_server(models_dir, env=env, capture=False)
    try:
        wrk_load(base, model, bodies, 4, 2)  # connections and first batches
        c16 = wrk_load(base, model, bodies, 16, seconds)
        c16_peak = resident_mb(server.pid, "VmHWM")
        c64 = wrk_load(base, model, bodies, 64, seconds)
        return Start(c16.rps, c16_peak, c64.rps, resident_mb(server.pid, "VmHWM"))
    finally:
        server.terminate()
        server.wait(timeout=30)


def as_ct_dicom(image: bytes, size: int = 512) -> bytes:
    """A grey slice as a CT DICOM file through the lung window (-1350 to 150 HU)."""
    grey = np.asarray(Image.open(io.BytesIO(image)).convert("L").resize((size, size))) / 255
    return slice_file(SeriesSpec([0.0]), 0, 1, pixels=grey, window=WINDOW_PRESETS["lung"])


def table(results: dict[str, list[Start]]) -> str:
    """One row per set-up, each cell listing its starts in order."""

    def cells(values: list[float], unit: str = "") -> str:
        return ", ".join(f"{v:.0f}{unit}" if unit else f"{v:.1f}" for v in values)

    rows = [
        "| set-up | peak after c16 | peak after c64 | c16 images/s | c64 images/s |",
        "|---|---|---|---|---|",
    ]
    for name, starts in results.items():
        rows.append(
            f"| {name} | {cells([s.c16_peak for s in starts], ' MB')} "
            f"| {cells([s.c64_peak for s in starts], ' MB')} "
            f"| {cells([s.c16_rate for s in starts])} "
            f"| {cells([s.c64_rate for s in starts])} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("setups", nargs="+", type=parse_setup, help="NAME=VAR=VALUE,...")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10, help="per load level")
    parser.add_argument("--model", default="chest-ct-cancer")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--dicom", action="store_true", help="upload 512 x 512 CT DICOM files")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        parser.error("needs wrk (apt-get install wrk)")
    results: dict[str, list[Start]] = {name: [] for name, _ in args.setups}
    with tempfile.TemporaryDirectory() as tmp:
        bodies = Path(tmp)
        for index, image in enumerate(sample_images()):
            body = as_ct_dicom(image) if args.dicom else image
            (bodies / f"body-{index:03d}").write_bytes(multipart(body))
        for round_ in range(1, args.rounds + 1):
            for name, env in args.setups:
                start = measure(env, args.models_dir, args.model, bodies, args.seconds)
                results[name].append(start)
                progress(f"round {round_} {name}: {start.summary()}")
    print(table(results))


if __name__ == "__main__":
    main()

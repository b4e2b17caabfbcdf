"""Serving benchmark (on demand, loopback only, bounded in count and time).

    python -m tests.benchmarks.run --model chest-ct-cancer --requests 300

Measures, in one run on one machine: (1) the raw in-process pipeline (decode + preprocess +
session.run, no HTTP) at batch 1 and its best batch size; (2) the service over real HTTP
(`ctscan serve` on 127.0.0.1) at several concurrencies; (3) process start to ready;
(4) resident memory with every model in the store loaded. Prints a markdown table."""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path

import httpx
import numpy as np

from app.config import Settings
from app.inference.predict import prepare, run_batch
from app.inference.store import ModelStore
from tests.factories import encode
from tests.server import start_server

DATASET_IMAGES = Path("../shared/datasets/chest_ct/train")


def sample_images(count: int = 32) -> list[bytes]:
    """Real slices when the shared data is present, else synthetic 512 x 512 PNGs."""
    files = sorted(DATASET_IMAGES.rglob("*.png"))[:count] if DATASET_IMAGES.is_dir() else []
    if files:
        return [f.read_bytes() for f in files]
    from PIL import Image

    rng = np.random.default_rng(0)
    return [
        encode(Image.fromarray(rng.integers(0, 255, (512, 512), dtype=np.uint8)), "PNG")
        for _ in range(count)
    ]


def raw_pipeline(models_dir: Path, name: str, images: list[bytes], seconds: float) -> dict:
    """Images/s of decode + preprocess + session.run in this process, per batch size."""
    store = ModelStore(Settings(models_dir=models_dir, max_batch_size=1))
    store.load_all()
    model = store.get(name)
    results = {}
    for batch in (1, 4, 8, 16, 32):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            chunk = [images[(done + i) % len(images)] for i in range(batch)]
            tensors = [prepare(model, data, 10**9).tensor for data in chunk]
            run_batch(model, np.stack(tensors))
            done += batch
        results[batch] = done / (time.perf_counter() - started)
    return results


async def http_load(
    base: str, name: str, images: list[bytes], concurrency: int, requests: int
) -> dict:
    latencies: list[float] = []
    failures = 0
    queue = list(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal failures
        while queue:
            index = queue.pop()
            started = time.perf_counter()
            response = await client.post(
                f"{base}/v1/models/{name}/predict",
                files={"file": ("x", images[index % len(images)])},
            )
            latencies.append(time.perf_counter() - started)
            failures += response.status_code != 200

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    quantiles = np.percentile(latencies, [50, 95, 99]) * 1000
    return {
        "rps": requests / elapsed,
        "p50": quantiles[0],
        "p95": quantiles[1],
        "p99": quantiles[2],
        "failures": failures,
    }


def resident_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="chest-ct-cancer")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--raw-seconds", type=float, default=5.0)
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    images = sample_images()
    raw = raw_pipeline(args.models_dir, args.model, images, args.raw_seconds)
    best = max(raw, key=lambda b: raw[b])
    server, _, ready_s = start_server(args.models_dir, args.port, capture=False)
    try:
        base = f"http://127.0.0.1:{args.port}"
        asyncio.run(http_load(base, args.model, images, 4, 40))  # warm the connections
        rows = {
            c: asyncio.run(http_load(base, args.model, images, c, args.requests))
            for c in (1, 4, 16, 64)
        }
        rss = resident_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"## Serving benchmark: {args.model} ({len(images)} images, CPU)\n")
    print("| measurement | images/s | x raw best | p50 ms | p95 ms | p99 ms | failed |")
    print("|---|---|---|---|---|---|---|")
    print(f"| raw pipeline, batch 1 | {raw[1]:.1f} | {raw[1] / raw[best]:.2f} | | | | |")
    print(f"| raw pipeline, best batch ({best}) | {raw[best]:.1f} | 1.00 | | | | |")
    for concurrency, row in rows.items():
        print(
            f"| HTTP, concurrency {concurrency} | {row['rps']:.1f} | "
            f"{row['rps'] / raw[best]:.2f} | {row['p50']:.1f} | {row['p95']:.1f} | "
            f"{row['p99']:.1f} | {row['failures']} |"
        )
    print(f"\nStart to ready: {ready_s:.2f} s. Resident memory after the run: {rss:.0f} MB.")
    print(
        f"Raw images/s by batch: { {b: round(v, 1) for b, v in raw.items()} }; "
        f"median {statistics.median(raw.values()):.1f}."
    )


if __name__ == "__main__":
    main()

"""Soak and overload (on demand; loopback only; bounded in count and time).

    python -m tests.benchmarks.soak --minutes 10 --concurrency 32

Phase 1: `--minutes` at `--concurrency` on real images: every request must succeed and the
server's resident memory may grow by less than 10 %. Phase 2: twice the queue capacity at once:
only 200 or 503 (with Retry-After) may come back, none slower than `--timeout`. Phase 3: the
service answers normally again."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.benchmarks.run import resident_mb, sample_images
from tests.server import start_server


def start(models_dir: Path, port: int, queue: int) -> subprocess.Popen[str]:
    env = {"CTSCAN_MAX_QUEUE": str(queue), "CTSCAN_LOG_LEVEL": "WARNING"}
    return start_server(models_dir, port, env, capture=False)[0]


async def soak(url: str, images: list[bytes], concurrency: int, seconds: float) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    deadline = time.monotonic() + seconds

    async def worker(client: httpx.AsyncClient, offset: int) -> None:
        index = offset
        while time.monotonic() < deadline:
            try:
                response = await client.post(
                    url, files={"file": ("x", images[index % len(images)])}
                )
                outcomes[str(response.status_code)] += 1
            except httpx.HTTPError as exc:
                outcomes[type(exc).__name__] += 1
            index += concurrency

    async with httpx.AsyncClient(timeout=60) as client:
        await asyncio.gather(*(worker(client, i) for i in range(concurrency)))
    return outcomes


async def burst(url: str, image: bytes, count: int, timeout: float) -> tuple[Counter[str], float]:
    outcomes: Counter[str] = Counter()
    slowest = 0.0

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal slowest
        started = time.monotonic()
        try:
            response = await client.post(url, files={"file": ("x", image)})
            retry = "retry-after" in response.headers
            outcomes[f"{response.status_code}{'+retry-after' if retry else ''}"] += 1
        except httpx.HTTPError as exc:
            outcomes[type(exc).__name__] += 1
        slowest = max(slowest, time.monotonic() - started)

    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
        await asyncio.gather(*(one(client) for _ in range(count)))
    return outcomes, slowest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="chest-ct-cancer")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--queue", type=int, default=64)
    parser.add_argument("--timeout", type=float, default=30.0)
    parser.add_argument("--port", type=int, default=8766)
    args = parser.parse_args()
    images = sample_images()
    server = start(args.models_dir, args.port, args.queue)
    url = f"http://127.0.0.1:{args.port}/v1/models/{args.model}/predict"
    try:
        # warm up at full concurrency (arena sizes for every batch size) before the baseline
        asyncio.run(soak(url, images, args.concurrency, 30))
        before = resident_mb(server.pid)
        outcomes = asyncio.run(soak(url, images, args.concurrency, args.minutes * 60))
        after = resident_mb(server.pid)
        overload, slowest = asyncio.run(burst(url, images[0], 4 * args.queue, args.timeout))
        recovered = httpx.post(url, files={"file": ("x", images[0])}, timeout=30).status_code
    finally:
        server.terminate()
        server.wait(timeout=30)
    growth = (after - before) / before * 100
    print(
        f"soak: {args.minutes} min at c{args.concurrency}: {dict(outcomes)}; "
        f"RSS {before:.0f} → {after:.0f} MB ({growth:+.1f} %)"
    )
    print(
        f"overload: {4 * args.queue} at once with queue {args.queue}: {dict(overload)}; "
        f"slowest {slowest:.1f} s (limit {args.timeout:.0f} s)"
    )
    print(f"recovery: {recovered}")
    ok = (
        set(outcomes) == {"200"}
        and growth < 10
        and recovered == 200
        and set(overload) <= {"200", "503+retry-after"}
        and slowest <= args.timeout
    )
    print("PASS" if ok else "FAIL")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

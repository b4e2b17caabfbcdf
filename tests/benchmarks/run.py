"""Serving benchmark (on demand, loopback only, bounded in count and time).

    python -m tests.benchmarks.run --model chest-ct-cancer

Measures, in one run on one machine: (1) the raw in-process pipeline (decode + preprocess +
session.run, no HTTP) at batch 1 and its best batch size; (2) the service over real HTTP
(`ctscan serve` on 127.0.0.1) at concurrency 1, 4, 16, 64, driven by `wrk` when it is installed
(a C load generator that leaves the CPU to the server) or else by an async Python client;
(3) overload at concurrency 256; (4) process start to ready and resident memory with every model
loaded. The c16 targets compare the raw best batch and the service measured in turns (raw, then
c16, five times): the VM's speed drifts. Each turn also reports the CPU time each side used, which
splits the throughput ratio into cores kept busy x CPU per image. Prints markdown tables and the
issue's targets, met or not."""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from app.config import Settings
from app.inference.predict import prepare, run_batch
from app.inference.store import LoadedModel
from tests.factories import encode, loaded_store
from tests.server import start_server

DATASET_IMAGES = Path("../shared/datasets/chest_ct/train")
BOUNDARY = "ctscanbenchmark"


@dataclass
class Load:
    """One load level: throughput, latency quantiles (ms) and status counts."""

    rps: float
    p50: float
    p95: float
    p99: float
    failures: int  # neither 200 nor 503
    refused: int = 0  # 503 (overloaded)
    failure_kinds: dict[str, int] = field(default_factory=dict)  # what failed, when known

    def summary(self) -> str:
        return (
            f"{self.rps:.1f} images/s, p50 / p95 / p99 {self.p50:.1f} / {self.p95:.1f} / "
            f"{self.p99:.1f} ms, {self.failures} failed, {self.refused} x 503"
        )


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


def raw_model(models_dir: Path, name: str) -> LoadedModel:
    """The model, loaded in this process as the service loads it, for the raw pipeline.

    Same session options as the service, so the targets measure what serving adds. With
    onnxruntime's default options the raw pipeline is 0.1-0.6 ms faster at batch 1 and as fast
    at its best batch (chest CT, alternated in process, 2026-12-05: 11.5-11.9 vs 11.9-12.1 ms,
    120-124 vs 115-124 images/s at batch 8), but its threads keep spinning after each run and
    slow whatever the machine does next: alternated with the service, the service's extra time
    read 0.3-1.0 ms more against it."""
    return loaded_store(models_dir, max_batch_size=1).get(name)


BATCHES = (1, 2, 4, 8, 16)


def raw_pipeline(
    model: LoadedModel, images: list[bytes], seconds: float, batches: tuple[int, ...] = BATCHES
) -> tuple[dict[int, float], float]:
    """Images/s of decode + preprocess + session.run in this process, per batch size, and the
    median single-image latency (ms)."""
    results, single = {}, []
    for batch in batches:
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            began = time.perf_counter()
            chunk = [images[(done + i) % len(images)] for i in range(batch)]
            tensors = [prepare(model, data, 10**9).tensor for data in chunk]
            run_batch(model, np.stack(tensors))
            done += batch
            if batch == 1:
                single.append(time.perf_counter() - began)
        results[batch] = done / (time.perf_counter() - started)
    return results, statistics.median(single) * 1000 if single else float("nan")


@dataclass(frozen=True)
class SingleImage:
    """p50 ms of one image at a time: the raw pipeline, the service with a multipart upload and
    with the image as the whole body; and the service's extra ms over raw, each the median of
    the rounds' differences of block medians."""

    raw_ms: float
    form_ms: float
    whole_ms: float
    form_extra_ms: float
    whole_extra_ms: float


def paired_single(
    model: LoadedModel, base: str, images: list[bytes], rounds: int = 25, block: int = 8
) -> SingleImage:
    """One image at a time through the raw pipeline, through the service at concurrency 1 as a
    multipart upload, and as the whole request body. The three alternate in blocks of `block`
    back-to-back runs, `rounds` times, so all see the same machine (a shared VM's speed drifts
    by more than the difference we look for, even between rounds: hence the extra time as the
    median of per-round differences); the first run of each block is dropped: whichever path
    runs first after another pays ~0.6 ms of wake-up and cache refill on these 2 cores
    (measured by swapping the order), which a steady stream does not."""
    client = WireClient(base)
    route = f"/v1/models/{model.card.name}/predict"
    forms = [client.request(route, multipart(image), MULTIPART) for image in images]
    wholes = [client.request(route, image, "application/octet-stream") for image in images]

    def raw(index: int) -> float:
        started = time.perf_counter()
        run_batch(model, prepare(model, images[index], 10**9).tensor[np.newaxis])
        return time.perf_counter() - started

    paths = (raw, lambda index: client.send(forms[index]), lambda index: client.send(wholes[index]))
    blocks = alternated(paths, len(images), rounds, block)
    client.close()
    raw_ms, form_ms, whole_ms = (pooled_median_ms(rounds_of) for rounds_of in blocks)
    form_extra, whole_extra = (
        statistics.median(
            statistics.median(mine) - statistics.median(theirs)
            for mine, theirs in zip(served, blocks[0], strict=True)
        )
        * 1000
        for served in blocks[1:]
    )
    return SingleImage(raw_ms, form_ms, whole_ms, form_extra, whole_extra)


def alternated(
    paths: Sequence[Callable[[int], float]], count: int, rounds: int, block: int = 8
) -> list[list[list[float]]]:
    """Each path `block` times back to back (on items 0..count-1 in turn), path after path,
    `rounds` times: per path, per round, the seconds of its runs without the block's first,
    which pays for the switch from the path before."""
    blocks: list[list[list[float]]] = [[] for _ in paths]
    for round_index in range(rounds):
        for path, kept in zip(paths, blocks, strict=True):
            runs = [path((round_index * block + i) % count) for i in range(block)]
            kept.append(runs[1:])
    return blocks


def pooled_median_ms(rounds: list[list[float]]) -> float:
    """The median of one path's runs over all its rounds, in ms (see `alternated`)."""
    return statistics.median(t for one in rounds for t in one) * 1000


MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"


class WireClient:
    """One keep-alive HTTP/1.1 connection that sends ready-made requests and reads each answer
    by its Content-Length: a few µs of its own per request, like wrk. (http.client builds and
    parses headers in Python: ~0.3 ms more per request at concurrency 1 on 2 cores, 2026-12-05,
    which no server could remove.)"""

    def __init__(self, base: str) -> None:
        host, port = base.removeprefix("http://").split(":")
        self._host = host
        self._socket = socket.create_connection((host, int(port)), timeout=60)
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def request(self, path: str, body: bytes, content_type: str) -> bytes:
        """The bytes of one POST of `body` to `path`, to `send` as often as wanted."""
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host}\r\nContent-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def send(self, request: bytes) -> float:
        """Seconds to the whole answer of a prepared request; anything but 200 raises."""
        started = time.perf_counter()
        self._socket.sendall(request)
        received = b""
        while b"\r\n\r\n" not in received:
            received += self._receive()
        head, _, body = received.partition(b"\r\n\r\n")
        length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        while length and len(body) < int(length.group(1)):
            body += self._receive()
        if head.split(b" ", 2)[1] != b"200" or not length:
            raise RuntimeError(f"the server answered {head.splitlines()[0]!r}")
        return time.perf_counter() - started

    def _receive(self) -> bytes:
        chunk = self._socket.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the server closed the connection")
        return chunk

    def close(self) -> None:
        self._socket.close()


def multipart(image: bytes) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="x"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    return head + image + f"\r\n--{BOUNDARY}--\r\n".encode()


WRK_SCRIPT = """
local threads = {}
setup = function(thread) table.insert(threads, thread) end
init = function(args)
  bodies, counter, refused = {}, 0, 0
  for i, path in ipairs(BODY_FILES) do
    local f = io.open(path, "rb"); bodies[i] = f:read("*all"); f:close()
  end
end
request = function()
  counter = counter + 1
  return wrk.format("POST", "URL_PATH",
    {["Content-Type"] = "multipart/form-data; boundary=BOUNDARY"},
    bodies[counter % #bodies + 1])
end
response = function(status, headers, body)
  if status == 503 then refused = refused + 1 end
end
done = function(summary, latency, requests)
  local total_refused = 0
  for _, thread in ipairs(threads) do total_refused = total_refused + thread:get("refused") end
  io.write(string.format("RESULT %d %d %d %d %.1f %.1f %.1f\\n", summary.requests,
    summary.errors.status + summary.errors.timeout + summary.errors.connect
    + summary.errors.read + summary.errors.write - total_refused,
    summary.duration, total_refused,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def wrk_load(base: str, name: str, folder: Path, concurrency: int, seconds: int) -> Load:
    """Drive the service with wrk for `seconds`; latencies from wrk's histogram."""
    script = folder / "post.lua"
    paths = sorted(str(p) for p in folder.glob("body-*"))
    script.write_text(
        WRK_SCRIPT.replace("BODY_FILES", "{" + ", ".join(f'"{p}"' for p in paths) + "}")
        .replace("URL_PATH", f"/v1/models/{name}/predict")
        .replace("BOUNDARY", BOUNDARY)
    )
    threads = min(2, concurrency)
    command = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "30s"]
    output = subprocess.run(
        [*command, "-s", str(script), base], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"RESULT (\d+) (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+) ([\d.]+)", output)
    if not match:
        raise RuntimeError(f"wrk gave no result:\n{output}")
    requests, errors, duration_us, refused = (int(match[i]) for i in (1, 2, 3, 4))
    p50, p95, p99 = (float(match[i]) / 1000 for i in (5, 6, 7))
    served = requests - errors - refused
    return Load(served / (duration_us / 1e6), p50, p95, p99, errors, refused)


async def python_load(
    base: str, name: str, images: list[bytes], concurrency: int, requests: int
) -> Load:
    """Drive the service with an async Python client: `requests` in all."""
    latencies: list[float] = []
    statuses: list[int] = []
    kinds: Counter[str] = Counter()
    pending = list(range(requests))

    async def worker(client: httpx.AsyncClient) -> None:
        while pending:
            index = pending.pop()
            started = time.perf_counter()
            try:
                response = await client.post(
                    f"{base}/v1/models/{name}/predict",
                    files={"file": ("x", images[index % len(images)])},
                )
            except httpx.TransportError as exc:
                statuses.append(0)  # a failed request, counted, not a crashed benchmark
                kinds[f"{type(exc).__name__} after {time.perf_counter() - started:.1f} s"] += 1
                continue
            statuses.append(response.status_code)
            if response.status_code not in (200, 503):
                kinds[f"HTTP {response.status_code}: {response.text[:120]}"] += 1
            if response.status_code == 200:
                latencies.append(time.perf_counter() - started)

    limits = httpx.Limits(max_connections=concurrency)
    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    quantiles = np.percentile(latencies or [float("nan")], [50, 95, 99]) * 1000
    refused = statuses.count(503)
    failures = len(statuses) - statuses.count(200) - refused
    ok = statuses.count(200)
    p50, p95, p99 = (float(q) for q in quantiles)
    return Load(ok / elapsed, p50, p95, p99, failures, refused, dict(kinds))


def latency_buckets(base: str, name: str) -> dict[float, int]:
    """The service's own cumulative histogram of served prediction latency (seconds -> count)."""
    text = httpx.get(f"{base}/metrics", timeout=30).text
    pattern = rf'ctscan_prediction_seconds_bucket{{le="([^"]+)",model="{re.escape(name)}"}} (\S+)'
    return {float(le): int(float(count)) for le, count in re.findall(pattern, text)}


def server_side_bound(before: dict[float, int], after: dict[float, int]) -> str:
    """'p99 <= X s' for the requests served between two histogram readings."""
    served = {le: after.get(le, 0) - before.get(le, 0) for le in after}
    total = served.get(float("inf"), 0)
    if not total:
        return "no request served"
    bound = next(le for le in sorted(served) if served[le] >= 0.99 * total)
    return f"{total} served, p99 <= {bound:g} s measured inside the service"


def resident_mb(pid: int, field: str = "VmRSS") -> float:
    """Resident memory now (VmRSS) or its peak so far (VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def http_load(
    base: str, name: str, images: list[bytes], concurrency: int, args: argparse.Namespace
) -> Load:
    """The service at one concurrency: wrk over `args.bodies` when it is set, else Python."""
    if args.bodies is not None:
        return wrk_load(base, name, args.bodies, concurrency, args.seconds)
    return asyncio.run(python_load(base, name, images, concurrency, args.requests))


def rounded(rates: dict[int, float]) -> dict[int, float]:
    return {key: round(value, 1) for key, value in rates.items()}


def progress(message: str) -> None:
    """One line on stderr as soon as a measurement is done, so a run cut short keeps it."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def http_rows(
    base: str, name: str, images: list[bytes], args: argparse.Namespace
) -> dict[int, Load]:
    """The service at each concurrency."""
    asyncio.run(python_load(base, name, images, 4, 40))  # warm the connections
    rows = {}
    for concurrency in (1, 4, 16, 64):
        rows[concurrency] = http_load(base, name, images, concurrency, args)
        progress(f"concurrency {concurrency}: {rows[concurrency].summary()}")
    return rows


IN_FLIGHT = 16  # the c16 load: requests in flight at once


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds process `pid` (all its threads) has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CpuUse:
    """The CPU one process used while it did `images` in `wall_s` seconds."""

    cpu_s: float
    wall_s: float
    images: float

    def ms_per_image(self) -> float:
        return self.cpu_s * 1000 / self.images

    def cores(self) -> float:
        """Cores kept busy on average."""
        return self.cpu_s / self.wall_s


class CpuMeter:
    """Measures a process's CPU seconds and the wall-clock time over a `with` block."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._cpu = self._started = self.cpu_s = self.wall_s = 0.0

    def __enter__(self) -> CpuMeter:
        self._cpu, self._started = process_cpu_s(self._pid), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._started
        self.cpu_s = process_cpu_s(self._pid) - self._cpu

    def use(self, images_per_s: float) -> CpuUse:
        """The block's CPU use, for work done at `images_per_s` throughout it."""
        return CpuUse(self.cpu_s, self.wall_s, images_per_s * self.wall_s)


@dataclass
class Turn:
    """One turn of the c16 comparison: the raw best batch, then the service at c16, with the
    CPU each used (the raw pipeline's process; the server process, not the load generator)."""

    raw_rate: float  # images/s of the raw pipeline at the best batch size
    served: Load
    raw_cpu: CpuUse
    served_cpu: CpuUse

    def throughput_ratio(self) -> float:
        return self.served.rps / self.raw_rate

    def ratio_factors(self) -> tuple[float, float]:
        """The throughput ratio as (cores busy, service / raw) x (CPU per image, raw /
        service): whether the service keeps more cores busy or spends less per image."""
        return (
            self.served_cpu.cores() / self.raw_cpu.cores(),
            self.raw_cpu.ms_per_image() / self.served_cpu.ms_per_image(),
        )

    def p99_ratio(self, images: int = IN_FLIGHT) -> float:
        """p99 at c16 over the time the raw pipeline takes for `images` images at its best
        batch: with 16 requests in flight, Little's law leaves each about that long."""
        return self.served.p99 / (images / self.raw_rate * 1000)


def c16_in_turns(
    model: LoadedModel,
    server_pid: int,
    base: str,
    images: list[bytes],
    best: int,
    args: argparse.Namespace,
) -> list[Turn]:
    """The raw best batch and the service at concurrency 16, measured in turns: this VM's speed
    drifts by up to 30 % within minutes, more than the ratios we look for, so each ratio is
    taken within one turn and the targets use the median turn."""
    turns = []
    for _ in range(args.turns):
        with CpuMeter(os.getpid()) as raw_meter:
            (rate,) = raw_pipeline(model, images, args.raw_seconds, (best,))[0].values()
        with CpuMeter(server_pid) as served_meter:
            served = http_load(base, model.card.name, images, IN_FLIGHT, args)
        turns.append(Turn(rate, served, raw_meter.use(rate), served_meter.use(served.rps)))
        progress(f"turn {len(turns)}: raw {rate:.1f} images/s; c16 {served.summary()}")
    return turns


def median_turn_ratios(turns: list[Turn]) -> tuple[float, float]:
    """Median c16 throughput ratio and median c16 p99 ratio over the turns."""
    throughput = statistics.median(t.throughput_ratio() for t in turns)
    return throughput, statistics.median(t.p99_ratio() for t in turns)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="chest-ct-cancer")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--seconds", type=int, default=10, help="per wrk load level")
    parser.add_argument("--requests", type=int, default=300, help="per Python-client level")
    parser.add_argument("--raw-seconds", type=float, default=5.0)
    parser.add_argument("--turns", type=int, default=5, help="raw / c16 turns for the targets")
    parser.add_argument("--python-client", action="store_true", help="do not use wrk")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    images = sample_images()
    with tempfile.TemporaryDirectory() as tmp:
        args.bodies = None
        if shutil.which("wrk") and not args.python_client:
            args.bodies = Path(tmp)
            for index, image in enumerate(images):
                (args.bodies / f"body-{index:03d}").write_bytes(multipart(image))
        benchmark(images, args)


def graph_cache_state() -> str:
    """How many optimised graphs the service will find in its cache (they shorten its start)."""
    folder = Settings().optimized_model_dir
    if folder is None:
        return "graph cache off"
    found = len(list(folder.glob("*.onnx"))) if folder.is_dir() else 0
    return f"{found} optimised graphs in the cache {folder} at start"


def benchmark(images: list[bytes], args: argparse.Namespace) -> None:
    """Every measurement, then the report."""
    model = raw_model(args.models_dir, args.model)
    raw, raw_single_ms = raw_pipeline(model, images, args.raw_seconds)
    best = max(raw, key=lambda b: raw[b])
    progress(f"raw pipeline on {model.provider}, images/s by batch: {rounded(raw)}")
    cache = graph_cache_state()
    server, base, ready_s = start_server(args.models_dir, args.port, capture=False)
    try:
        rss_ready = resident_mb(server.pid)
        progress(f"service ready in {ready_s:.2f} s, {rss_ready:.0f} MB resident ({cache})")
        single = paired_single(model, base, images)
        progress(
            f"c1 p50 ms: raw {single.raw_ms:.2f}, multipart {single.form_ms:.2f} "
            f"({single.form_extra_ms:+.2f}), whole body {single.whole_ms:.2f} "
            f"({single.whole_extra_ms:+.2f})"
        )
        rows = http_rows(base, args.model, images, args)
        turns = c16_in_turns(model, server.pid, base, images, best, args)
        peak = resident_mb(server.pid, "VmHWM")
        time.sleep(Settings().trim_idle_s + 1)  # the service trims its heap once idle
        rss = resident_mb(server.pid)
        before = latency_buckets(base, args.model)
        overload = asyncio.run(python_load(base, args.model, images, 256, 1024))
        inside = server_side_bound(before, latency_buckets(base, args.model))
        progress(f"concurrency 256: {overload.summary()}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    client = "python" if args.bodies is None else "wrk"
    print_report(
        args.model, model.provider, len(images), raw, raw_single_ms, client, rows, overload
    )
    print(
        f"Alternated in blocks of 8 (175 kept each): raw single image p50 {single.raw_ms:.1f} ms, "
        f"service at concurrency 1 p50 {single.form_ms:.1f} ms (multipart), "
        f"{single.whole_ms:.1f} ms (the image as the whole body); median of the rounds' "
        f"differences {single.form_extra_ms:+.2f} / {single.whole_extra_ms:+.2f} ms."
    )
    print(f"Concurrency 256: {inside} (the client's own times include its queueing).")
    print_turns(turns, best)
    print_targets(median_turn_ratios(turns), single, ready_s, (rss_ready, rss, peak))


def print_turns(turns: list[Turn], best: int) -> None:
    """Each turn of the c16 comparison, so the drift between turns is visible, with the CPU
    each side used: the throughput ratio split into cores kept busy and CPU per image."""
    print(f"\nRaw best batch ({best}) and the service at concurrency 16, in turns:\n")
    print(
        "| turn | raw images/s | c16 images/s | c16 p99 ms | throughput ratio | p99 ratio "
        "| raw CPU ms/image (cores) | server CPU ms/image (cores) | ratio = cores x CPU |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for index, turn in enumerate(turns, 1):
        print(
            f"| {index} | {turn.raw_rate:.1f} | {turn.served.rps:.1f} | {turn.served.p99:.1f} | "
            f"{turn.throughput_ratio():.2f} | {turn.p99_ratio():.2f} | {cpu_cells(turn)} |"
        )


def cpu_cells(turn: Turn) -> str:
    """The turn's CPU columns: each side's CPU per image and cores, and the ratio's factors."""
    raw, served, factors = turn.raw_cpu, turn.served_cpu, turn.ratio_factors()
    return (
        f"{raw.ms_per_image():.1f} ({raw.cores():.2f}) | "
        f"{served.ms_per_image():.1f} ({served.cores():.2f}) | "
        f"{factors[0]:.2f} x {factors[1]:.2f}"
    )


def print_report(
    model: str,
    provider: str,
    count: int,
    raw: dict[int, float],
    raw_single_ms: float,
    client: str,
    rows: dict[int, Load],
    overload: Load,
) -> None:
    best = max(raw, key=lambda b: raw[b])
    where = f"{count} images, {provider}, load from {client}"
    print(f"## Serving benchmark: {model} ({where})\n")
    print("| measurement | images/s | x raw best | p50 ms | p95 ms | p99 ms | failed | 503 |")
    print("|---|---|---|---|---|---|---|---|")
    single = f"{raw[1]:.1f} | {raw[1] / raw[best]:.2f} | {raw_single_ms:.1f}"
    print(f"| raw pipeline, batch 1 | {single} | | | | |")
    print(f"| raw pipeline, best batch ({best}) | {raw[best]:.1f} | 1.00 | | | | | |")
    for concurrency, row in [*rows.items(), (256, overload)]:
        print(
            f"| HTTP, concurrency {concurrency} | {row.rps:.1f} | {row.rps / raw[best]:.2f} | "
            f"{row.p50:.1f} | {row.p95:.1f} | {row.p99:.1f} | {row.failures} | {row.refused} |"
        )
    print(f"\nRaw images/s by batch: {rounded(raw)}")
    for concurrency, row in [*rows.items(), (256, overload)]:
        if row.failure_kinds:
            print(f"Failed at concurrency {concurrency}: {row.failure_kinds}")


def print_targets(
    c16: tuple[float, float],
    single: SingleImage,
    ready_s: float,
    rss: tuple[float, float, float],
) -> None:
    """The issue's targets, each with the measured value; `c16` holds the median turn's
    throughput and p99 ratios."""
    checks = [
        ("c16 throughput >= 1.0 x raw best (median turn)", c16[0], 1.0, ">="),
        ("c1 p50 - raw single p50, alternated (ms) <= 1", single.form_extra_ms, 1.0, "<="),
        ("the same, image as the whole body (ms) <= 1", single.whole_extra_ms, 1.0, "<="),
        ("c16 p99 / raw time for 16 images (best batch) <= 2, median turn", c16[1], 2.0, "<="),
        ("start to ready (s) <= 2", ready_s, 2.0, "<="),
        ("resident memory when ready (MB) <= 250", rss[0], 250.0, "<="),
        ("resident memory idle after the c1-c64 runs (MB) <= 250", rss[1], 250.0, "<="),
        ("peak resident memory, start to end of the c16 turns (MB) <= 250", rss[2], 250.0, "<="),
    ]
    print("\n| target | measured | met |\n|---|---|---|")
    for label, value, limit, sense in checks:
        met = value >= limit if sense == ">=" else value <= limit
        print(f"| {label} | {value:.2f} | {'yes' if met else 'no'} |")


if __name__ == "__main__":
    main()

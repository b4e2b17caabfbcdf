"""The service against a peer users would pick instead (on demand, loopback only, bounded):
BentoML serving the same ONNX graph with adaptive batching.

    python -m tests.benchmarks.peer --model chest-ct-cancer [--venv PATH]

BentoML is never a project dependency: the benchmark makes a throwaway virtual environment
(`--venv` keeps one to reuse), installs BentoML 1.4 and this project into it, and writes a
BentoML service: one batchable API at the service's own predict path (multipart field `file`,
`max_batch_size` 16) that decodes and preprocesses each image exactly as the service does and
runs a default onnxruntime session on the batch. (A front service calling a batchable classifier
through `bentoml.depends` failed 15-28 % of concurrent requests with connection resets between
the two, BentoML's open issue #4971, so the peer is the single-service form.) In one run it
measures the raw in-process pipeline, the service (with its defaults, and with each `--variant`
setting: by default without spinning) and the peer: concurrency 1 (p50, the
servers alternated in blocks), concurrency 16 (images/s, p99, with wrk when installed) and
resident memory (the peer's whole process tree). Prints a markdown table."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from tests.benchmarks.run import (
    MULTIPART,
    WireClient,
    alternated,
    http_load,
    multipart,
    pooled_median_ms,
    progress,
    raw_model,
    raw_pipeline,
    resident_mb,
    sample_images,
)
from tests.server import free_port, start_server

ROOT = Path(__file__).resolve().parents[2]
BENTOML = "bentoml==1.4.*"
SERVICE = """
import types
from pathlib import Path

import bentoml
import numpy as np
import onnxruntime as ort

from app.inference.card import read_card
from app.inference.predict import prepare

MODELS, NAME = Path({models!r}), {name!r}
VERSION = max(int(p.name) for p in (MODELS / NAME).iterdir() if p.name.isdigit())
FOLDER = MODELS / NAME / str(VERSION)


@bentoml.service(workers=1, traffic={{"concurrency": 256, "timeout": 60}})
class Peer:
    def __init__(self) -> None:
        self.model = types.SimpleNamespace(card=read_card(FOLDER / "metadata.json"))
        self.session = ort.InferenceSession(
            str(FOLDER / "model.onnx"), providers=["CPUExecutionProvider"]
        )

    @bentoml.api(
        route="/v1/models/" + NAME + "/predict",
        batchable=True,
        max_batch_size=16,
        max_latency_ms=10000,
    )
    def predict(self, file: list[Path]) -> list[dict]:
        card = self.model.card
        batch = np.stack([prepare(self.model, f.read_bytes(), 10**9).tensor for f in file])
        rows = self.session.run([card.output.name], {{card.input.name: batch}})[0]
        return [
            {{"label": card.classes[int(np.argmax(row))],
              "probabilities": dict(zip(card.classes, map(float, row)))}}
            for row in rows
        ]
"""


def make_venv(folder: Path) -> Path:
    """A virtual environment with BentoML and this project (CPU extra); reused when present."""
    python = folder / "bin" / "python"
    if not python.exists():
        progress(f"installing {BENTOML} into a throwaway virtual environment {folder}")
        subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", BENTOML, f"{ROOT}[cpu]"], check=True
        )
    return python


def start_peer(
    python: Path, folder: Path, models: Path, name: str
) -> tuple[subprocess.Popen[bytes], str]:
    (folder / "peer_service.py").write_text(SERVICE.format(models=str(models.resolve()), name=name))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENTOML_DO_NOT_TRACK": "True"}
    peer = subprocess.Popen(
        [str(python), "-m", "bentoml", "serve", "peer_service:Peer", "--port", str(port),
         "--host", "127.0.0.1"],
        cwd=folder, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and peer.poll() is None:
        try:
            if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                return peer, base
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    stop(peer)
    raise RuntimeError("BentoML exited or did not become ready in 180 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    process.wait(timeout=30)


def tree_resident_mb(pid: int) -> float:
    """Resident memory of a process and all its descendants (BentoML runs several)."""
    children = subprocess.run(
        ["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True
    ).stdout.split()
    return resident_mb(pid) + sum(tree_resident_mb(int(c)) for c in children)


def lone_requests(
    bases: dict[str, str], name: str, images: list[bytes], rounds: int = 20
) -> dict[str, float]:
    """p50 ms of one upload at a time to each server, alternated in blocks of 8 (first dropped)."""
    clients = {key: WireClient(base) for key, base in bases.items()}
    route = f"/v1/models/{name}/predict"
    forms = {
        key: [client.request(route, multipart(image), MULTIPART) for image in images]
        for key, client in clients.items()
    }
    paths = [partial(send, client, forms[key]) for key, client in clients.items()]
    blocks = alternated(paths, len(images), rounds)
    for client in clients.values():
        client.close()
    return {
        key: pooled_median_ms(rounds_of) for key, rounds_of in zip(clients, blocks, strict=True)
    }


def send(client: WireClient, requests: list[bytes], index: int) -> float:
    return client.send(requests[index])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default="chest-ct-cancer")
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--venv", type=Path, help="keep BentoML's environment here, to reuse")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument(
        "--variant",
        action="append",
        type=setting,
        metavar="VAR=VALUE",
        help="also measure the service with this setting (repeatable; default: no spinning)",
    )
    args = parser.parse_args()
    images = sample_images()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        python = make_venv(args.venv or folder / "venv")
        args.bodies = None
        if subprocess.run(["which", "wrk"], capture_output=True).returncode == 0:
            args.bodies = folder / "bodies"
            args.bodies.mkdir()
            for index, image in enumerate(images):
                (args.bodies / f"body-{index:03d}").write_bytes(multipart(image))
        compare(images, python, folder, args)


def setting(text: str) -> tuple[str, str]:
    """`VAR=VALUE` as (VAR, VALUE), for `--variant`."""
    variable, equals, value = text.partition("=")
    if not variable or not equals:
        raise argparse.ArgumentTypeError(f"expected VAR=VALUE, got {text!r}")
    return variable, value


def compare(images: list[bytes], python: Path, folder: Path, args: argparse.Namespace) -> None:
    model = raw_model(args.models_dir, args.model)
    raw, raw_single = raw_pipeline(model, images, 5.0)
    best = max(raw, key=lambda b: raw[b])
    progress(f"raw: {raw_single:.1f} ms at batch 1; {raw[best]:.0f} images/s at batch {best}")
    variants = args.variant or [("CTSCAN_INTRA_OP_SPINNING", "false")]
    setups: dict[str, dict[str, str] | None] = {"service": None}
    setups |= {f"service, {variable}={value}": {variable: value} for variable, value in variants}
    processes, servers = {}, {}
    for key, env in setups.items():
        processes[key], servers[key], _ = start_server(args.models_dir, capture=False, env=env)
    peer, servers["BentoML"] = start_peer(python, folder, args.models_dir, args.model)
    try:
        for key, url in servers.items():  # warm each, e.g. BentoML's first batch
            lone_requests({key: url}, args.model, images, rounds=1)
        lone = lone_requests(servers, args.model, images)
        progress(f"c1 p50 ms: {lone}")
        loads = {key: http_load(url, args.model, images, 16, args) for key, url in servers.items()}
        progress(f"c16: { {k: v.summary() for k, v in loads.items()} }")
        resident = {key: resident_mb(process.pid) for key, process in processes.items()}
        resident["BentoML"] = tree_resident_mb(peer.pid)
    finally:
        for server in processes.values():
            server.terminate()
            server.wait(timeout=30)
        stop(peer)
    report(args.model, len(images), raw, raw_single, lone, loads, resident)


def report(
    name: str,
    count: int,
    raw: dict[int, float],
    raw_single: float,
    lone: dict[str, float],
    loads: dict[str, Any],
    resident: dict[str, float],
) -> None:
    best = max(raw, key=lambda b: raw[b])
    print(f"\n{name}, {count} images, one run, same machine\n")
    print("| | c1 p50 | c16 images/s (x raw best batch) | c16 p99 | resident |")
    print("|---|---|---|---|---|")
    print(f"| raw pipeline, one process | {raw_single:.1f} ms (batch 1) | "
          f"{raw[best]:.0f} at batch {best} (1.00) | | |")  # fmt: skip
    for key, load in loads.items():
        print(f"| {key} | {lone[key]:.1f} ms | {load.rps:.0f} ({load.rps / raw[best]:.2f}) | "
              f"{load.p99:.0f} ms | {resident[key]:.0f} MB |")  # fmt: skip


if __name__ == "__main__":
    main()

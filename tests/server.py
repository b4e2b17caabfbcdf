"""A real `ctscan serve` process on loopback, for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

CTSCAN = [sys.executable, "-c", "from app.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(
    models_dir: Path,
    port: int | None = None,
    env: dict[str, str] | None = None,
    capture: bool = True,
    timeout: float = 120.0,
) -> tuple[subprocess.Popen[str], str, float]:
    """Start `ctscan serve`; return the process, its base URL and the seconds to ready.
    With `capture`, stdout and stderr are kept (read them with `communicate`)."""
    port = port or free_port()
    started = time.perf_counter()
    output = subprocess.PIPE if capture else subprocess.DEVNULL
    server = subprocess.Popen(
        [*CTSCAN, "serve", "--port", str(port), "--models-dir", str(models_dir)],
        stdout=output,
        stderr=subprocess.STDOUT if capture else subprocess.DEVNULL,
        text=True,
        env={**os.environ, **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, timeout - (time.perf_counter() - started), server)
    except RuntimeError as exc:
        server.kill()
        output = server.communicate()[0]  # also closes the pipes
        raise RuntimeError(f"{exc}; its output:\n{output}" if output else str(exc)) from None
    return server, base, time.perf_counter() - started


def wait_ready(
    base: str, timeout: float = 120.0, process: subprocess.Popen[str] | None = None
) -> None:
    """Return once the service at `base` answers ready; RuntimeError after `timeout` seconds,
    or as soon as `process` (the server, when we started it) has exited."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            if httpx.get(f"{base}/health/ready", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server did not become ready in {timeout:.0f} s")

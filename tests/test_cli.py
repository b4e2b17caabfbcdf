"""`ctscan predict` without a server and `ctscan serve` as a real uvicorn process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.benchmarks.run import BOUNDARY, multipart
from tests.factories import encode, png_bytes, write_model
from tests.server import CTSCAN
from tests.server import start_server as serve


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CTSCAN, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_predict_prints_probabilities(tmp_path: Path) -> None:
    write_model(tmp_path / "models", "toy")
    image = tmp_path / "bright.png"
    image.write_bytes(png_bytes(240))
    result = run_cli("predict", str(image), "--models-dir", str(tmp_path / "models"))
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["label"] == "bright" and abs(sum(body["probabilities"].values()) - 1) < 1e-5


def test_predict_reports_bad_input_and_unknown_model(tmp_path: Path) -> None:
    write_model(tmp_path / "models", "toy")
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    result = run_cli("predict", str(text), "--models-dir", str(tmp_path / "models"))
    assert result.returncode == 2 and "Unsupported file type" in result.stderr
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes())
    result = run_cli(
        "predict", str(image), "--model", "nope", "--models-dir", str(tmp_path / "models")
    )
    assert result.returncode == 2 and "Unknown model" in result.stderr


def test_a_bad_setting_is_one_line_per_variable_not_a_traceback(tmp_path: Path) -> None:
    env = {"CTSCAN_PROVIDERS": "MagicExecutionProvider", "CTSCAN_CPU_MEM_ARENA": "sometimes"}
    result = run_cli("serve", "--port", "70000", "--models-dir", str(tmp_path), env=env)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert [line.split(":")[1].strip() for line in lines] == [
        "CTSCAN_PROVIDERS",
        "CTSCAN_CPU_MEM_ARENA",
        "CTSCAN_PORT",
    ], lines
    assert "'sometimes'" in lines[1] and "65536" in lines[2]


def test_a_server_that_exits_is_reported_at_once_with_its_output(tmp_path: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match="exited with status 2") as failure:
        serve(tmp_path, env={"CTSCAN_MAX_QUEUE": "0"}, timeout=60)
    assert "CTSCAN_MAX_QUEUE" in str(failure.value)
    assert time.perf_counter() - started < 30  # not the readiness timeout


def start_server(models_dir: Path) -> tuple[subprocess.Popen[str], str]:
    """A real `ctscan serve` process on a free loopback port, once it is ready."""
    server, base, _ = serve(models_dir)
    return server, base


def test_serve_answers_over_real_http(tmp_path: Path) -> None:
    write_model(tmp_path / "models", "toy")
    server, base = start_server(tmp_path / "models")
    try:
        response = httpx.post(
            f"{base}/v1/models/toy/predict", files={"file": ("a.png", png_bytes(10))}, timeout=10
        )
        assert response.status_code == 200 and response.json()["label"] == "dark"
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
    # uvicorn shuts down gracefully, then re-raises SIGTERM as its exit status
    assert server.returncode in (0, -signal.SIGTERM), output
    assert "Application shutdown complete" in output


def test_access_lines_carry_status_and_request_id_but_no_study_uid(tmp_path: Path) -> None:
    write_model(tmp_path / "models", "toy")
    server, base = start_server(tmp_path / "models")
    uid = "1.2.826.0.1.3680043.8.498.12345"
    try:
        with httpx.Client(base_url=base, timeout=10) as client:
            client.post(
                "/v1/models/toy/predict",
                files={"file": ("a.png", png_bytes(10))},
                headers={"X-Request-ID": "req-one"},
            )
            client.post(f"/v1/models/toy/pacs/studies/{uid}?store=true")
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
    assert "[req-one]: POST /v1/models/toy/predict 200 " in output
    assert "POST /v1/models/toy/pacs/studies/{uid} " in output
    assert uid not in output and "store=true" not in output
    assert "HTTP/1.1" not in output  # uvicorn's own access line is off


SCRIPT = Path(sys.executable).parent / "ctscan"


@pytest.mark.skipif(not SCRIPT.exists(), reason="package not installed in this environment")
def test_console_script_is_installed() -> None:
    result = subprocess.run(
        [str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0
    for command in ("serve", "predict", "train", "evaluate", "export"):
        assert command in result.stdout


def test_sigterm_drains_requests_in_flight(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    from PIL import Image

    from tests.factories import encode

    write_model(tmp_path / "models", "toy")
    big = encode(
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (3000, 3000), dtype=np.uint8)),
        "PNG",
    )
    server, base = start_server(tmp_path / "models")

    def post(_: int) -> int:
        response = httpx.post(f"{base}/predict", files={"file": ("a.png", big)}, timeout=60)
        return response.status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        futures = [pool.submit(post, i) for i in range(6)]
        time.sleep(0.6)  # the uploads are in, decoding is under way
        server.send_signal(signal.SIGTERM)
        codes = [f.result(timeout=60) for f in futures]
    output = server.communicate(timeout=60)[0]
    assert codes == [200] * 6, output
    assert "Application shutdown complete" in output


def read_response(sock: socket.socket) -> str:
    """One whole HTTP response (headers, then Content-Length bytes of body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, body = data.split(b"\r\n\r\n", 1)
    lengths = [h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:")]
    length = int(lengths[0].split(b":")[1])
    while len(body) < length:
        body += sock.recv(65536)
    return (head + b"\r\n\r\n" + body).decode()


def test_stalled_body_gets_408_and_the_server_stays_healthy(tmp_path: Path) -> None:
    write_model(tmp_path / "models", "toy")
    server, base, _ = serve(tmp_path / "models", env={"CTSCAN_BODY_TIMEOUT_S": "1"})
    host, port = base.removeprefix("http://").split(":")
    head = (
        "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
        "Content-Type: multipart/form-data; boundary=b\r\n\r\n--b\r\n"
    )
    try:
        with socket.create_connection((host, int(port)), timeout=30) as slow:
            slow.sendall(head.encode())  # ...and then nothing more: a stalled upload
            started = time.perf_counter()
            answer = read_response(slow)
            waited = time.perf_counter() - started
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "application/problem+json" in answer and "did not arrive within 1 s" in answer
        assert waited < 20
        ok = httpx.post(f"{base}/predict", files={"file": ("a.png", png_bytes())}, timeout=10)
        assert ok.status_code == 200
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_idle_keep_alive_connections_close_after_the_setting(tmp_path: Path) -> None:
    write_model(tmp_path / "models", "toy")
    server, base, _ = serve(tmp_path / "models", env={"CTSCAN_KEEP_ALIVE_S": "1"})
    host, port = base.removeprefix("http://").split(":")
    request = b"GET /health/live HTTP/1.1\r\nHost: x\r\n\r\n"
    try:
        with socket.create_connection((host, int(port)), timeout=30) as idle:
            started = time.perf_counter()
            idle.sendall(request)
            assert read_response(idle).startswith("HTTP/1.1 200")  # head and body may split
            assert idle.recv(65536) == b""  # closed by the server once idle for 1 s
            assert 0.9 < time.perf_counter() - started < 4  # uvicorn alone: 5 s
    finally:
        server.terminate()
        server.communicate(timeout=30)


def metric_total(base: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus sample over the series carrying `labels`."""
    total = 0.0
    for line in httpx.get(f"{base}/metrics", timeout=10).text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_abandoned_requests_are_dropped_not_computed(tmp_path: Path) -> None:
    """Clients that hang up before their answer free their place: a decode that has not started
    is cancelled and counted as 499, so waiting clients are not refused for dead ones."""
    write_model(tmp_path / "models", "toy")
    server, base, _ = serve(tmp_path / "models", env={"CTSCAN_DECODE_WORKERS": "1"})
    host, port = base.removeprefix("http://").split(":")
    ramp = np.tile(np.arange(4000, dtype=np.uint16) % 256, (4000, 1)).astype(np.uint8)
    image = encode(Image.fromarray(ramp), "PNG")  # small file, slow to decode
    body = multipart(image)
    request = (
        f"POST /v1/models/toy/predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    ).encode() + body
    try:
        for _ in range(8):
            with socket.create_connection((host, int(port)), timeout=30) as client:
                client.sendall(request)  # ...and hang up without reading the answer
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = metric_total(base, "ctscan_predictions_total", model="toy")
            if done == 8:
                break
            time.sleep(0.2)
        abandoned = metric_total(base, "ctscan_predictions_total", model="toy", status="499")
        assert abandoned >= 4, httpx.get(f"{base}/metrics").text
        ok = httpx.post(f"{base}/predict", files={"file": ("a.png", png_bytes())}, timeout=10)
        assert ok.status_code == 200
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_predict_on_a_folder_writes_one_csv_row_per_image(tmp_path: Path) -> None:
    import csv
    import io

    from typer.testing import CliRunner

    from app.cli import cli

    write_model(tmp_path / "models", "toy", with_check=True)
    images = tmp_path / "images"
    (images / "nested").mkdir(parents=True)
    (images / "dark.png").write_bytes(png_bytes(51))
    (images / "nested" / "grey.png").write_bytes(png_bytes(128))
    (images / "notes.txt").write_text("not an image")
    result = CliRunner().invoke(
        cli, ["predict", str(images), "--model", "toy", "--models-dir", str(tmp_path / "models")]
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    by_path = {row["path"]: row for row in rows}
    assert set(by_path) == {"dark.png", "nested/grey.png", "notes.txt"}
    assert by_path["dark.png"]["label"] == "dark" and by_path["dark.png"]["verdict"] == "in_domain"
    assert (
        by_path["nested/grey.png"]["label"] == ""
        and by_path["nested/grey.png"]["verdict"] == "outside"
    )
    assert float(by_path["dark.png"]["dark"]) + float(
        by_path["dark.png"]["bright"]
    ) == pytest.approx(1.0, abs=1e-5)
    assert "not a supported image" in by_path["notes.txt"]["problem"]

"""Operations: Prometheus metrics, request ids, API keys, CORS, JSON logs, model reload."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.logging_setup import JsonFormatter
from app.main import create_app
from app.request_context import RequestIdFilter
from tests.conftest import wait_ready
from tests.factories import png_bytes, write_model


def started(settings: Settings) -> TestClient:
    client = TestClient(create_app(settings))
    client.__enter__()
    wait_ready(client)
    return client


def test_metrics_count_predictions_batches_and_providers(client: TestClient) -> None:
    for _ in range(3):
        client.post("/v1/models/toy/predict", files={"file": ("a", png_bytes())})
    client.post("/v1/models/toy/predict", files={"file": ("a", b"text")})
    text = client.get("/metrics").text
    assert 'ctscan_predictions_total{model="toy",status="200",version="2"} 3.0' in text
    assert 'ctscan_predictions_total{model="toy",status="415",version="-"} 1.0' in text
    assert 'ctscan_prediction_seconds_count{model="toy"} 3.0' in text
    assert 'ctscan_batch_size_count{model="toy/2"} 3.0' in text
    assert 'ctscan_model_info{model="toy",provider="CPUExecutionProvider",version="2"} 1.0' in text
    assert 'ctscan_queue_depth{stage="decode"} 0.0' in text
    assert "ctscan_model_load_seconds" in text


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    given = client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert given.headers["X-Request-ID"] == "abc-123"
    made = client.get("/health/live", headers={"X-Request-ID": "bad id\\n"}).headers
    assert len(made["X-Request-ID"]) == 32 and made["X-Request-ID"] != "bad id\\n"


def test_an_unexpected_error_answers_and_logs_with_the_request_id(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("a bug")

    caplog.handler.addFilter(RequestIdFilter())
    with TestClient(app, raise_server_exceptions=False) as client:
        answer = client.get("/boom", headers={"X-Request-ID": "req-500"})
    assert answer.status_code == 500 and answer.headers["X-Request-ID"] == "req-500"
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert [getattr(r, "request_id", None) for r in logged] == ["req-500"]


def test_json_log_lines_carry_the_request_id() -> None:
    record = logging.LogRecord("ctscan", logging.INFO, __file__, 1, "hello %s", ("x",), None)
    RequestIdFilter().filter(record)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "hello x" and line["request_id"] == "-"


def test_api_keys(settings: Settings) -> None:
    secured = settings.model_copy(update={"api_keys": ["user-key"], "admin_keys": ["root-key"]})
    client = started(secured)
    files = {"file": ("a", png_bytes())}
    denied = client.post("/predict", files=files)
    assert denied.status_code == 401
    assert denied.headers["content-type"].startswith("application/problem+json")
    assert denied.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.post("/predict", files=files, headers={"X-API-Key": "wrong"}).status_code == 401
    ok = client.post("/predict", files=files, headers={"Authorization": "Bearer user-key"})
    assert ok.status_code == 200
    for path in ("/v1/models/toy/predict", "/v1/models/toy/versions/1/predict"):
        assert client.post(path, files=files).status_code == 401
        assert client.post(path, files=files, headers={"X-API-Key": "user-key"}).status_code == 200
    assert client.get("/v1/models", headers={"X-API-Key": "root-key"}).status_code == 200
    assert client.get("/v1/models").status_code == 401
    assert client.get("/health/ready").status_code == 200  # health stays open
    reload_path = "/v1/models/toy/reload"
    assert client.post(reload_path, headers={"X-API-Key": "user-key"}).status_code == 401
    assert client.post(reload_path, headers={"X-API-Key": "root-key"}).status_code == 200
    client.__exit__(None, None, None)


def test_admin_endpoints_closed_without_admin_keys(client: TestClient) -> None:
    assert client.post("/v1/models/toy/reload").status_code == 401


def test_cors_closed_by_default_open_when_configured(settings: Settings) -> None:
    preflight = {"Origin": "https://viewer.example", "Access-Control-Request-Method": "POST"}
    closed = started(settings)
    assert (
        "access-control-allow-origin" not in closed.options("/predict", headers=preflight).headers
    )
    closed.__exit__(None, None, None)
    opened = started(settings.model_copy(update={"cors_origins": ["https://viewer.example"]}))
    response = opened.options("/predict", headers=preflight)
    assert response.headers["access-control-allow-origin"] == "https://viewer.example"
    opened.__exit__(None, None, None)


def test_reload_picks_up_a_new_version_without_failed_requests(
    settings: Settings, models_dir: Path
) -> None:
    client = started(settings.model_copy(update={"admin_keys": ["root"]}))
    failures: list[int] = []
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            code = client.post("/v1/models/toy/predict", files={"file": ("a", png_bytes())})
            if code.status_code != 200:
                failures.append(code.status_code)

    workers = [threading.Thread(target=hammer) for _ in range(4)]
    for worker in workers:
        worker.start()
    write_model(models_dir, "toy", 3)
    changes = client.post("/v1/models/toy/reload", headers={"X-API-Key": "root"}).json()
    stop.set()
    for worker in workers:
        worker.join()
    assert changes == {"added": ["toy/3"], "removed": []}
    assert failures == []
    assert client.get("/v1/models/toy").json()["version"] == 3
    client.__exit__(None, None, None)


def test_periodic_poll_finds_new_models(settings: Settings, models_dir: Path) -> None:
    client = started(settings.model_copy(update={"poll_interval_s": 0.05}))
    write_model(models_dir, "late", 1)
    for _ in range(200):
        if client.get("/v1/models/late").status_code == 200:
            break
        threading.Event().wait(0.02)
    assert client.get("/v1/models/late").status_code == 200
    client.__exit__(None, None, None)


@pytest.mark.parametrize("value", ["a,b", " a , b "])
def test_keys_from_environment(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CTSCAN_API_KEYS", value)
    assert Settings().api_keys == ["a", "b"]

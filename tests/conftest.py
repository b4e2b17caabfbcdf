"""Shared fixtures: a temp model store with real ONNX models, and a running app."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.factories import write_model

# Sessions are built from the graphs unless a test sets a graph cache itself: the suite writes
# nothing into the user's cache folder (`Settings.optimized_model_dir` defaults to one), and
# servers started by tests inherit this.
os.environ["CTSCAN_OPTIMIZED_MODEL_DIR"] = ""
# Study jobs of the suite go to a temporary folder, never the user's data folder.
os.environ.setdefault("CTSCAN_DATA_DIR", tempfile.mkdtemp(prefix="ctscan-test-data-"))


@pytest.fixture
def models_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_model(root, "toy", 1)
    write_model(root, "toy", 2)
    write_model(root, "triple", 1, classes=["low", "mid", "high"])
    return root


@pytest.fixture
def settings(models_dir: Path) -> Settings:
    return Settings(models_dir=models_dir, default_model="toy", intra_op_threads=1)


def wait_ready(client: TestClient, timeout: float = 30.0) -> None:
    """Poll readiness until models are loaded (they load in a background thread)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if client.get("/health/ready").status_code == 200:
            return
        time.sleep(0.02)
    raise AssertionError(f"not ready: {client.get('/health/ready').json()}")


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client

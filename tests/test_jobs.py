"""Study jobs: `Prefer: respond-async` → 202 + Location, progress, the answer once done, cancel
and remove; the runner on its own; and a real server killed mid-job, restarted on the same data
folder: the finished job is still served, the one cut off comes back `interrupted`."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.studies.jobs import JobRunner, JobStore
from tests.conftest import wait_ready
from tests.factories import write_model
from tests.series_factory import SeriesSpec, series_files, study_zip, zipped
from tests.server import start_server

pytest.importorskip("pydicom")
ASYNC = {"Prefer": "respond-async", "Content-Type": "application/zip"}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    write_model(tmp_path / "models", "toy", with_check=True)
    settings = Settings(models_dir=tmp_path / "models", data_dir=tmp_path / "data")
    with TestClient(create_app(settings), raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client


def wait_finished(get: Any, url: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job: dict[str, Any] = get(url).json()
        if job["status"] not in ("queued", "running"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job still {job['status']} after {timeout} s")


def test_an_async_study_is_queued_then_answered(client: TestClient) -> None:
    data = study_zip(SeriesSpec([0.2, 0.8, 0.2]))
    response = client.post("/v1/models/toy/studies", content=data, headers=ASYNC)
    assert response.status_code == 202
    location = response.headers["location"]
    assert location == f"/v1/jobs/{response.json()['id']}"
    job = wait_finished(client.get, location)
    assert job["status"] == "done"
    assert job["progress"] == {"slices_done": 3, "slices_total": 3}
    synchronous = client.post("/v1/models/toy/studies", content=data).json()
    assert job["result"]["slices"] == synchronous["slices"]
    assert client.delete(location).status_code == 204
    assert client.get(location).status_code == 404


def test_multipart_parts_can_be_queued_too(client: TestClient) -> None:
    files = series_files(SeriesSpec([0.2, 0.2]))
    parts = [("file", (f"{i}", f, "application/dicom")) for i, f in enumerate(files)]
    response = client.post(
        "/v1/models/toy/studies", files=parts, headers={"Prefer": "respond-async"}
    )
    assert response.status_code == 202
    assert wait_finished(client.get, response.headers["location"])["status"] == "done"


def test_a_bad_study_fails_as_a_job_with_the_problem(client: TestClient) -> None:
    data = zipped({"notes.txt": b"no images here"})
    location = client.post("/v1/models/toy/studies", content=data, headers=ASYNC).headers[
        "location"
    ]
    job = wait_finished(client.get, location)
    assert job["status"] == "failed"
    assert job["error"]["status"] == 422 and "no series to classify" in job["error"]["detail"]


def test_unknown_jobs_are_404(client: TestClient) -> None:
    assert client.get("/v1/jobs/nope").status_code == 404
    assert client.delete("/v1/jobs/nope").status_code == 404


def test_the_runner_cancels_a_running_job_and_keeps_going(tmp_path: Path) -> None:
    store = JobStore(tmp_path)
    started, release = threading.Event(), threading.Event()

    def work(job_id: str, progress: Any) -> dict[str, Any]:
        if store.get(job_id)["model"] == "slow":  # type: ignore[index]
            started.set()
            release.wait(10)
            progress(1, 2)  # raises Cancelled once cancellation was asked for
        return {"ok": job_id}

    slow, quick = store.create("slow", 1), store.create("quick", 1)
    runner = JobRunner(store, work)
    try:
        runner.submit()
        assert started.wait(10)
        store.update(slow, status="cancelled")
        release.set()
        deadline = time.monotonic() + 10
        while store.status(quick) != "done" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.status(slow) == "cancelled" and store.status(quick) == "done"
    finally:
        runner.close()
        store.close()


def test_finished_jobs_survive_a_restart_and_cut_off_ones_say_so(tmp_path: Path) -> None:
    write_model(tmp_path / "models", "toy", with_check=True)
    env = {"CTSCAN_DATA_DIR": str(tmp_path / "data"), "CTSCAN_STUDY_BATCH_SIZE": "1"}
    small = study_zip(SeriesSpec([0.2, 0.8]))
    large = zipped({f"{i}": f for i, f in enumerate(series_files(SeriesSpec([0.2] * 600)))})
    server, base, _ = start_server(tmp_path / "models", env=env)
    try:
        post = lambda data: httpx.post(  # noqa: E731
            f"{base}/v1/models/toy/studies", content=data, headers=ASYNC, timeout=60
        )
        done_path = post(small).headers["location"]
        assert wait_finished(httpx.get, base + done_path)["status"] == "done"
        cut_path = post(large).headers["location"]
        deadline = time.monotonic() + 60
        while httpx.get(base + cut_path).json()["progress"]["slices_done"] == 0:
            assert time.monotonic() < deadline, "the large job never started"
            time.sleep(0.02)
        server.send_signal(signal.SIGKILL)
        server.communicate(timeout=30)
        server, base, _ = start_server(tmp_path / "models", env=env)
        restarted = httpx.get(base + done_path).json()
        assert restarted["status"] == "done" and len(restarted["result"]["slices"]) == 2
        cut = httpx.get(base + cut_path).json()
        assert cut["status"] == "interrupted"
        assert "stopped while the job was queued or running" in cut["error"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=30)

"""Dynamic batching: requests grouped up to the cap, answered individually, bounded queue."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.errors import Overloaded
from app.inference.batching import DynamicBatcher
from app.main import create_app
from tests.conftest import wait_ready
from tests.factories import png_bytes


def double(batch: np.ndarray) -> np.ndarray:
    return batch.reshape(len(batch), -1)[:, :1] * 2


def test_each_request_gets_its_own_answer() -> None:
    batcher = DynamicBatcher(double, max_batch_size=4, max_wait_ms=20)
    futures = [batcher.submit(np.full((2, 2, 1), float(i))) for i in range(10)]
    assert [f.result(timeout=5)[0] for f in futures] == [2.0 * i for i in range(10)]
    assert max(batcher.batch_sizes) <= 4 and sum(batcher.batch_sizes) == 10
    assert max(batcher.batch_sizes) > 1
    batcher.close()


def test_batching_off_runs_one_at_a_time() -> None:
    batcher = DynamicBatcher(double, max_batch_size=1, max_wait_ms=20)
    futures = [batcher.submit(np.zeros((1, 1, 1))) for _ in range(5)]
    [f.result(timeout=5) for f in futures]
    assert batcher.batch_sizes == [1] * 5
    batcher.close()


def test_lone_request_does_not_wait_for_company() -> None:
    batcher = DynamicBatcher(double, max_batch_size=8, max_wait_ms=60_000)
    assert batcher.submit(np.ones((1, 1, 1))).result(timeout=5)[0] == 2.0
    batcher.close()


def test_a_lone_image_runs_in_the_callers_thread_and_company_joins_a_batch() -> None:
    threads: list[str] = []

    def noted(batch: np.ndarray) -> np.ndarray:
        threads.append(threading.current_thread().name)
        return double(batch)

    batcher = DynamicBatcher(noted, max_batch_size=8, max_wait_ms=60_000, name="m")
    with batcher.expecting() as ticket:
        assert ticket.run_alone(np.ones((1, 1, 1)))[0] == 2.0
    assert threads == [threading.current_thread().name] and batcher.batch_sizes == [1]
    with batcher.expecting() as first, batcher.expecting() as second:
        assert first.run_alone(np.ones((1, 1, 1))) is None  # another is announced
        assert not first.used
        futures = [first.submit(np.ones((1, 1, 1))), second.submit(np.ones((1, 1, 1)))]
    assert [f.result(timeout=5)[0] for f in futures] == [2.0, 2.0]
    assert threads[1].startswith("batcher-m") and batcher.batch_sizes == [1, 2]
    batcher.close()


def test_announced_image_joins_the_batch() -> None:
    batcher = DynamicBatcher(double, max_batch_size=8, max_wait_ms=60_000)
    with batcher.expecting() as ticket:
        first = batcher.submit(np.ones((1, 1, 1)))
        threading.Event().wait(0.2)  # the image still "being decoded"
        second = ticket.submit(np.full((1, 1, 1), 3.0))
    assert (first.result(timeout=5)[0], second.result(timeout=5)[0]) == (2.0, 6.0)
    assert batcher.batch_sizes == [2]
    batcher.close()


def test_abandoned_announcement_stops_the_wait() -> None:
    batcher = DynamicBatcher(double, max_batch_size=8, max_wait_ms=60_000)
    with batcher.expecting():
        first = batcher.submit(np.ones((1, 1, 1)))
        threading.Event().wait(0.1)
    # decoding failed: no image follows, and the queued one runs alone
    assert first.result(timeout=5)[0] == 2.0
    assert batcher.batch_sizes == [1]
    batcher.close()


def test_cancelled_job_is_dropped_not_run() -> None:
    gate, seen = threading.Event(), []

    def slow(batch: np.ndarray) -> np.ndarray:
        seen.append(batch.reshape(-1).tolist())
        gate.wait(5)
        return double(batch)

    batcher = DynamicBatcher(slow, max_batch_size=1, max_wait_ms=0)
    running = batcher.submit(np.full((1, 1, 1), 1.0))
    while not seen:  # the worker is inside the first batch
        threading.Event().wait(0.001)
    abandoned = batcher.submit(np.full((1, 1, 1), 2.0))
    kept = batcher.submit(np.full((1, 1, 1), 3.0))
    assert abandoned.cancel()  # its client left before its batch began
    gate.set()
    assert (running.result(timeout=5)[0], kept.result(timeout=5)[0]) == (2.0, 6.0)
    assert seen == [[1.0], [3.0]] and batcher.batch_sizes == [1, 1]
    batcher.close()


def test_two_workers_run_a_second_batch_while_the_first_runs() -> None:
    release, started = threading.Event(), threading.Semaphore(0)
    running = []

    def blocking(batch: np.ndarray) -> np.ndarray:
        running.append(batch.reshape(-1).tolist())
        started.release()
        release.wait(5)
        return double(batch)

    batcher = DynamicBatcher(blocking, max_batch_size=2, max_wait_ms=0, workers=2)
    first = batcher.submit(np.full((1, 1, 1), 1.0))
    assert started.acquire(timeout=5)  # worker 1 is inside its batch
    second = batcher.submit(np.full((1, 1, 1), 2.0))
    assert started.acquire(timeout=5), "the second worker did not start a batch"
    assert running == [[1.0], [2.0]]
    release.set()
    assert (first.result(timeout=5)[0], second.result(timeout=5)[0]) == (2.0, 4.0)
    batcher.close()
    assert not any(thread.is_alive() for thread in batcher._threads)


def test_full_queue_is_overloaded_with_retry_after() -> None:
    gate = threading.Event()

    def blocked(batch: np.ndarray) -> np.ndarray:
        gate.wait(5)
        return double(batch)

    batcher = DynamicBatcher(blocked, max_batch_size=1, max_wait_ms=0, max_queue=2)
    first = batcher.submit(np.zeros((1, 1, 1)))
    while batcher.depth:  # the worker took the first job and is blocked in it
        pass
    waiting = [batcher.submit(np.zeros((1, 1, 1))) for _ in range(2)]
    with pytest.raises(Overloaded) as raised:
        batcher.submit(np.zeros((1, 1, 1)))
    assert raised.value.headers["Retry-After"] == "1"
    gate.set()
    assert all(f.result(timeout=5) is not None for f in [first, *waiting])
    batcher.close()


def test_errors_reach_every_request_of_the_batch() -> None:
    def broken(batch: np.ndarray) -> np.ndarray:
        raise RuntimeError("boom")

    batcher = DynamicBatcher(broken, max_batch_size=4, max_wait_ms=10)
    futures = [batcher.submit(np.zeros((1, 1, 1))) for _ in range(3)]
    for future in futures:
        with pytest.raises(RuntimeError, match="boom"):
            future.result(timeout=5)
    batcher.close()


def test_service_batches_concurrent_requests(settings: Settings) -> None:
    batched = settings.model_copy(update={"max_batch_size": 8, "max_wait_ms": 20.0})
    with TestClient(create_app(batched)) as client:
        wait_ready(client)
        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(
                pool.map(
                    lambda _: (
                        client.post("/predict", files={"file": ("a", png_bytes())}).status_code
                    ),
                    range(32),
                )
            )
        assert codes == [200] * 32
        sizes = client.app.state.batchers.for_model(  # type: ignore[attr-defined]
            client.app.state.store.get("toy")
        ).batch_sizes  # type: ignore[attr-defined]
        assert sum(sizes) == 32 and max(sizes) > 1 and max(sizes) <= 8


def test_per_model_override(settings: Settings) -> None:
    custom = settings.model_copy(
        update={"batching": {"toy": {"max_batch_size": 1, "batch_workers": 2}}}
    )
    assert custom.batching_for("toy") == (1, settings.max_wait_ms, 2)
    assert custom.batching_for("triple") == (
        settings.max_batch_size,
        settings.max_wait_ms,
        settings.batch_workers,
    )

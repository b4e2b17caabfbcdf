"""Resident memory: the idle heap trim (once after a burst of uploads, never while one is being
handled), and what a service without a PACS leaves unloaded."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from app.config import Settings
from app.inference.batchers import Batchers
from app.inference.pool import WorkerPool
from app.memory import trim_when_idle
from app.metrics import Metrics

INTERVAL = 0.02


def trims(caplog: pytest.LogCaptureFixture) -> int:
    return sum("heap trimmed" in record.getMessage() for record in caplog.records)


async def run_trimmer(pool: WorkerPool, scenario: object) -> None:
    trimmer = asyncio.create_task(trim_when_idle(pool, Batchers(Settings(), Metrics()), INTERVAL))
    try:
        await scenario  # type: ignore[misc]
    finally:
        trimmer.cancel()


def test_trims_once_after_work_and_not_again_while_idle(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="app.memory")
    pool = WorkerPool(workers=1, queue=4)

    async def scenario() -> None:
        await asyncio.sleep(INTERVAL * 4)
        assert trims(caplog) == 0  # nothing ran yet
        await pool.run(sum, [1, 2])
        await asyncio.sleep(INTERVAL * 6)
        assert trims(caplog) == 1  # once, not at every tick

    asyncio.run(run_trimmer(pool, scenario()))
    pool.shutdown()


def test_no_trim_while_an_upload_is_being_decoded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="app.memory")
    pool, gate = WorkerPool(workers=2, queue=4), threading.Event()

    async def scenario() -> None:
        slow = asyncio.ensure_future(pool.run(gate.wait, 5))
        await asyncio.sleep(0)  # the slow job is in the pool
        await pool.run(sum, [1])
        await asyncio.sleep(INTERVAL * 6)
        assert trims(caplog) == 0  # one job is done, but another is in progress
        gate.set()
        await slow
        await asyncio.sleep(INTERVAL * 6)
        assert trims(caplog) == 1

    asyncio.run(run_trimmer(pool, scenario()))
    pool.shutdown()


def test_shrinking_the_arenas_leaves_the_answers_alone(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The idle release runs each served model once with arena shrinkage; its answers after that
    are the same as before."""
    import numpy as np

    from app.memory import release_idle_memory
    from tests.factories import loaded_store, write_model

    write_model(tmp_path, "used")
    write_model(tmp_path, "unused")
    store = loaded_store(tmp_path, intra_op_threads=1)
    batchers = Batchers(Settings(), Metrics())
    batcher = batchers.for_model(store.get("used"))
    image = np.full((16, 16, 1), 0.7, np.float32)
    before = batcher.submit(image).result(timeout=10)
    release_idle_memory(batchers)
    after = batcher.submit(image).result(timeout=10)
    assert np.array_equal(before.probabilities, after.probabilities)
    batchers.close()


def test_malloc_arenas_are_capped_where_glibc_is() -> None:
    """The cap applies on glibc (these machines, the images); 0 leaves glibc's default."""
    import platform

    from app.memory import limit_malloc_arenas

    assert limit_malloc_arenas(0) is False
    if platform.libc_ver()[0] == "glibc":
        assert limit_malloc_arenas(2) is True


def test_a_service_without_a_pacs_never_loads_httpx(tmp_path: Path) -> None:
    """httpx loads its command line's libraries (rich, pygments, click) with it: ~5 MB resident
    that only the DICOMweb client needs, so it is imported when a client is made."""
    folder = repr(str(tmp_path))
    script = (
        "import sys; from pathlib import Path; from app.config import Settings; "
        "from app.main import create_app; import app.cli; "
        f"create_app(Settings(models_dir=Path({folder}), data_dir=Path({folder}))); "
        "print(sorted({'httpx', 'rich'} & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"

"""Runs blocking work (decoding, preprocessing) on a bounded thread pool, off the event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import ParamSpec, TypeVar

from app.errors import Overloaded

P = ParamSpec("P")
T = TypeVar("T")


class WorkerPool:
    """At most `workers` jobs run at once and `queue` wait; more are refused with 503."""

    def __init__(self, workers: int, queue: int, retry_after_s: int = 1) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self._capacity = workers + queue
        self._retry_after = str(retry_after_s)
        self._pending = 0  # touched only from the event loop thread
        self.finished = 0  # jobs done since start, for idle detection

    @property
    def pending(self) -> int:
        return self._pending

    async def run(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `func` in the pool, or raise Overloaded when the queue is full."""
        if self._pending >= self._capacity:
            raise Overloaded(
                f"{self._pending} requests are already queued; retry shortly",
                headers={"Retry-After": self._retry_after},
            )
        with self._counted():
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, partial(func, *args, **kwargs))

    def run_here(self, func: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `func` in the calling thread, counted as a job of the pool: for work the event
        loop may do itself because nothing else waits for it (`pending` is 0)."""
        with self._counted():
            return func(*args, **kwargs)

    @contextmanager
    def _counted(self) -> Iterator[None]:
        """One job pending while inside; finished when it leaves."""
        self._pending += 1
        try:
            yield
        finally:
            self._pending -= 1
            self.finished += 1

    def shutdown(self) -> None:
        """Finish running jobs and stop the threads."""
        self._executor.shutdown(wait=True, cancel_futures=False)

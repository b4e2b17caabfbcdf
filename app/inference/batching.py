"""Dynamic batching: concurrent requests for one model run as one `session.run`.

Requests wait in a bounded queue; a worker thread takes the first and gathers what is already
queued, up to `max_batch_size` images. It waits (at most `max_wait_ms`) only for images that were
announced (`expecting()`: being read and decoded) but are not queued yet, so a lone request never
waits and concurrent ones still share a batch. With `workers` > 1, as many batches run at once
(one fills while another runs; an onnxruntime session may be run from several threads)."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.errors import Overloaded

RunBatch = Callable[[np.ndarray], Sequence[Any]]  # one result per input row


@dataclass
class _Job:
    tensor: np.ndarray
    future: Future[Any] = field(default_factory=Future)


class DynamicBatcher:
    """Groups single-image jobs into batches for one model version."""

    def __init__(
        self,
        run: RunBatch,
        max_batch_size: int = 8,
        max_wait_ms: float = 2.0,
        max_queue: int = 64,
        retry_after_s: int = 1,
        name: str = "model",
        on_batch: Callable[[int], None] | None = None,
        workers: int = 1,
    ) -> None:
        self._run = run
        self._on_batch = on_batch
        self.max_batch_size = max(1, max_batch_size)
        self._max_wait = max_wait_ms / 1000.0
        self._queue: queue.Queue[_Job | None] = queue.Queue(maxsize=max_queue)
        self._retry_after = str(retry_after_s)
        self._sizes: deque[int] = deque(maxlen=1000)  # recent batch sizes, for tests
        self._incoming = 0  # announced images not yet queued
        self._running = 0  # batches being run
        self._incoming_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._loop, name=f"batcher-{name}-{index}", daemon=True)
            for index in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    @property
    def batch_sizes(self) -> list[int]:
        """The sizes of the last 1,000 batches run, oldest first."""
        return list(self._sizes)

    @property
    def depth(self) -> int:
        """Jobs waiting to be batched."""
        return self._queue.qsize()

    def submit(self, tensor: np.ndarray) -> Future[Any]:
        """Queue one (H, W, C) input; the future gives its probabilities, or raises. Cancel it
        before its batch starts and the image is dropped, not run."""
        job = _Job(tensor)
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            raise Overloaded(
                f"{self._queue.maxsize} images are already waiting for this model; retry shortly",
                headers={"Retry-After": self._retry_after},
            ) from None
        return job.future

    def run_alone(self, tensor: np.ndarray) -> Any | None:
        """Run one announced image at once, in the calling thread, when it is the only one: none
        other announced or queued, no batch running. A lone request then skips two thread
        hand-offs (to the batcher thread and back); None when others are about."""
        with self._incoming_lock:
            if not self._alone():
                return None
            self._running += 1
        try:
            self._sizes.append(1)
            if self._on_batch:
                self._on_batch(1)
            return self._run(tensor[np.newaxis])[0]
        finally:
            with self._incoming_lock:
                self._running -= 1

    def is_alone(self) -> bool:
        """Whether one image is announced and nothing else: none queued, no batch running."""
        with self._incoming_lock:
            return self._alone()

    def _alone(self) -> bool:
        return self._incoming == 1 and not self._running and self._queue.empty()

    @contextmanager
    def expecting(self) -> Iterator[Ticket]:
        """Announce one image on its way; submit it through the ticket, or let it go."""
        ticket = Ticket(self)
        self._count_incoming(+1)
        try:
            yield ticket
        finally:
            if not ticket.used:
                self._count_incoming(-1)

    def _count_incoming(self, step: int) -> None:
        with self._incoming_lock:
            self._incoming += step

    def close(self) -> None:
        """Finish queued jobs, then stop the workers (each stops at one end marker)."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            with self._incoming_lock:
                self._running += 1
            try:
                jobs, stop = self._gather(first)
                self._execute(jobs)
            finally:
                with self._incoming_lock:
                    self._running -= 1
            if stop:
                return

    def _gather(self, first: _Job) -> tuple[list[_Job], bool]:
        jobs = [first]
        deadline = time.monotonic() + self._max_wait
        while len(jobs) < self.max_batch_size:
            remaining = deadline - time.monotonic()
            waiting = self._incoming > 0 and remaining > 0  # an announced image is on its way
            try:
                job = (
                    self._queue.get(timeout=min(remaining, 0.0005))
                    if waiting
                    else self._queue.get_nowait()
                )
            except queue.Empty:
                if waiting:
                    continue
                break
            if job is None:
                return jobs, True
            jobs.append(job)
        return jobs, False

    def _execute(self, jobs: list[_Job]) -> None:
        jobs = [job for job in jobs if job.future.set_running_or_notify_cancel()]
        if not jobs:  # every request of this batch was abandoned by its client
            return
        self._sizes.append(len(jobs))
        if self._on_batch:
            self._on_batch(len(jobs))
        try:
            outputs = self._run(np.stack([job.tensor for job in jobs]))
        except Exception as exc:  # handed to every waiting request, never lost
            for job in jobs:
                job.future.set_exception(exc)
            return
        for job, row in zip(jobs, outputs, strict=True):
            job.future.set_result(row)


class Ticket:
    """One announced image: submitting it turns the announcement into a queued job."""

    def __init__(self, batcher: DynamicBatcher) -> None:
        self._batcher = batcher
        self.used = False

    def submit(self, tensor: np.ndarray) -> Future[Any]:
        """Queue the announced image (see `DynamicBatcher.submit`)."""
        self._use()
        self._batcher._count_incoming(-1)
        return self._batcher.submit(tensor)

    def run_alone(self, tensor: np.ndarray) -> Any | None:
        """The image's answer, run at once in this thread when it is alone (see
        `DynamicBatcher.run_alone`); None, the ticket still unused, when it is not."""
        if self.used:
            raise RuntimeError("a ticket submits one image")
        answer = self._batcher.run_alone(tensor)
        if answer is not None:
            self._use()
            self._batcher._count_incoming(-1)
        return answer

    def _use(self) -> None:
        if self.used:
            raise RuntimeError("a ticket submits one image")
        self.used = True

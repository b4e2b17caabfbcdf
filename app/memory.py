"""Hand heap memory back to the OS once a burst of requests is over.

Decoding and batching allocate and free large buffers in several threads; glibc keeps the freed
pages, so the resident size after a burst stays near its peak. When requests ran since the last
look and none is being decoded or waits for a batch now, the onnxruntime arenas give back their
free chunks and `malloc_trim` returns those pages."""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import functools
import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the store imports this module; these import the store
    from app.inference.batchers import Batchers
    from app.inference.pool import WorkerPool

log = logging.getLogger(__name__)


@functools.cache
def _libc() -> ctypes.CDLL | None:
    """The C library, looked up once (`find_library` may run `ldconfig`); None if absent."""
    try:
        return ctypes.CDLL(ctypes.util.find_library("c"))
    except (OSError, TypeError):
        return None


M_ARENA_MAX = -8  # mallopt parameter (glibc malloc.h)


def limit_malloc_arenas(arenas: int) -> bool:
    """Cap glibc's malloc arenas (0: leave its default); before threads allocate, so every
    thread shares the few there are. False without glibc or when refused."""
    mallopt = getattr(_libc(), "mallopt", None)
    if arenas <= 0 or mallopt is None:
        return False
    return bool(mallopt(M_ARENA_MAX, arenas))


def release_free_memory() -> None:
    """Hand freed heap memory back to the OS (glibc `malloc_trim`); a no-op without glibc."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


async def trim_when_idle(runner: WorkerPool, batchers: Batchers, interval_s: float) -> None:
    """Every `interval_s` seconds: trim the heap if uploads were handled since the last trim and
    nothing is being decoded or queued now. 0 = never."""
    if interval_s <= 0:
        return
    trimmed_at = runner.finished
    while True:
        await asyncio.sleep(interval_s)
        busy = runner.pending > 0 or any(batchers.depths().values())
        if runner.finished != trimmed_at and not busy:
            trimmed_at = runner.finished
            await asyncio.to_thread(release_idle_memory, batchers)
            log.debug("heap trimmed after %d uploads", trimmed_at)


def release_idle_memory(batchers: Batchers) -> None:
    """The onnxruntime arenas' free chunks, then the C heap's free pages, back to the OS."""
    batchers.shrink_arenas()
    release_free_memory()

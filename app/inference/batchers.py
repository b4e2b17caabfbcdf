"""One dynamic batcher per served model version, created on first use."""

from __future__ import annotations

import threading
from functools import partial

from app.config import Settings
from app.inference.batching import DynamicBatcher
from app.inference.predict import run_rows
from app.inference.session import shrink_arena
from app.inference.store import LoadedModel
from app.metrics import Metrics


class Batchers:
    """Hands out the batcher of a model version; closes them all at shutdown."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self._settings = settings
        self._metrics = metrics
        self._batchers: dict[str, DynamicBatcher] = {}
        self._models: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()

    def for_model(self, model: LoadedModel) -> DynamicBatcher:
        with self._lock:
            batcher = self._batchers.get(model.key)
            if batcher is None:
                policy = self._settings.batching_for(model.card.name)
                batcher = DynamicBatcher(
                    partial(run_rows, model),
                    max_batch_size=policy.max_batch_size,
                    max_wait_ms=policy.max_wait_ms,
                    workers=policy.workers,
                    max_queue=self._settings.max_queue,
                    retry_after_s=self._settings.retry_after_s,
                    name=model.key,
                    on_batch=self._metrics.batch_size.labels(model.key).observe,
                )
                self._batchers[model.key] = batcher
                self._models[model.key] = model
            return batcher

    def shrink_arenas(self) -> None:
        """Return the CPU arena's free chunks of every model that has served (see
        `shrink_arena`); models on other providers keep theirs."""
        with self._lock:
            models = list(self._models.values())
        for model in models:
            if model.provider == "CPUExecutionProvider":
                shrink_arena(model.session, model.card)

    def depths(self) -> dict[str, int]:
        return {key: b.depth for key, b in self._batchers.items()}

    def close(self) -> None:
        with self._lock:
            for batcher in self._batchers.values():
                batcher.close()
            self._batchers.clear()
            self._models.clear()

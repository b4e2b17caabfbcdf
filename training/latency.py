"""CPU latency of an exported graph, for the model card (median of repeated runs)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort


def onnx_latency_ms(
    path: Path, sample: np.ndarray, runs: int = 30, input_name: str = "image"
) -> float:
    """Median milliseconds for one `session.run` at batch 1 on the CPU provider."""
    (latency,) = interleaved_latency_ms([(path, sample, input_name)], runs)
    return latency


def interleaved_latency_ms(
    graphs: Sequence[tuple[Path, np.ndarray, str]], runs: int = 30
) -> list[float]:
    """Median batch-1 CPU milliseconds of each (graph, sample, input name), measured in turns:
    round after round, one `session.run` of each graph, so a machine whose speed drifts during
    the measurement slows every graph alike instead of the ones measured last."""
    sessions = [
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]) for path, _, _ in graphs
    ]
    feeds = [{name: sample[:1].astype(np.float32)} for _, sample, name in graphs]
    for session, feed in zip(sessions, feeds, strict=True):
        session.run(None, feed)  # warm-up
    times: list[list[float]] = [[] for _ in graphs]
    for _ in range(runs):
        for session, feed, measured in zip(sessions, feeds, times, strict=True):
            started = time.perf_counter()
            session.run(None, feed)
            measured.append(time.perf_counter() - started)
    return [float(np.median(measured) * 1000) for measured in times]

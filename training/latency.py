"""CPU latency of an exported graph, for the model card (median of repeated runs)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort


def onnx_latency_ms(
    path: Path, sample: np.ndarray, runs: int = 30, input_name: str = "image"
) -> float:
    """Median milliseconds for one `session.run` at batch 1 on the CPU provider."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = {input_name: sample[:1].astype(np.float32)}
    session.run(None, feed)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)

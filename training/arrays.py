"""Images → model inputs through the service's own preprocessing, cached once as arrays."""

from __future__ import annotations

import hashlib
import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from app.imaging.decode import decode_image
from app.imaging.preprocess import InputSpec, to_model_input
from training.data import Sample

log = logging.getLogger(__name__)


def load_image(path: Path, spec: InputSpec) -> np.ndarray:
    """One file → one model input, exactly as the service computes it."""
    return to_model_input(decode_image(path.read_bytes()).pixels, spec)


def load_arrays(samples: list[Sample], spec: InputSpec, cache_dir: Path | None) -> np.ndarray:
    """(N, H, W, 1) float32 inputs for `samples`; reused from `cache_dir` when present."""
    key = _cache_key(samples, spec)
    cached = cache_dir / f"inputs-{key}.npy" if cache_dir else None
    if cached and cached.is_file():
        log.info("inputs from cache %s", cached)
        return np.asarray(np.load(cached))
    with ThreadPoolExecutor(max_workers=2) as pool:
        arrays = np.stack(list(pool.map(lambda s: load_image(s.path, spec), samples)))
    if cached:
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, arrays)
    return arrays


# Bump when the preprocessing behind an unchanged InputSpec changes, so no stale cache is used.
PREPROCESSING_REVISION = 2  # 2: keep_aspect pads with the dark level instead of the minimum


def _cache_key(samples: list[Sample], spec: InputSpec) -> str:
    digest = hashlib.sha256(f"{PREPROCESSING_REVISION}:{spec.model_dump_json()}".encode())
    for sample in samples:
        digest.update(sample.sha256.encode())
    return digest.hexdigest()[:16]

"""On a CUDA machine (`python -m pytest -m gpu`, with the `gpu` extra): the shipped models load
on the CUDA provider and answer as they do on the CPU, padded batches included. Skipped where
this onnxruntime build offers no CUDA provider."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from app.inference.predict import run_batch, run_in_chunks
from tests.factories import loaded_store

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(
        "CUDAExecutionProvider" not in ort.get_available_providers(),
        reason="this onnxruntime build offers no CUDA provider",
    ),
]


def assert_answers_agree(provider: str, tolerance: float = 0.02) -> None:
    """Every shipped model runs on `provider` and gives the CPU's probabilities, within
    `tolerance` (a GPU may use TF32 convolutions), for batches of 1, 3 (padded) and 9 (chunked)."""
    tested = loaded_store(providers=[provider], max_batch_size=4)
    reference = loaded_store(providers=["CPUExecutionProvider"], max_batch_size=4)
    assert not tested.failures and tested.all_models()
    rng = np.random.default_rng(0)
    for model in tested.all_models():
        assert model.provider == provider
        cpu = reference.get(model.card.name, model.card.version)
        spec = model.card.input
        images = rng.random((9, spec.height, spec.width, spec.channels), dtype=np.float32)
        for batch in (images[:1], images[:3]):
            np.testing.assert_allclose(
                run_batch(model, batch), run_batch(cpu, batch), atol=tolerance
            )
        chunked = run_in_chunks(model, images, 4).probabilities
        np.testing.assert_allclose(chunked, run_batch(cpu, images), atol=tolerance)


def test_shipped_models_answer_on_cuda_as_on_the_cpu() -> None:
    assert_answers_agree("CUDAExecutionProvider")

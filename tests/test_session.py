"""Session options follow the settings (threads, optimisation level, arena, spinning), and the
optional cache of optimised graphs."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from app.config import CpuArena, Settings
from app.inference.card import read_card
from app.inference.predict import run_batch, run_in_chunks
from app.inference.session import (
    bucket_size,
    optimized_cache_path,
    session_options,
    warm_batch_sizes,
)
from app.inference.store import LoadedModel, load_model_dir
from tests.factories import SHIPPED_MODELS, brightness_model, write_model


@pytest.mark.parametrize(
    ("arena", "spinning", "own_arena", "shared"),
    [("off", False, False, False), ("session", True, True, False), ("shared", False, True, True)],
)
def test_session_options(arena: CpuArena, spinning: bool, own_arena: bool, shared: bool) -> None:
    options = session_options(3, "basic", arena=arena, spinning=spinning)
    assert options.intra_op_num_threads == 3 and options.inter_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.enable_cpu_mem_arena is own_arena
    expected = "1" if spinning else "0"
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == expected
    assert (entry(options, "session.use_env_allocators") == "1") is shared
    assert options.enable_mem_pattern is not shared  # a pattern's block would bypass the arena


@pytest.mark.parametrize(
    ("spinning", "spin_us", "expected"), [(True, 20, "20"), (True, 0, None), (False, 20, None)]
)
def test_spinning_is_bounded_when_asked(spinning: bool, spin_us: int, expected: str | None) -> None:
    """A bound is passed only with spinning on; 0 leaves onnxruntime's own spin."""
    options = session_options(2, spinning=spinning, spin_us=spin_us)
    assert entry(options, "session.intra_op.spin_duration_us") == expected


def test_spinning_is_bounded_by_default() -> None:
    fields = Settings.model_fields
    assert fields["intra_op_spinning"].default is True
    assert fields["intra_op_spin_us"].default == 20


def entry(options: ort.SessionOptions, key: str) -> str | None:
    """A session config entry, or None when unset."""
    try:
        return options.get_session_config_entry(key)
    except RuntimeError:  # what onnxruntime raises for a key never set
        return None


def test_sessions_on_the_shared_arena_answer_as_without_it(tmp_path: Path) -> None:
    """Two models on the shared arena, run from two threads at once at mixed batch sizes, give
    exactly the probabilities of sessions that allocate for themselves."""
    for name in ("one", "two"):
        write_model(tmp_path, name)
    images = np.random.default_rng(0).random((12, 16, 16, 1), dtype=np.float32)
    answers = {}
    for arena in ("off", "shared"):
        settings = Settings(models_dir=tmp_path, cpu_mem_arena=arena, intra_op_threads=1)
        models = [load_model_dir(tmp_path / n / "1", n, 1, settings) for n in ("one", "two")]
        with ThreadPoolExecutor(2) as pool:
            runs = [
                pool.submit(run_batch, model, images[:size])
                for size in (1, 3, 4, 12)
                for model in models
            ]
            answers[arena] = [run.result() for run in runs]
    for off, shared in zip(answers["off"], answers["shared"], strict=True):
        np.testing.assert_array_equal(off, shared)


@pytest.mark.parametrize(
    ("provider", "max_batch", "warm_max", "expected"),
    [
        ("CPUExecutionProvider", 4, False, (1,)),
        ("CPUExecutionProvider", 4, True, (1, 4)),
        ("CPUExecutionProvider", 1, True, (1,)),
        ("CUDAExecutionProvider", 4, False, (1, 2, 4)),
        ("CUDAExecutionProvider", 5, False, (1, 2, 4, 8)),
        ("CUDAExecutionProvider", 1, False, (1,)),
    ],
)
def test_warm_up_covers_every_padded_size_on_cuda(
    provider: str, max_batch: int, warm_max: bool, expected: tuple[int, ...]
) -> None:
    """CUDA searches convolution algorithms per input shape: every bucket the batcher can fill
    is warmed there; the CPU warms batch 1, and the largest batch when asked."""
    assert warm_batch_sizes(provider, max_batch, warm_max) == expected


def test_bucket_sizes_are_powers_of_two() -> None:
    assert [bucket_size(rows) for rows in (1, 2, 3, 4, 5, 8, 9, 64, 65)] == [
        1,
        2,
        4,
        4,
        8,
        8,
        16,
        64,
        128,
    ]


class RecordingSession:
    """A real session that notes the batch sizes it is run at."""

    def __init__(self, session: ort.InferenceSession) -> None:
        self.session, self.sizes = session, list[int]()

    def run(self, outputs: list[str], feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        self.sizes.append(len(next(iter(feed.values()))))
        return self.session.run(outputs, feed)


def grey_images(levels: list[float]) -> np.ndarray:
    """One uniform 16 x 16 toy input per grey level."""
    return np.stack([np.full((16, 16, 1), level, np.float32) for level in levels])


def recorded_as(model: LoadedModel, provider: str) -> tuple[LoadedModel, RecordingSession]:
    """`model` labelled as running on `provider`, its session recording the batch sizes: the
    label decides the padding, the session itself still runs on the CPU."""
    recording = RecordingSession(model.session)
    return dataclasses.replace(model, provider=provider, session=recording), recording


@pytest.mark.parametrize(
    ("provider", "fed"), [("CUDAExecutionProvider", 4), ("CPUExecutionProvider", 3)]
)
def test_batches_are_padded_where_shapes_are_costly(
    tmp_path: Path, provider: str, fed: int
) -> None:
    model = load_model_dir(write_model(tmp_path, "toy"), "toy", 1, Settings())
    images = grey_images([0.1, 0.5, 0.9])
    expected = run_batch(model, images)
    labelled, recording = recorded_as(model, provider)
    answer = run_batch(labelled, images)
    assert recording.sizes == [fed]
    assert answer.shape == (3, 2) and np.allclose(answer, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("provider", "sizes"),
    [("CPUExecutionProvider", [4, 4, 3]), ("CUDAExecutionProvider", [4, 4, 4])],
)
def test_a_client_batch_runs_in_chunks(tmp_path: Path, provider: str, sizes: list[int]) -> None:
    """An OIP request's own batch runs at most `chunk` images per session.run (bounded memory,
    and on CUDA only warmed shapes), with the answers of one whole run."""
    model = load_model_dir(write_model(tmp_path, "toy"), "toy", 1, Settings())
    images = grey_images(np.linspace(0.0, 1.0, 11).tolist())
    whole = run_batch(model, images)
    labelled, recording = recorded_as(model, provider)
    answer = run_in_chunks(labelled, images, chunk=4).probabilities
    assert recording.sizes == sizes
    assert answer.shape == (11, 2) and np.allclose(answer, whole, atol=1e-6)


def cached_settings(tmp_path: Path, **extra: object) -> Settings:
    """Settings with a graph cache, on the CPU provider (the cache's only one), whatever this
    onnxruntime build offers first."""
    return Settings(
        models_dir=tmp_path / "models",
        optimized_model_dir=tmp_path / "cache",
        providers=["CPUExecutionProvider"],
        **extra,
    )


def bright_score(folder: Path, settings: Settings) -> float:
    model = load_model_dir(folder, "toy", 1, settings)
    return float(run_batch(model, np.full((1, 16, 16, 1), 0.9, np.float32))[0][1])


def inverted_brightness_model() -> bytes:
    """The test graph with its weights and bias negated: bright images → the first class."""
    model = onnx.load_from_string(brightness_model())
    for tensor in model.graph.initializer:
        if tensor.name in ("w", "b"):
            tensor.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(tensor), tensor.name))
    return model.SerializeToString()


def test_optimised_graph_is_cached_and_then_loaded(tmp_path: Path) -> None:
    folder = write_model(tmp_path / "models", "toy")
    settings = cached_settings(tmp_path)
    original = bright_score(folder, settings)
    (cached,) = (tmp_path / "cache").iterdir()
    assert cached.name.startswith("toy-1-") and cached.suffix == ".onnx"
    # a later start reads the cache, not the original: a different graph put there answers
    cached.write_bytes(inverted_brightness_model())
    assert bright_score(folder, settings) == pytest.approx(1 - original, abs=1e-6)


def test_unusable_cache_entry_is_rebuilt(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = write_model(tmp_path / "models", "toy")
    settings = cached_settings(tmp_path)
    expected = bright_score(folder, settings)
    (cached,) = (tmp_path / "cache").iterdir()
    for unusable in (b"not a graph", brightness_model(classes=["low", "mid", "high"])):
        cached.write_bytes(unusable)
        assert bright_score(folder, settings) == pytest.approx(expected)
    assert "ignoring cached optimised graph" in caplog.text
    assert ort.InferenceSession(str(cached)).get_inputs()[0].name == "image"  # rewritten


def test_unwritable_cache_costs_a_warning_not_the_model(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = write_model(tmp_path / "models", "toy")
    (tmp_path / "cache").write_text("a file where the folder should be")
    assert bright_score(folder, cached_settings(tmp_path)) > 0.5
    assert "optimised graph not cached" in caplog.text


def test_cache_key_follows_level_and_is_cpu_only(tmp_path: Path) -> None:
    card = read_card(write_model(tmp_path / "models", "toy") / "metadata.json")
    cpu = ["CPUExecutionProvider"]
    paths = {
        optimized_cache_path(card, cached_settings(tmp_path, graph_optimization=level), cpu)
        for level in ("basic", "all")
    }
    assert len(paths) == 2
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    assert optimized_cache_path(card, cached_settings(tmp_path), gpu) is None
    assert optimized_cache_path(card, Settings(), cpu) is None


@pytest.mark.parametrize("name", sorted(p.name for p in SHIPPED_MODELS.iterdir() if p.is_dir()))
def test_a_shipped_model_answers_alike_from_its_cached_graph(
    tmp_path: Path, name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The cache is on by default: the saved optimised graph must answer as the session built
    from the original does (on this CPU, which the cache key binds)."""
    version = max(int(p.name) for p in (SHIPPED_MODELS / name).iterdir() if p.name.isdigit())
    folder = SHIPPED_MODELS / name / str(version)
    settings = Settings(optimized_model_dir=tmp_path / "cache", providers=["CPUExecutionProvider"])
    built = load_model_dir(folder, name, version, settings)  # writes the cache
    assert len(list((tmp_path / "cache").iterdir())) == 1
    cached = load_model_dir(folder, name, version, settings)  # reads it
    assert "cached optimised graph" not in caplog.text  # neither ignored nor left unwritten
    spec = built.card.input
    rng = np.random.default_rng(7)
    images = rng.random((3, spec.height, spec.width, 1), dtype=np.float32)
    assert np.allclose(run_batch(cached, images), run_batch(built, images), atol=1e-6)

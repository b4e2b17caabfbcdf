"""onnxruntime sessions: provider choice, thread settings, checks against the card, warm-up."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import platform
from pathlib import Path

import numpy as np
import onnxruntime as ort

from app.config import CpuArena, Settings
from app.errors import ModelLoadError
from app.inference.card import ModelCard

log = logging.getLogger(__name__)


OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


def choose_providers(preferred: list[str]) -> list[str]:
    """The preferred providers this onnxruntime build offers, CPU always last."""
    available = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in available and p != "CPUExecutionProvider"]
    return [*chosen, "CPUExecutionProvider"]


def provider_options(providers: list[str], settings: Settings) -> list[dict[str, str]]:
    """Per-provider options: cuDNN algorithm search and a right-sized arena for CUDA."""
    cuda = {
        "cudnn_conv_algo_search": settings.cudnn_conv_algo_search,
        "arena_extend_strategy": "kSameAsRequested",
        "do_copy_in_default_stream": "1",
    }
    return [cuda if p == "CUDAExecutionProvider" else {} for p in providers]


def session_options(
    threads: int,
    level: str = "all",
    arena: CpuArena = "off",
    spinning: bool = False,
    spin_us: int = 0,
) -> ort.SessionOptions:
    """Explicit thread counts, the chosen graph optimisation level, where CPU memory comes from
    (`shared_cpu_arena`, an arena of the session's own, or malloc), and whether idle intra-op
    threads spin before they sleep, and for how long (`spin_us`; 0 = onnxruntime's own spin).

    A short spin bridges the gaps between the operators of one run (a lone request's
    `session.run` is ~2 ms shorter with 20 µs than without spinning); onnxruntime's own spin
    also keeps the cores busy between runs, which takes them from decoding under load."""
    options = ort.SessionOptions()
    options.enable_cpu_mem_arena = arena != "off"
    if arena == "shared" and shared_cpu_arena():
        options.add_session_config_entry("session.use_env_allocators", "1")
        # A memory pattern allocates each run's planned block outside the arena, from malloc:
        # without it, every tensor comes from (and goes back to) the shared arena.
        options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if spinning and spin_us:
        options.add_session_config_entry("session.intra_op.spin_duration_us", str(spin_us))
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = OPTIMIZATION_LEVELS[level]
    options.log_severity_level = 3
    return options


@functools.cache
def shared_cpu_arena() -> bool:
    """Register one CPU arena with onnxruntime's environment, for every session that opts in;
    False if it cannot be registered (the sessions then keep their own).

    Without it, each run's tensors come from malloc, and glibc's per-thread heaps keep much of
    what runs of varying batch sizes in several threads freed: the service's resident peak
    under wrk (chest CT, c16 then c64) ranged from 256 to 352 MB over eleven starts. With every
    tensor from one arena (and no memory pattern, whose planned block would bypass it) it was
    242-246 MB in three starts alternated with three of those, for 3-6 % less c16 throughput."""
    config = ort.OrtArenaCfg(0, -1, -1, -1)  # onnxruntime's defaults: no cap, powers of two
    info = ort.OrtMemoryInfo(
        "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
    )
    try:
        ort.create_and_register_allocator(info, config)
    except Exception as exc:  # onnxruntime raises its own unexported exception types
        log.warning("no shared CPU arena (%s); each session allocates for itself", exc)
        return False
    return True


def create_session(
    model_path: Path, card: ModelCard, settings: Settings, max_batch: int = 1
) -> tuple[ort.InferenceSession, str]:
    """A checked session, warmed up at the batch sizes it will see (up to `max_batch`), and the
    execution provider it really uses."""
    providers = choose_providers(settings.providers)
    cached = optimized_cache_path(card, settings, providers)
    session = _load_cached(cached, card, settings, providers) if cached else None
    if session is None:  # a cached graph was checked when it was loaded
        session = _build(model_path, settings, providers, save_to=cached)
        check_signature(session, card)
    in_use = session.get_providers()[0]
    if in_use != providers[0]:
        log.warning("%s: %s unavailable, running on %s", card.name, providers[0], in_use)
    for batch in warm_batch_sizes(in_use, max_batch, settings.warm_up_max_batch):
        warm_up(session, card, batch)
    return session, in_use


def warm_batch_sizes(provider: str, max_batch: int, warm_max: bool) -> tuple[int, ...]:
    """The batch sizes to run once before serving: on a provider that gets padded batches, every
    bucket up to `max_batch`'s; on the CPU, where a new shape costs a few ms, batch 1, and
    `max_batch` too when asked."""
    if pads_batches(provider):
        return tuple(1 << i for i in range(bucket_size(max_batch).bit_length()))
    return (1, max_batch) if warm_max and max_batch > 1 else (1,)


def pads_batches(provider: str) -> bool:
    """Whether batches on `provider` are padded to a power of two. A CUDA session searches
    cuDNN's convolution algorithms once per new input shape: on an H200 the first run at a new
    batch size took 0.6-4.9 s against 8-21 ms after it, a stall no request should meet, so it
    sees a few shapes only, each warmed before serving (padding rows cost little on a GPU:
    64 images ran in 1.0-1.6 x the time of one)."""
    return provider == "CUDAExecutionProvider"


def bucket_size(rows: int) -> int:
    """The smallest power of two that holds `rows` (>= 1)."""
    return 1 << (max(rows, 1) - 1).bit_length()


def optimized_cache_path(card: ModelCard, settings: Settings, providers: list[str]) -> Path | None:
    """Where this model's optimised graph is cached, or None when there is no cache. The name
    binds the graph's checksum, the optimisation level, the onnxruntime version and the CPU: an
    optimised graph may hold layout choices for this CPU's instruction set. CPU provider only."""
    if settings.optimized_model_dir is None or providers != ["CPUExecutionProvider"]:
        return None
    key = f"{card.sha256}|{settings.graph_optimization}|{ort.__version__}|{cpu_fingerprint()}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return settings.optimized_model_dir / f"{card.name}-{card.version}-{digest}.onnx"


@functools.cache
def cpu_fingerprint() -> str:
    """The CPU's model name and feature flags (Linux), else the machine type."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.machine()
    wanted = [line for line in lines if line.startswith(("model name", "flags", "Features"))]
    return "|".join(dict.fromkeys(wanted)) or platform.machine()


def _load_cached(
    path: Path, card: ModelCard, settings: Settings, providers: list[str]
) -> ort.InferenceSession | None:
    """The cached optimised graph, loaded without optimising again; None if absent or unusable
    (it is then rebuilt from the original)."""
    if not path.is_file():
        return None
    try:
        session = _session(path, settings, providers, level="disable")
        check_signature(session, card)
        return session
    except ModelLoadError as exc:
        log.warning("ignoring cached optimised graph %s: %s", path, exc)
        path.unlink(missing_ok=True)
        return None


def _build(
    model_path: Path, settings: Settings, providers: list[str], save_to: Path | None
) -> ort.InferenceSession:
    """A session from the original graph; with `save_to`, also write the optimised graph there
    (under a temporary name first, so a crash never leaves half a file in the cache). A cache
    that cannot be written costs a warning, never the model."""
    level = settings.graph_optimization
    if save_to is not None:
        partial = save_to.with_suffix(f".{os.getpid()}.partial")
        try:
            save_to.parent.mkdir(parents=True, exist_ok=True)
            session = _session(model_path, settings, providers, level, partial)
            partial.replace(save_to)
            return session
        except (OSError, ModelLoadError) as exc:
            log.warning("optimised graph not cached in %s: %s", save_to.parent, exc)
        finally:
            with contextlib.suppress(OSError):
                partial.unlink(missing_ok=True)
    return _session(model_path, settings, providers, level)


def _session(
    path: Path, settings: Settings, providers: list[str], level: str, save_to: Path | None = None
) -> ort.InferenceSession:
    options = session_options(
        settings.threads,
        level,
        settings.cpu_mem_arena,
        settings.intra_op_spinning,
        settings.intra_op_spin_us,
    )
    if save_to is not None:
        options.optimized_model_filepath = str(save_to)
    try:
        return ort.InferenceSession(
            str(path),
            sess_options=options,
            providers=providers,
            provider_options=provider_options(providers, settings),
        )
    except Exception as exc:  # onnxruntime raises its own unexported exception types
        raise ModelLoadError(f"onnxruntime cannot load {path.name}: {exc}") from exc


def check_signature(session: ort.InferenceSession, card: ModelCard) -> None:
    """The graph's input and output must be what the card promises."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 1 or inputs[0].name != card.input.name:
        raise ModelLoadError(f"graph inputs {[i.name for i in inputs]} != [{card.input.name!r}]")
    expected = [card.input.height, card.input.width, card.input.channels]
    if [d if isinstance(d, int) else None for d in inputs[0].shape[1:]] != expected:
        raise ModelLoadError(f"graph input shape {inputs[0].shape} does not match {expected}")
    names = [o.name for o in outputs]
    if card.output.name not in names:
        raise ModelLoadError(f"graph outputs {names} lack {card.output.name!r}")
    width = next(o.shape[-1] for o in outputs if o.name == card.output.name)
    if isinstance(width, int) and width != len(card.classes):
        raise ModelLoadError(f"graph gives {width} outputs for {len(card.classes)} classes")


def warm_up(session: ort.InferenceSession, card: ModelCard, batch: int = 1, runs: int = 1) -> None:
    """Run the graph on blank input at a batch size that will be used, so the first request
    pays no lazy initialisation."""
    for _ in range(runs):
        blank_run(session, card, batch)


def blank_run(
    session: ort.InferenceSession,
    card: ModelCard,
    batch: int = 1,
    options: ort.RunOptions | None = None,
) -> None:
    """One run of the graph on zeros (the card's input shape, `batch` rows)."""
    spec = card.input
    blank = np.zeros((batch, spec.height, spec.width, spec.channels), dtype=np.float32)
    session.run([card.output.name], {spec.name: blank}, options)


def shrink_arena(session: ort.InferenceSession, card: ModelCard) -> None:
    """Give the free chunks of the CPU arena back: one batch-1 run (zeros) with onnxruntime's
    arena shrinkage. An arena keeps every chunk it ever grew to; after a burst of batches that
    is memory the service no longer needs (chest CT served at concurrency 16: idle 258 -> 224-233
    MB; after concurrency 64 it stays at 257 MB: what remains there is not the arena's)."""
    options = ort.RunOptions()
    options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
    blank_run(session, card, 1, options)

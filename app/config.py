"""Service configuration: one Settings object read from `CTSCAN_*` environment variables."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal, NamedTuple

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

KNOWN_PROVIDERS = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "CoreMLExecutionProvider",
    "DmlExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)
CpuArena = Literal["shared", "session", "off"]


class BatchPolicy(NamedTuple):
    """How one model's requests are batched."""

    max_batch_size: int
    max_wait_ms: float
    workers: int


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "<quota> <period>" or "max ..."
CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")  # cgroup v1: cpu.cfs_quota_us (-1) + cpu.cfs_period_us


def available_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup CPU quota (a container's
    `--cpus`), never the host's count."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(cpu_max) or cgroup_v1_cpu_quota(CGROUP_V1_CPU)
    return max(1, min(cpus, quota) if quota else cpus)


def cgroup_cpu_quota(cpu_max: Path) -> int | None:
    """Whole CPUs allowed by a cgroup v2 `cpu.max` file (rounded up), None when unlimited."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return None if quota == "max" else max(1, -(-int(quota) // int(period)))
    except (OSError, ValueError):
        return None


def cgroup_v1_cpu_quota(folder: Path) -> int | None:
    """The same limit from cgroup v1 files; None when unlimited (-1) or absent."""
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text())
        period = int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 or period <= 0 else max(1, -(-quota // period))


def default_data_dir() -> Path:
    """Where study jobs live when no folder is set: `$XDG_DATA_HOME/ctscan`, else
    `~/.local/share/ctscan`, else `./ctscan-data` when there is no home."""
    base = Path(os.environ.get("XDG_DATA_HOME", ""))
    if not base.is_absolute():
        try:
            base = Path.home() / ".local" / "share"
        except RuntimeError:
            return Path("ctscan-data")
    return base / "ctscan"


def default_graph_cache() -> Path | None:
    """The graph cache when none is set: `$XDG_CACHE_HOME/ctscan/optimized`, else
    `~/.cache/ctscan/optimized`; None (no cache) when there is no home to put it in."""
    base = Path(os.environ.get("XDG_CACHE_HOME", ""))
    if not base.is_absolute():  # unset, empty or relative: the XDG default
        try:
            base = Path.home() / ".cache"
        except RuntimeError:
            return None
    return base / "ctscan" / "optimized"


class Settings(BaseSettings):
    """Everything the service can be told; each field maps to `CTSCAN_<FIELD>`."""

    model_config = SettingsConfigDict(env_prefix="CTSCAN_", env_file=".env", extra="ignore")

    models_dir: Path = Field(Path("models"), description="Model store: <name>/<version>/")
    default_model: str | None = Field(None, description="Model answering POST /predict")
    max_upload_bytes: int = Field(32 * 1024 * 1024, gt=0, description="Upload size cap")
    reject_outside: bool = Field(
        False,
        description="Answer 422 instead of 200 (label null) when the model cannot judge an input",
    )
    providers: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"],
        description="onnxruntime execution providers, in order of preference",
    )
    intra_op_threads: int = Field(0, ge=0, description="0 = the CPUs this process may use")
    graph_optimization: Literal["disable", "basic", "extended", "all"] = Field(
        "all", description="onnxruntime graph optimisation level"
    )
    cpu_mem_arena: CpuArena = Field(
        "shared",
        description="onnxruntime CPU memory: one arena for every session (bounds the resident "
        "peak under load), an arena per session, or off (the C library's allocator)",
    )
    intra_op_spinning: bool = Field(
        True, description="Idle onnxruntime threads spin before they sleep (for intra_op_spin_us)"
    )
    intra_op_spin_us: int = Field(
        20,
        ge=0,
        description="Longest an idle onnxruntime thread spins: long enough to bridge the gaps "
        "between one run's operators, too short to take the CPU from decoding between runs; "
        "0 = onnxruntime's own (long) spin",
    )
    optimized_model_dir: Path | None = Field(
        default_factory=default_graph_cache,
        description="Cache of onnxruntime-optimised graphs (CPU only): later starts load them "
        "without re-optimising. Default $XDG_CACHE_HOME/ctscan/optimized (~/.cache/...); "
        "empty = off",
    )
    load_workers: int = Field(0, ge=0, description="Models loaded at once; 0 = the CPUs we may use")
    cudnn_conv_algo_search: Literal["EXHAUSTIVE", "HEURISTIC", "DEFAULT"] = Field(
        "EXHAUSTIVE", description="CUDA provider: cuDNN convolution algorithm search"
    )
    decode_workers: int = Field(0, ge=0, description="Decode threads; 0 = the CPUs we may use")
    inline_max_bytes: int = Field(
        1 << 20,
        ge=0,
        description="A lone upload up to this size is decoded and run on the event loop itself, "
        "sparing two thread hand-offs, when nothing else is being decoded or batched; 0 = never",
    )
    max_queue: int = Field(64, ge=1, description="Requests waiting per stage before 503")
    body_timeout_s: float = Field(
        60.0, gt=0, description="Seconds a request body may take to arrive; slower gets 408"
    )
    max_in_flight: int = Field(
        64, ge=1, description="POST requests in progress at once; more get 503 + Retry-After"
    )
    max_study_bytes: int = Field(
        2 * 1024**3, gt=0, description="Study upload cap (zip or multipart), spooled to disk"
    )
    study_body_timeout_s: float = Field(
        900.0, gt=0, description="Seconds a study upload may take to arrive; slower gets 408"
    )
    max_study_files: int = Field(2000, ge=1, description="Files in one study upload")
    max_study_slices: int = Field(1000, ge=1, description="Slices in the series classified")
    max_zip_ratio: float = Field(
        200.0, gt=1, description="Largest expansion of one zip member (zip-bomb guard)"
    )
    study_batch_size: int = Field(
        16,
        ge=1,
        description="Study slices per session.run (chest model, 300-slice benchmark: raw 91-93 "
        "slices/s at 16, 99 at 32, but a server peak of 401 MB at 32 against 317 at 16)",
    )
    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="Study jobs (SQLite) and their spooled uploads; default $XDG_DATA_HOME/ctscan",
    )
    job_retention_s: float = Field(
        7 * 24 * 3600.0, gt=0, description="How long finished study jobs are kept"
    )
    max_concurrent_studies: int = Field(1, ge=1, description="Studies classified at once")
    keep_alive_s: int = Field(
        75,
        ge=1,
        description="Seconds an idle keep-alive connection stays open. Longer than clients keep "
        "theirs (httpx 5 s, aiohttp 15 s), so the server rarely closes a connection just as a "
        "client sends on it (uvicorn's 5 s lost 1 request in 1,024 at concurrency 256)",
    )
    pacs_url: str | None = Field(
        None,
        description="DICOMweb base URL of the PACS (e.g. http://orthanc:8042/dicom-web): studies "
        "are pulled from it by StudyInstanceUID and results stored back to it (STOW-RS)",
    )
    pacs_username: str | None = Field(None, description="PACS basic-auth user")
    pacs_password: SecretStr | None = Field(None, description="PACS basic-auth password")
    pacs_token: SecretStr | None = Field(None, description="PACS bearer token (instead of basic)")
    pacs_timeout_s: float = Field(30.0, gt=0, description="Timeout of one PACS request")
    pacs_retries: int = Field(
        3, ge=0, description="Retries of a PACS request after a 5xx or a connection error"
    )
    pacs_backoff_s: float = Field(
        1.0, ge=0, description="First wait before a PACS retry; doubled after each"
    )
    routing_file: Path | None = Field(
        None,
        description="TOML rules choosing the model for each study received at "
        "POST /dicomweb/studies (docs/pacs.md); unset: received studies are refused",
    )
    max_batch_size: int = Field(
        2,
        ge=1,
        description="Images per session.run; 1 = no batching. The CPU default; a GPU wants 16-64",
    )
    max_wait_ms: float = Field(2.0, ge=0, description="How long a batch waits to fill")
    batch_workers: int = Field(
        2,
        ge=1,
        description="Batches of one model run at once (session.run from this many threads, like "
        "Triton's instance count): under load, one batch fills while another runs",
    )
    warm_up_max_batch: bool = Field(
        False,
        description="CPU provider: also warm each model up at max_batch_size, not only at batch 1 "
        "(start-up cost ~0.17 s per shipped model on 2 cores; saves ~15 ms once, on the first "
        "full batch). On CUDA, batches are padded to a power of two and each such size is warmed",
    )
    batching: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Per-model overrides of max_batch_size, max_wait_ms and batch_workers, e.g. "
        '{"chest-ct-cancer": {"max_batch_size": 16}}',
    )
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 503 when overloaded")
    require_all_models: bool = Field(
        False, description="Readiness fails while any model in the store failed to load"
    )
    max_image_pixels: int = Field(64_000_000, gt=0, description="Decompression-bomb guard")
    api_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated keys; empty = open API"
    )
    admin_keys: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated keys for admin endpoints (reload)"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS; empty = closed"
    )
    malloc_arenas: int = Field(
        2,
        ge=0,
        description="glibc malloc arenas (M_ARENA_MAX); 0 = glibc's default of 8 per core. The "
        "decode, batch and onnxruntime threads each took an arena that kept freed memory: idle "
        "after a c64 burst 229 MB with 2, 257-264 MB with the default",
    )
    trim_idle_s: float = Field(
        1.0, ge=0, description="Return freed heap memory to the OS after this long idle; 0 = never"
    )
    poll_interval_s: float = Field(0, ge=0, description="Rescan the model store; 0 = never")
    log_json: bool = Field(False, description="Log one JSON object per line")
    access_log: bool = Field(
        True, description="One INFO line per request (method, path with DICOM UIDs masked, status)"
    )
    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    log_level: str = "INFO"

    @field_validator("providers", "api_keys", "admin_keys", "cors_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return [p.strip() for p in value.split(",") if p.strip()]
        return value

    @field_validator("cpu_mem_arena", mode="before")
    @classmethod
    def _arena_from_boolean(cls, value: object) -> object:
        """Earlier releases took a boolean: true meant an arena per session."""
        legacy = {"true": "session", "1": "session", "false": "off", "0": "off"}
        if isinstance(value, bool):
            return "session" if value else "off"
        return legacy.get(value.lower(), value) if isinstance(value, str) else value

    @field_validator("optimized_model_dir", "routing_file", "pacs_url", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, value: list[str]) -> list[str]:
        unknown = [p for p in value if p not in KNOWN_PROVIDERS]
        if unknown or not value:
            raise ValueError(f"unknown execution providers {unknown}; known: {KNOWN_PROVIDERS}")
        return value

    @property
    def decoders(self) -> int:
        """Threads decoding and preprocessing uploads."""
        return self.decode_workers or available_cpus()

    def batching_for(self, model: str) -> BatchPolicy:
        """Batching of one model, overrides applied."""
        override = self.batching.get(model, {})
        return BatchPolicy(
            max(1, int(override.get("max_batch_size", self.max_batch_size))),
            float(override.get("max_wait_ms", self.max_wait_ms)),
            max(1, int(override.get("batch_workers", self.batch_workers))),
        )

    @property
    def threads(self) -> int:
        """Intra-op threads for each onnxruntime session."""
        return self.intra_op_threads or available_cpus()


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()

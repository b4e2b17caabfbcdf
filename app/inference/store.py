"""The model store: every `<models_dir>/<name>/<version>/` loaded into an onnxruntime session."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from app.config import Settings, available_cpus
from app.errors import ModelLoadError, ModelNotFound, NotReady
from app.inference.applicability import Applicability, load_stats
from app.inference.card import MODEL_NAME, ModelCard, read_card
from app.inference.session import create_session
from app.memory import release_free_memory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoadedModel:
    """A served model version: its card, its session and where it runs."""

    card: ModelCard
    session: ort.InferenceSession
    provider: str
    path: Path
    load_seconds: float
    applicability: Applicability | None = None

    @property
    def key(self) -> str:
        return f"{self.card.name}/{self.card.version}"


@dataclass
class ModelStore:
    """Loads model versions (several at once: onnxruntime releases the GIL while it builds a
    session) and hands them out by name and version."""

    settings: Settings
    models: dict[str, dict[int, LoadedModel]] = field(default_factory=dict)
    failures: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    loaded: threading.Event = field(default_factory=threading.Event)
    _new_failures: dict[str, str] = field(default_factory=dict)

    def load_all(self) -> None:
        """Scan the models directory and load every version found; failures are recorded."""
        self.refresh()
        self.loaded.set()
        log.info("models ready: %s; failed: %s", self.served_keys(), self.failures or "none")

    def refresh(self, only: str | None = None) -> dict[str, list[str]]:
        """Load versions that appeared on disk and drop those that vanished (all models, or
        `only` one). Requests in flight keep the session they started with."""
        with self.lock:
            failures: dict[str, str] = {}
            found = scan_models_dir(self.settings.models_dir, failures)
            wanted = {(n, v): p for n, v, p in found if only in (None, n)}
            new = [(n, v, p) for (n, v), p in wanted.items() if v not in self.models.get(n, {})]
            added = [model.key for model in self._load_many(new) if model is not None]
            removed = self._drop_missing(set(wanted), only)
            keep = {k: v for k, v in self.failures.items() if only and not k.startswith(f"{only}/")}
            self.failures = {**keep, **failures, **self._new_failures}
            self._new_failures = {}
        return {"added": added, "removed": removed}

    def _drop_missing(self, wanted: set[tuple[str, int]], only: str | None) -> list[str]:
        removed = []
        for name in [n for n in list(self.models) if only in (None, n)]:
            kept = {v: m for v, m in self.models[name].items() if (name, v) in wanted}
            removed += [f"{name}/{v}" for v in self.models[name] if v not in kept]
            if kept:
                self.models[name] = kept  # one reference swap: readers see old or new
            else:
                del self.models[name]
        return removed

    def _load_many(self, found: list[tuple[str, int, Path]]) -> list[LoadedModel | None]:
        """Load versions concurrently; each success is served as soon as all are done."""
        workers = max(1, min(len(found), self.settings.load_workers or available_cpus()))
        with ThreadPoolExecutor(workers, thread_name_prefix="load") as pool:
            loaded = list(pool.map(lambda item: self._load_one(*item), found))
        for model in loaded:
            if model is not None:
                versions = self.models.get(model.card.name, {})
                self.models[model.card.name] = {**versions, model.card.version: model}
        if found:
            release_free_memory()
        return loaded

    def _load_one(self, name: str, version: int, path: Path) -> LoadedModel | None:
        started = time.perf_counter()
        try:
            model = load_model_dir(path, name, version, self.settings)
        except ModelLoadError as exc:
            self._new_failures[f"{name}/{version}"] = str(exc)
            log.error("model %s/%s not served: %s", name, version, exc)
            return None
        model = dataclasses.replace(model, load_seconds=_since(started))
        log.info("loaded %s on %s in %.2fs", model.key, model.provider, model.load_seconds)
        return model

    def all_models(self) -> list[LoadedModel]:
        """Every served version of every model."""
        return [m for versions in list(self.models.values()) for m in list(versions.values())]

    def served_keys(self) -> list[str]:
        return [m.key for m in self.all_models()]

    def get(self, name: str, version: int | None = None) -> LoadedModel:
        """The requested version, or the highest one; raise 404 / 503 domain errors."""
        versions = self.models.get(name)
        if not versions:
            if not self.loaded.is_set():
                raise NotReady("models are still loading", headers={"Retry-After": "1"})
            raise ModelNotFound(f"no model named {name!r}; served: {sorted(self.models)}")
        if version is None:
            return versions[max(versions)]
        if version not in versions:
            raise ModelNotFound(f"model {name!r} has no version {version}; has {sorted(versions)}")
        return versions[version]

    def default_name(self) -> str:
        """The model answering `POST /predict`: the setting, else the only or first served."""
        if self.settings.default_model:
            return self.settings.default_model
        if not self.models:
            raise NotReady("no model is loaded", headers={"Retry-After": "1"})
        return sorted(self.models)[0]

    def readiness(self) -> dict[str, Any]:
        """Readiness state: loaded models with their provider, and failures with reasons."""
        served = {
            m.key: {"provider": m.provider, "load_seconds": round(m.load_seconds, 3)}
            for versions in self.models.values()
            for m in versions.values()
        }
        ready = self.loaded.is_set() and bool(served)
        if self.settings.require_all_models and self.failures:
            ready = False
        status = "ready" if ready else ("loading" if not self.loaded.is_set() else "unavailable")
        return {"status": status, "ready": ready, "models": served, "failed": dict(self.failures)}


def scan_models_dir(root: Path, failures: dict[str, str]) -> list[tuple[str, int, Path]]:
    """`(name, version, path)` for every `<name>/<integer version>/` folder, sorted."""
    if not root.is_dir():
        failures["models_dir"] = f"models directory {root} does not exist"
        log.error(failures["models_dir"])
        return []
    found = []
    for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if not re.match(MODEL_NAME, model_dir.name):
            continue
        for version_dir in sorted(p for p in model_dir.iterdir() if p.is_dir()):
            if version_dir.name.isdigit() and int(version_dir.name) >= 1:
                found.append((model_dir.name, int(version_dir.name), version_dir))
    return found


def load_model_dir(path: Path, name: str, version: int, settings: Settings) -> LoadedModel:
    """Validate the card and checksum, then create and warm the session."""
    card = read_card(path / "metadata.json")
    if (card.name, card.version) != (name, version):
        raise ModelLoadError(f"card says {card.name}/{card.version}, folder says {name}/{version}")
    onnx_path = path / "model.onnx"
    if not onnx_path.is_file():
        raise ModelLoadError("missing model.onnx")
    digest = sha256_file(onnx_path)
    if digest != card.sha256:
        raise ModelLoadError(f"sha256 of model.onnx is {digest}, card says {card.sha256}")
    applicability = load_applicability(path, card)
    max_batch = settings.batching_for(name).max_batch_size
    session, provider = create_session(onnx_path, card, settings, max_batch)
    if applicability and applicability.spec.feature_output not in _outputs(session):
        raise ModelLoadError(f"the graph has no output {applicability.spec.feature_output!r}")
    return LoadedModel(card, session, provider, path, 0.0, applicability)


def load_applicability(path: Path, card: ModelCard) -> Applicability | None:
    """The card's applicability check with its statistics, checksum verified; None without."""
    spec = card.applicability
    if spec is None:
        return None
    stats_path = path / spec.file
    if not stats_path.is_file():
        raise ModelLoadError(f"missing {spec.file} (the card's applicability statistics)")
    digest = sha256_file(stats_path)
    if digest != spec.sha256:
        raise ModelLoadError(f"sha256 of {spec.file} is {digest}, card says {spec.sha256}")
    return Applicability(spec, load_stats(stats_path))


def _outputs(session: ort.InferenceSession) -> set[str]:
    return {output.name for output in session.get_outputs()}


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _since(started: float) -> float:
    return time.perf_counter() - started

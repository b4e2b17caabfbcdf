"""The model card (`metadata.json`), validated when a model is loaded."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.errors import ModelLoadError
from app.imaging.preprocess import InputSpec
from app.inference.applicability import ApplicabilitySpec
from app.studies.aggregate import StudyRule

MODEL_NAME = r"^[a-z0-9][a-z0-9-]{0,62}$"
_CLASS_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class OutputSpec(BaseModel):
    """What the graph returns: one probability per class, in `classes` order."""

    model_config = ConfigDict(extra="forbid")

    name: str = "probabilities"
    kind: Literal["probabilities"] = "probabilities"
    temperature: float = Field(1.0, gt=0, description="Calibration temperature baked in the graph")
    activation_map: str | None = Field(
        None, description="Graph output with class activation maps (N, h, w, classes), if any"
    )


class DicomSpec(BaseModel):
    """How DICOM uploads are windowed for this model."""

    default_window: str | None = None
    presets: dict[str, tuple[float, float]] = Field(default_factory=dict)


class ModelCard(BaseModel):
    """Everything a user needs to know to trust, serve and reproduce a model."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    schema_version: Literal[1] = 1
    name: str = Field(pattern=MODEL_NAME)
    version: int = Field(ge=1)
    created: str
    description: str = ""
    intended_use: str = "Research use, not for diagnosis."
    changelog: list[str] = Field(default_factory=list)
    classes: list[str] = Field(min_length=2)
    architecture: dict[str, Any] = Field(default_factory=dict)
    input: InputSpec
    output: OutputSpec = Field(default_factory=OutputSpec)
    dicom: DicomSpec | None = None
    applicability: ApplicabilitySpec | None = None
    study: StudyRule | None = None
    training: dict[str, Any] = Field(default_factory=dict)
    evaluation: dict[str, Any] = Field(default_factory=dict)
    framework: dict[str, Any] = Field(default_factory=dict)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of model.onnx")

    @field_validator("classes")
    @classmethod
    def _snake_case_unique(cls, classes: list[str]) -> list[str]:
        bad = [c for c in classes if not _CLASS_NAME.match(c)]
        if bad:
            raise ValueError(f"class names must be snake_case: {bad}")
        if len(set(classes)) != len(classes):
            raise ValueError("class names must be unique")
        return classes


def read_card(path: Path) -> ModelCard:
    """Parse and validate a `metadata.json`; raise ModelLoadError with the reason."""
    try:
        return ModelCard.model_validate_json(path.read_bytes())
    except FileNotFoundError as exc:
        raise ModelLoadError(f"missing {path.name}") from exc
    except ValidationError as exc:
        raise ModelLoadError(f"invalid model card: {_first_errors(exc)}") from exc


def _first_errors(exc: ValidationError, limit: int = 3) -> str:
    errors = exc.errors()[:limit]
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'card'}: {e['msg']}" for e in errors)

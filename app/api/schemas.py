"""Response bodies, with the examples shown on /docs."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class InputInfo(BaseModel):
    format: str = Field(examples=["PNG"])
    mode: str = Field(examples=["L"])
    width: int = Field(examples=[512])
    height: int = Field(examples=[512])
    window: str | None = Field(None, description="DICOM window used, if any")
    modality: str | None = Field(None, description="DICOM Modality (DICOM uploads only)")
    body_part: str | None = Field(None, description="DICOM BodyPartExamined, if present")


class ApplicabilityVerdict(BaseModel):
    """Whether the model can judge this input."""

    verdict: Literal["in_domain", "outside", "not_assessed"] = Field(
        description="outside: unlike the training images, or a DICOM header the model does "
        "not accept; the label is then null"
    )
    score: float | None = Field(
        description="Distance of the model's features to its training images' (about 1 for "
        "images like them)"
    )
    threshold: float | None = Field(description="Scores above it are outside")
    reason: str | None = Field(description="Why the input is outside, or why not assessed")


class Prediction(BaseModel):
    """One classified image."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "head-ct-hemorrhage",
                    "version": 1,
                    "label": "hemorrhage",
                    "probabilities": {"hemorrhage": 0.91, "normal": 0.09},
                    "applicability": {
                        "verdict": "in_domain",
                        "score": 1.12,
                        "threshold": 2.6,
                        "reason": None,
                    },
                    "input": {"format": "PNG", "mode": "L", "width": 512, "height": 512},
                    "provider": "CPUExecutionProvider",
                }
            ]
        }
    )

    model: str
    version: int
    label: str | None = Field(
        description="The most probable class; null when the model cannot judge the image "
        "(`applicability.verdict` outside)"
    )
    probabilities: dict[str, float] = Field(description="Every class → probability; sums to 1")
    applicability: ApplicabilityVerdict
    input: InputInfo
    provider: str = Field(description="onnxruntime execution provider that ran the model")


class ExplanationDetail(BaseModel):
    class_: str = Field(alias="class", description="The explained class")
    method: str
    map: list[list[float]] = Field(description="Low-resolution heatmap in [0, 1]")
    overlay_png_base64: str = Field(description="The slice with the heatmap blended on top")


class Explanation(Prediction):
    """A prediction plus where its evidence lies."""

    explanation: ExplanationDetail


class ModelSummary(BaseModel):
    """A served model: its card plus where it runs."""

    model_config = ConfigDict(extra="allow")

    name: str
    version: int
    versions: list[int]
    provider: str
    card: dict[str, Any]


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    ready: bool
    models: dict[str, dict[str, Any]] = Field(
        examples=[{"chest-ct-cancer/1": {"provider": "CPUExecutionProvider"}}]
    )
    failed: dict[str, str] = Field(examples=[{}])


class Problem(BaseModel):
    """RFC 9457 problem details (media type application/problem+json)."""

    type: str = Field(examples=["/problems/invalid-image"])
    title: str = Field(examples=["Invalid image"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["the PNG file cannot be decoded (truncated)"])


def problem_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the given error codes."""
    return {code: {"model": Problem, "content": {"application/problem+json": {}}} for code in codes}

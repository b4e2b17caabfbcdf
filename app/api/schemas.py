"""Response bodies, with the examples shown on /docs."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class InputInfo(BaseModel):
    format: str = Field(examples=["PNG"])
    mode: str = Field(examples=["L"])
    width: int = Field(examples=[512])
    height: int = Field(examples=[512])
    window: str | None = Field(None, description="DICOM window used, if any")


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
                    "input": {"format": "PNG", "mode": "L", "width": 512, "height": 512},
                    "provider": "CPUExecutionProvider",
                }
            ]
        }
    )

    model: str
    version: int
    label: str = Field(description="The most probable class")
    probabilities: dict[str, float] = Field(description="Every class → probability; sums to 1")
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

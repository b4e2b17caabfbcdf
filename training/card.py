"""Model card (`metadata.json`) assembly for an exported model."""

from __future__ import annotations

import datetime as dt
import platform
from typing import Any

from app.imaging.preprocess import InputSpec
from app.inference.card import DicomSpec, ModelCard, OutputSpec
from training.tasks import CT_WINDOWS, TASKS

INTENDED_USE = (
    "Research use, not for diagnosis. Not a medical device; outputs must not guide patient care."
)


def framework_versions() -> dict[str, Any]:
    import keras
    import onnx
    import onnxruntime
    import tensorflow as tf
    import tf2onnx

    from training.export import OPSET

    return {
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "tf2onnx": tf2onnx.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": onnxruntime.__version__,
        "opset": OPSET,
        "python": platform.python_version(),
    }


def build_card(
    name: str,
    version: int,
    classes: list[str],
    spec: InputSpec,
    sha256: str,
    temperature: float,
    architecture: dict[str, Any],
    training: dict[str, Any],
    evaluation: dict[str, Any],
    changelog: list[str],
    activation_map: str | None = None,
) -> ModelCard:
    """A validated card; DICOM window defaults come from the task preset when known."""
    preset = TASKS.get(name)
    window = preset.dicom_window if preset else None
    return ModelCard(
        name=name,
        version=version,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        description=preset.description if preset else "",
        intended_use=INTENDED_USE,
        changelog=changelog,
        classes=classes,
        architecture=architecture,
        input=spec,
        output=OutputSpec(temperature=temperature, activation_map=activation_map),
        dicom=DicomSpec(default_window=window, presets=dict(CT_WINDOWS)) if window else None,
        training=training,
        evaluation=evaluation,
        framework=framework_versions(),
        sha256=sha256,
    )

"""Class activation maps from the exported graph itself (no TensorFlow at serve time)."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

from app.errors import BadRequest
from app.imaging.overlay import normalise_map, overlay_png
from app.imaging.preprocess import framed
from app.inference.predict import PreparedInput, build_result, describe_input, run_model
from app.inference.store import LoadedModel


def explain(model: LoadedModel, prepared: PreparedInput, target: str | None) -> dict[str, Any]:
    """Prediction plus the activation map of `target` (default: the predicted class)."""
    output = model.card.output
    if output.activation_map is None:
        raise BadRequest(f"model {model.card.name} v{model.card.version} has no activation maps")
    outputs = run_model(model, prepared.tensor[np.newaxis], (output.activation_map,))
    (scored,), (maps,) = outputs.rows(), outputs.extra
    result = build_result(model, describe_input(prepared.decoded), scored)
    classes = model.card.classes
    chosen = target or classes[int(np.argmax(scored.probabilities))]
    if chosen not in classes:
        raise BadRequest(f"unknown class {chosen!r}; classes: {classes}")
    heat = normalise_map(maps[0][:, :, classes.index(chosen)])
    png = overlay_png(framed(prepared.decoded.pixels, model.card.input), heat)
    result["explanation"] = {
        "class": chosen,
        "method": "CAM (class activation map of the GAP + dense head)",
        "map": np.round(heat, 4).tolist(),
        "overlay_png_base64": base64.b64encode(png).decode("ascii"),
    }
    return result


def overlay_bytes(result: dict[str, Any]) -> bytes:
    """The overlay PNG of an `explain` result."""
    return base64.b64decode(result["explanation"]["overlay_png_base64"])

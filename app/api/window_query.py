"""The DICOM window query parameters of the upload routes, read by hand.

A sampling profile put FastAPI's solving of them as a `Query` dependency at ~0.3 ms per request;
an A/B of the two servers answered alternately (chest-ct-cancer, c1, 3 x 300 pairs) measured
0.03-0.11 ms, inside that measurement's noise (a no-op change gave -0.02 to +0.13 ms). Kept as
the simpler path, with finite-number checks FastAPI did not make. `WINDOW_PARAMETERS` keeps them
in the OpenAPI page through each route's `openapi_extra`."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from app.errors import BadRequest
from app.imaging.dicom import WINDOW_PRESETS, Window

WINDOW_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "window",
        "in": "query",
        "required": False,
        "description": f"DICOM window preset: {', '.join(WINDOW_PRESETS)}",
        "schema": {"type": "string", "enum": list(WINDOW_PRESETS)},
    },
    {
        "name": "window_center",
        "in": "query",
        "required": False,
        "description": "DICOM window center (HU); give it with window_width",
        "schema": {"type": "number"},
    },
    {
        "name": "window_width",
        "in": "query",
        "required": False,
        "description": "DICOM window width (HU, > 0); give it with window_center",
        "schema": {"type": "number", "exclusiveMinimum": 0},
    },
]


def window_from_query(params: Mapping[str, str]) -> Window | None:
    """The DICOM window asked for: a preset, or center + width; None = the model's default.

    Raises BadRequest (400) for an unknown preset, a half or doubly given window, or a value
    that is not a finite number (a width must also be positive)."""
    preset = params.get("window")
    center = _number(params, "window_center")
    width = _number(params, "window_width")
    if preset is not None:
        if (center, width) != (None, None):
            raise BadRequest("give either a window preset or window_center + window_width")
        if preset not in WINDOW_PRESETS:
            raise BadRequest(f"unknown window {preset!r}; presets: {', '.join(WINDOW_PRESETS)}")
        return WINDOW_PRESETS[preset]
    if (center is None) != (width is None):
        raise BadRequest("window_center and window_width must be given together")
    if center is None or width is None:
        return None
    if width <= 0:
        raise BadRequest(f"window_width must be greater than 0, got {width:g}")
    return (center, width)


def _number(params: Mapping[str, str], name: str) -> float | None:
    text = params.get(name)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise BadRequest(f"{name} must be a number, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise BadRequest(f"{name} must be a finite number, got {text[:40]!r}")
    return value

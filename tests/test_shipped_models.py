"""The shipped models against the shared training data (skipped when either is absent).

Shortcut check: the same slice re-encoded (JPEG, PNG) or resized must get nearly the same
answer, so the decision does not follow file format or original size."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.inference.predict import predict_bytes
from tests.factories import loaded_store

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT.parent / "shared" / "datasets"
FOLDERS = {
    "chest-ct-cancer": "chest_ct",
    "sarscov2-ct": "sarscov2_ct",
    "head-ct-hemorrhage": "head_ct",
    "covid-xray": "covid_xray",
}


def variants(data: bytes) -> dict[str, bytes]:
    image = Image.open(io.BytesIO(data)).convert("RGB")
    out = {}
    for name, (fmt, scale) in {
        "jpeg": ("JPEG", 1.0),
        "png": ("PNG", 1.0),
        "half-size": ("PNG", 0.5),
        "double-size": ("PNG", 2.0),
    }.items():
        size = (max(8, round(image.width * scale)), max(8, round(image.height * scale)))
        buffer = io.BytesIO()
        image.resize(size, Image.Resampling.BICUBIC).save(buffer, format=fmt, quality=92)
        out[name] = buffer.getvalue()
    return out


def shortcut_report(name: str, count: int = 40) -> dict[str, dict[str, float]]:
    """Per variant: mean max |Δprobability| and the share of unchanged labels."""
    model = loaded_store().get(name)
    files = sorted(
        p
        for p in (DATASETS / FOLDERS[name]).rglob("*")
        if p.suffix.lower() in {".png", ".jpg", ".jpeg"}
    )
    files = files[:: max(1, len(files) // count)][:count]
    shifts: dict[str, list[float]] = {}
    same: dict[str, list[bool]] = {}
    for path in files:
        original = predict_bytes(model, path.read_bytes(), 10**9)
        base = np.array(list(original["probabilities"].values()))
        for variant, data in variants(path.read_bytes()).items():
            result = predict_bytes(model, data, 10**9)
            shifts.setdefault(variant, []).append(
                float(np.abs(np.array(list(result["probabilities"].values())) - base).max())
            )
            same.setdefault(variant, []).append(result["label"] == original["label"])
    return {
        v: {
            "mean_max_abs_shift": float(np.mean(shifts[v])),
            "label_agreement": float(np.mean(same[v])),
        }
        for v in shifts
    }


@pytest.mark.parametrize("name", sorted(FOLDERS))
def test_decision_does_not_follow_format_or_size(name: str) -> None:
    if not (DATASETS / FOLDERS[name]).is_dir() or not (ROOT / "models" / name).is_dir():
        pytest.skip("shared datasets or the shipped model absent")
    report = shortcut_report(name)
    for variant, numbers in report.items():
        assert numbers["label_agreement"] >= 0.9, (variant, report)
        assert numbers["mean_max_abs_shift"] <= 0.1, (variant, report)


if __name__ == "__main__":
    import json
    import sys

    for model_name in sys.argv[1:] or sorted(FOLDERS):
        if (ROOT / "models" / model_name).is_dir():
            print(model_name, json.dumps(shortcut_report(model_name), indent=1))

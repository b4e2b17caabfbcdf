"""Cross-validation under acquisition shifts: the shifts themselves, the members taken out of a
shipped ensemble, and the whole table on the real head CT data (skipped without it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("scipy")  # with the `train` extra
pytest.importorskip("sklearn")

from scipy.special import softmax

from training.robustness import (
    markdown,
    member_logits_session,
    shifted_cross_validation,
    write_robustness,
    zoom_in,
    zoom_out,
)

ROOT = Path(__file__).resolve().parent.parent
HEAD_CT = ROOT / "models" / "head-ct-hemorrhage" / "3"
HEAD_DATA = ROOT.parent / "shared" / "datasets" / "head_ct"


def test_zoom_out_centres_the_image_on_a_black_canvas() -> None:
    pixels = np.full((40, 60), 0.5, dtype=np.float32)
    out = zoom_out(pixels, 1.5)
    assert out.shape == (60, 90)
    assert out[10:50, 15:75].min() == out[10:50, 15:75].max() == 0.5
    assert out.sum() == pytest.approx(pixels.sum())  # the rest is black


def test_zoom_in_keeps_the_centre() -> None:
    pixels = np.arange(100 * 80, dtype=np.float32).reshape(100, 80)
    out = zoom_in(pixels, 2.0)
    assert out.shape == (50, 40)
    assert out[0, 0] == pixels[25, 20]
    assert out[-1, -1] == pixels[74, 59]


def test_the_members_make_up_the_shipped_ensemble() -> None:
    card = json.loads((HEAD_CT / "metadata.json").read_text())
    session, members = member_logits_session(HEAD_CT / "model.onnx")
    assert members == card["training"]["shipped"]["members"] == 10
    whole = ort.InferenceSession(str(HEAD_CT / "model.onnx"), providers=["CPUExecutionProvider"])
    side = card["input"]["height"]
    images = np.random.default_rng(0).random((3, side, side, 1), dtype=np.float32)
    logits = np.mean(session.run(None, {"image": images}), axis=0)
    temperature = card["evaluation"]["calibration"]["temperature"]
    (probabilities,) = whole.run(["probabilities"], {"image": images})
    np.testing.assert_allclose(softmax(logits / temperature, axis=1), probabilities, atol=1e-5)


@pytest.mark.skipif(not HEAD_DATA.is_dir(), reason="shared datasets absent")
def test_head_ct_table_reproduces_the_card_and_is_written(tmp_path: Path) -> None:
    folder = tmp_path / "3"
    folder.mkdir()
    for name in ("model.onnx", "metadata.json"):
        (folder / name).write_bytes((HEAD_CT / name).read_bytes())
    (folder / "report").mkdir()
    (folder / "report" / "report.md").write_text("# head CT\n\n![roc](roc.png)\n")
    rows = shifted_cross_validation(folder, HEAD_DATA, tmp_path / "cache", ["zoom in 1.5 x"])
    assert list(rows) == ["as recorded", "zoom in 1.5 x"]
    recorded = json.loads((HEAD_CT / "metadata.json").read_text())["evaluation"]
    assert rows["as recorded"]["accuracy_mean"] == pytest.approx(
        recorded["cross_validation"]["accuracy"]["mean"]
    )
    # a centre crop cuts anatomy off, which no preprocessing can undo: the score must move
    assert rows["zoom in 1.5 x"]["per_fold"] != rows["as recorded"]["per_fold"]
    write_robustness(folder, rows)
    card = json.loads((folder / "metadata.json").read_text())
    assert card["evaluation"]["shift_robustness"] == rows
    assert markdown(rows) in (folder / "report" / "report.md").read_text()


def test_a_card_whose_folds_cannot_be_rebuilt_is_refused(tmp_path: Path) -> None:
    if not HEAD_DATA.is_dir():
        pytest.skip("shared datasets absent")
    folder = tmp_path / "3"
    folder.mkdir()
    (folder / "model.onnx").write_bytes((HEAD_CT / "model.onnx").read_bytes())
    card = json.loads((HEAD_CT / "metadata.json").read_text())
    card["training"]["config"]["seed"] = 7  # other folds: members score data they saw
    (folder / "metadata.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match="rebuilt folds score"):
        shifted_cross_validation(folder, HEAD_DATA, tmp_path / "cache")

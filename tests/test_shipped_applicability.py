"""The shipped models refuse to judge what they were not trained on: blanks, noise, typed pages
and a CT phantom-like drawing always; the other tasks' images when the shared datasets are
here, while their own images are judged. Their cards carry the check and its evaluation."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from app.inference.predict import predict_bytes
from app.inference.store import ModelStore
from tests.factories import encode, loaded_store
from tests.test_shipped_models import DATASETS, FOLDERS

OWN_DATA = FOLDERS  # model name → its dataset's folder
SHIPPED = sorted(OWN_DATA)
# Chest CT slices of the other chest CT dataset: the check separates them only in part (the
# cards' `evaluation.applicability` gives how much), so they are not asserted here.
CHEST_CT_PAIR = {"chest-ct-cancer", "sarscov2-ct"}


@cache
def store() -> ModelStore:
    return loaded_store()


def made_images() -> dict[str, bytes]:
    """Images no task has: blank, noise, a typed page and a drawn ellipse phantom."""
    rng = np.random.default_rng(7)
    page = Image.new("L", (400, 400), 245)
    draw = ImageDraw.Draw(page)
    for line in range(10, 400, 22):
        draw.text((12, line), "Findings: no acute abnormality. Impression: normal study.", fill=20)
    phantom = Image.new("L", (256, 256), 0)
    ImageDraw.Draw(phantom).ellipse((40, 20, 216, 236), fill=200, outline=255, width=6)
    ImageDraw.Draw(phantom).ellipse((90, 70, 130, 150), fill=90)
    noise = (rng.random((256, 256)) * 255).astype(np.uint8)
    return {
        "blank": encode(Image.new("L", (256, 256), 128), "PNG"),
        "noise": encode(Image.fromarray(noise), "PNG"),
        "typed page": encode(page, "PNG"),
        "drawn phantom": encode(phantom, "PNG"),
    }


def first_images(folder: Path, count: int) -> list[Path]:
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg"})
    return files[:: max(1, len(files) // count)][:count]


@pytest.mark.parametrize("name", SHIPPED)
def test_images_of_no_task_get_no_label(name: str) -> None:
    model = store().get(name)
    for kind, data in made_images().items():
        answer = predict_bytes(model, data, 10**9)
        assert answer["applicability"]["verdict"] == "outside", (name, kind, answer)
        assert answer["label"] is None


@pytest.mark.parametrize("name", SHIPPED)
def test_own_images_are_judged_and_other_tasks_images_are_not(name: str) -> None:
    if not DATASETS.is_dir():
        pytest.skip("shared datasets absent")
    model = store().get(name)
    own = [
        predict_bytes(model, p.read_bytes(), 10**9)
        for p in first_images(DATASETS / OWN_DATA[name], 20)
    ]
    accepted = [a["applicability"]["verdict"] == "in_domain" for a in own]
    assert np.mean(accepted) >= 0.9, (name, accepted)
    for other, folder in OWN_DATA.items():
        if other == name or {name, other} == CHEST_CT_PAIR:
            continue
        for path in first_images(DATASETS / folder, 5):
            answer = predict_bytes(model, path.read_bytes(), 10**9)
            assert answer["applicability"]["verdict"] == "outside", (name, path.name)


@pytest.mark.parametrize("name", SHIPPED)
def test_cards_carry_the_check_and_its_evaluation(name: str) -> None:
    model = store().get(name)
    assert model.applicability is not None
    spec = model.card.applicability
    assert spec is not None and spec.threshold > 1 and spec.modalities
    evaluation = model.card.evaluation["applicability"]
    inside = evaluation["in_domain"]
    assert inside["accepted_cross_validated"]["mean"] >= 0.95
    assert len(inside["accepted_cross_validated"]["per_fold"]) == model.card.training["folds"]
    for kind in ("photographs", "blank", "noise", "documents", "ct_phantom", "wrong_window"):
        assert 0 <= evaluation["outside"][kind]["rejected"] <= 1, kind
    others = {f for n, f in OWN_DATA.items() if n != name}
    assert others <= set(evaluation["outside"])


def test_a_dicom_of_another_modality_is_outside_whatever_its_pixels() -> None:
    pytest.importorskip("pydicom")
    from tests.factories import dicom_bytes

    data = dicom_bytes(np.full((64, 64), 1024), modality="MR")
    answer = predict_bytes(store().get("head-ct-hemorrhage"), data, 10**9)
    assert answer["applicability"]["reason"] == "DICOM Modality MR is not CT"
    assert answer["label"] is None

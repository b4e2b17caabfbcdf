"""Model store: broken models are reported and skipped, the others still serve."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from app.config import Settings
from app.inference.store import ModelStore
from app.main import create_app
from tests.conftest import wait_ready
from tests.factories import SHIPPED_MODELS, loaded_store, png_bytes, write_model


def load(root: Path, **extra: object) -> ModelStore:
    return loaded_store(root, intra_op_threads=1, **extra)


def test_bad_sha256_is_refused_and_others_serve(tmp_path: Path) -> None:
    write_model(tmp_path, "good")
    folder = write_model(tmp_path, "tampered")
    (folder / "model.onnx").write_bytes((folder / "model.onnx").read_bytes() + b"\x00")
    store = load(tmp_path)
    assert store.served_keys() == ["good/1"]
    assert "sha256" in store.failures["tampered/1"]
    ready = store.readiness()
    assert ready["ready"] and "tampered/1" in ready["failed"]


def test_invalid_card_truncated_graph_and_name_mismatch(tmp_path: Path) -> None:
    write_model(tmp_path, "good")
    bad_card = write_model(tmp_path, "badcard")
    card = json.loads((bad_card / "metadata.json").read_text())
    card["classes"] = ["Not Snake"]
    (bad_card / "metadata.json").write_text(json.dumps(card))
    truncated = write_model(tmp_path, "truncated")
    onnx_bytes = (truncated / "model.onnx").read_bytes()[:50]
    (truncated / "model.onnx").write_bytes(onnx_bytes)
    card = json.loads((truncated / "metadata.json").read_text())
    import hashlib

    card["sha256"] = hashlib.sha256(onnx_bytes).hexdigest()
    (truncated / "metadata.json").write_text(json.dumps(card))
    moved = write_model(tmp_path, "moved")
    moved.rename(moved.parent / "3")
    store = load(tmp_path)
    assert store.served_keys() == ["good/1"]
    assert "classes" in store.failures["badcard/1"]
    assert "onnxruntime cannot load" in store.failures["truncated/1"]
    assert "folder says moved/3" in store.failures["moved/3"]


def test_card_shape_must_match_graph(tmp_path: Path) -> None:
    folder = write_model(tmp_path, "shape")
    card = json.loads((folder / "metadata.json").read_text())
    card["input"]["height"] = 32
    (folder / "metadata.json").write_text(json.dumps(card))
    assert "does not match" in load(tmp_path).failures["shape/1"]


def test_missing_models_dir_is_not_ready(tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path / "absent", intra_op_threads=1)
    with TestClient(create_app(settings)) as client:
        for _ in range(100):
            body = client.get("/health/ready").json()
            if body["status"] != "loading":
                break
        response = client.get("/health/ready")
        assert response.status_code == 503
        assert "does not exist" in response.json()["failed"]["models_dir"]
        assert client.post("/predict", files={"file": ("a.png", png_bytes())}).status_code == 503


def test_require_all_models(tmp_path: Path) -> None:
    write_model(tmp_path, "good")
    (write_model(tmp_path, "bad") / "model.onnx").write_bytes(b"junk")
    assert load(tmp_path).readiness()["ready"]
    assert not load(tmp_path, require_all_models=True).readiness()["ready"]


def test_highest_version_is_default(tmp_path: Path) -> None:
    for version in (1, 3, 2):
        write_model(tmp_path, "multi", version)
    store = load(tmp_path)
    assert store.get("multi").card.version == 3
    with TestClient(create_app(Settings(models_dir=tmp_path, intra_op_threads=1))) as client:
        wait_ready(client)
        assert client.get("/v1/models/multi").json()["versions"] == [1, 2, 3]


def test_shipped_cards_show_both_cross_validations() -> None:
    """`/v1/models` shows every shipped task with its cross-validation as shipped and the nested
    one (each fold stopped on its own training images), run over every planned fold."""
    with TestClient(create_app(Settings(models_dir=SHIPPED_MODELS))) as client:
        wait_ready(client, timeout=120)
        listing = {model["name"]: model["card"] for model in client.get("/v1/models").json()}
    tasks = {"chest-ct-cancer", "sarscov2-ct", "head-ct-hemorrhage", "covid-xray"}
    assert set(listing) == tasks
    for name, card in listing.items():
        evaluation = card["evaluation"]
        shipped, nested = evaluation["cross_validation"], evaluation["nested_cross_validation"]
        assert nested["inner_validation"] > 0, name
        assert nested["folds_run"] == nested["folds_planned"] == shipped["folds"], name
        assert len(nested["accuracy_per_fold"]) == nested["folds_run"], name
        assert set(nested["recall"]) == set(card["classes"]), name

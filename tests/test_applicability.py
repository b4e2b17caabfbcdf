"""Every answer says whether the model can judge the input: the toy check in process (score,
threshold, verdict, null label outside, DICOM header gate, refusal setting, metrics, OIP,
explain), and the store's checks of the statistics file."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.errors import ModelLoadError
from app.inference.applicability import (
    ApplicabilityStats,
    LayerStats,
    LowerTriangular,
    load_stats,
)
from app.inference.store import load_model_dir
from app.main import create_app
from tests.conftest import wait_ready
from tests.factories import (
    TOY_CHECK_THRESHOLD,
    dicom_bytes,
    png_bytes,
    toy_check_stats,
    write_model,
)

DARK, MID_GREY = png_bytes(51), png_bytes(128)  # mean pixel 0.2 (trained on) and 0.5 (never)


@pytest.fixture
def checked_dir(tmp_path: Path) -> Path:
    root = tmp_path / "models"
    write_model(root, "checked", with_check={"modalities": ["CT"], "body_parts": ["HEAD"]})
    write_model(root, "mapped", with_check=True, with_map=True)
    write_model(root, "plain")
    return root


def client_for(models_dir: Path, **settings: object) -> Iterator[TestClient]:
    app = create_app(Settings(models_dir=models_dir, intra_op_threads=1, **settings))  # type: ignore[arg-type]
    with TestClient(app, raise_server_exceptions=False) as client:
        wait_ready(client)
        yield client


@pytest.fixture
def client(checked_dir: Path) -> Iterator[TestClient]:
    yield from client_for(checked_dir)


def predict(client: TestClient, model: str, data: bytes) -> dict:
    response = client.post(f"/v1/models/{model}/predict", files={"file": ("x", data)})
    assert response.status_code == 200, response.text
    return response.json()


def test_an_image_like_the_training_ones_is_judged(client: TestClient) -> None:
    answer = predict(client, "checked", DARK)
    assert answer["label"] == "dark"
    assert answer["applicability"] == {
        "verdict": "in_domain",
        "score": pytest.approx(((51 / 255 - 0.2) / 0.1) ** 2, abs=1e-3),
        "threshold": TOY_CHECK_THRESHOLD,
        "reason": None,
    }


def test_an_image_unlike_them_gets_no_label_but_keeps_its_probabilities(
    client: TestClient,
) -> None:
    answer = predict(client, "checked", MID_GREY)
    assert answer["label"] is None
    assert answer["applicability"]["verdict"] == "outside"
    assert answer["applicability"]["score"] > TOY_CHECK_THRESHOLD
    assert "unlike the images this model was trained on" in answer["applicability"]["reason"]
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0)


def test_a_model_without_a_check_says_so(client: TestClient) -> None:
    answer = predict(client, "plain", MID_GREY)
    assert answer["label"] in ("dark", "bright")
    assert answer["applicability"]["verdict"] == "not_assessed"
    assert answer["applicability"]["score"] is None


@pytest.mark.parametrize(
    ("modality", "body_part", "verdict", "reason"),
    [
        ("CT", "HEAD", "in_domain", None),
        ("CT", None, "in_domain", None),  # no BodyPartExamined: the pixels decide
        ("MR", "HEAD", "outside", "DICOM Modality MR is not CT"),
        ("CT", "CHEST", "outside", "DICOM BodyPartExamined CHEST is not HEAD"),
    ],
)
def test_the_dicom_header_is_checked_before_the_pixels(
    client: TestClient, modality: str, body_part: str | None, verdict: str, reason: str | None
) -> None:
    # HU 0 in a window (40, 200) is grey 0.3: one spread from the dark mean, inside the check.
    data = dicom_bytes(np.full((16, 16), 1024), modality=modality, body_part=body_part)
    response = client.post(
        "/v1/models/checked/predict?window_center=40&window_width=200", files={"file": ("x", data)}
    )
    answer = response.json()
    assert answer["applicability"]["verdict"] == verdict
    assert answer["applicability"]["reason"] == reason
    assert answer["input"]["modality"] == modality and answer["input"]["body_part"] == body_part
    assert "Test^Patient" not in response.text


def test_the_refusal_setting_turns_outside_into_a_422(checked_dir: Path) -> None:
    for client in client_for(checked_dir, reject_outside=True):
        assert client.post("/v1/models/checked/predict", files={"file": ("x", DARK)}).is_success
        response = client.post("/v1/models/checked/predict", files={"file": ("x", MID_GREY)})
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["type"] == "/problems/outside-domain"
        assert "unlike the images this model was trained on" in response.json()["detail"]


def test_metrics_count_the_verdicts(client: TestClient) -> None:
    for data in (DARK, MID_GREY, MID_GREY):
        predict(client, "checked", data)
    text = client.get("/metrics").text
    assert 'ctscan_applicability_total{model="checked",verdict="in_domain"} 1.0' in text
    assert 'ctscan_applicability_total{model="checked",verdict="outside"} 2.0' in text


def test_explain_carries_the_verdict_and_still_explains(client: TestClient) -> None:
    response = client.post("/v1/models/mapped/explain", files={"file": ("x", MID_GREY)})
    answer = response.json()
    assert answer["label"] is None and answer["applicability"]["verdict"] == "outside"
    assert answer["explanation"]["class"] in ("dark", "bright")


def test_the_open_inference_protocol_gives_score_and_verdict(client: TestClient) -> None:
    images = np.stack([np.full((16, 16, 1), v, np.float32) for v in (0.2, 0.5, 0.8)])
    request = {
        "inputs": [
            {"name": "image", "datatype": "FP32", "shape": list(images.shape),
             "data": images.ravel().tolist()}
        ]
    }  # fmt: skip
    body = client.post("/v2/models/checked/infer", json=request).json()
    outputs = {o["name"]: o["data"] for o in body["outputs"]}
    assert outputs["in_domain"] == [1.0, 0.0, 1.0]
    assert outputs["applicability_score"] == pytest.approx([0.0, 9.0, 0.0], abs=1e-4)
    assert body["parameters"]["applicability_threshold"] == TOY_CHECK_THRESHOLD
    metadata = client.get("/v2/models/checked").json()
    assert [o["name"] for o in metadata["outputs"]] == [
        "probabilities",
        "applicability_score",
        "in_domain",
    ]
    request["outputs"] = [{"name": "in_domain"}]
    body = client.post("/v2/models/checked/infer", json=request).json()
    assert [o["name"] for o in body["outputs"]] == ["in_domain"]


def test_statistics_survive_a_round_trip(tmp_path: Path) -> None:
    (tmp_path / "stats.npz").write_bytes(toy_check_stats().to_bytes())
    stats = load_stats(tmp_path / "stats.npz")
    features = np.array([[0.2], [0.8], [0.5], [1.5]])
    assert stats.score(features) == pytest.approx([0.0, 0.0, 9.0, 49.0])


def test_a_tampered_or_missing_statistics_file_refuses_the_model(tmp_path: Path) -> None:
    folder = write_model(tmp_path, "checked", with_check=True)
    (folder / "applicability.npz").write_bytes(b"not the statistics")
    with pytest.raises(ModelLoadError, match=r"sha256 of applicability\.npz"):
        load_model_dir(folder, "checked", 1, Settings())
    (folder / "applicability.npz").unlink()
    with pytest.raises(ModelLoadError, match=r"missing applicability\.npz"):
        load_model_dir(folder, "checked", 1, Settings())


def test_a_check_needs_the_graph_output_it_names(tmp_path: Path) -> None:
    folder = write_model(tmp_path, "checked", with_check={"feature_output": "embedding"})
    with pytest.raises(ModelLoadError, match="no output 'embedding'"):
        load_model_dir(folder, "checked", 1, Settings())


def test_unreadable_statistics_are_a_load_error(tmp_path: Path) -> None:
    folder = write_model(tmp_path, "checked", with_check=True)
    broken = b"PK\x03\x04 broken zip"
    (folder / "applicability.npz").write_bytes(broken)
    card = json.loads((folder / "metadata.json").read_text())
    card["applicability"]["sha256"] = hashlib.sha256(broken).hexdigest()
    (folder / "metadata.json").write_text(json.dumps(card))
    with pytest.raises(ModelLoadError, match="unreadable"):
        load_model_dir(folder, "checked", 1, Settings())


def test_a_layer_scores_each_member_by_its_own_mahalanobis_distance() -> None:
    """Two members, two pieces (means and stds) of three channels: the layout the exported
    graph writes, against the distance computed directly."""
    rng = np.random.default_rng(3)
    members, classes, channels = 2, 2, 3
    width = 2 * channels
    raw_means = rng.normal(size=(members, classes, width))
    whiten = np.stack([np.linalg.cholesky(np.eye(width) * (m + 1)) for m in range(members)])
    layer = LayerStats(
        np.einsum("mkd,mde->mke", raw_means, whiten).astype(np.float32),
        LowerTriangular.from_dense(whiten.astype(np.float32)),
        np.array([2.0, 4.0]),
        pieces=2,
    )
    vectors = rng.normal(size=(members, 5, width))  # (member, image, [means | stds])
    part = np.concatenate([vectors[:, :, :channels], vectors[:, :, channels:]], axis=0)
    features = part.transpose(1, 0, 2).reshape(5, -1)  # m1 means, m2 means, m1 stds, m2 stds
    for member in range(members):
        precision = whiten[member] @ whiten[member].T
        gaps = vectors[member][:, None, :] - raw_means[member][None]
        direct = np.einsum("nkd,de,nke->nk", gaps, precision, gaps).min(axis=1)
        ratio = layer.ratios(features)[:, member]
        np.testing.assert_allclose(ratio, direct / layer.scales[member], rtol=1e-4)
    stats = ApplicabilityStats([layer, layer])
    both = np.concatenate([features, features], axis=1)
    assert stats.score(both) == pytest.approx(layer.ratios(features).mean(axis=1), rel=1e-6)


@pytest.mark.parametrize("size", [1, 3, 8, 100, 384])
def test_packed_whitening_is_exact_and_about_half_the_size(size: int) -> None:
    rng = np.random.default_rng(size)
    dense = np.tril(rng.normal(size=(2, size, size))).astype(np.float32)
    packed = LowerTriangular.from_dense(dense)
    np.testing.assert_array_equal(packed.dense(), dense)
    assert packed.shape == (2, size, size)
    vectors = rng.normal(size=(2, 5, size)).astype(np.float32)
    np.testing.assert_allclose(packed.times(vectors), vectors @ dense, rtol=1e-5, atol=1e-5)
    if size >= 100:
        assert sum(block.nbytes for block in packed.blocks) < 0.58 * dense.nbytes


def test_a_whitening_that_is_not_lower_triangular_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lower-triangular"):
        LowerTriangular.from_dense(np.ones((1, 3, 3), np.float32))
    stats = toy_check_stats().to_bytes()
    arrays = dict(np.load(io.BytesIO(stats)))
    arrays["whiten_0"] = np.ones((1, 2, 2), np.float32)
    arrays["means_0"] = np.zeros((1, 2, 2), np.float32)
    np.savez(tmp_path / "applicability.npz", **arrays)
    with pytest.raises(ModelLoadError, match="unreadable"):
        load_stats(tmp_path / "applicability.npz")

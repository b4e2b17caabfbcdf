"""`/explain`: JSON and PNG answers, class choice, and models without maps."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from PIL import Image

from app.config import Settings
from app.imaging.overlay import colourise, normalise_map, overlay_png
from app.main import create_app
from tests.conftest import wait_ready
from tests.factories import encode, write_model


def half_bright() -> bytes:
    pixels = np.zeros((32, 32), dtype=np.uint8)
    pixels[:, 16:] = 255  # bright right half
    return encode(Image.fromarray(pixels), "PNG")


def start(tmp_path: Path) -> TestClient:
    write_model(tmp_path, "mapped", with_map=True)
    write_model(tmp_path, "plain")
    client = TestClient(create_app(Settings(models_dir=tmp_path, intra_op_threads=1)))
    client.__enter__()
    wait_ready(client)
    return client


def test_json_explanation_points_at_the_evidence(tmp_path: Path) -> None:
    client = start(tmp_path)
    response = client.post(
        "/v1/models/mapped/explain",
        params={"class": "bright"},
        files={"file": ("a", half_bright())},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["explanation"]["class"] == "bright"
    assert abs(sum(body["probabilities"].values()) - 1) < 1e-5
    heat = np.array(body["explanation"]["map"])  # at model input size (16 x 16)
    assert heat.shape == (16, 16)
    assert heat[:, :7].max() == 0.0 and heat[:, 9:].min() == 1.0  # evidence: the bright half
    default = client.post("/v1/models/mapped/explain", files={"file": ("a", half_bright())})
    assert default.json()["explanation"]["class"] == default.json()["label"]
    png = base64.b64decode(body["explanation"]["overlay_png_base64"])
    assert Image.open(io.BytesIO(png)).format == "PNG"
    client.__exit__(None, None, None)


def test_class_parameter_and_png_answer(tmp_path: Path) -> None:
    client = start(tmp_path)
    response = client.post(
        "/v1/models/mapped/explain",
        params={"class": "bright"},
        files={"file": ("a", half_bright())},
        headers={"Accept": "image/png"},
    )
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(response.content)).size == (32, 32)  # the upload's own size
    overlay = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"), dtype=float)
    # evidence for "bright" sits on the right half: it is tinted, the left half stays grey
    left, right = overlay[:, :12], overlay[:, 20:]
    assert np.abs(left[..., 0] - left[..., 2]).max() < 1
    assert np.abs(right[..., 0] - right[..., 2]).mean() > 20
    bad = client.post(
        "/v1/models/mapped/explain", params={"class": "nope"}, files={"file": ("a", half_bright())}
    )
    assert bad.status_code == 400
    client.__exit__(None, None, None)


def test_model_without_maps_is_a_clear_400(tmp_path: Path) -> None:
    client = start(tmp_path)
    response = client.post("/v1/models/plain/explain", files={"file": ("a", half_bright())})
    assert response.status_code == 400 and "no activation maps" in response.json()["detail"]
    client.__exit__(None, None, None)


def test_overlay_helpers() -> None:
    assert not normalise_map(np.full((3, 3), -1.0)).any()
    assert colourise(np.array([[0.0, 1.0]])).shape == (1, 2, 3)
    png = overlay_png(np.zeros((1000, 500), np.float32), np.ones((4, 4), np.float32))
    assert Image.open(io.BytesIO(png)).size == (500, 1000)
    small = overlay_png(np.zeros((1000, 500), np.float32), np.ones((4, 4)), max_side=512)
    assert Image.open(io.BytesIO(small)).size == (256, 512)


def test_web_page_is_self_contained(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = response.text
    assert "Research use, not for diagnosis" in page
    assert "http://" not in page and "https://" not in page  # no CDN, works offline
    assert "default-src 'self'" in response.headers["content-security-policy"]

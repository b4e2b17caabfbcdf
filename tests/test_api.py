"""The HTTP contract, end to end through the app (lifespan, real onnxruntime sessions)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

import app.api.predict as predict_api
from app.config import Settings
from app.inference.store import ModelStore
from app.main import create_app
from tests.conftest import wait_ready
from tests.factories import encode, grey_gradient, png_bytes

PROBLEM = "application/problem+json"
_NOISE = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
NOISE_PNG = encode(Image.fromarray(_NOISE), "PNG")
NOISE_JPEG = encode(Image.fromarray(_NOISE), "JPEG")


def upload(
    client: TestClient,
    data: bytes,
    path: str = "/v1/models/toy/predict",
    name: str = "x.png",
    ctype: str = "image/png",
):
    return client.post(path, files={"file": (name, data, ctype)})


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"] and body["type"]
    return body


def assert_prediction(response, classes: list[str]) -> dict:
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body["probabilities"]) == classes
    assert abs(sum(body["probabilities"].values()) - 1.0) < 1e-5
    assert body["label"] == max(body["probabilities"], key=body["probabilities"].get)
    return body


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (encode(Image.new("L", (40, 30), 220), "PNG"), "PNG"),
        (encode(Image.new("RGB", (40, 30), (220, 220, 220)), "JPEG", quality=95), "JPEG"),
        (encode(Image.fromarray(grey_gradient(high=65535).astype(np.uint16)), "PNG"), "PNG"),
        (encode(Image.new("RGBA", (40, 30), (220, 220, 220, 255)), "PNG"), "PNG"),
        (encode(Image.new("L", (40, 30), 220), "TIFF"), "TIFF"),
    ],
    ids=["png", "jpeg", "png16", "rgba", "tiff"],
)
def test_predict_formats(client: TestClient, data: bytes, fmt: str) -> None:
    body = assert_prediction(upload(client, data), ["dark", "bright"])
    assert body["model"] == "toy" and body["version"] == 2 and body["input"]["format"] == fmt


def test_prediction_follows_the_image(client: TestClient) -> None:
    bright = assert_prediction(upload(client, png_bytes(240)), ["dark", "bright"])
    dark = assert_prediction(upload(client, png_bytes(10)), ["dark", "bright"])
    assert bright["label"] == "bright" and dark["label"] == "dark"
    assert bright["probabilities"]["bright"] > 0.9 and dark["probabilities"]["dark"] > 0.9


def test_type_is_judged_by_content_not_name(client: TestClient) -> None:
    response = upload(client, png_bytes(240), name="scan.dcm", ctype="application/dicom")
    assert assert_prediction(response, ["dark", "bright"])["input"]["format"] == "PNG"


def test_default_model_and_pinned_version(client: TestClient) -> None:
    assert (
        assert_prediction(
            client.post("/predict", files={"file": ("a.png", png_bytes())}), ["dark", "bright"]
        )["model"]
        == "toy"
    )
    pinned = upload(client, png_bytes(), path="/v1/models/toy/versions/1/predict")
    assert assert_prediction(pinned, ["dark", "bright"])["version"] == 1
    assert_problem(upload(client, png_bytes(), path="/v1/models/toy/versions/9/predict"), 404)


def test_the_plain_predict_routes_keep_the_documented_contract(client: TestClient) -> None:
    """The predict routes are served by plain routes in front of their FastAPI declarations
    (app/api/predict.py `served_routes`): what those do not match still gets the declared
    answers, and OpenAPI still documents all three."""
    version_not_a_number = upload(client, png_bytes(), path="/v1/models/toy/versions/x/predict")
    assert_problem(version_not_a_number, 400)
    assert_problem(client.get("/v1/models/toy/predict"), 405)
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/predict",
        "/v1/models/{name}/predict",
        "/v1/models/{name}/versions/{version}/predict",
    ):
        assert "multipart/form-data" in paths[path]["post"]["requestBody"]["content"]


@pytest.mark.parametrize(
    ("limit", "on_the_loop"), [(1 << 20, True), (0, False), (len(png_bytes(240)) - 1, False)]
)
def test_a_lone_small_upload_is_decoded_and_run_on_the_event_loop(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, limit: int, on_the_loop: bool
) -> None:
    threads: list[str] = []
    real = predict_api.prepare_and_run_alone

    def noting_the_thread(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return real(*args)

    monkeypatch.setattr(predict_api, "prepare_and_run_alone", noting_the_thread)
    with TestClient(create_app(settings.model_copy(update={"inline_max_bytes": limit}))) as client:
        wait_ready(client)
        body = assert_prediction(upload(client, png_bytes(240)), ["dark", "bright"])
    assert body["label"] == "bright"
    assert threads and threads[0].startswith("decode") is not on_the_loop


def test_three_class_model(client: TestClient) -> None:
    body = assert_prediction(
        upload(client, png_bytes(128), path="/v1/models/triple/predict"), ["low", "mid", "high"]
    )
    assert body["label"] == "mid"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"", 422),
        (b"hello, this is plain text and not an image", 415),
        (png_bytes()[:60], 422),
        (NOISE_PNG[: len(NOISE_PNG) // 2] + NOISE_PNG[-12:], 422),
        (NOISE_JPEG[: len(NOISE_JPEG) // 2], 422),
        (b"<html><body>no</body></html>", 415),
        (b"GIF89a" + b"\x00" * 40, 415),
    ],
    ids=["empty", "text", "truncated-png", "cut-idat-png", "truncated-jpeg", "html", "gif"],
)
def test_bad_uploads(client: TestClient, data: bytes, status: int) -> None:
    assert_problem(upload(client, data), status)
    assert client.get("/health/ready").status_code == 200


@pytest.mark.parametrize("ctype", ["image/png", "application/octet-stream", None])
def test_the_image_as_the_whole_body(client: TestClient, ctype: str | None) -> None:
    """`curl --data-binary @slice.png` (any content type but multipart) answers as the form."""
    data = png_bytes(240)
    headers = {} if ctype is None else {"content-type": ctype}
    raw = assert_prediction(
        client.post("/v1/models/toy/predict", content=data, headers=headers), ["dark", "bright"]
    )
    assert raw == assert_prediction(upload(client, data), ["dark", "bright"])
    assert raw["label"] == "bright" and raw["input"]["format"] == "PNG"


def test_raw_body_over_the_cap_is_413(settings: Settings) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 2000})
    with TestClient(create_app(small)) as client:
        wait_ready(client)
        big = png_bytes() + b"\x00" * 3000
        assert_problem(client.post("/predict", content=big), 413)  # declared length
        streamed = client.post("/predict", content=iter([big[:1500], big[1500:]]))
        assert_problem(streamed, 413)  # no length: counted as it streams in


def test_oversize_upload_is_413(client: TestClient) -> None:
    assert_problem(upload(client, b"\x89PNG\r\n\x1a\n" + b"\x00" * (40 * 1024 * 1024)), 413)


def test_oversize_streamed_body_without_length_is_413(settings: Settings) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 1000})
    with TestClient(create_app(small)) as client:
        wait_ready(client)

        def chunks():
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\n'
            for _ in range(200):
                yield b"\x00" * 1024

        response = client.post(
            "/predict",
            content=chunks(),
            headers={"content-type": "multipart/form-data; boundary=b"},
        )
        assert_problem(response, 413)


def test_file_over_cap_inside_small_body_is_413(settings: Settings) -> None:
    small = settings.model_copy(update={"max_upload_bytes": 2000})
    with TestClient(create_app(small)) as client:
        wait_ready(client)
        # body within the multipart allowance, file itself over the cap
        assert_problem(upload(client, png_bytes() + b"\x00" * 3000), 413)


def test_unknown_model_and_missing_field(client: TestClient) -> None:
    assert_problem(upload(client, png_bytes(), path="/v1/models/nope/predict"), 404)
    assert_problem(client.post("/v1/models/toy/predict", files={"other": ("a", b"x")}), 400)
    assert_problem(client.post("/v1/models/toy/predict"), 400)
    assert_problem(client.get("/no/such/path"), 404)


def test_model_cards(client: TestClient) -> None:
    listing = client.get("/v1/models").json()
    assert [m["name"] for m in listing] == ["toy", "triple"]
    toy = client.get("/v1/models/toy").json()
    assert toy["version"] == 2 and toy["versions"] == [1, 2]
    assert toy["card"]["classes"] == ["dark", "bright"] and len(toy["card"]["sha256"]) == 64
    assert toy["provider"] == "CPUExecutionProvider"
    assert_problem(client.get("/v1/models/nope"), 404)


def test_health(client: TestClient) -> None:
    assert client.get("/health/live").json() == {"status": "alive"}
    ready = client.get("/health/ready").json()
    assert ready["ready"] and ready["models"]["toy/2"]["provider"] == "CPUExecutionProvider"


def test_ready_is_503_until_models_are_warm(settings: Settings) -> None:
    store = ModelStore(settings)
    with store.lock:  # the loader waits for this lock, so loading cannot finish yet
        client = TestClient(create_app(settings, store=store))
        client.__enter__()
        response = client.get("/health/ready")
        assert response.status_code == 503 and response.json()["status"] == "loading"
        assert_problem(upload(client, png_bytes()), 503)
    wait_ready(client)
    assert client.get("/health/ready").json()["status"] == "ready"
    client.__exit__(None, None, None)


def test_openapi_documents_the_contract(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    for path in (
        "/v1/models/{name}/predict",
        "/predict",
        "/v1/models",
        "/health/ready",
        "/v1/models/{name}/versions/{version}/predict",
    ):
        assert path in paths
    responses = paths["/v1/models/{name}/predict"]["post"]["responses"]
    assert {"200", "404", "413", "415", "422", "503"} <= set(responses)
    assert client.get("/docs").status_code == 200
    uploads = ["/predict", "/v1/models/{name}/predict", "/v1/models/{name}/explain"]
    uploads.append("/v1/models/{name}/versions/{version}/predict")
    for path in uploads:  # the routes read the form themselves: the body must still be documented
        content = paths[path]["post"]["requestBody"]["content"]
        body = content["multipart/form-data"]["schema"]
        assert body["required"] == ["file"] and body["properties"]["file"]["format"] == "binary"
        assert content["application/dicom"]["schema"]["format"] == "binary"
        query = {p["name"] for p in paths[path]["post"]["parameters"] if p["in"] == "query"}
        assert {"window", "window_center", "window_width"} <= query  # read by hand, still shown


def test_concurrent_requests_match_sequential(client: TestClient) -> None:
    images = [png_bytes(level) for level in range(0, 256, 8)]
    sequential = [upload(client, img).json()["probabilities"] for img in images]
    with ThreadPoolExecutor(max_workers=16) as pool:
        parallel = list(pool.map(lambda img: upload(client, img).json()["probabilities"], images))
    # batched and single runs differ only by float32 summation order (~1e-6)
    for mine, theirs in zip(parallel, sequential, strict=True):
        assert mine == pytest.approx(theirs, abs=1e-5)

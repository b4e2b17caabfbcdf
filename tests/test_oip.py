"""Open Inference Protocol (KServe v2) with the official Triton client against a real server,
plus request-shape errors in process."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.factories import png_bytes, write_model

httpclient = pytest.importorskip("tritonclient.http")


@pytest.fixture
def server(tmp_path: Path):  # type: ignore[no-untyped-def]
    from tests.test_cli import start_server

    write_model(tmp_path / "models", "toy", size=16)
    process, base = start_server(tmp_path / "models")
    yield base.removeprefix("http://")
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)


def test_triton_client_health_and_metadata(server: str) -> None:
    client = httpclient.InferenceServerClient(url=server)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("toy")
    metadata = client.get_model_metadata("toy")
    assert metadata["name"] == "toy" and metadata["versions"] == ["1"]
    assert metadata["inputs"][0] == {"name": "image", "datatype": "FP32", "shape": [-1, 16, 16, 1]}
    assert client.get_server_metadata()["name"] == "ctscan"


@pytest.mark.parametrize("binary", [False, True])
def test_triton_client_fp32_tensor(server: str, binary: bool) -> None:
    client = httpclient.InferenceServerClient(url=server)
    batch = np.stack([np.full((16, 16, 1), v, np.float32) for v in (0.05, 0.95)])
    tensor = httpclient.InferInput("image", list(batch.shape), "FP32")
    tensor.set_data_from_numpy(batch, binary_data=binary)
    result = client.infer(
        "toy",
        [tensor],
        outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=False)],
    )
    probabilities = result.as_numpy("probabilities")
    assert probabilities.shape == (2, 2)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert probabilities[0].argmax() == 0 and probabilities[1].argmax() == 1


def test_triton_client_encoded_images(server: str) -> None:
    client = httpclient.InferenceServerClient(url=server)
    images = np.array([png_bytes(10), png_bytes(245)], dtype=np.object_)
    tensor = httpclient.InferInput("image_bytes", [2], "BYTES")
    tensor.set_data_from_numpy(images, binary_data=True)
    result = client.infer("toy", [tensor], model_version="1")
    labels = result.as_numpy("probabilities").argmax(axis=1)
    assert labels.tolist() == [0, 1]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"inputs": []}, "invalid inference request"),
        (
            {"inputs": [{"name": "image", "shape": [1, 2], "datatype": "FP32", "data": [1, 2]}]},
            "shape",
        ),
        (
            {
                "inputs": [
                    {
                        "name": "image",
                        "shape": [1, 16, 16, 1],
                        "datatype": "INT8",
                        "data": [0] * 256,
                    }
                ]
            },
            "datatype",
        ),
        (
            {
                "inputs": [
                    {"name": "image", "shape": [2, 16, 16, 1], "datatype": "FP32", "data": [0] * 10}
                ]
            },
            "do not fill",
        ),
        (
            {"inputs": [{"name": "img", "shape": [1], "datatype": "BYTES", "data": ["%%%"]}]},
            "base64",
        ),
        (
            {
                "inputs": [
                    {"name": "image", "shape": [0, 16, 16, 1], "datatype": "FP32", "data": []}
                ]
            },
            "no image",
        ),
        (
            {
                "inputs": [
                    {"name": "image", "shape": [1, 2], "datatype": "FP32", "data": ["a", "b"]}
                ]
            },
            "must be numbers",
        ),
        (
            {
                "inputs": [
                    {"name": "image", "shape": [1, 3], "datatype": "FP32", "data": [[1, 2], [3]]}
                ]
            },
            "must be numbers",
        ),
        (
            {
                "inputs": [{"name": "image", "shape": [1, 1], "datatype": "FP32", "data": [0]}],
                "outputs": [{"name": "logits"}],
            },
            "unknown output 'logits'",
        ),
    ],
)
def test_bad_infer_requests(client: TestClient, body: dict, fragment: str) -> None:
    response = client.post("/v2/models/toy/infer", json=body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["detail"]


def test_bytes_input_with_a_bad_image_is_a_problem(client: TestClient) -> None:
    import base64

    body = {
        "inputs": [
            {
                "name": "img",
                "shape": [1],
                "datatype": "BYTES",
                "data": [base64.b64encode(b"not an image").decode()],
            }
        ]
    }
    response = client.post("/v2/models/toy/infer", json=body)
    assert response.status_code == 415
    assert client.get("/v2/models/nope").status_code == 404


def binary_request(size: object, payload: bytes) -> tuple[bytes, dict[str, str]]:
    """An FP32 `image` input declared with `binary_data_size` = `size`, then `payload`."""
    parameters = {"binary_data_size": size}
    tensor = {
        "name": "image",
        "shape": [1, 16, 16, 1],
        "datatype": "FP32",
        "parameters": parameters,
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + payload, {"Inference-Header-Content-Length": str(len(header))}


@pytest.mark.parametrize(
    ("size", "payload", "fragment"),
    [
        ("1024", bytes(1024), "whole number"),
        (-4, bytes(1024), "whole number"),
        (True, bytes(1024), "whole number"),
        (2048, bytes(1024), "runs past the body"),
        (1024, bytes(1030), "6 bytes after the JSON header belong to no input"),
    ],
)
def test_bad_binary_extension_requests(
    client: TestClient, size: object, payload: bytes, fragment: str
) -> None:
    body, headers = binary_request(size, payload)
    response = client.post("/v2/models/toy/infer", content=body, headers=headers)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["detail"]


def test_binary_extension_request_in_process(client: TestClient) -> None:
    body, headers = binary_request(1024, np.full(256, 0.95, np.float32).tobytes())
    response = client.post("/v2/models/toy/infer", content=body, headers=headers)
    assert response.status_code == 200, response.text
    assert np.argmax(response.json()["outputs"][0]["data"]) == 1

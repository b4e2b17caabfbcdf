"""Every bad input gets the right 4xx as problem+json with a useful detail, never a 5xx, and
the service stays healthy. Request-shape faults (no file, two files, oversize bodies) too."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.badinputs import cases
from tests.factories import png_bytes

CASES = cases()


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 40 and len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "data", "status"), CASES, ids=[c[0] for c in CASES])
def test_bad_input(client: TestClient, name: str, data: bytes, status: int) -> None:
    response = client.post("/v1/models/toy/predict", files={"file": ("upload.png", data)})
    assert response.status_code == status, f"{name}: {response.text[:300]}"
    if status != 200:
        assert response.headers["content-type"].startswith("application/problem+json")
        body = response.json()
        assert body["status"] == status and len(body["detail"]) > 10
    assert client.get("/health/ready").status_code == 200


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({}, 400),
        ({"files": {"image": ("a.png", b"x")}}, 400),
        ({"data": {"file": "not a file"}}, 415),  # a URL-encoded body is taken as the image
        ({"content": b"raw", "headers": {"content-type": "image/png"}}, 415),
        ({"content": b"", "headers": {"content-type": "image/png"}}, 400),
        (
            {
                "content": b"--x\r\nbroken",
                "headers": {"content-type": "multipart/form-data; boundary=x"},
            },
            400,
        ),
    ],
    ids=["no-body", "wrong-field", "url-encoded", "raw-not-image", "raw-empty", "broken-multipart"],
)
def test_malformed_requests(client: TestClient, kwargs: dict, status: int) -> None:
    response = client.post("/v1/models/toy/predict", **kwargs)
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


def test_two_files_are_refused(client: TestClient) -> None:
    files = [("file", ("a.png", png_bytes())), ("file", ("b.png", png_bytes()))]
    response = client.post("/v1/models/toy/predict", files=files)
    assert response.status_code == 400 and "exactly one file" in response.json()["detail"]


def test_wrong_declared_type_is_ignored(client: TestClient) -> None:
    response = client.post(
        "/v1/models/toy/predict", files={"file": ("x.pdf", png_bytes(), "application/pdf")}
    )
    assert response.status_code == 200


def test_oversize_with_declared_length_is_413_before_reading(client: TestClient) -> None:
    response = client.post(
        "/v1/models/toy/predict",
        content=b"x" * 10,
        headers={
            "content-type": "multipart/form-data; boundary=x",
            "content-length": str(64 * 1024 * 1024),
        },
    )
    assert response.status_code == 413

"""DICOM: Hounsfield and window arithmetic, MONOCHROME1, refusals, pydicom's real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydicom")

from fastapi.testclient import TestClient
from pydicom.data import get_testdata_file

from app.api.window_query import window_from_query
from app.errors import BadRequest, InvalidImage
from app.imaging.decode import decode_image
from app.imaging.dicom import apply_window, rescaled
from tests.factories import dicom_bytes

STORED = np.array([[0, 1024, 1064], [2024, 424, 3000]], dtype=np.uint16)


def test_hounsfield_and_window_are_exact() -> None:
    # HU = stored * 1 - 1024 → [[-1024, 0, 40], [1000, -600, 1976]]; brain window 40/80
    decoded = decode_image(dicom_bytes(STORED), window=(40.0, 80.0))
    expected = np.clip((np.array([[-1024, 0, 40], [1000, -600, 1976]]) - 0) / 80, 0, 1)
    np.testing.assert_allclose(decoded.pixels, expected, atol=1e-6)
    assert decoded.format == "DICOM" and decoded.window == "center 40, width 80"


def test_slope_is_applied() -> None:
    decoded = decode_image(dicom_bytes(STORED, slope=0.5, intercept=-100), window=(400, 800))
    hounsfield = STORED * 0.5 - 100
    np.testing.assert_allclose(decoded.pixels, np.clip((hounsfield - 0) / 800, 0, 1), atol=1e-6)


def test_rescaling_copies_once_and_windowing_may_reuse_it() -> None:
    stored = np.array([[1.0, 2.0]], dtype=np.float32)
    values = rescaled(stored, 2.0, -1.0)
    assert values.dtype == np.float32 and values.tolist() == [[1.0, 3.0]]
    assert stored.tolist() == [[1.0, 2.0]]  # pydicom's pixel array is left as it was
    grey = apply_window(values, (2.0, 2.0))
    assert grey.dtype == np.float32 and grey.tolist() == [[0.0, 1.0]]
    assert values.tolist() == [[1.0, 3.0]]
    assert apply_window(values, (2.0, 2.0), out=values) is values  # the decoder's own array
    assert values.tolist() == [[0.0, 1.0]]


def test_file_window_then_full_range() -> None:
    with_window = decode_image(dicom_bytes(STORED, window=(0.0, 2000.0)))
    assert with_window.window == "file window: center 0, width 2000"
    full = decode_image(dicom_bytes(STORED))
    assert full.window == "full range" and full.pixels.min() == 0 and full.pixels.max() == 1


def test_monochrome1_is_inverted() -> None:
    normal = decode_image(dicom_bytes(STORED), window=(0, 2000)).pixels
    inverted = decode_image(dicom_bytes(STORED, interpretation="MONOCHROME1"), window=(0, 2000))
    np.testing.assert_allclose(inverted.pixels, 1 - normal, atol=1e-6)


def test_refusals() -> None:
    with pytest.raises(InvalidImage, match="no pixel data"):
        decode_image(dicom_bytes(STORED, pixel_data=False))
    with pytest.raises(InvalidImage, match="multi-frame"):
        decode_image(dicom_bytes(np.stack([STORED, STORED]), frames=2))
    with pytest.raises(InvalidImage, match="width"):
        apply_window(np.zeros((2, 2)), (0.0, 0.0))
    data = dicom_bytes(STORED)
    with pytest.raises(InvalidImage):
        decode_image(data[: len(data) - 5])


@pytest.mark.parametrize("name", ["CT_small.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"])
def test_pydicom_real_files(name: str) -> None:
    path = get_testdata_file(name)
    assert path is not None
    decoded = decode_image(Path(path).read_bytes())
    assert decoded.pixels.ndim == 2 and 0 <= decoded.pixels.min() < decoded.pixels.max() <= 1


def test_dicom_through_the_api(client: TestClient) -> None:
    path = get_testdata_file("CT_small.dcm")
    assert path is not None
    response = client.post("/predict", files={"file": ("slice", Path(path).read_bytes())})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["input"]["format"] == "DICOM" and body["input"]["window"]
    assert "Test" not in response.text
    raw = client.post(
        "/predict", content=Path(path).read_bytes(), headers={"content-type": "application/dicom"}
    )
    assert raw.status_code == 200 and raw.json() == body


def test_window_query_parameters(client: TestClient) -> None:
    data = dicom_bytes(STORED)

    def window_of(**params: str) -> object:
        response = client.post("/predict", params=params, files={"file": ("s", data)})
        return (
            response.json()["input"]["window"]
            if response.status_code == 200
            else (response.status_code)
        )

    assert window_of(window="brain") == "center 40, width 80"
    assert window_of(window_center="100", window_width="50") == "center 100, width 50"
    assert window_of() == "full range"  # the toy model's card names no default window
    assert window_of(window="nope") == 400
    assert window_of(window_center="100") == 400
    assert window_of(window="lung", window_width="5") == 400
    problem = client.post("/predict", params={"window_width": "x", "window_center": "1"}).json()
    assert problem["status"] == 400 and "window_width must be a number" in problem["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"window_center": "40", "window_width": "0"},
        {"window_center": "40", "window_width": "-80"},
        {"window_center": "nan", "window_width": "80"},
        {"window_center": "40", "window_width": "inf"},
        {"window_center": "forty", "window_width": "80"},
        {"window": "brain", "window_center": "40"},
        {"window": "Brain"},
        {"window_width": "80"},
    ],
)
def test_bad_window_queries_are_refused(params: dict[str, str]) -> None:
    with pytest.raises(BadRequest):
        window_from_query(params)


def test_window_query_values() -> None:
    assert window_from_query({}) is None
    assert window_from_query({"window": "lung"}) == (-600.0, 1500.0)
    assert window_from_query({"window_center": "-50.5", "window_width": "4e2"}) == (-50.5, 400.0)


@pytest.mark.parametrize(
    "name",
    [
        "fuzz-dicom-wrong-length.bin",  # a meta group length of odd size crashed pydicom
        "fuzz-dicom-rle-panic.bin",  # the RLE codec (Rust) panics: pyo3's PanicException
    ],
)
def test_fuzzer_findings_are_a_422(name: str) -> None:
    """Found by tests/fuzz/fuzz_decode.py."""
    data = (Path(__file__).parent / "data" / name).read_bytes()
    with pytest.raises(InvalidImage):
        decode_image(data)


def test_a_codec_panic_is_answered_422(client: TestClient) -> None:
    data = (Path(__file__).parent / "data" / "fuzz-dicom-rle-panic.bin").read_bytes()
    response = client.post("/predict", files={"file": ("slice", data)})
    assert response.status_code == 422, response.text
    assert response.json()["type"] == "/problems/invalid-image"


def test_brain_and_lung_windows_give_different_inputs(client: TestClient) -> None:
    ramp = (np.tile(np.arange(64), (64, 1)) * 40).astype(np.uint16)  # -1024 … 1496 HU
    data = dicom_bytes(ramp)
    brain = decode_image(data, window=(40.0, 80.0)).pixels
    lung = decode_image(data, window=(-600.0, 1500.0)).pixels
    assert np.abs(brain - lung).mean() > 0.1
    answers = {
        name: client.post("/predict", params={"window": name}, files={"file": ("s", data)}).json()
        for name in ("brain", "lung")
    }
    assert answers["brain"]["input"]["window"] == "center 40, width 80"
    assert answers["lung"]["input"]["window"] == "center -600, width 1500"
    assert answers["brain"]["probabilities"] != answers["lung"]["probabilities"]

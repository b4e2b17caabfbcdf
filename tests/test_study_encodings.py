"""One series, three encodings: single-frame DICOM files, one Enhanced CT multi-frame object,
and a NIfTI volume (stored in another voxel order): the same slices in the same order, the same
pixels, and per-slice probabilities within 1e-5."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.studies.headers import read_header
from app.studies.volumes import FrameReader
from tests.conftest import wait_ready
from tests.factories import write_model
from tests.series_factory import SeriesSpec, enhanced_ct, nifti, single_frame_files, zipped

pytest.importorskip("pydicom")
pytest.importorskip("nibabel")
SPEC = SeriesSpec([0.2, 0.25, 0.8, 0.75, 0.2], spacing_mm=3.0)


def encodings() -> dict[str, dict[str, bytes]]:
    files = single_frame_files(SPEC)
    return {
        "single frames": {f"IM{i}": f for i, f in enumerate(files[::-1])},
        "enhanced CT": {"enhanced.dcm": enhanced_ct(SPEC)},
        "NIfTI": {"volume.nii.gz": nifti(SPEC)},
        "NIfTI, uncompressed": {"volume.nii": nifti(SPEC, compress=False)},
    }


def pixels_in_slice_order(files: dict[str, bytes]) -> list[np.ndarray]:
    from app.studies.series import order_slices

    headers = [h for name, data in files.items() for h in read_header(name, data)]  # type: ignore[union-attr]
    chosen = order_slices(headers)
    reader = FrameReader(files.__getitem__)
    return [reader.decoded(h, (40.0, 400.0)).pixels for h in chosen.slices]


def test_the_three_encodings_decode_to_the_same_pixels() -> None:
    reference = pixels_in_slice_order(encodings()["single frames"])
    assert reference[0][0, 0] == pytest.approx(1.0) and reference[0][-1, -1] < 0.5
    for name, files in encodings().items():
        for mine, theirs in zip(pixels_in_slice_order(files), reference, strict=True):
            np.testing.assert_allclose(mine, theirs, atol=1e-6, err_msg=name)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    # NIfTI has no window of its own: like every shipped CT model, the toy one names its default
    write_model(
        tmp_path / "models",
        "toy",
        with_check=True,
        size=32,
        dicom={"default_window": "soft", "presets": {"soft": [40.0, 400.0]}},
    )
    app = create_app(Settings(models_dir=tmp_path / "models", intra_op_threads=1))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client


def test_the_study_endpoint_answers_alike_for_every_encoding(client: TestClient) -> None:
    answers = {}
    for name, files in encodings().items():
        response = client.post("/v1/models/toy/studies", content=zipped(files))
        assert response.status_code == 200, (name, response.text)
        answers[name] = response.json()
    reference = answers["single frames"]["slices"]
    assert [r["position_mm"] for r in reference] == [-100.0 + 3.0 * i for i in range(5)]
    for name, answer in answers.items():
        assert [r["position_mm"] for r in answer["slices"]] == [r["position_mm"] for r in reference]
        for mine, theirs in zip(answer["slices"], reference, strict=True):
            for cls, p in mine["probabilities"].items():
                assert p == pytest.approx(theirs["probabilities"][cls], abs=1e-5), name
    enhanced = answers["enhanced CT"]["slices"]
    assert [r["frame"] for r in enhanced] == [5, 4, 3, 2, 1]  # stored last slice first
    assert "only the pixels are checked" in " ".join(answers["NIfTI"]["series"]["notes"])


def test_a_volume_larger_than_a_header_read_is_read_whole(tmp_path: Path) -> None:
    from app.studies.pipeline import HEAD_BYTES, read_header_of
    from app.studies.sources import FolderSource, StudyLimits

    volume = nifti(SeriesSpec([0.2] * 5, size=128), compress=False)
    assert len(volume) > max(HEAD_BYTES)
    (tmp_path / "volume.nii").write_bytes(volume)
    found = read_header_of(FolderSource(tmp_path, StudyLimits()), "volume.nii")
    assert not isinstance(found, str) and [h.frame for h in found] == [0, 1, 2, 3, 4]


def test_a_volume_cut_short_is_refused_with_its_reason() -> None:
    from app.errors import InvalidImage
    from app.studies.volumes import nifti_image

    volume = nifti(SeriesSpec([0.2] * 5, size=128), compress=False)
    with pytest.raises(InvalidImage, match="NIfTI file cannot be read"):
        nifti_image(volume[: len(volume) // 2])

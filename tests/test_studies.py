"""Whole studies through `POST /v1/models/{name}/studies` and `ctscan predict-study`, on series
built in code: grouping, the choice of series, order by position, what is skipped and why,
equality across zip / multipart / folder, bad input and limits, the study-level rule."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import wait_ready
from tests.factories import write_model
from tests.series_factory import SeriesSpec, series_files, study_zip, zipped

pytest.importorskip("pydicom")
# dark slices (0.2, like the toy check's training images) with a bright stretch (0.8) in the
# middle; 0.5 is a grey the toy check refuses
GREYS = [0.2, 0.2, 0.25, 0.8, 0.8, 0.75, 0.2, 0.15]
FINDING = {"rule": "smoothed_max", "finding": "bright", "window": 3, "key_slices": 2}


def make_client(tmp_path: Path, **settings: object) -> TestClient:
    root = tmp_path / "models"
    write_model(root, "toy", with_check={"modalities": ["CT"]}, study=FINDING)
    app = create_app(Settings(models_dir=root, intra_op_threads=1, **settings))  # type: ignore[arg-type]
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    with make_client(tmp_path) as test_client:
        wait_ready(test_client)
        yield test_client


def post_zip(client: TestClient, data: bytes, model: str = "toy") -> dict:
    response = client.post(
        f"/v1/models/{model}/studies", content=data, headers={"Content-Type": "application/zip"}
    )
    assert response.status_code == 200, response.text
    return response.json()


def test_a_shuffled_zip_is_grouped_ordered_and_classified(client: TestClient) -> None:
    answer = post_zip(client, study_zip(SeriesSpec(GREYS)))
    series = answer["series"]
    assert series["slices"] == len(GREYS) and series["modality"] == "CT"
    assert series["ordered_by"] == "ImagePositionPatient along the slice normal"
    rows = answer["slices"]
    assert [r["position_mm"] for r in rows] == [-100.0 + 2.5 * i for i in range(len(GREYS))]
    assert [r["instance_number"] for r in rows] == list(range(len(GREYS), 0, -1))
    bright = [r["probabilities"]["bright"] > 0.5 for r in rows]
    assert bright == [g > 0.5 for g in GREYS]
    reasons = {s.get("reason") for s in answer["skipped"]}
    assert {"localizer (scout) images", "not a DICOM file"} <= reasons
    assert "Test^Patient" not in json.dumps(answer) and "P-0001" not in json.dumps(answer)


def test_the_study_answer_follows_the_cards_rule(client: TestClient) -> None:
    study = post_zip(client, study_zip(SeriesSpec(GREYS)))["study"]
    assert study["label"] == "bright"
    assert study["rule"]["rule"] == "smoothed_max"
    assert study["key_slices"] == [3, 4]
    assert study["judgeable_slices"] == len(GREYS)
    assert "not validated on study labels" in study["note"]
    negative = post_zip(client, study_zip(SeriesSpec([0.2] * 6)))["study"]
    assert negative["label"] == "dark"


def test_slices_the_model_cannot_judge_do_not_count(client: TestClient) -> None:
    greys = [0.2, 0.5, 0.5, 0.2]  # mid-grey: outside the toy check
    answer = post_zip(client, study_zip(SeriesSpec(greys)))
    verdicts = [r["applicability"]["verdict"] for r in answer["slices"]]
    assert verdicts == ["in_domain", "outside", "outside", "in_domain"]
    assert answer["study"]["judgeable_slices"] == 2
    assert answer["study"]["left_out"] == {"outside": 2}
    nothing = post_zip(client, study_zip(SeriesSpec([0.5] * 3)))["study"]
    assert nothing["label"] is None and nothing["probabilities"] is None


def test_zip_multipart_and_folder_give_the_same_slices(client: TestClient, tmp_path: Path) -> None:
    spec = SeriesSpec(GREYS)
    files = series_files(spec)
    from_zip = post_zip(client, zipped({f"x/{i}.dcm": f for i, f in enumerate(files)}))
    parts = [
        ("file", (f"{i}.dcm", data, "application/dicom")) for i, data in enumerate(files[::-1])
    ]
    from_parts = client.post("/v1/models/toy/studies", files=parts).json()
    folder = tmp_path / "series"
    for i, data in enumerate(files):
        (folder / f"sub{i % 2}").mkdir(parents=True, exist_ok=True)
        (folder / f"sub{i % 2}" / f"IM{i}").write_bytes(data)
    from typer.testing import CliRunner

    from app.cli import cli

    result = CliRunner().invoke(
        cli,
        ["predict-study", str(folder), "--model", "toy", "--models-dir", str(tmp_path / "models")],
    )
    assert result.exit_code == 0, result.output
    from_folder = json.loads(result.stdout)
    for answer in (from_parts, from_folder):
        assert [r["sop_instance_uid"] for r in answer["slices"]] == [
            r["sop_instance_uid"] for r in from_zip["slices"]
        ]
        for mine, theirs in zip(answer["slices"], from_zip["slices"], strict=True):
            for name, p in mine["probabilities"].items():
                assert p == pytest.approx(theirs["probabilities"][name], abs=1e-6)


def test_a_compressed_transfer_syntax_gives_the_same_answer(client: TestClient) -> None:
    spec = SeriesSpec(GREYS[:4])
    plain = post_zip(client, zipped({str(i): f for i, f in enumerate(series_files(spec))}))
    rle = post_zip(
        client, zipped({str(i): f for i, f in enumerate(series_files(spec, compress=True))})
    )
    assert [r["probabilities"] for r in rle["slices"]] == [
        r["probabilities"] for r in plain["slices"]
    ]


def test_without_positions_the_order_is_the_instance_number_and_said(client: TestClient) -> None:
    answer = post_zip(client, study_zip(SeriesSpec(GREYS, positions=False)))
    assert answer["series"]["ordered_by"].startswith("InstanceNumber")
    assert [r["instance_number"] for r in answer["slices"]] == list(range(1, len(GREYS) + 1))
    assert all(r["position_mm"] is None for r in answer["slices"])


def test_duplicate_positions_gaps_and_mixed_sizes_are_reported(client: TestClient) -> None:
    spec = SeriesSpec([0.2] * 4, z_override={2: -97.5}, sizes=[32, 32, 32, 48])
    notes = post_zip(client, study_zip(spec))["series"]["notes"]
    assert "1 slice(s) share a position with the slice before them" in notes
    assert any(note.startswith("mixed image sizes") for note in notes)
    gapped = SeriesSpec([0.2] * 5, z_override={3: -90.0, 4: -87.5})  # 2.5 mm steps, one of 5
    notes = post_zip(client, study_zip(gapped))["series"]["notes"]
    assert "1 gap(s) in the series: steps of [5.0] mm, spacing 2.5 mm" in notes


def test_the_series_with_most_slices_is_chosen_and_the_others_named(client: TestClient) -> None:
    big, small = SeriesSpec(GREYS), SeriesSpec([0.2] * 3, series_uid="1.2.3.4.5", series_number=3)
    files = {f"a{i}": f for i, f in enumerate(series_files(big))}
    files |= {f"b{i}": f for i, f in enumerate(series_files(small))}
    answer = post_zip(client, zipped(files))
    assert answer["series"]["series_instance_uid"] == big.series_uid
    skipped = {s.get("series_instance_uid"): s["reason"] for s in answer["skipped"]}
    assert skipped["1.2.3.4.5"] == "fewer slices than the chosen series (8)"


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"modality": "MR"}, "modality MR, not CT"),
        ({"image_type": ("DERIVED", "SECONDARY", "MPR")}, "derived or secondary images"),
        ({"orientation": (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)}, "not axial"),
    ],
)
def test_series_that_must_not_be_classified_are_refused_with_the_reason(
    client: TestClient, change: dict, fragment: str
) -> None:
    files = series_files(SeriesSpec(GREYS, **change))
    response = client.post(
        "/v1/models/toy/studies",
        content=zipped({str(i): f for i, f in enumerate(files)}),
        headers={"Content-Type": "application/zip"},
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert fragment in response.json()["detail"]


def test_files_of_two_patients_are_refused(client: TestClient) -> None:
    one = series_files(SeriesSpec(GREYS[:3]))
    other = series_files(SeriesSpec(GREYS[:3], patient="Other^Person", patient_id="P-0002"))
    response = client.post(
        "/v1/models/toy/studies",
        content=zipped({f"{i}": f for i, f in enumerate(one + other)}),
        headers={"Content-Type": "application/zip"},
    )
    assert response.status_code == 422
    assert "more than one patient" in response.json()["detail"]
    assert "Other^Person" not in response.text


def test_a_zip_bomb_and_broken_archives_are_refused(client: TestClient) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("bomb.dcm", b"\0" * (8 * 1024 * 1024))
    response = client.post(
        "/v1/models/toy/studies",
        content=buffer.getvalue(),
        headers={"Content-Type": "application/zip"},
    )
    assert response.status_code == 422 and "zip bomb" in response.json()["detail"]
    truncated = study_zip(SeriesSpec(GREYS))[:-100]
    response = client.post("/v1/models/toy/studies", content=truncated)
    assert response.status_code == 422
    empty = client.post("/v1/models/toy/studies", content=b"")
    assert empty.status_code == 400


def test_limits_answer_413_naming_the_limit(tmp_path: Path) -> None:
    with make_client(
        tmp_path, max_study_files=5, max_study_slices=6, max_study_bytes=200_000
    ) as client:
        wait_ready(client)
        many = zipped({str(i): f for i, f in enumerate(series_files(SeriesSpec([0.2] * 6)))})
        response = client.post("/v1/models/toy/studies", content=many)
        assert response.status_code == 413 and "the limit is 5" in response.json()["detail"]
        big = client.post("/v1/models/toy/studies", content=b"PK\x03\x04" + b"x" * 300_000)
        assert big.status_code == 413
        seven = SeriesSpec([0.2] * 7)
        parts = [
            ("file", (str(i), f, "application/dicom"))
            for i, f in enumerate(series_files(seven)[:5])
        ]
        assert client.post("/v1/models/toy/studies", files=parts).status_code == 200
    with make_client(tmp_path, max_study_slices=6) as client:
        wait_ready(client)
        seven = zipped({str(i): f for i, f in enumerate(series_files(SeriesSpec([0.2] * 7)))})
        response = client.post("/v1/models/toy/studies", content=seven)
        assert response.status_code == 413 and "the limit is 6" in response.json()["detail"]


def test_no_dicom_at_all_is_a_clear_422(client: TestClient) -> None:
    data = zipped({"a.txt": b"hello", "b.png": b"\x89PNG\r\n\x1a\n"})
    response = client.post("/v1/models/toy/studies", content=data)
    assert response.status_code == 422
    assert "no series to classify" in response.json()["detail"]


def test_a_single_dicom_file_is_a_one_slice_study(client: TestClient) -> None:
    (data,) = series_files(SeriesSpec([0.8]))
    answer = client.post(
        "/v1/models/toy/studies", content=data, headers={"Content-Type": "application/dicom"}
    ).json()
    assert answer["series"]["slices"] == 1 and answer["study"]["label"] == "bright"
    assert np.isclose(sum(answer["study"]["probabilities"].values()), 1.0)


def test_a_series_of_real_head_ct_slices_answers_as_single_uploads(tmp_path: Path) -> None:
    """Shipped head CT model, slices of the shared dataset written as a DICOM series through the
    brain window: each slice's answer equals the single-slice endpoint's on the same file."""
    from PIL import Image

    from tests.factories import SHIPPED_MODELS
    from tests.series_factory import slice_file

    folder = SHIPPED_MODELS.parent.parent / "shared" / "datasets" / "head_ct" / "images"
    if not folder.is_dir():
        pytest.skip("shared datasets absent")
    greys = [
        np.asarray(Image.open(p).convert("L").resize((128, 128)), np.float32) / 255
        for p in sorted(folder.glob("*.png"))[:6]
    ]
    files = [
        slice_file(SeriesSpec([0.0] * 6), i, i + 1, pixels=g, window=(40.0, 80.0))
        for i, g in enumerate(greys)
    ]
    app = create_app(Settings(models_dir=SHIPPED_MODELS, intra_op_threads=2))
    with TestClient(app) as client:
        wait_ready(client, timeout=120)
        answer = post_zip(
            client, zipped({f"{i}.dcm": f for i, f in enumerate(files)}), "head-ct-hemorrhage"
        )
        for row in answer["slices"]:
            single = client.post(
                "/v1/models/head-ct-hemorrhage/predict", files={"file": ("x", files[row["index"]])}
            ).json()
            assert row["applicability"] == single["applicability"]
            for name, p in row["probabilities"].items():
                assert p == pytest.approx(single["probabilities"][name], abs=1e-5)
        assert answer["study"]["rule"]["rule"] == "smoothed_max"


def related_body(files: list[bytes], boundary: str = "stow-boundary-1") -> tuple[bytes, str]:
    """A STOW-RS shaped body: one `application/dicom` part per file."""
    chunks = []
    for data in files:
        chunks.append(
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data + b"\r\n"
        )
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'


def test_a_stow_rs_shaped_body_is_a_study_too(client: TestClient) -> None:
    files = series_files(SeriesSpec(GREYS))
    body, content_type = related_body(files[::-1])
    answer = client.post(
        "/v1/models/toy/studies", content=body, headers={"Content-Type": content_type}
    ).json()
    from_zip = post_zip(client, zipped({str(i): f for i, f in enumerate(files)}))
    assert [r["sop_instance_uid"] for r in answer["slices"]] == [
        r["sop_instance_uid"] for r in from_zip["slices"]
    ]
    queued = client.post(
        "/v1/models/toy/studies",
        content=body,
        headers={"Content-Type": content_type, "Prefer": "respond-async"},
    )
    assert queued.status_code == 202
    missing = client.post(
        "/v1/models/toy/studies", content=body, headers={"Content-Type": "multipart/related"}
    )
    assert missing.status_code == 400 and "boundary" in missing.json()["detail"]


def test_key_slice_heatmaps_on_request(tmp_path: Path) -> None:
    root = tmp_path / "models"
    write_model(root, "mapped", with_check=True, with_map=True, study=FINDING)
    with TestClient(create_app(Settings(models_dir=root, intra_op_threads=1))) as client:
        wait_ready(client)
        data = study_zip(SeriesSpec(GREYS))
        plain = client.post("/v1/models/mapped/studies", content=data).json()["study"]
        assert "key_slice_heatmaps" not in plain
        study = client.post("/v1/models/mapped/studies?heatmaps=true", content=data).json()["study"]
        heatmaps = study["key_slice_heatmaps"]
        assert [h["index"] for h in heatmaps] == study["key_slices"]
        assert all(h["overlay_png_base64"].startswith("iVBOR") for h in heatmaps)  # PNG


def test_decoding_in_threads_gives_the_same_answer(tmp_path: Path) -> None:
    """Threads decode each batch before it runs on the CPU, and the next batch while one runs on
    an accelerator: same slices, same order, same answers as one thread decoding in turn."""
    import dataclasses

    from app.studies.pipeline import StudySettings, analyse_study
    from app.studies.sources import StudyLimits, ZipSource
    from tests.factories import loaded_store

    write_model(tmp_path, "toy", with_check={"modalities": ["CT"]}, study=FINDING)
    model = loaded_store(tmp_path, intra_op_threads=1).get("toy")
    data = study_zip(SeriesSpec(GREYS * 3))
    answers = []
    ways = [("CPUExecutionProvider", 1), ("CPUExecutionProvider", 4), ("CUDAExecutionProvider", 4)]
    for provider, workers in ways:
        as_if = dataclasses.replace(model, provider=provider)  # CUDA: pads batches, decodes ahead
        source = ZipSource(io.BytesIO(data), StudyLimits(100, 10**9, 100))
        answers.append(analyse_study(as_if, source, StudySettings(5, 100, False, workers)))
        source.close()
    assert answers[0]["slices"] == answers[1]["slices"] == answers[2]["slices"]
    assert len(answers[0]["slices"]) == 24


@pytest.mark.parametrize(
    "name",
    [
        "fuzz-dicom-study-bad-slope.bin",  # a slope that is no number, no pixels after all
        "fuzz-dicom-enhanced-bad-vr.bin",  # a multi-frame header with an unknown VR inside
        "fuzz-dicom-header-bad-vr.bin",  # Columns with an unknown VR, read late by pydicom
    ],
)
def test_files_that_fail_late_are_a_422(client: TestClient, name: str) -> None:
    """Found by tests/fuzz/fuzz_study.py: headers that read, then fail in pydicom."""
    data = (Path(__file__).parent / "data" / name).read_bytes()
    response = client.post("/v1/models/toy/studies", content=zipped({"IM0": data}))
    assert response.status_code == 422, response.text

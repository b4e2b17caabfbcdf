"""`?output=dicom` on the study endpoint: the SR and the key slices' Secondary Captures, in the
source study, valid on read-back; zipped or multipart/related; and what is refused."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.conftest import wait_ready
from tests.factories import write_model
from tests.series_factory import SeriesSpec, nifti, study_zip
from tests.test_studies import FINDING, GREYS

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("highdicom")


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    root = tmp_path / "models"
    write_model(root, "mapped", with_check={"modalities": ["CT"]}, with_map=True, study=FINDING)
    app = create_app(Settings(models_dir=root, intra_op_threads=1, data_dir=tmp_path / "data"))
    with TestClient(app, raise_server_exceptions=False) as test_client:
        wait_ready(test_client)
        yield test_client


def test_dicom_results_are_an_sr_and_captures_in_the_source_study(client: TestClient) -> None:
    spec = SeriesSpec(GREYS)
    data = study_zip(spec)
    answer = client.post("/v1/models/mapped/studies", content=data).json()
    zipped = client.post("/v1/models/mapped/studies?output=dicom", content=data)
    assert zipped.status_code == 200 and zipped.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(zipped.content))
    names = archive.namelist()
    assert names == ["SR.dcm"] + [
        f"SC-{i + 1}.dcm" for i in range(len(answer["study"]["key_slices"]))
    ]
    datasets = [pydicom.dcmread(io.BytesIO(archive.read(n))) for n in names]
    report = datasets[0]
    assert report.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert report.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    for dataset in datasets:
        assert dataset.StudyInstanceUID == spec.study_uid and dataset.PatientID == spec.patient_id
        assert dataset.SeriesInstanceUID != spec.series_uid
        assert dataset.SOPInstanceUID not in {r["sop_instance_uid"] for r in answer["slices"]}
    captures = datasets[1:]
    assert {c.SOPClassUID for c in captures} == {"1.2.840.10008.5.1.4.1.1.7"}
    assert all(
        c.BurnedInAnnotation == "YES" and c.PatientOrientation == ["L", "P"] for c in captures
    )
    assert len({c.SeriesInstanceUID for c in captures}) == 1


def test_dicom_results_as_multipart_related_when_accepted(client: TestClient) -> None:
    data = study_zip(SeriesSpec(GREYS))
    accept = 'multipart/related; type="application/dicom"'
    answer = client.post(
        "/v1/models/mapped/studies?output=dicom", content=data, headers={"Accept": accept}
    )
    assert answer.headers["content-type"].startswith("multipart/related")
    assert answer.content.count(b"Content-Type: application/dicom") == 3  # SR + 2 key slices


def test_what_dicom_results_cannot_be_made_of_is_refused(client: TestClient) -> None:
    bad = client.post("/v1/models/mapped/studies?output=pdf", content=study_zip(SeriesSpec(GREYS)))
    assert bad.status_code == 400 and "output" in bad.json()["detail"]
    volume = client.post("/v1/models/mapped/studies?output=dicom", content=nifti(SeriesSpec(GREYS)))
    assert volume.status_code == 422 and "NIfTI" in volume.json()["detail"]


def test_a_job_keeps_its_dicom_results(client: TestClient) -> None:
    data = study_zip(SeriesSpec(GREYS))
    queued = client.post(
        "/v1/models/mapped/studies?output=dicom", content=data, headers={"Prefer": "respond-async"}
    )
    location = queued.headers["Location"]
    for _ in range(300):
        job = client.get(location).json()
        if job["status"] == "done":
            break
        import time

        time.sleep(0.05)
    delivered = job["result"]["dicom_results"]
    assert delivered == {"objects": 3, "url": f"{location}/results", "stored": False}
    kept = client.get(delivered["url"])
    assert zipfile.ZipFile(io.BytesIO(kept.content)).namelist()[0] == "SR.dcm"
    assert client.post(f"{location}/retry").status_code == 409  # nothing to store it in
    assert client.post("/v1/models/mapped/pacs/studies/1.2.3").status_code == 409  # no PACS

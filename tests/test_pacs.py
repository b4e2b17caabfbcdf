"""The service in a PACS, against a real Orthanc (Debian's packages) on loopback and a real
`ctscan serve`: a study pulled by StudyInstanceUID gets its SR and captures stored back; Orthanc
pushes new series (the compose profile's Lua script) and the results arrive; unrouted and
unreadable instances are refused with the reason; a PACS that is down fails the job clearly and
a retry succeeds once it is back; results the PACS refuses are kept and sent again."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.factories import write_model
from tests.orthanc import AUTH, LUA, MISSING, Orthanc, installed
from tests.series_factory import SeriesSpec, series_files
from tests.server import free_port, start_server
from tests.test_studies import FINDING, GREYS, related_body

pydicom = pytest.importorskip("pydicom")
pytest.importorskip("highdicom")
pytestmark = pytest.mark.skipif(not installed(), reason=MISSING)
ROUTING = """
[[rule]]
model = "toy"
when = { Modality = "CT", BodyPartExamined = ["HEAD", "BRAIN"] }

[[rule]]
model = "not-served"
when = { Modality = "CR" }
"""
# while the flag file exists, Orthanc refuses the service's results (Manufacturer "ctscan")
REFUSE_RESULTS = """
function ReceivedInstanceFilter(dicom, origin, info)
  local flag = io.open('{flag}', 'r')
  if flag == nil then return true end
  flag:close()
  return dicom.Manufacturer ~= 'ctscan'
end
"""


def spec(number: int, **changes: Any) -> SeriesSpec:
    """A head CT series of its own study (dark slices, a bright stretch in the middle)."""
    study = f"1.2.826.0.1.3680043.10.1234.{100 + number}"
    return SeriesSpec(GREYS, study_uid=study, series_uid=f"{study}.2", body_part="HEAD", **changes)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Orthanc (A: pulled from; B: pushes with the Lua script) and the service, which stores
    its results into whichever Orthanc it was configured with: here A."""
    root = tmp_path_factory.mktemp("pacs")
    write_model(root / "models", "toy", with_check={"modalities": ["CT"]}, with_map=True,
                study=FINDING)  # fmt: skip
    (root / "routing.toml").write_text(ROUTING)
    service_port = free_port()
    service_url = f"http://127.0.0.1:{service_port}"
    refuse = root / "refuse.lua"
    refuse.write_text(REFUSE_RESULTS.replace("{flag}", str(root / "refuse-results")))
    pulled = Orthanc(root / "orthanc-a", lua=(refuse,))
    pulled.start()
    env = {
        "CTSCAN_PACS_URL": pulled.dicomweb,
        "CTSCAN_PACS_USERNAME": AUTH[0],
        "CTSCAN_PACS_PASSWORD": AUTH[1],
        "CTSCAN_PACS_RETRIES": "2",
        "CTSCAN_PACS_BACKOFF_S": "0.2",
        "CTSCAN_PACS_TIMEOUT_S": "10",
        "CTSCAN_ROUTING_FILE": str(root / "routing.toml"),
        "CTSCAN_DATA_DIR": str(root / "data"),
        "CTSCAN_INTRA_OP_THREADS": "1",
    }
    server, base, _ = start_server(root / "models", port=service_port, env=env)
    try:
        yield {"pulled": pulled, "service": base, "root": root, "service_url": service_url}
    finally:
        server.terminate()
        server.communicate(timeout=30)
        pulled.remove()


def wait_job(base: str, location: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{base}{location}").json()
        if job["status"] not in ("queued", "running"):
            return dict(job)
        time.sleep(0.1)
    raise AssertionError(f"job {location} still running after {timeout} s")


def pull_and_store(base: str, study_uid: str) -> tuple[str, dict[str, Any]]:
    """Pull a study into the toy model with store=true: the job's URL and the finished job."""
    queued = httpx.post(f"{base}/v1/models/toy/pacs/studies/{study_uid}?store=true")
    assert queued.status_code == 202, queued.text
    location = queued.headers["Location"]
    return location, wait_job(base, location)


def results_in(orthanc: Orthanc, study: str) -> dict[str, list[Any]]:
    """The service's SR and captures stored in the Orthanc study, read back with pydicom."""
    found: dict[str, list[Any]] = {"SR": [], "SC": []}
    for series in orthanc.series_of(study):
        if series["MainDicomTags"].get("Manufacturer") != "ctscan":
            continue
        for instance in series["Instances"]:
            dataset = pydicom.dcmread(io.BytesIO(orthanc.instance_file(instance)))
            found["SR" if dataset.Modality == "SR" else "SC"].append(dataset)
    return found


def wait_results(orthanc: Orthanc, study: str, timeout: float = 60) -> dict[str, list[Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = results_in(orthanc, study)
        if found["SR"] and found["SC"]:
            return found
        time.sleep(0.25)
    raise AssertionError("no results arrived in Orthanc")


def content_items(dataset: Any) -> Iterator[Any]:
    for item in dataset.get("ContentSequence", []):
        yield item
        yield from content_items(item)


def meaning(item: Any) -> str:
    return str(item.ConceptNameCodeSequence[0].CodeMeaning)


def check_results(found: dict[str, list[Any]], source: SeriesSpec, answer: dict[str, Any]) -> None:
    """The SR and captures say what the answer says, in the source study, patient copied."""
    (report,) = found["SR"]
    study = answer["study"]
    for dataset in [report, *found["SC"]]:
        assert dataset.StudyInstanceUID == source.study_uid
        assert dataset.PatientID == source.patient_id and dataset.PatientName == source.patient
        assert dataset.SeriesInstanceUID != source.series_uid
    items = list(content_items(report))
    numbers = {meaning(i): float(i.MeasuredValueSequence[0].NumericValue) for i in items
               if i.ValueType == "NUM" and meaning(i).startswith("Probability of ")}  # fmt: skip
    assert numbers == pytest.approx(
        {f"Probability of {k}": v for k, v in study["probabilities"].items()}, abs=1e-6
    )
    finding = [i for i in items if i.ValueType == "CODE" and meaning(i) == "Finding"]
    assert finding[0].ConceptCodeSequence[0].CodeMeaning == study["label"]
    texts = [str(i.TextValue) for i in items if i.ValueType == "TEXT"]
    assert "toy" in texts and any("Research use only" in t for t in texts)
    assert any(t.startswith("model.onnx sha256 ") for t in texts)
    keys = {answer["slices"][k]["sop_instance_uid"] for k in study["key_slices"]}
    referenced = {i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in items
                  if i.ValueType == "IMAGE"}  # fmt: skip
    assert keys <= referenced
    assert len(found["SC"]) == len(study["key_slices"])
    for capture in found["SC"]:
        assert capture.BurnedInAnnotation == "YES" and capture.Modality == "OT"
        assert capture.pixel_array.shape[2] == 3 and capture.pixel_array.std() > 0


def test_a_pulled_study_gets_its_sr_and_captures_stored_back(stack: dict[str, Any]) -> None:
    orthanc, base = stack["pulled"], stack["service"]
    source = spec(1)
    study = orthanc.upload(series_files(source))
    _, job = pull_and_store(base, source.study_uid)
    assert job["status"] == "done", job
    delivered = job["result"]["dicom_results"]
    assert delivered["stored"] is True and delivered["objects"] == 1 + len(
        job["result"]["study"]["key_slices"]
    )
    check_results(results_in(orthanc, study), source, job["result"])


def test_a_pulled_study_answers_as_the_same_study_uploaded(stack: dict[str, Any]) -> None:
    orthanc, base = stack["pulled"], stack["service"]
    source = spec(2)
    files = series_files(source)
    orthanc.upload(files)
    pulled = httpx.post(f"{base}/v1/models/toy/pacs/studies/{source.study_uid}", timeout=60)
    assert pulled.status_code == 200, pulled.text
    body, content_type = related_body(files)
    uploaded = httpx.post(
        f"{base}/v1/models/toy/studies", content=body, headers={"Content-Type": content_type}
    ).json()
    assert pulled.json()["slices"] == uploaded["slices"]
    missing = httpx.post(f"{base}/v1/models/toy/pacs/studies/1.2.3.4.5.6")
    assert missing.status_code == 404 and "no such study" in missing.json()["detail"]
    bad = httpx.post(f"{base}/v1/models/toy/pacs/studies/1.2.x")
    assert bad.status_code == 400


def test_orthanc_pushes_new_series_and_the_results_arrive(
    stack: dict[str, Any], tmp_path: Path
) -> None:
    """A second Orthanc runs the compose profile's Lua script: a new series, once stable, goes
    to the service's STOW-RS endpoint; the job stores its results into the first Orthanc (the
    service's PACS), not back into the sender, so nothing loops."""
    pushing = Orthanc(tmp_path / "orthanc-b", service_url=stack["service_url"], lua=(LUA,))
    pushing.start()
    try:
        source = spec(3)
        pushing.upload(series_files(source))
        deadline = time.monotonic() + 60
        study = None
        while study is None and time.monotonic() < deadline:
            matches = (
                stack["pulled"]
                .post(
                    "/tools/find",
                    {"Level": "Study", "Query": {"StudyInstanceUID": source.study_uid}},
                )
                .json()
            )
            study = matches[0] if matches else None
            time.sleep(0.25)
        assert study is not None, "the results never reached the service's PACS"
        found = wait_results(stack["pulled"], study)
        assert found["SR"][0].StudyInstanceUID == source.study_uid
    finally:
        pushing.remove()


def test_unrouted_and_unreadable_instances_are_refused_with_the_reason(
    stack: dict[str, Any],
) -> None:
    base = stack["service"]
    mr = series_files(spec(4, modality="MR"))  # no rule
    cr = series_files(spec(7, modality="CR"))  # a rule whose model is not served
    body, content_type = related_body([*mr, *cr, b"not a DICOM file"])
    answer = httpx.post(
        f"{base}/dicomweb/studies", content=body, headers={"Content-Type": content_type}
    )
    assert answer.status_code == 409
    failed = answer.json()["00081198"]["Value"]
    reasons = sorted(item["00081197"]["Value"][0] for item in failed)
    assert reasons == [0x0110] * (len(mr) + len(cr)) + [0xC000]
    assert answer.headers["content-type"].startswith("application/dicom+json")
    plain = httpx.post(f"{base}/dicomweb/studies", content=b"x")
    assert plain.status_code == 415


def test_a_pacs_that_is_down_fails_the_job_and_a_retry_succeeds(stack: dict[str, Any]) -> None:
    orthanc, base = stack["pulled"], stack["service"]
    source = spec(5)
    study = orthanc.upload(series_files(source))
    orthanc.stop()
    try:
        location, job = pull_and_store(base, source.study_uid)
    finally:
        orthanc.start()
    assert job["status"] == "failed"
    assert job["error"]["type"] == "/problems/pacs-unavailable"
    assert "after 3 tries" in job["error"]["detail"] and AUTH[1] not in str(job)
    retried = httpx.post(f"{base}{location}/retry")
    assert retried.status_code == 202
    job = wait_job(base, location)
    assert job["status"] == "done" and job["result"]["dicom_results"]["stored"] is True
    check_results(results_in(orthanc, study), source, job["result"])
    again = httpx.post(f"{base}{location}/retry")
    assert again.status_code == 409


def test_results_the_pacs_refuses_are_kept_and_sent_again(stack: dict[str, Any]) -> None:
    orthanc, base = stack["pulled"], stack["service"]
    source = spec(6)
    study = orthanc.upload(series_files(source))
    flag = stack["root"] / "refuse-results"
    flag.touch()
    try:
        location, job = pull_and_store(base, source.study_uid)
    finally:
        flag.unlink()
    delivered = job["result"]["dicom_results"]
    assert job["status"] == "done" and delivered["stored"] is False
    assert delivered["store_error"]["type"] == "/problems/pacs-refused"
    assert results_in(orthanc, study) == {"SR": [], "SC": []}
    kept = httpx.get(f"{base}{delivered['url']}")
    assert kept.headers["content-type"] == "application/zip"
    import zipfile

    names = zipfile.ZipFile(io.BytesIO(kept.content)).namelist()
    assert names[0] == "SR.dcm" and len(names) == delivered["objects"]
    assert httpx.post(f"{base}{location}/retry").status_code == 202
    job = wait_job(base, location)
    assert job["result"]["dicom_results"]["stored"] is True
    found = results_in(orthanc, study)
    assert len(found["SR"]) == 1 and np.all([c.BurnedInAnnotation == "YES" for c in found["SC"]])

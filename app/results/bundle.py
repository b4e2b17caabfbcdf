"""A study answer's DICOM results: the SR and one Secondary Capture per key slice, built from the
classified series' own headers; encoded one file per object, zipped or as multipart/related."""

from __future__ import annotations

import base64
import io
from typing import Any

import highdicom as hd
import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from app.errors import InvalidImage
from app.inference.predict import default_window
from app.inference.store import LoadedModel
from app.results.captures import key_slice_capture
from app.results.report import KeySlice, ModelIdentity, structured_report
from app.studies.series import ChosenSeries, SliceHeader
from app.studies.sources import StudySource
from app.studies.volumes import FrameReader

# Type 2 attributes of the patient and study modules (present, possibly empty, in a conformant
# image): the results copy them, so one missing from a source file is added empty ("unknown")
PATIENT_STUDY_TYPE2 = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
    "ReferringPhysicianName", "StudyID", "AccessionNumber",
)  # fmt: skip
NOT_DICOM = "DICOM results need a DICOM series; this study was sent as a NIfTI volume"


def study_results(
    model: LoadedModel, source: StudySource, chosen: ChosenSeries, answer: dict[str, Any]
) -> list[Dataset]:
    """The SR, then the key slices' captures, all in the source study."""
    identity = ModelIdentity(model.card.name, model.card.version, model.card.sha256)
    study = answer["study"]
    keys = [key_slice(source, chosen.slices[i]) for i in study["key_slices"]]
    # the study's patient and study modules come from the first key slice, else the first slice
    reference = keys[0].header if keys else key_slice(source, chosen.slices[0]).header
    results: list[Dataset] = [structured_report(study, identity, keys, reference, hd.UID())]
    captures_uid = hd.UID()
    pictures = key_pictures(model, source, chosen, study)
    for number, (index, key) in enumerate(zip(study["key_slices"], keys, strict=True), 1):
        caption = slice_caption(answer["slices"][index], study.get("label"), index)
        results.append(
            key_slice_capture(pictures[index], key, caption, identity, captures_uid, number)
        )
    return results


def key_slice(source: StudySource, header: SliceHeader) -> KeySlice:
    """The header (no pixels) of a slice's instance, and its frame number when multi-frame."""
    try:
        dataset = dcmread(io.BytesIO(source.read(header.member)), stop_before_pixels=True)
    except InvalidDicomError:
        raise InvalidImage(NOT_DICOM) from None
    for keyword in PATIENT_STUDY_TYPE2:
        if keyword not in dataset:
            setattr(dataset, keyword, "")
    return KeySlice(dataset, None if header.frame is None else header.frame + 1)


def key_pictures(
    model: LoadedModel, source: StudySource, chosen: ChosenSeries, study: dict[str, Any]
) -> dict[int, bytes]:
    """Each key slice as a PNG: its heatmap overlay when the answer has one, else the slice."""
    pictures = {
        item["index"]: base64.b64decode(item["overlay_png_base64"])
        for item in study.get("key_slice_heatmaps", [])
    }
    reader = FrameReader(source.read)
    for index in study["key_slices"]:
        if index not in pictures:
            decoded = reader.decoded(chosen.slices[index], default_window(model))
            pictures[index] = grey_png(decoded.pixels)
    return pictures


def grey_png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((np.clip(pixels, 0, 1) * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def slice_caption(row: dict[str, Any], label: str | None, index: int) -> str:
    probability = row["probabilities"].get(label) if label else None
    said = f"{label} {probability:.2f} on this slice" if probability is not None else "no label"
    return f"study: {label or 'not assessed'}; key slice {index + 1}: {said}"


def encoded(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()

"""Header values read from pydicom's raw elements equal pydicom's own conversion of them, on
every file of pydicom's test set (explicit, implicit and big-endian files among them)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("pydicom")

import pydicom

from app.imaging.dicom_values import TAGS, HeaderValues
from tests.factories import dicom_bytes
from tests.test_dicom_native import HIGH_BITS_SET, PYDICOM_FILES

UNSIGNED = {"SamplesPerPixel", "Rows", "Columns", "BitsAllocated", "BitsStored"}
UNSIGNED |= {"PixelRepresentation"}


def converted(dataset: Any, keyword: str) -> Any:
    """pydicom's typed value, as `HeaderValues` gives it."""
    value = dataset.get(keyword)
    if keyword in UNSIGNED:
        return None if value in (None, "") else int(value)
    if value is None or value == "":
        return []
    values = value if isinstance(value, pydicom.multival.MultiValue) else [value]
    return [str(v).strip() for v in values]


def parsed(data: bytes) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)


def parses(path: Path) -> bool:
    try:
        parsed(path.read_bytes())
    except Exception:  # files of the set that are meant to fail (no file meta, ...)
        return False
    return True


@pytest.mark.parametrize("path", [p for p in PYDICOM_FILES if parses(p)], ids=lambda p: p.name)
def test_values_are_pydicoms(path: Path) -> None:
    data = path.read_bytes()
    values = HeaderValues(parsed(data))
    for keyword in TAGS:
        ours = values.unsigned(keyword) if keyword in UNSIGNED else values.texts(keyword)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert ours == converted(parsed(data), keyword), keyword


def test_typed_reads() -> None:
    data = dicom_bytes(HIGH_BITS_SET, slope=0.5, window=(40.0, 400.0), implicit_vr=True)
    dataset = parsed(data)
    values = HeaderValues(dataset)
    assert values.unsigned("Rows") == 2 and values.unsigned("Columns") == 3
    assert values.numbers("RescaleSlope") == [0.5] and values.numbers("WindowWidth") == [400.0]
    assert values.text("Modality") == "CT" and values.text("PatientName") == "Test^Patient"
    assert values.integer("NumberOfFrames") is None and values.texts("BodyPartExamined") == []
    assert dataset.Rows == 2  # converted by pydicom now: read through its value
    assert values.unsigned("Rows") == 2


@pytest.mark.parametrize(
    ("stored", "number"), [(b"12", 12), (b" 3 ", 3), (b"1.0", 1), (b"1.5 ", None), (b"x", None)]
)
def test_integer_strings_as_files_hold_them(stored: bytes, number: int | None) -> None:
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    dataset = parsed(dicom_bytes(HIGH_BITS_SET))
    tag = TAGS["InstanceNumber"]
    dataset[tag] = RawDataElement(Tag(tag), "IS", len(stored), stored, 0, False, True)
    assert HeaderValues(dataset).integer("InstanceNumber") == number

"""A key slice as a Secondary Capture: the slice with its heatmap overlay (or the slice alone when
the model has no activation map), scaled up for reading, over a caption band that burns in the
research-use statement, the model and the answer, so a viewer that ignores SR still shows it."""

from __future__ import annotations

import io
from typing import Any

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset

from app.results.codes import MANUFACTURER, RESEARCH_USE
from app.results.report import KeySlice, ModelIdentity

SC_SERIES_NUMBER = 9902
SIDE = 512  # pixels of the picture, caption band below it
CAPTION_LINE = 18
CAPTION_LINES = 3


def key_slice_capture(
    picture_png: bytes,
    key: KeySlice,
    caption: str,
    model: ModelIdentity,
    series_uid: str,
    instance_number: int,
) -> hd.sc.SCImage:
    """One Secondary Capture in the key slice's study, patient and study modules copied."""
    orientation = patient_orientation(key.header)
    pixels = captioned(picture_png, [RESEARCH_USE, f"{model.name} v{model.version}", caption])
    capture = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=key.header,
        pixel_array=pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid,
        series_number=SC_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=instance_number,
        manufacturer=MANUFACTURER,
        patient_orientation=orientation or ("L", "P"),
        series_description=f"{model.name} v{model.version} key slices (research use only)",
    )
    if orientation is None:  # unknown: left empty (Type 2), not guessed
        capture["PatientOrientation"].value = None
    capture.BurnedInAnnotation = "YES"
    return capture


AXES = (("L", "R"), ("P", "A"), ("H", "F"))  # the +/- x, y, z directions of DICOM's LPS axes


def patient_orientation(header: Dataset) -> tuple[str, str] | None:
    """Where the rows and columns of the slice point (PatientOrientation, one letter each): from
    ImageOrientationPatient, else the source's own PatientOrientation; cropping and resizing
    for the model keep them."""
    cosines = header.get("ImageOrientationPatient")
    if cosines is not None and len(cosines) == 6:
        return main_direction(cosines[:3]), main_direction(cosines[3:])
    given = header.get("PatientOrientation")
    if given is not None and len(given) == 2 and all(v in "LRAPHF" and v for v in given):
        return str(given[0]), str(given[1])
    return None


def main_direction(cosines: Any) -> str:
    values = [float(v) for v in cosines]
    axis = max(range(3), key=lambda i: abs(values[i]))
    return AXES[axis][0 if values[axis] >= 0 else 1]


def captioned(picture_png: bytes, lines: list[str]) -> np.ndarray:
    """The picture scaled to SIDE pixels wide above a black band with `lines` in white (RGB)."""
    picture = Image.open(io.BytesIO(picture_png)).convert("RGB")
    height = round(picture.height * SIDE / picture.width)
    band = CAPTION_LINE * CAPTION_LINES + 8
    canvas = Image.new("RGB", (SIDE, height + band))
    canvas.paste(picture.resize((SIDE, height), Image.Resampling.BICUBIC), (0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default(size=14)
    for row, text in enumerate(lines[:CAPTION_LINES]):
        draw.text((6, height + 4 + row * CAPTION_LINE), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas, dtype=np.uint8)

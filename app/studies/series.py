"""From a heap of DICOM headers to one ordered series: group by study and series, leave out
what a slice classifier must not see (localizers, secondary captures, derived or non-axial
series, other modalities), pick the series with the most slices, and order it along the patient
axis by ImagePositionPatient projected on the ImageOrientationPatient normal."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.errors import InvalidImage
from app.imaging.dicom import NativeImage

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
AXIAL_COSINE = 0.9  # |normal · z| at or above this counts as axial (about 26° of tilt)
SAME_POSITION_MM = 0.01


@dataclass(frozen=True)
class SliceHeader:
    """What grouping and ordering need of one file (never patient data except a hash)."""

    member: str  # where the file is in the upload (archive member or part number)
    study_uid: str
    series_uid: str
    sop_uid: str
    modality: str
    image_type: tuple[str, ...]
    sop_class: str
    instance_number: int | None
    position: tuple[float, float, float] | None
    orientation: tuple[float, ...] | None
    size: tuple[int, int]
    patient_key: str
    series_number: int | None = None
    frame: int | None = None  # the frame of a multi-frame object or the slice of a volume
    pixels: NativeImage | None = None  # where its pixels lie, when no second parse is needed


@dataclass
class ChosenSeries:
    """The series to classify, in slice order, and what the choice left out and noticed."""

    slices: list[SliceHeader]
    positions_mm: list[float | None]
    ordered_by: str
    skipped: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def choose_series(headers: list[SliceHeader], modalities: list[str]) -> ChosenSeries:
    """The series to classify among `headers`; InvalidImage when none qualifies or the files
    belong to more than one patient."""
    if len({h.patient_key for h in headers}) > 1:
        raise InvalidImage("the files belong to more than one patient; send one study at a time")
    groups: dict[tuple[str, str], list[SliceHeader]] = defaultdict(list)
    for header in headers:
        groups[(header.study_uid, header.series_uid)].append(header)
    candidates, skipped = [], []
    for (_, series_uid), members in groups.items():
        reason = why_left_out(members, modalities)
        if reason:
            skipped.append(
                {"series_instance_uid": series_uid, "slices": len(members), "reason": reason}
            )
        else:
            candidates.append(members)
    if not candidates:
        reasons = "; ".join(str(s["reason"]) for s in skipped) or "no DICOM image"
        raise InvalidImage(f"no series to classify: {reasons}")
    chosen = max(candidates, key=lambda m: (len(m), -(m[0].series_number or 0)))
    for members in candidates:
        if members is not chosen:
            skipped.append({
                "series_instance_uid": members[0].series_uid,
                "slices": len(members),
                "reason": f"fewer slices than the chosen series ({len(chosen)})",
            })  # fmt: skip
    ordered = order_slices(chosen)
    ordered.skipped = skipped
    return ordered


def why_left_out(members: list[SliceHeader], modalities: list[str]) -> str | None:
    """Why a series is not one to classify, or None."""
    first = members[0]
    kinds = {value.upper() for h in members for value in h.image_type}
    if "LOCALIZER" in kinds or "SCOUT" in kinds:
        return "localizer (scout) images"
    if first.sop_class.startswith(SECONDARY_CAPTURE):
        return "secondary capture"
    if modalities and first.modality and first.modality not in modalities:
        return f"modality {first.modality}, not {' or '.join(modalities)}"
    if kinds & {"DERIVED", "SECONDARY"}:
        return "derived or secondary images (ImageType), not original"
    normal = slice_normal(first.orientation)
    if normal is not None and abs(normal[2]) < AXIAL_COSINE and first.modality == "CT":
        return "not axial (ImageOrientationPatient)"
    return None


def slice_normal(orientation: tuple[float, ...] | None) -> np.ndarray | None:
    """The unit normal of the image plane from ImageOrientationPatient's row and column cosines."""
    if orientation is None or len(orientation) != 6:
        return None
    normal = np.cross(np.array(orientation[:3]), np.array(orientation[3:]))
    length = float(np.linalg.norm(normal))
    return normal / length if length > 0 else None


def order_slices(members: list[SliceHeader]) -> ChosenSeries:
    """Slices sorted by position along the normal, else by InstanceNumber (said so)."""
    normal = slice_normal(members[0].orientation)
    if normal is not None and all(h.position is not None for h in members):
        along = [float(np.dot(normal, h.position)) for h in members]  # type: ignore[arg-type]
        order = sorted(range(len(members)), key=lambda i: along[i])
        slices = [members[i] for i in order]
        positions: list[float | None] = [round(along[i], 3) for i in order]
        chosen = ChosenSeries(slices, positions, "ImagePositionPatient along the slice normal")
    else:
        slices = sorted(members, key=lambda h: (h.instance_number is None, h.instance_number or 0))
        chosen = ChosenSeries(
            slices,
            [None] * len(slices),
            "InstanceNumber (ImagePositionPatient or ImageOrientationPatient missing)",
        )
    chosen.notes += quality_notes(chosen)
    if not members[0].modality:
        chosen.notes.append("no Modality or BodyPartExamined (NIfTI): only the pixels are checked")
    return chosen


def quality_notes(chosen: ChosenSeries) -> list[str]:
    """Duplicate positions, gaps (a step over 1.5 times the usual spacing) and mixed image
    sizes, said in the answer."""
    notes = []
    known = [p for p in chosen.positions_mm if p is not None]
    steps = [b - a for a, b in itertools.pairwise(known)]
    duplicates = sum(1 for step in steps if step < SAME_POSITION_MM)
    if duplicates:
        notes.append(f"{duplicates} slice(s) share a position with the slice before them")
    spacing = float(np.median([s for s in steps if s >= SAME_POSITION_MM] or [0.0]))
    gaps = [round(step, 3) for step in steps if spacing > 0 and step > 1.5 * spacing]
    if gaps:
        notes.append(
            f"{len(gaps)} gap(s) in the series: steps of {gaps} mm, spacing {spacing:g} mm"
        )
    sizes = {h.size for h in chosen.slices}
    if len(sizes) > 1:
        notes.append(f"mixed image sizes: {sorted(sizes)}")
    return notes

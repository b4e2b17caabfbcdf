"""Instances pushed to the service (STOW-RS): read header by header, grouped by study, each
study routed to a model; and the STOW-RS answer (DICOM JSON) saying what was taken."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from app.pacs.routing import ROUTABLE, SeriesAttributes

IDENTITY = ("SOPClassUID", "SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID")
CANNOT_UNDERSTAND = 0xC000  # PS3.4 storage status: the object could not be parsed
NOT_ROUTED = 0x0110  # PS3.7 processing failure: no routing rule took the study
DICOM_JSON = "application/dicom+json"
REFERENCED_SOP_SEQUENCE, FAILED_SOP_SEQUENCE = "00081199", "00081198"
SOP_CLASS, SOP_INSTANCE, FAILURE_REASON = "00081150", "00081155", "00081197"


@dataclass
class Instance:
    sop_class: str
    sop_instance: str
    read: Callable[[], bytes]


@dataclass
class ReceivedStudy:
    """One study's instances and the routable attributes of each of its series."""

    instances: list[Instance] = field(default_factory=list)
    series: dict[str, SeriesAttributes] = field(default_factory=dict)


def group_by_study(
    readers: list[Callable[[], bytes]],
) -> tuple[dict[str, ReceivedStudy], list[Instance]]:
    """The parts grouped by StudyInstanceUID, and those that are not DICOM instances."""
    import io

    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    studies: dict[str, ReceivedStudy] = {}
    unreadable: list[Instance] = []
    for read in readers:
        try:
            header = dcmread(io.BytesIO(read()), stop_before_pixels=True)
            identity = [str(header.get(k, "")) for k in IDENTITY]
        except (InvalidDicomError, ValueError, EOFError, OSError):
            identity = []
        if not (identity and all(identity)):
            unreadable.append(Instance("", "", read))
            continue
        sop_class, sop_instance, study_uid, series_uid = identity
        study = studies.setdefault(study_uid, ReceivedStudy())
        study.instances.append(Instance(sop_class, sop_instance, read))
        study.series.setdefault(series_uid, {k: str(header.get(k, "") or "") for k in ROUTABLE})
    return studies, unreadable


def stow_answer(taken: list[Instance], failed: list[tuple[Instance, int]]) -> dict[str, Any]:
    """The STOW-RS response body: what was taken, what was not and why (DICOM JSON)."""
    answer: dict[str, Any] = {}
    if taken:
        answer[REFERENCED_SOP_SEQUENCE] = sequence([reference(i) for i in taken])
    if failed:
        answer[FAILED_SOP_SEQUENCE] = sequence(
            [{**reference(i), FAILURE_REASON: {"vr": "US", "Value": [why]}} for i, why in failed]
        )
    return answer


def stow_status(taken: int, failed: int) -> int:
    """200: all taken; 202: some; 409: none (PS3.18 STOW-RS)."""
    if not failed:
        return 200
    return 202 if taken else 409


def reference(instance: Instance) -> dict[str, Any]:
    item: dict[str, Any] = {}
    if instance.sop_class:
        item[SOP_CLASS] = {"vr": "UI", "Value": [instance.sop_class]}
    if instance.sop_instance:
        item[SOP_INSTANCE] = {"vr": "UI", "Value": [instance.sop_instance]}
    return item


def sequence(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"vr": "SQ", "Value": items}

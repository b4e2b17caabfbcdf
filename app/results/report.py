"""The study answer as a Comprehensive 3D SR holding a TID 1500 Measurement Report.

TID 1500 is the template OHIF, 3D Slicer, dcm4chee and highdicom read and write for algorithm
results, and any SR viewer shows its content tree as text. One measurement group (TID 1501)
holds the study's finding (the label), one probability per class, the algorithm (model name,
version, the card's checksum of model.onnx, the research-use statement) and the key slices as
its source images; the image library names the key slices too."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import highdicom as hd
from highdicom.sr import (
    AlgorithmIdentification,
    Comprehensive3DSR,
    DeviceObserverIdentifyingAttributes,
    MeasurementReport,
    MeasurementsAndQualitativeEvaluations,
    ObservationContext,
    ObserverContext,
    QualitativeEvaluation,
    SourceImageForMeasurementGroup,
    TrackingIdentifier,
)
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes

from app.results.codes import (
    APPLICABILITY,
    MANUFACTURER,
    NOT_ASSESSED,
    RESEARCH_USE,
    UNITLESS,
    label_code,
    probability_code,
    procedure_code,
)

# what highdicom's image library entry of a cross-sectional image reads (TID 1604); a
# multi-frame object keeps them per frame, so it is referenced without a library entry
GEOMETRY = ("PixelSpacing", "ImageOrientationPatient", "ImagePositionPatient", "SliceThickness")
SR_SERIES_NUMBER = 9901  # high, so the results sort after the source series in a viewer


@dataclass(frozen=True)
class ModelIdentity:
    """What names the model in the results."""

    name: str
    version: int
    sha256: str  # of model.onnx, as its card says


@dataclass(frozen=True)
class KeySlice:
    """A key slice: its source instance's header (no pixels) and frame (multi-frame, from 1)."""

    header: Dataset
    frame: int | None


def structured_report(
    study: dict[str, Any],
    model: ModelIdentity,
    keys: list[KeySlice],
    reference: Dataset,
    series_uid: str,
) -> Comprehensive3DSR:
    """The SR of a study answer (`study` as in the study endpoint's `study`), in the study of
    `reference` (an instance of the classified series, header only) whose patient and study
    modules it copies; the key slices' instances are its evidence."""
    evidence = unique_instances(keys) or [reference]
    report = MeasurementReport(
        observation_context=observation_context(model),
        procedure_reported=procedure_code(evidence[0].get("Modality")),
        imaging_measurements=[finding_group(study, model, keys)],
        referenced_images=[ds for ds in evidence if has_geometry(ds)] or None,
    )
    return Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=series_uid,
        series_number=SR_SERIES_NUMBER,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer=MANUFACTURER,
        is_complete=True,
        series_description=f"{model.name} v{model.version} results (research use only)",
    )


def observation_context(model: ModelIdentity) -> ObservationContext:
    device = DeviceObserverIdentifyingAttributes(
        uid=hd.UID(), name=MANUFACTURER, manufacturer_name=MANUFACTURER, model_name=model.name
    )
    return ObservationContext(
        observer_device_context=ObserverContext(codes.DCM.Device, device),
    )


def finding_group(
    study: dict[str, Any], model: ModelIdentity, keys: list[KeySlice]
) -> MeasurementsAndQualitativeEvaluations:
    """TID 1501: the label as the finding, each class probability, the algorithm, key slices."""
    label = study.get("label")
    probabilities = study.get("probabilities") or {}
    algorithm = AlgorithmIdentification(
        name=model.name,
        version=str(model.version),
        parameters=[f"model.onnx sha256 {model.sha256}", RESEARCH_USE],
    )
    evaluations = [] if label else [QualitativeEvaluation(APPLICABILITY, NOT_ASSESSED)]
    return MeasurementsAndQualitativeEvaluations(
        tracking_identifier=TrackingIdentifier(uid=hd.UID(), identifier="study classification"),
        finding_type=label_code(label) if label else None,
        algorithm_id=algorithm,
        measurements=[
            hd.sr.Measurement(probability_code(name), float(p), UNITLESS)
            for name, p in probabilities.items()
        ],
        qualitative_evaluations=evaluations or None,
        source_images=[source_image(key) for key in keys] or None,
    )


def source_image(key: KeySlice) -> SourceImageForMeasurementGroup:
    return SourceImageForMeasurementGroup(
        referenced_sop_class_uid=key.header.SOPClassUID,
        referenced_sop_instance_uid=key.header.SOPInstanceUID,
        referenced_frame_numbers=None if key.frame is None else [key.frame],
    )


def unique_instances(keys: list[KeySlice]) -> list[Dataset]:
    seen: dict[str, Dataset] = {}
    for key in keys:
        seen.setdefault(key.header.SOPInstanceUID, key.header)
    return list(seen.values())


def has_geometry(dataset: Dataset) -> bool:
    return all(keyword in dataset for keyword in GEOMETRY)

"""Known tasks: how each dataset is laid out and what its model is called and told."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.imaging.dicom import WINDOW_PRESETS as CT_WINDOWS

__all__ = ["CT_WINDOWS", "TASKS", "TaskPreset"]


@dataclass(frozen=True)
class TaskPreset:
    """Defaults for one model name; every field can be overridden on the command line."""

    description: str
    classes: tuple[str, ...]
    label_map: dict[str, str] = field(default_factory=dict)
    label_column: str | None = None
    dicom_window: str | None = None
    leakage_note: str = ""
    dataset: str = ""  # its folder under the shared datasets
    modalities: tuple[str, ...] = ("CT",)  # DICOM Modality values the model can judge
    body_parts: tuple[str, ...] = ()  # DICOM BodyPartExamined values, where the header has one


TASKS: dict[str, TaskPreset] = {
    "chest-ct-cancer": TaskPreset(
        description="Chest CT slice: adenocarcinoma, large cell carcinoma, squamous cell "
        "carcinoma or normal.",
        classes=("adenocarcinoma", "large_cell_carcinoma", "normal", "squamous_cell_carcinoma"),
        dicom_window="lung",
        dataset="chest_ct",
        body_parts=("CHEST", "LUNG", "THORAX"),
        leakage_note="Normal images come from other sources than the cancer ones (size, format); "
        "preprocessing makes every image grey and square, and a test checks format invariance.",
    ),
    "sarscov2-ct": TaskPreset(
        description="Chest CT slice: COVID-19 or not.",
        classes=("covid", "non_covid"),
        dicom_window="lung",
        leakage_note="Many slices per patient and no patient ids: random folds mix a patient's "
        "slices across train and validation, so cross-validated scores are optimistic.",
        dataset="sarscov2_ct",
        body_parts=("CHEST", "LUNG", "THORAX"),
    ),
    "head-ct-hemorrhage": TaskPreset(
        description="Head CT slice: intracranial hemorrhage or normal.",
        classes=("hemorrhage", "normal"),
        label_map={"1": "hemorrhage", "0": "normal"},
        label_column="hemorrhage",
        dicom_window="brain",
        leakage_note="Near-identical pairs are kept in one fold; colour tints are removed by "
        "converting to grey.",
        dataset="head_ct",
        body_parts=("HEAD", "BRAIN", "SKULL"),
    ),
    "covid-xray": TaskPreset(
        description="Chest X-ray (not CT): COVID-19, viral pneumonia or normal.",
        classes=("covid", "normal", "viral_pneumonia"),
        leakage_note="Small dataset (251 images); sources differ between classes.",
        dataset="covid_xray",
        modalities=("CR", "DX"),
        body_parts=("CHEST",),
    ),
}

"""A study through one model: headers → the series to classify, in order → each slice decoded,
windowed and preprocessed as single uploads are → `session.run` in batches, with the
applicability check → per-slice answers and the study-level answer from the judgeable slices."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.errors import PayloadTooLarge
from app.imaging.preprocess import to_model_input
from app.inference.applicability import OUTSIDE
from app.inference.predict import Scored, default_window, judge, run_model
from app.inference.store import LoadedModel
from app.studies.aggregate import NOT_VALIDATED, StudyRule, aggregate
from app.studies.headers import read_header
from app.studies.series import ChosenSeries, SliceHeader, choose_series
from app.studies.sources import StudySource
from app.studies.volumes import FrameReader

Progress = Callable[[int, int], None]  # (slices done, slices in all)


@dataclass(frozen=True)
class StudySettings:
    """How a study is run: slices per `session.run`, the most slices accepted, heatmaps."""

    batch_size: int = 8
    max_slices: int = 1000
    heatmaps: bool = False  # add the key slices' class activation overlays


def analyse_study(
    model: LoadedModel,
    source: StudySource,
    settings: StudySettings,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """The study answer (see docs/api.md, "Whole studies"); with `settings.heatmaps`, also the
    key slices' class activation overlays (models that have them)."""
    return run_study(model, source, settings, progress)[0]


def run_study(
    model: LoadedModel,
    source: StudySource,
    settings: StudySettings,
    progress: Progress | None = None,
) -> tuple[dict[str, Any], ChosenSeries]:
    """The study answer and the series it classified, in slice order."""
    headers, not_images = read_headers(source)
    modalities = model.card.applicability.modalities if model.card.applicability else []
    chosen = choose_series(headers, modalities)
    if len(chosen.slices) > settings.max_slices:
        raise PayloadTooLarge(
            f"the series has {len(chosen.slices)} slices; the limit is {settings.max_slices}"
        )
    rows = classify_slices(model, source, chosen, settings.batch_size, progress)
    study = study_answer(model, rows)
    if settings.heatmaps and model.card.output.activation_map:
        study["key_slice_heatmaps"] = key_heatmaps(model, source, chosen, study["key_slices"])
    answer = {
        "model": model.card.name,
        "version": model.card.version,
        "series": describe_series(chosen),
        "skipped": chosen.skipped + not_images,
        "slices": rows,
        "study": study,
    }
    return answer, chosen


def key_heatmaps(
    model: LoadedModel, source: StudySource, chosen: ChosenSeries, keys: list[int]
) -> list[dict[str, Any]]:
    """The class activation overlay of each key slice (the explain endpoint's, as PNG)."""
    from app.inference.explain import explain
    from app.inference.predict import PreparedInput

    reader = FrameReader(source.read)
    overlays = []
    for index in keys:
        decoded = reader.decoded(chosen.slices[index], default_window(model))
        prepared = PreparedInput(decoded, to_model_input(decoded.pixels, model.card.input))
        explained = explain(model, prepared, None)["explanation"]
        overlays.append(
            {
                "index": index,
                "class": explained["class"],
                "overlay_png_base64": explained["overlay_png_base64"],
            }
        )
    return overlays


def read_headers(source: StudySource) -> tuple[list[SliceHeader], list[dict[str, Any]]]:
    """Every file's header; files that are not DICOM images are listed with the reason."""
    headers: list[SliceHeader] = []
    skipped = []
    for name in source.names():
        found = read_header_of(source, name)
        if isinstance(found, str):
            skipped.append({"file": name, "reason": found})
        else:
            headers += found
    return headers, skipped


HEAD_BYTES = 64 * 1024  # DICOM headers are read from the start of a file, pixels left out


def read_header_of(source: StudySource, name: str) -> list[SliceHeader] | str:
    """A file's slices from its first bytes; the whole file when those do not hold the header
    (a large one) or the file is a volume (NIfTI, Enhanced CT: their slices need it all)."""
    head = source.head(name, HEAD_BYTES)
    if len(head) == HEAD_BYTES:
        found = read_header(name, head)
        if not isinstance(found, str) and len(found) == 1 and found[0].frame is None:
            return found
    return read_header(name, source.read(name))


def classify_slices(
    model: LoadedModel,
    source: StudySource,
    chosen: ChosenSeries,
    batch_size: int,
    progress: Progress | None,
) -> list[dict[str, Any]]:
    """Per-slice answers in slice order, `batch_size` slices per `session.run`."""
    rows: list[dict[str, Any]] = []
    total = len(chosen.slices)
    reader = FrameReader(source.read)
    for start in range(0, total, batch_size):
        batch = chosen.slices[start : start + batch_size]
        tensors, described = zip(*(slice_input(model, reader, h) for h in batch), strict=True)
        outputs = run_model(model, np.stack(tensors)).rows()
        for offset, (header, scored, info) in enumerate(
            zip(batch, outputs, described, strict=True)
        ):
            rows.append(slice_row(model, start + offset, chosen, header, scored, info))
        if progress:
            progress(len(rows), total)
    return rows


def slice_input(
    model: LoadedModel, reader: FrameReader, header: SliceHeader
) -> tuple[np.ndarray, dict[str, Any]]:
    """One slice's model input and what the applicability gate reads of its header."""
    decoded = reader.decoded(header, default_window(model))
    described = {"modality": header.modality or None, "body_part": decoded.body_part}
    return to_model_input(decoded.pixels, model.card.input), described


def slice_row(
    model: LoadedModel,
    index: int,
    chosen: ChosenSeries,
    header: SliceHeader,
    scored: Scored,
    described: dict[str, Any],
) -> dict[str, Any]:
    classes = model.card.classes
    return {
        "index": index,
        "position_mm": chosen.positions_mm[index],
        "instance_number": header.instance_number if header.frame is None else None,
        "frame": None if header.frame is None else header.frame + 1,
        "sop_instance_uid": header.sop_uid or None,
        "probabilities": {c: float(p) for c, p in zip(classes, scored.probabilities, strict=True)},
        "applicability": judge(model, scored.score, described),
    }


def describe_series(chosen: ChosenSeries) -> dict[str, Any]:
    first = chosen.slices[0]
    return {
        "study_instance_uid": first.study_uid,
        "series_instance_uid": first.series_uid,
        "series_number": first.series_number,
        "modality": first.modality,
        "slices": len(chosen.slices),
        "ordered_by": chosen.ordered_by,
        "notes": chosen.notes,
    }


def study_answer(model: LoadedModel, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The study-level answer from the slices the model can judge; none: no label."""
    rule = StudyRule.model_validate(getattr(model.card, "study", None) or {})
    judged = [r for r in rows if r["applicability"]["verdict"] != OUTSIDE]
    base = {
        "rule": rule.model_dump(exclude_none=True),
        "judgeable_slices": len(judged),
        "left_out": {"outside": len(rows) - len(judged)},
        "note": NOT_VALIDATED,
    }
    if not judged:
        return {**base, "label": None, "probabilities": None, "key_slices": []}
    classes = model.card.classes
    probabilities = np.array([[r["probabilities"][c] for c in classes] for r in judged])
    answer = aggregate(rule, classes, probabilities)
    answer["key_slices"] = [judged[k]["index"] for k in answer["key_slices"]]
    return {**base, **answer}

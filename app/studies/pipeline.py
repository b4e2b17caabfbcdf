"""A study through one model: headers → the series to classify, in order → each slice decoded,
windowed and preprocessed as single uploads are → `session.run` in batches, with the
applicability check → per-slice answers and the study-level answer from the judgeable slices."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np

from app.config import Settings
from app.errors import PayloadTooLarge
from app.imaging.preprocess import to_model_input
from app.inference.applicability import OUTSIDE
from app.inference.predict import Scored, default_window, judge, run_model
from app.inference.store import LoadedModel
from app.studies.aggregate import NOT_VALIDATED, StudyRule, aggregate
from app.studies.headers import read_header
from app.studies.series import ChosenSeries, SliceHeader, choose_series
from app.studies.sources import StudySource
from app.studies.volumes import FrameReader, is_nifti

Progress = Callable[[int, int], None]  # (slices done, slices in all)


@dataclass(frozen=True)
class StudySettings:
    """How a study is run: slices per `session.run`, the most slices accepted, heatmaps, and the
    threads decoding the next batch while one runs."""

    batch_size: int = 8
    max_slices: int = 1000
    heatmaps: bool = False  # add the key slices' class activation overlays
    decode_workers: int = 1

    @classmethod
    def of(cls, settings: Settings, heatmaps: bool = False) -> StudySettings:
        return cls(
            settings.study_batch_size, settings.max_study_slices, heatmaps, settings.decoders
        )


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
    rows = classify_slices(model, source, chosen, settings, progress)
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


HEAD_BYTES = (8 * 1024, 64 * 1024)  # most CT headers fit the first; large ones the second


def read_header_of(source: StudySource, name: str) -> list[SliceHeader] | str:
    """A file's slices from its first 8 kB, else 64 kB, when its header ends within them (the
    pixels left out); the whole file when it does not, or when the file is a volume (NIfTI,
    Enhanced CT: their slices need it all)."""
    for size in HEAD_BYTES:
        head = source.head(name, size)
        if len(head) < size:  # the whole file
            return read_header(name, head)
        if is_nifti(head):
            break
        found = read_header(name, head, head=True)
        if _one_slice(found):
            return found
    return read_header(name, source.read(name))


def _one_slice(found: list[SliceHeader] | str) -> TypeGuard[list[SliceHeader]]:
    """A single-frame file's one slice (not a reason to skip, not a volume's slices)."""
    return not isinstance(found, str) and len(found) == 1 and found[0].frame is None


def classify_slices(
    model: LoadedModel,
    source: StudySource,
    chosen: ChosenSeries,
    settings: StudySettings,
    progress: Progress | None,
) -> list[dict[str, Any]]:
    """Per-slice answers in slice order, `batch_size` slices per `session.run`."""
    rows: list[dict[str, Any]] = []
    total = len(chosen.slices)
    for batch, inputs in decoded_batches(model, source, chosen, settings):
        tensors, described = zip(*inputs, strict=True)
        outputs = run_model(model, np.stack(tensors)).rows()
        for header, scored, info in zip(batch, outputs, described, strict=True):
            rows.append(slice_row(model, len(rows), chosen, header, scored, info))
        if progress:
            progress(len(rows), total)
    return rows


SliceInput = tuple[np.ndarray, dict[str, Any]]


def decoded_batches(
    model: LoadedModel, source: StudySource, chosen: ChosenSeries, settings: StudySettings
) -> Iterator[tuple[list[SliceHeader], list[SliceInput]]]:
    """Each batch of slices with their model inputs, decoded by `decode_workers` threads. On an
    accelerator they decode the next batch while one runs; on the CPU the cores that would
    decode it are running the batch (2 cores: 0.79 x the raw pipeline against 0.81 x decoding
    in turn, and a peak 16 MB higher), so each batch is decoded, in parallel, before it runs."""
    reader = FrameReader(source.read)
    size = settings.batch_size
    batches = [chosen.slices[start : start + size] for start in range(0, len(chosen.slices), size)]
    if settings.decode_workers <= 1:
        for batch in batches:
            yield batch, [slice_input(model, reader, header) for header in batch]
        return
    ahead = model.provider != "CPUExecutionProvider"
    with ThreadPoolExecutor(settings.decode_workers, thread_name_prefix="study-decode") as pool:

        def submit(batch: list[SliceHeader]) -> list[Future[SliceInput]]:
            return [pool.submit(slice_input, model, reader, header) for header in batch]

        pending = [submit(batches[0])] if batches else []
        for index, batch in enumerate(batches):
            if index + 1 < len(batches) and ahead:  # one batch ahead at most: bounded memory
                pending.append(submit(batches[index + 1]))
            yield batch, [job.result() for job in pending.pop(0)]
            if index + 1 < len(batches) and not ahead:
                pending.append(submit(batches[index + 1]))


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

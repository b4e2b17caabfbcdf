"""Dataset discovery, content hashing, duplicates and conflicts, grouped stratified folds."""

from __future__ import annotations

import csv
import hashlib
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".dcm"}


@dataclass(frozen=True)
class Sample:
    path: Path
    label: str
    sha256: str


@dataclass
class DatasetReport:
    """What discovery found and dropped, for the run log and the model card."""

    files: int
    duplicates: list[list[str]]
    conflicts: list[dict[str, object]]
    kept: int
    counts: dict[str, int]
    file_list_sha256: str


def normalise_class(folder: str, label_map: dict[str, str] | None = None) -> str:
    """'large.cell.carcinoma_left.hilum_T2' → 'large_cell_carcinoma'; 'Viral Pneumonia' →
    'viral_pneumonia'; a mapping wins over the rule."""
    if label_map and folder in label_map:
        return label_map[folder]
    head = folder.split("_", 1)[0] if "_" in folder else folder
    return re.sub(r"[^a-z0-9]+", "_", head.lower()).strip("_")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def discover(
    root: Path, label_map: dict[str, str] | None = None, label_column: str | None = None
) -> list[Sample]:
    """Every labelled image under `root`: class folders (any depth), or images + one CSV."""
    csvs = sorted(root.glob("*.csv"))
    if csvs:
        return _from_csv(root, csvs[0], label_map or {}, label_column)
    samples = [
        Sample(p, normalise_class(p.parent.name, label_map), file_sha256(p))
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.parent != root
    ]
    if not samples:
        raise ValueError(f"no images in class folders under {root}")
    return samples


def _from_csv(
    root: Path, table: Path, label_map: dict[str, str], label_column: str | None
) -> list[Sample]:
    images = {
        _id_key(p.stem): p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    }
    samples = []
    with table.open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = reader.fieldnames or []
        id_column, column = fields[0], label_column or fields[1]
        for row in reader:
            path = images.get(_id_key(row[id_column]))
            if path is None:
                log.warning("%s: no image for id %s", table.name, row[id_column])
                continue
            label = label_map.get(row[column], normalise_class(row[column]))
            samples.append(Sample(path, label, file_sha256(path)))
    return samples


def _id_key(value: str) -> str:
    value = value.strip()
    return str(int(value)) if value.isdigit() else value


def clean(samples: list[Sample], root: Path) -> tuple[list[Sample], DatasetReport]:
    """Drop exact copies (keep one) and every file of a label conflict; report both."""
    by_hash: dict[str, list[Sample]] = defaultdict(list)
    for sample in samples:
        by_hash[sample.sha256].append(sample)
    kept: list[Sample] = []
    duplicates: list[list[str]] = []
    conflicts: list[dict[str, object]] = []
    for group in by_hash.values():
        names = [str(s.path.relative_to(root)) for s in group]
        labels = sorted({s.label for s in group})
        if len(labels) > 1:
            conflicts.append({"files": names, "labels": labels})
            continue
        if len(group) > 1:
            duplicates.append(names)
        kept.append(group[0])
    kept.sort(key=lambda s: str(s.path))
    counts: dict[str, int] = defaultdict(int)
    for sample in kept:
        counts[sample.label] += 1
    listing = "\n".join(f"{s.sha256} {s.label}" for s in kept)
    report = DatasetReport(
        len(samples),
        duplicates,
        conflicts,
        len(kept),
        dict(sorted(counts.items())),
        hashlib.sha256(listing.encode()).hexdigest(),
    )
    return kept, report


def near_duplicate_groups(fingerprints: np.ndarray, max_distance: int = 2) -> np.ndarray:
    """Group ids joining images whose binary fingerprints differ in at most `max_distance` bits."""
    n = len(fingerprints)
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    bits = fingerprints.astype(np.uint8)
    for i in range(n):
        distances = np.count_nonzero(bits[i + 1 :] != bits[i], axis=1)
        for j in np.flatnonzero(distances <= max_distance):
            parent[find(i + 1 + int(j))] = find(i)
    return np.array([find(i) for i in range(n)])


def fingerprint(images: np.ndarray, side: int = 16) -> np.ndarray:
    """Average-hash bits of (N, H, W, 1) images, for near-duplicate detection."""
    n, height, width, _ = images.shape
    step_h, step_w = height // side, width // side
    trimmed = images[:, : side * step_h, : side * step_w, 0]
    small = trimmed.reshape(n, side, step_h, side, step_w).mean(axis=(2, 4)).reshape(n, -1)
    found: np.ndarray = small > np.median(small, axis=1, keepdims=True)
    return found


def grouped_folds(
    labels: np.ndarray, groups: np.ndarray, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified k folds in which every group stays in one fold."""
    from sklearn.model_selection import StratifiedGroupKFold

    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))

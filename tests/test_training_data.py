"""Dataset discovery on made-up trees: class names, duplicates, conflicts, grouped folds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn")

from tests.factories import encode
from training.data import (
    clean,
    discover,
    fingerprint,
    grouped_folds,
    near_duplicate_groups,
    normalise_class,
)


def image_bytes(seed: int) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16), dtype=np.uint8)
    return encode(Image.fromarray(pixels), "PNG")


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@pytest.mark.parametrize(
    ("folder", "expected"),
    [
        ("adenocarcinoma_left.lower.lobe_T2_N0_M0_Ib", "adenocarcinoma"),
        ("large.cell.carcinoma_left.hilum_T2_N2_M0_IIIa", "large_cell_carcinoma"),
        ("Viral Pneumonia", "viral_pneumonia"),
        ("non-COVID", "non_covid"),
        ("normal", "normal"),
    ],
)
def test_class_names(folder: str, expected: str) -> None:
    assert normalise_class(folder) == expected


def test_folder_layout_with_duplicates_and_conflicts(tmp_path: Path) -> None:
    write(tmp_path / "train/cat_a/1.png", image_bytes(1))
    write(tmp_path / "train/cat_a/1 - Copy.png", image_bytes(1))
    write(tmp_path / "valid/cat_a/copy.png", image_bytes(1))
    write(tmp_path / "train/dog_b/2.png", image_bytes(2))
    write(tmp_path / "train/dog_b/3.png", image_bytes(3))
    write(tmp_path / "train/cat_a/3-conflict.png", image_bytes(3))
    samples = discover(tmp_path)
    assert {s.label for s in samples} == {"cat", "dog"} and len(samples) == 6
    kept, report = clean(samples, tmp_path)
    assert [s.path.name for s in kept] == ["1 - Copy.png", "2.png"]
    assert len(report.duplicates) == 1 and len(report.duplicates[0]) == 3
    assert report.conflicts[0]["labels"] == ["cat", "dog"]
    assert report.counts == {"cat": 1, "dog": 1} and len(report.file_list_sha256) == 64


def test_csv_layout_with_label_map(tmp_path: Path) -> None:
    for index in range(4):
        write(tmp_path / "images" / f"{index:03d}.png", image_bytes(10 + index))
    (tmp_path / "labels.csv").write_text("id,hemorrhage\n0,1\n1,1\n2,0\n3,0\n9,1\n")
    samples = discover(tmp_path, {"1": "hemorrhage", "0": "normal"}, "hemorrhage")
    assert [(s.path.name, s.label) for s in samples] == [
        ("000.png", "hemorrhage"),
        ("001.png", "hemorrhage"),
        ("002.png", "normal"),
        ("003.png", "normal"),
    ]


def test_near_duplicates_share_a_fold() -> None:
    rng = np.random.default_rng(0)
    images = rng.random((40, 32, 32, 1)).astype(np.float32)
    images[1] = images[0] + 0.001  # near-identical pair
    images[3] = images[2]  # pixel-identical pair
    labels = np.array([0, 0, 1, 1] + [i % 2 for i in range(36)])
    groups = near_duplicate_groups(fingerprint(images))
    assert groups[0] == groups[1] and groups[2] == groups[3]
    assert len(set(groups)) == 38
    for _, validation in grouped_folds(labels, groups, 4, seed=1):
        held = set(validation)
        assert (0 in held) == (1 in held) and (2 in held) == (3 in held)

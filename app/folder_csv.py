"""`ctscan predict FOLDER`: every image under a folder classified on its own, one CSV row each
on stdout; a file that cannot be classified gets its row with the problem, and the run goes on."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import track

from app.errors import ServiceError
from app.inference.predict import predict_bytes
from app.inference.store import LoadedModel


def image_files(folder: Path) -> list[Path]:
    """Every file under `folder` (any depth), hidden ones left out, in name order."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def write_folder_csv(model: LoadedModel, folder: Path, max_pixels: int) -> None:
    classes = model.card.classes
    writer = csv.writer(sys.stdout)
    writer.writerow(["path", "label", "verdict", "score", *classes, "problem"])
    files = image_files(folder)
    console = Console(stderr=True)
    for path in track(files, description="images", console=console, transient=True):
        relative = str(path.relative_to(folder))
        try:
            result = predict_bytes(model, path.read_bytes(), max_pixels)
        except ServiceError as exc:
            writer.writerow([relative, "", "", "", *[""] * len(classes), exc.detail])
            continue
        applicability = result["applicability"]
        probabilities = [f"{result['probabilities'][c]:.6f}" for c in classes]
        score = "" if applicability["score"] is None else applicability["score"]
        writer.writerow(
            [relative, result["label"] or "", applicability["verdict"], score, *probabilities, ""]
        )

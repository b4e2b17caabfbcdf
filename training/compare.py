"""Architecture comparison: cross-validated runs of one task side by side in the shipped card.

Each candidate is an exported model folder (`<store>/<name>/<version>/`) whose card holds its
cross-validation; its CPU latency is measured here, in one run, so the column compares like with
like. The table goes into the shipped card (`evaluation.architecture_comparison`) and its report.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from app.config import available_cpus
from app.inference.card import read_card
from training.latency import interleaved_latency_ms

SECTION = "architecture-comparison"  # the report's marked section this module owns


class NotComparable(ValueError):
    """A candidate that lacks what the table needs, or belongs to another task."""


def candidate_row(folder: Path) -> dict[str, Any]:
    """One table row from an exported model folder: its card's cross-validation and its size
    (`compare` adds the latency, measured for all rows together)."""
    card = read_card(folder / "metadata.json")
    evaluation = card.evaluation
    cv = evaluation.get("cross_validation")
    if not cv:
        raise NotComparable(f"{folder}: the card has no cross-validation to compare")
    config = card.training.get("config", {})
    return {
        "folder": str(folder),
        "model": f"{card.name}/{card.version}",
        "classes": card.classes,
        "arch": _arch_name(card.architecture),
        "weights": config.get("weights", card.architecture.get("weights_init", "?")),
        "members": card.architecture.get("ensemble_members", 1),
        "image_size": card.input.height,
        "epochs": config.get("epochs"),
        "inner_validation": config.get("inner_validation", 0.0),
        "folds_run": cv["folds"],
        "folds_planned": card.training.get("folds", cv["folds"]),
        "accuracy": _mean_std(cv["accuracy"]),
        "macro_f1": _mean_std(cv["macro_f1"]),
        "recall": {c: round(v["mean"], 4) for c, v in cv["recall"].items()},
        "train_seconds": round(evaluation.get("seconds", {}).get("total", float("nan")), 1),
        "size_bytes": (folder / "model.onnx").stat().st_size,
        "input": (card.input.name, card.input.height, card.input.width, card.input.channels),
    }


def _arch_name(architecture: dict[str, Any]) -> str:
    """'compact', or 'compact 1.5x wide' for a widened compact CNN."""
    name, width = architecture.get("name", "?"), architecture.get("width", 1.0)
    return name if width == 1.0 else f"{name} {width:g}x wide"


def measure_latencies(rows: list[dict[str, Any]], runs: int) -> None:
    """Set each row's batch-1 CPU `latency_ms`, all rows measured in turns (see
    `interleaved_latency_ms`); each row's `input` (name, height, width, channels) is used up."""
    graphs = []
    for row in rows:
        name, *shape = row.pop("input")
        graphs.append((Path(row["folder"]) / "model.onnx", np.zeros((1, *shape), np.float32), name))
    for row, latency in zip(rows, interleaved_latency_ms(graphs, runs), strict=True):
        row["latency_ms"] = round(latency, 3)


def compare(
    shipped: Path,
    candidates: list[Path],
    runs: int = 30,
    notes: list[str] | None = None,
    carry_from: Path | None = None,
) -> dict[str, Any]:
    """Rows for the shipped model and each candidate (same task and classes), best first, and
    the caller's notes on how the rows were produced. `carry_from`: a model folder whose card's
    table lends its other rows (marked carried, their latency from that earlier run)."""
    rows = [candidate_row(folder) for folder in [shipped, *candidates]]
    task = rows[0]
    for row in rows[1:]:
        if (row["model"].split("/")[0], row["classes"]) != (
            task["model"].split("/")[0],
            task["classes"],
        ):
            raise NotComparable(f"{row['folder']} is not a {task['model']} candidate")
    for row in rows:
        row["shipped"] = row is task
        del row["classes"]
    measure_latencies(rows, runs)
    if carry_from is not None:
        rows += carried_rows(carry_from, task["model"], {_identity(row) for row in rows})
    rows.sort(key=lambda r: -r["accuracy"]["mean"])
    return {
        "measured": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "latency": f"median of {runs} session.run at batch 1, CPU provider, "
        f"{available_cpus()} threads, all rows measured in turns in one run",
        "rows": rows,
        "notes": notes or [],
    }


def _identity(row: dict[str, Any]) -> tuple[str, int, float]:
    """What tells one measured model from another: a folder may hold a different model later
    (an experiment's version number reused by a shipped one)."""
    return (row["folder"], row["size_bytes"], row["accuracy"]["mean"])


def carried_rows(
    folder: Path, task: str, present: set[tuple[str, int, float]]
) -> list[dict[str, Any]]:
    """The rows of `folder`'s comparison but its shipped one (and the models measured again
    now), each marked with where and when it was measured (a row that table had itself carried
    keeps its origin)."""
    card = read_card(folder / "metadata.json")
    if card.name != task.split("/")[0]:
        raise NotComparable(f"{folder} is not a {task} model; its rows cannot be carried over")
    table = card.evaluation.get("architecture_comparison")
    if not table:
        raise NotComparable(f"{folder}: the card has no architecture comparison to carry over")
    carried = f"{card.name}/{card.version}, measured {table['measured']}"
    return [
        {**row, "shipped": False, "carried_from": row.get("carried_from", carried)}
        for row in table["rows"]
        if not row["shipped"] and _identity(row) not in present
    ]


def write_comparison(shipped: Path, table: dict[str, Any]) -> None:
    """Put the table into the shipped card and its report (replacing an earlier one)."""
    write_evaluation(shipped, "architecture_comparison", table, markdown(table), SECTION)


def write_evaluation(model_dir: Path, key: str, value: Any, section: str, marker: str) -> None:
    """Store `value` as the card's `evaluation.<key>` and `section` as the report's section
    marked `marker`, each replacing an earlier one."""
    card_path = model_dir / "metadata.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card.setdefault("evaluation", {})[key] = value
    card_path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    report = model_dir / "report" / "report.md"
    if report.is_file():
        text = with_section(report.read_text(encoding="utf-8"), section, marker)
        report.write_text(text, encoding="utf-8")


def markdown(table: dict[str, Any]) -> str:
    """The comparison as a markdown section."""
    classes = list(table["rows"][0]["recall"])
    header = ["architecture", "input", "epochs ≤", "folds", "CV accuracy", "macro F1"]
    header += [f"recall {c}" for c in classes]
    header += ["train time", "size", "CPU ms/image"]
    lines = [
        "## Architecture comparison",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for row in table["rows"]:
        lines.append("| " + " | ".join(_cells(row, classes)) + " |")
    lines += [
        "",
        "Cross-validation is grouped and stratified; folds `k of n` means only the first k of n "
        "folds were run (CPU budget). Unless a row says what it stopped on, each fold chose its "
        "epoch (early stopping, kept checkpoint) on the very images it is scored on, which "
        f"flatters its score. Latency: {table['latency']}.",
        *_carried_notes(table["rows"]),
        *[f"{note}" for note in table.get("notes", [])],
    ]
    return "\n".join(lines) + "\n"


def with_section(text: str, section: str, marker: str = SECTION) -> str:
    """`text` with the section marked `marker` replaced, or inserted before the figures."""
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    block = f"{start}\n{section}{end}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(text):
        return pattern.sub(lambda _: block, text)
    figures = text.find("\n![")
    if figures < 0:
        return text.rstrip("\n") + "\n\n" + block
    return text[: figures + 1] + block + "\n" + text[figures + 1 :]


def _carried_notes(rows: list[dict[str, Any]]) -> list[str]:
    sources = sorted({row["carried_from"] for row in rows if "carried_from" in row})
    return [
        f"† carried over from the table of {source}: their latency was measured in that run, "
        "not this one."
        for source in sources
    ]


def _cells(row: dict[str, Any], classes: list[str]) -> list[str]:
    members = f" x {row['members']}" if row["members"] > 1 else ""
    label = f"{row['arch']}{members} ({_start(row['weights'])})"
    if row.get("inner_validation"):
        label += f", stopped on {row['inner_validation']:.0%} of each fold's training images"
    if row["shipped"]:
        label = f"**{label}, shipped**"
    if "carried_from" in row:
        label += " †"
    cells = [
        label,
        f"{row['image_size']} px",
        str(row["epochs"]),
        f"{row['folds_run']} of {row['folds_planned']}",
        f"{row['accuracy']['mean']:.3f} ± {row['accuracy']['std']:.3f}",
        f"{row['macro_f1']['mean']:.3f} ± {row['macro_f1']['std']:.3f}",
    ]
    cells += [f"{row['recall'][c]:.2f}" for c in classes]
    cells += [
        f"{row['train_seconds'] / 60:.1f} min",
        f"{row['size_bytes'] / 1e6:.1f} MB",
        f"{row['latency_ms']:.1f}",
    ]
    return cells


def _start(weights: str) -> str:
    if weights == "none":
        return "random init"
    if weights == "imagenet":
        return "imagenet weights"
    return f"pretrained backbone {Path(weights).name}"


def _mean_std(stat: dict[str, float]) -> dict[str, float]:
    return {"mean": round(stat["mean"], 4), "std": round(stat["std"], 4)}

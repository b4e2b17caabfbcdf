"""`ctscan compare`: the architecture table written into a shipped card and its report."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.inference.card import read_card
from tests.factories import write_model
from tests.test_cli import run_cli
from training.compare import NotComparable, compare, markdown, write_comparison
from training.latency import interleaved_latency_ms


def cross_validation(accuracy: float, folds: int) -> dict[str, Any]:
    stat = {"mean": accuracy, "std": 0.05, "min": accuracy - 0.05, "max": accuracy + 0.05}
    return {
        "folds": folds,
        "accuracy": stat,
        "macro_f1": stat,
        "recall": {"dark": stat, "bright": stat},
    }


def trained(
    root: Path,
    arch: str,
    accuracy: float,
    folds: int = 5,
    version: int = 1,
    config: dict[str, Any] | None = None,
    **extra: Any,
) -> Path:
    """A real ONNX model folder whose card carries a cross-validation result (`config`: more
    training settings)."""
    return write_model(
        root,
        "toy",
        version,
        architecture={"name": arch, "ensemble_members": 1},
        training={"folds": 5, "config": {"weights": "none", "epochs": 8, **(config or {})}},
        evaluation={
            "cross_validation": cross_validation(accuracy, folds),
            "seconds": {"total": 90},
        },
        **extra,
    )


def shipped_store(tmp_path: Path) -> tuple[Path, list[Path]]:
    shipped = trained(tmp_path / "models", "compact", 0.8)
    (shipped / "report").mkdir()
    (shipped / "report" / "report.md").write_text("# toy\n\ntext\n\n![roc](roc.png)\n")
    others = [
        trained(tmp_path / a, a, acc, folds=2) for a, acc in [("resnet50", 0.9), ("vgg19", 0.3)]
    ]
    return shipped, others


def test_table_is_written_into_card_and_report_once(tmp_path: Path) -> None:
    shipped, others = shipped_store(tmp_path)
    for _ in range(2):  # a second run replaces the first table
        write_comparison(shipped, compare(shipped, others, runs=3))
    rows = read_card(shipped / "metadata.json").evaluation["architecture_comparison"]["rows"]
    assert [r["arch"] for r in rows] == ["resnet50", "compact", "vgg19"]  # best CV first
    assert [r["shipped"] for r in rows] == [False, True, False]
    assert all(r["latency_ms"] > 0 and r["size_bytes"] > 0 for r in rows)
    assert rows[0]["folds_run"] == 2 and rows[0]["folds_planned"] == 5
    report = (shipped / "report" / "report.md").read_text()
    assert report.count("## Architecture comparison") == 1
    assert report.index("## Architecture comparison") < report.index("![roc]")
    assert "| **compact (random init), shipped** | 16 px | 8 | 5 of 5 | 0.800 ± 0.050 |" in report


def test_a_row_stopped_on_an_inner_split_says_so(tmp_path: Path) -> None:
    shipped, _ = shipped_store(tmp_path)
    nested = trained(tmp_path / "nested", "compact", 0.7, config={"inner_validation": 0.2})
    table = compare(shipped, [nested], runs=2)
    stopped = {row["folder"]: row["inner_validation"] for row in table["rows"]}
    assert stopped == {str(shipped): 0.0, str(nested): 0.2}
    lines = markdown(table).splitlines()
    assert sum("stopped on 20% of each fold's training images" in line for line in lines) == 1
    assert "very images it is scored on" in markdown(table)


def test_other_task_or_missing_cross_validation_is_refused(tmp_path: Path) -> None:
    shipped, _ = shipped_store(tmp_path)
    three = trained(tmp_path / "three", "compact", 0.5, classes=["low", "mid", "high"])
    with pytest.raises(NotComparable, match="not a toy/1 candidate"):
        compare(shipped, [three], runs=3)
    bare = write_model(tmp_path / "bare", "toy")
    with pytest.raises(NotComparable, match="no cross-validation"):
        compare(shipped, [bare], runs=3)


def test_cli_prints_the_table_and_refuses_clearly(tmp_path: Path) -> None:
    shipped, others = shipped_store(tmp_path)
    done = run_cli(
        "compare",
        "--model-dir",
        str(shipped),
        *map(str, others),
        "--runs",
        "3",
        "--note",
        "Wall times include pauses.",
    )
    assert done.returncode == 0, done.stderr
    assert "| vgg19 (random init) | 16 px |" in done.stdout
    assert "Wall times include pauses." in (shipped / "report" / "report.md").read_text()
    assert (
        "architecture_comparison"
        in json.loads((shipped / "metadata.json").read_text())["evaluation"]
    )
    bare = write_model(tmp_path / "bare", "toy")
    refused = run_cli("compare", "--model-dir", str(shipped), str(bare))
    assert refused.returncode == 2 and "no cross-validation" in refused.stderr


def test_rows_are_carried_over_from_an_earlier_version(tmp_path: Path) -> None:
    """A new shipped version keeps the earlier table's candidates, marked as carried over."""
    earlier, others = shipped_store(tmp_path)
    write_comparison(earlier, compare(earlier, others, runs=3))
    newer = trained(tmp_path / "next", "compact", 0.85, version=2)
    table = compare(newer, [earlier], runs=3, carry_from=earlier)
    rows = {r["model"] + " " + r["arch"]: r for r in table["rows"]}
    assert sorted(rows) == ["toy/1 compact", "toy/1 resnet50", "toy/1 vgg19", "toy/2 compact"]
    assert rows["toy/2 compact"]["shipped"] and "carried_from" not in rows["toy/1 compact"]
    assert rows["toy/1 vgg19"]["carried_from"].startswith("toy/1, measured ")
    text = markdown(table)
    assert "| vgg19 (random init) † | 16 px |" in text
    assert text.count("† carried over from the table of toy/1") == 1
    with pytest.raises(NotComparable, match="no architecture comparison"):
        compare(newer, [], runs=3, carry_from=newer)
    write_comparison(newer, table)
    latest = trained(tmp_path / "latest", "compact", 0.86, version=3)
    again = {r["model"] + " " + r["arch"]: r for r in compare(latest, [], 3, None, newer)["rows"]}
    assert again["toy/1 vgg19"]["carried_from"] == rows["toy/1 vgg19"]["carried_from"]
    assert again["toy/1 compact"]["carried_from"].startswith("toy/2, measured ")


def test_a_carried_row_survives_its_folder_being_reused(tmp_path: Path) -> None:
    """An experiment measured in models/toy/2 and later replaced there by the shipped version 2:
    its row is still carried, the shipped model measured now is not doubled."""
    shipped, _ = shipped_store(tmp_path)
    trial = trained(tmp_path / "store", "compact", 0.6, version=2)
    write_comparison(shipped, compare(shipped, [trial], runs=3))
    shutil.rmtree(trial)
    newer = trained(tmp_path / "store", "compact", 0.9, version=2)
    table = compare(newer, [shipped], runs=3, carry_from=shipped)
    assert sorted(r["accuracy"]["mean"] for r in table["rows"]) == [0.6, 0.8, 0.9]
    assert [r["accuracy"]["mean"] for r in table["rows"] if "carried_from" in r] == [0.6]


def graph_file(path: Path, matmuls: int) -> Path:
    """An ONNX graph on a (1, 256) input: identity, or a chain of 256 x 256 products."""
    from onnx import TensorProto, helper, save

    weight = helper.make_tensor("w", TensorProto.FLOAT, [256, 256], [0.001] * 256 * 256)
    nodes, last = [helper.make_node("Identity", ["x"], ["h0"])], "h0"
    for index in range(matmuls):
        nodes.append(helper.make_node("MatMul", [last, "w"], [f"h{index + 1}"]))
        last = f"h{index + 1}"
    graph = helper.make_graph(
        [*nodes, helper.make_node("Identity", [last], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    save(model, str(path))
    return path


def test_latencies_measured_in_turns_keep_each_graph_apart(tmp_path: Path) -> None:
    sample = np.zeros((1, 256), np.float32)
    light, heavy = graph_file(tmp_path / "light.onnx", 0), graph_file(tmp_path / "heavy.onnx", 400)
    light_ms, heavy_ms, again_ms = interleaved_latency_ms(
        [(light, sample, "x"), (heavy, sample, "x"), (light, sample, "x")], runs=9
    )
    assert heavy_ms > 5 * max(light_ms, again_ms)  # each median belongs to its own graph

"""`ctscan nested`: a nested cross-validation written into the shipped card and its report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.inference.card import read_card
from tests.test_cli import run_cli
from tests.test_training_compare import shipped_store, trained
from training.compare import NotComparable
from training.nested import nested_estimate, write_nested


def epoch_choice(kept: float, if_chosen: float) -> dict[str, dict[str, float]]:
    return {
        "epoch_choice": {
            "scored_accuracy_kept": kept,
            "scored_accuracy_if_chosen_on_scored": if_chosen,
        }
    }


def nested_run(root: Path, fraction: float = 0.2) -> Path:
    """A real exported folder trained 'with an inner split', with the report metrics a nested
    run writes: per-fold scores and each member's epoch choice."""
    folder = trained(root, "compact", 0.7, config={"inner_validation": fraction})
    metrics = {
        "per_fold": [{"accuracy": a} for a in (0.65, 0.7, 0.75, 0.7, 0.7)],
        "stage_notes": [epoch_choice(0.7, 0.75), epoch_choice(0.7, 0.7), epoch_choice(0.8, 0.75)],
    }
    (folder / "report").mkdir()
    (folder / "report" / "metrics.json").write_text(json.dumps(metrics))
    return folder


def test_estimate_is_written_into_card_and_report_once(tmp_path: Path) -> None:
    shipped, _ = shipped_store(tmp_path)
    run = nested_run(tmp_path / "nested")
    for _ in range(2):  # a second run replaces the first
        write_nested(shipped, nested_estimate(run, shipped))
    estimate = read_card(shipped / "metadata.json").evaluation["nested_cross_validation"]
    assert estimate["accuracy"]["mean"] == 0.7 and estimate["inner_validation"] == 0.2
    assert estimate["accuracy_per_fold"] == [0.65, 0.7, 0.75, 0.7, 0.7]
    assert estimate["epoch_choice_optimism"] == pytest.approx((0.05 + 0.0 - 0.05) / 3, abs=1e-4)
    assert estimate["folds_run"] == 5 and estimate["recall"] == {"dark": 0.7, "bright": 0.7}
    report = (shipped / "report" / "report.md").read_text()
    assert report.count("## Nested cross-validation") == 1
    assert report.index("## Nested cross-validation") < report.index("![roc]")
    assert "Accuracy **0.700 ± 0.050** over 5 of 5 folds" in report
    assert "Each member fit on 64% of the images" in report


def test_a_run_that_stopped_on_its_scored_folds_or_another_task_is_refused(
    tmp_path: Path,
) -> None:
    shipped, others = shipped_store(tmp_path)
    with pytest.raises(NotComparable, match="without --inner-validation"):
        nested_estimate(others[0], shipped)
    three = trained(
        tmp_path / "three", "compact", 0.5, classes=["low", "mid", "high"],
        config={"inner_validation": 0.2},
    )  # fmt: skip
    with pytest.raises(NotComparable, match="not a toy one"):
        nested_estimate(three, shipped)


def test_cli_prints_the_estimate_and_refuses_in_one_line(tmp_path: Path) -> None:
    shipped, others = shipped_store(tmp_path)
    done = run_cli("nested", "--model-dir", str(shipped), str(nested_run(tmp_path / "nested")))
    assert done.returncode == 0, done.stderr
    assert "## Nested cross-validation (the honest estimate)" in done.stdout
    card = json.loads((shipped / "metadata.json").read_text())
    assert card["evaluation"]["nested_cross_validation"]["inner_validation"] == 0.2
    refused = run_cli("nested", "--model-dir", str(shipped), str(others[0]))
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0  # one line, no traceback
    assert "without --inner-validation" in refused.stderr

"""The benchmark's c16 targets: ratios taken within each turn, then the median turn."""

from __future__ import annotations

import pytest

from tests.benchmarks.run import Load, Turn, median_turn_ratios


def served(rps: float, p99: float) -> Load:
    return Load(rps=rps, p50=p99 / 2, p95=p99, p99=p99, failures=0)


def test_each_ratio_is_taken_within_its_turn() -> None:
    # A slow turn (raw 50 images/s) and a fast one (raw 100): each served run matches its
    # own turn's raw speed, so both turns give the same ratios although the VM sped up 2 x.
    turns = [Turn(50.0, served(60.0, 320.0)), Turn(100.0, served(120.0, 160.0))]
    assert [t.throughput_ratio() for t in turns] == pytest.approx([1.2, 1.2])
    # 16 raw images: 320 ms at 50 images/s, 160 ms at 100 images/s
    assert [t.p99_ratio() for t in turns] == pytest.approx([1.0, 1.0])


def test_the_targets_use_the_median_turn() -> None:
    turns = [
        Turn(100.0, served(90.0, 200.0)),
        Turn(100.0, served(130.0, 150.0)),
        Turn(100.0, served(110.0, 170.0)),
    ]
    throughput, p99 = median_turn_ratios(turns)
    assert throughput == pytest.approx(1.1)
    assert p99 == pytest.approx(170.0 / 160.0)  # 16 raw images at 100 images/s: 160 ms

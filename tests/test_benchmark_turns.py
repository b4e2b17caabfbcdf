"""The benchmark's c16 targets: ratios taken within each turn, then the median turn."""

from __future__ import annotations

import os
import time

import pytest

from tests.benchmarks.run import CpuMeter, CpuUse, Load, Turn, median_turn_ratios, process_cpu_s


def served(rps: float, p99: float) -> Load:
    return Load(rps=rps, p50=p99 / 2, p95=p99, p99=p99, failures=0)


def turn(raw_rate: float, load: Load) -> Turn:
    """A turn whose two sides used the same CPU (1 core, 10 ms per image)."""
    return Turn(raw_rate, load, CpuUse(1.0, 1.0, 100.0), CpuUse(1.0, 1.0, 100.0))


def test_each_ratio_is_taken_within_its_turn() -> None:
    # A slow turn (raw 50 images/s) and a fast one (raw 100): each served run matches its
    # own turn's raw speed, so both turns give the same ratios although the VM sped up 2 x.
    turns = [turn(50.0, served(60.0, 320.0)), turn(100.0, served(120.0, 160.0))]
    assert [t.throughput_ratio() for t in turns] == pytest.approx([1.2, 1.2])
    # 16 raw images: 320 ms at 50 images/s, 160 ms at 100 images/s
    assert [t.p99_ratio() for t in turns] == pytest.approx([1.0, 1.0])


def test_the_targets_use_the_median_turn() -> None:
    turns = [
        turn(100.0, served(90.0, 200.0)),
        turn(100.0, served(130.0, 150.0)),
        turn(100.0, served(110.0, 170.0)),
    ]
    throughput, p99 = median_turn_ratios(turns)
    assert throughput == pytest.approx(1.1)
    assert p99 == pytest.approx(170.0 / 160.0)  # 16 raw images at 100 images/s: 160 ms


def test_the_throughput_ratio_splits_into_cores_busy_and_cpu_per_image() -> None:
    # raw: 100 images/s on 1.5 cores, 15 ms of CPU each; the service: 110 images/s on 2 cores,
    # 18.2 ms each. It keeps 1.33 x the cores busy and spends 1.21 x the CPU per image.
    raw, service = CpuUse(7.5, 5.0, 500.0), CpuUse(20.0, 10.0, 1100.0)
    one = Turn(100.0, served(110.0, 200.0), raw, service)
    busy, per_image = one.ratio_factors()
    assert (busy, per_image) == pytest.approx((2.0 / 1.5, 15.0 / (20_000 / 1100)))
    assert busy * per_image == pytest.approx(one.throughput_ratio())


def test_the_cpu_meter_sees_this_process_work() -> None:
    with CpuMeter(os.getpid()) as meter:
        start = process_cpu_s(os.getpid())
        deadline = time.perf_counter() + 10  # bounded, even on a crowded machine
        while process_cpu_s(os.getpid()) - start < 0.2 and time.perf_counter() < deadline:
            pass  # busy until this process has used 0.2 s of CPU
    use = meter.use(images_per_s=10.0)
    assert use.cpu_s >= 0.2 and use.cores() > 0
    assert use.images == pytest.approx(10.0 * use.wall_s)

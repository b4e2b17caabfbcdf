"""Settings from the environment, and fast failure on nonsense."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import (
    Settings,
    available_cpus,
    cgroup_cpu_quota,
    cgroup_v1_cpu_quota,
    default_graph_cache,
)


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTSCAN_PROVIDERS", "CPUExecutionProvider")
    monkeypatch.setenv("CTSCAN_MAX_UPLOAD_BYTES", "1024")
    monkeypatch.setenv("CTSCAN_DEFAULT_MODEL", "chest-ct-cancer")
    settings = Settings()
    assert settings.providers == ["CPUExecutionProvider"]
    assert settings.max_upload_bytes == 1024 and settings.default_model == "chest-ct-cancer"


def test_defaults() -> None:
    settings = Settings()
    assert settings.max_upload_bytes == 32 * 1024 * 1024
    assert settings.providers[-1] == "CPUExecutionProvider"
    assert settings.threads == available_cpus() >= 1


@pytest.mark.parametrize(
    ("content", "expected"),
    [("max 100000", None), ("150000 100000", 2), ("100000 100000", 1), ("junk", None)],
)
def test_cgroup_quota(tmp_path: Path, content: str, expected: int | None) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(content)
    assert cgroup_cpu_quota(cpu_max) == expected
    assert cgroup_cpu_quota(tmp_path / "absent") is None


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    (tmp_path / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_v1_cpu_quota(tmp_path) is None
    (tmp_path / "cpu.cfs_quota_us").write_text("250000\n")
    assert cgroup_v1_cpu_quota(tmp_path) == 3


def test_quota_caps_the_cpu_count(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("100000 100000")
    assert available_cpus(cpu_max) == 1
    cpu_max.write_text("max 100000")
    assert available_cpus(cpu_max) == available_cpus(tmp_path / "absent") >= 1


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("CTSCAN_PROVIDERS", "MagicExecutionProvider"),
        ("CTSCAN_MAX_UPLOAD_BYTES", "-1"),
        ("CTSCAN_PORT", "70000"),
        ("CTSCAN_CPU_MEM_ARENA", "sometimes"),
    ],
)
def test_bad_values_fail_fast(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        Settings()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("shared", "shared"),
        ("session", "session"),
        ("off", "off"),
        ("TRUE", "session"),
        ("false", "off"),
    ],
)
def test_cpu_arena_choices_and_the_old_booleans(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str
) -> None:
    monkeypatch.setenv("CTSCAN_CPU_MEM_ARENA", value)
    assert Settings().cpu_mem_arena == expected


def test_cpu_arena_booleans_given_in_code() -> None:
    assert Settings(cpu_mem_arena=True).cpu_mem_arena == "session"
    assert Settings(cpu_mem_arena=False).cpu_mem_arena == "off"


def test_empty_optimized_model_dir_means_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTSCAN_OPTIMIZED_MODEL_DIR", "")
    assert Settings().optimized_model_dir is None


def test_graph_cache_is_on_by_default_in_the_user_cache_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("CTSCAN_OPTIMIZED_MODEL_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Settings().optimized_model_dir == tmp_path / "xdg" / "ctscan" / "optimized"
    for ignored in ("", "relative/cache"):  # the XDG rule: only an absolute path counts
        monkeypatch.setenv("XDG_CACHE_HOME", ignored)
        assert default_graph_cache() == tmp_path / "home" / ".cache" / "ctscan" / "optimized"

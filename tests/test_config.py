"""Settings from the environment, and fast failure on nonsense."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings, available_cpus


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
    ("key", "value"),
    [
        ("CTSCAN_PROVIDERS", "MagicExecutionProvider"),
        ("CTSCAN_MAX_UPLOAD_BYTES", "-1"),
        ("CTSCAN_PORT", "70000"),
    ],
)
def test_bad_values_fail_fast(monkeypatch: pytest.MonkeyPatch, key: str, value: str) -> None:
    monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError):
        Settings()

"""Container files: install commands match the project's extras; hadolint and a real compose
implementation accept them (when those tools are installed, as in CI)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = ROOT / "docker" / "Dockerfile"
COMPOSE = ROOT / "docker" / "compose.yaml"


def stage_installs() -> dict[str, set[str]]:
    """Extras installed per build stage, read from the Dockerfile's `pip install ".[...]"`."""
    installs: dict[str, set[str]] = {}
    stage = ""
    for line in DOCKERFILE.read_text().splitlines():
        if match := re.match(r"FROM \S+ AS (\S+)", line):
            stage = match.group(1)
        if match := re.search(r'pip install [^"]*"\.\[([a-z,]+)\]"', line):
            installs[stage] = set(match.group(1).split(","))
    return installs


def test_images_install_declared_extras_and_never_tensorflow() -> None:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    installs = stage_installs()
    assert installs == {"build-cpu": {"cpu", "dicom"}, "build-gpu": {"gpu", "dicom"}}
    for chosen in installs.values():
        assert chosen <= set(extras) and "train" not in chosen
        assert not {"cpu", "gpu"} <= chosen
    assert "tensorflow" not in DOCKERFILE.read_text().lower().replace("no tensorflow", "")


def test_images_run_unprivileged_with_a_healthcheck() -> None:
    text = DOCKERFILE.read_text()
    assert text.count("USER 10001:10001") == 2
    assert text.count('CMD ["python", "-m", "app.healthcheck"]') == 2
    assert "curl" not in text and "tini" in text


def tool(name: str) -> str:
    found = shutil.which(name) or str(Path(sys.executable).parent / name)
    if not Path(found).exists():
        pytest.skip(f"{name} is not installed (dev group)")
    return found


def test_hadolint_accepts_the_dockerfile() -> None:
    result = subprocess.run(
        [tool("hadolint"), str(DOCKERFILE)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("profile", [[], ["--profile", "gpu"], ["--profile", "pacs"]])
def test_compose_config_is_valid(profile: list[str]) -> None:
    result = subprocess.run(
        [tool("docker-compose"), "-f", str(COMPOSE), *profile, "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "target: cpu" in result.stdout
    if profile == ["--profile", "gpu"]:
        assert "capabilities:" in result.stdout and "driver: nvidia" in result.stdout
    if profile == ["--profile", "pacs"]:
        assert "CTSCAN_PACS_URL: http://orthanc:8042/dicom-web" in result.stdout
        assert "CTSCAN_ROUTING_FILE: /srv/routing.toml" in result.stdout


def test_the_pacs_profiles_orthanc_sends_to_the_services_stow_rs_endpoint() -> None:
    """Orthanc's configuration in the pacs profile names the Lua script the PACS tests run and
    the service's STOW-RS root; the service answers at that path."""
    import json

    from app.api.dicomweb import router

    config = json.loads((ROOT / "docker" / "orthanc" / "orthanc.json").read_text())
    assert config["LuaScripts"] == ["/etc/orthanc/ctscan.lua"]
    assert (ROOT / "docker" / "orthanc" / "ctscan.lua").is_file()
    url = config["DicomWeb"]["Servers"]["ctscan"]["Url"]
    assert url == "http://ctscan-pacs:8000/dicomweb/"
    assert "/dicomweb/studies" in {getattr(r, "path", "") for r in router.routes}


def test_healthcheck_module_reports_unready_server() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "app.healthcheck"],
        capture_output=True,
        timeout=30,
        check=False,
        env={"CTSCAN_PORT": "9"},
        cwd=ROOT,
    )
    assert result.returncode == 1

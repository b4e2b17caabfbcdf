"""A real Orthanc (Debian's `orthanc` and `orthanc-dicomweb`) on loopback for the PACS tests:
temporary storage and configuration, basic auth, the DICOMweb plugin, optionally the Lua script
the compose profile uses to send new series to the service (`lua=(LUA,)`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.server import free_port

ORTHANC = Path("/usr/sbin/Orthanc")
DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
LUA = Path(__file__).resolve().parents[1] / "docker" / "orthanc" / "ctscan.lua"
AUTH = ("pacs", "pacs-secret")
MISSING = "Orthanc is not installed (apt-get install orthanc orthanc-dicomweb)"


def installed() -> bool:
    return ORTHANC.is_file() and DICOMWEB_PLUGIN.is_file()


class Orthanc:
    """One Orthanc process; `stop()` and `start()` again keep its storage and port."""

    def __init__(
        self, folder: Path, service_url: str | None = None, lua: tuple[Path, ...] = ()
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.dicomweb = f"{self.url}/dicom-web"
        config: dict[str, Any] = {
            "Name": "ctscan-test",
            "StorageDirectory": str(folder / "storage"),
            "IndexDirectory": str(folder / "storage"),
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {AUTH[0]: AUTH[1]},
            "Plugins": [str(DICOMWEB_PLUGIN)],
            "StableAge": 1,
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        }
        if service_url:
            config["DicomWeb"]["Servers"] = {"ctscan": [f"{service_url}/dicomweb/"]}
        if lua:
            config["LuaScripts"] = [str(path) for path in lua]
        (folder / "orthanc.json").write_text(json.dumps(config))
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.folder / "orthanc.log").open("ab") as log:
            self.process = subprocess.Popen(
                [str(ORTHANC), str(self.folder / "orthanc.json")], stdout=log, stderr=log
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/system", auth=AUTH, timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"Orthanc did not start: {(self.folder / 'orthanc.log').read_text()}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def upload(self, files: list[bytes]) -> str:
        """Store the instances; the Orthanc ID of their study."""
        study = ""
        for data in files:
            answer = httpx.post(f"{self.url}/instances", content=data, auth=AUTH, timeout=30)
            answer.raise_for_status()
            study = answer.json()["ParentStudy"]
        return study

    def get(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}{path}", auth=AUTH, timeout=30)
        answer.raise_for_status()
        return answer.json()

    def post(self, path: str, body: Any) -> httpx.Response:
        return httpx.post(f"{self.url}{path}", json=body, auth=AUTH, timeout=60)

    def series_of(self, study: str) -> list[dict[str, Any]]:
        return list(self.get(f"/studies/{study}/series"))

    def instance_file(self, instance: str) -> bytes:
        answer = httpx.get(f"{self.url}/instances/{instance}/file", auth=AUTH, timeout=30)
        answer.raise_for_status()
        return answer.content

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

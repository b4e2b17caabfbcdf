"""The service installs and runs without TensorFlow: creating the app and predicting never
imports it (checked in a fresh interpreter)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.factories import write_model

SCRIPT = textwrap.dedent(
    """
    import sys
    from fastapi.testclient import TestClient
    from app.config import Settings
    from app.main import create_app
    from tests.conftest import wait_ready
    from tests.factories import png_bytes

    settings = Settings(models_dir=sys.argv[1], intra_op_threads=1)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        response = client.post("/predict", files={"file": ("a.png", png_bytes())})
        assert response.status_code == 200, response.text
    heavy = sorted(m for m in ("tensorflow", "keras", "tf2onnx", "training") if m in sys.modules)
    print("HEAVY", heavy)
    """
)


def test_serving_never_imports_tensorflow(tmp_path: Path) -> None:
    write_model(tmp_path, "toy")
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", SCRIPT, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "HEAVY []" in result.stdout

"""schemathesis against /openapi.json, in process: no 5xx, every response matches the schema."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis")

from schemathesis.checks import positive_data_acceptance  # noqa: E402

from app.config import Settings  # noqa: E402
from app.inference.store import ModelStore  # noqa: E402
from app.main import create_app  # noqa: E402
from tests.factories import write_model  # noqa: E402

_ROOT = Path(tempfile.mkdtemp(prefix="ctscan-schema-"))
write_model(_ROOT, "toy", with_map=True)
_SETTINGS = Settings(models_dir=_ROOT, intra_op_threads=1, default_model="toy")
_STORE = ModelStore(_SETTINGS)
_STORE.load_all()  # loaded up front: schemathesis calls the app without running its lifespan
APP = create_app(_SETTINGS, store=_STORE)
schemathesis.serializer.alias("application/dicom", "application/octet-stream")  # raw DICOM body
schemathesis.serializer.alias("application/zip", "application/octet-stream")  # a study zip
schemathesis.serializer.alias(
    'multipart/related; type="application/dicom"', "application/octet-stream"
)  # STOW-RS shaped
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_schema(case) -> None:  # type: ignore[no-untyped-def]
    response = case.call()
    assert response.status_code < 500, response.text
    # Every upload is "schema-valid" bytes, yet most are not images: a 415/422 for them is the
    # contract, so positive-data acceptance does not apply; everything else is checked.
    case.validate_response(response, excluded_checks=[positive_data_acceptance])

"""The access line's path: DICOM UIDs masked, control characters escaped, length bounded."""

from __future__ import annotations

from typing import Any

import pytest

from app.access_log import MAX_PATH_CHARS, logged_path


def scope(path: str, **params: Any) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": path, "path_params": params}


@pytest.mark.parametrize(
    ("path", "params", "logged"),
    [
        ("/v1/models/chest-ct-cancer/predict", {}, "/v1/models/chest-ct-cancer/predict"),
        ("/v1/models/m/versions/6/predict", {"version": 6}, "/v1/models/m/versions/6/predict"),
        (
            "/v1/models/m/pacs/studies/1.2.840.113619.2.55.3",
            {"name": "m", "study_uid": "1.2.840.113619.2.55.3"},
            "/v1/models/m/pacs/studies/{uid}",
        ),
        (
            "/v1/models/m/pacs/studies/12345",
            {"study_uid": "12345"},
            "/v1/models/m/pacs/studies/{uid}",
        ),
        ("/nowhere/1.2.3.4/x", {}, "/nowhere/{uid}/x"),  # unrouted: masked by its shape
        ("/a\nb/é", {}, "/a\\nb/\\xe9"),
    ],
)
def test_the_path_is_logged_without_uids(path: str, params: dict[str, Any], logged: str) -> None:
    assert logged_path(scope(path, **params)) == logged


def test_a_long_path_is_cut() -> None:
    assert len(logged_path(scope("/" + "x" * 5000))) == MAX_PATH_CHARS

"""The web page in headless Chromium (Debian's build) against a real server: a PNG and a DICOM
are classified, an error is shown as the problem detail, and a screenshot is saved."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.factories import dicom_bytes, encode, write_model

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def page(tmp_path: Path):  # type: ignore[no-untyped-def]
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from tests.test_cli import start_server

    write_model(tmp_path / "models", "mapped", size=32, with_map=True)
    server, base = start_server(tmp_path / "models")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-gpu",
            ],
        )
        tab = browser.new_page(viewport={"width": 1100, "height": 900})
        tab.goto(base + "/")
        yield tab
        browser.close()
    server.terminate()
    server.communicate(timeout=30)


def upload(page, path: Path) -> None:  # type: ignore[no-untyped-def]
    page.set_input_files("#file", str(path))
    page.click("#go")


def test_png_dicom_and_error_in_the_page(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert "Research use, not for diagnosis" in page.inner_text("#notice")
    page.wait_for_selector("#model option", state="attached")
    pixels = np.zeros((64, 64), dtype=np.uint8)
    pixels[:, 32:] = 230
    png = tmp_path / "slice.png"
    png.write_bytes(encode(Image.fromarray(pixels), "PNG"))
    upload(page, png)
    page.wait_for_selector("#result:not([hidden])")
    assert page.inner_text("#label") in ("dark", "bright")
    assert page.locator(".bar").count() == 2
    assert page.get_attribute("#overlay", "src").startswith("data:image/png;base64,")
    shots = Path(os.environ.get("CTSCAN_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "web-png.png"), full_page=True)

    dicom = tmp_path / "slice.dcm"
    dicom.write_bytes(dicom_bytes(np.tile(np.arange(64, dtype=np.uint16) * 40, (64, 1))))
    page.select_option("#window", "brain")
    upload(page, dicom)
    page.wait_for_selector("#meta:has-text('DICOM window')")
    assert "DICOM window: center 40, width 80" in page.inner_text("#meta")
    page.screenshot(path=str(shots / "web-dicom.png"), full_page=True)

    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    upload(page, text)
    page.wait_for_selector("#error:has-text('Unsupported')")
    assert "Unsupported file type" in page.inner_text("#error")

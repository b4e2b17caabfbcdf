"""The web page and the API docs pages in headless Chromium (Debian's build) against a real
server, with every address but loopback unreachable: a PNG and a DICOM are classified, an image
the model cannot judge is shown as such, an error is shown as the problem detail; `/docs` runs a
prediction with "Try it out" and `/redoc` lists the endpoints. Screenshots are saved
(`CTSCAN_SCREENSHOTS`, else the test's folder)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from tests.factories import dicom_bytes, encode, write_model

pytestmark = pytest.mark.browser
CHROMIUM = Path("/usr/bin/chromium")


LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@dataclass
class Offline:
    """A browser tab that can reach only loopback; what it tried beyond is recorded."""

    tab: Any
    base: str
    blocked: list[str] = field(default_factory=list)

    def guard(self, route: Any) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlparse(url).hostname in LOOPBACK:
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()


@pytest.fixture
def offline(tmp_path: Path) -> Iterator[Offline]:
    """The service on loopback with a toy model, and a Chromium tab cut off from the rest."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    from tests.test_cli import start_server

    write_model(tmp_path / "models", "mapped", size=32, with_map=True, with_check=True)
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
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        offline = Offline(context.new_page(), base)
        context.route("**/*", offline.guard)
        yield offline
        browser.close()
    server.terminate()
    server.communicate(timeout=30)


@pytest.fixture
def page(offline: Offline):  # type: ignore[no-untyped-def]
    offline.tab.goto(offline.base + "/")
    yield offline.tab
    assert offline.blocked == []


def screenshots(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("CTSCAN_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def upload(page, path: Path) -> None:  # type: ignore[no-untyped-def]
    page.set_input_files("#file", str(path))
    page.click("#go")


def test_png_dicom_and_error_in_the_page(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert "Research use, not for diagnosis" in page.inner_text("#notice")
    page.wait_for_selector("#model option", state="attached")
    pixels = np.zeros((64, 64), dtype=np.uint8)
    pixels[:, 32:] = 100  # mean 0.2: like the toy check's dark training images
    png = tmp_path / "slice.png"
    png.write_bytes(encode(Image.fromarray(pixels), "PNG"))
    upload(page, png)
    page.wait_for_selector("#result:not([hidden])")
    assert page.inner_text("#label") in ("dark", "bright")
    assert "The model can judge this image" in page.inner_text("#verdict")
    assert page.locator(".bar").count() == 2
    assert page.get_attribute("#overlay", "src").startswith("data:image/png;base64,")
    shots = screenshots(tmp_path)
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


def test_an_image_the_model_cannot_judge_is_shown_as_such(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_selector("#model option", state="attached")
    grey = tmp_path / "grey.png"
    grey.write_bytes(encode(Image.new("L", (64, 64), 128), "PNG"))
    upload(page, grey)
    page.wait_for_selector("#verdict.outside")
    assert "Outside the model's domain" in page.inner_text("#verdict")
    assert "No label" in page.inner_text("#label")
    page.screenshot(path=str(screenshots(tmp_path) / "web-outside.png"), full_page=True)


def test_docs_page_works_offline_and_tries_a_prediction(offline: Offline, tmp_path: Path) -> None:
    tab = offline.tab
    tab.goto(offline.base + "/docs")
    operation = tab.locator("#operations-predict-predict_v1_models__name__predict_post")
    operation.wait_for()
    assert tab.locator(".opblock").count() >= 10
    operation.locator(".opblock-summary").click()
    operation.locator(".try-out__btn").click()
    operation.locator("input[placeholder='name']").fill("mapped")
    image = tmp_path / "dark.png"
    image.write_bytes(encode(Image.new("L", (32, 32), 40), "PNG"))
    operation.locator("input[type='file']").set_input_files(str(image))
    operation.locator(".execute").click()
    status = operation.locator(".live-responses-table tr.response .response-col_status").first
    status.wait_for()
    assert status.inner_text().strip() == "200"
    body = operation.locator(".live-responses-table .microlight").first.inner_text()
    assert '"probabilities"' in body and '"in_domain"' in body
    tab.screenshot(path=str(screenshots(tmp_path) / "docs-try-it-out.png"), full_page=False)
    tab.goto(offline.base + "/redoc")
    title = "Classify one image with the model's default (highest) version"
    tab.locator("h2", has_text=title).first.wait_for()
    assert tab.locator("h2").count() >= 10
    tab.screenshot(path=str(screenshots(tmp_path) / "redoc.png"), full_page=False)
    assert offline.blocked == []


def test_a_study_zip_gives_the_strip_chart_and_the_verdict(page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("pydicom")
    from tests.series_factory import SeriesSpec, study_zip

    page.wait_for_selector("#model option", state="attached")
    archive = tmp_path / "study.zip"
    archive.write_bytes(study_zip(SeriesSpec([0.2, 0.2, 0.8, 0.8, 0.5, 0.2])))
    page.set_input_files("#study-zip", str(archive))
    page.click("#study-go")
    page.wait_for_selector("#study-result:not([hidden])")
    verdict = page.inner_text("#study-verdict")
    assert verdict.startswith("Study: ") and "5 of 6 slices judged, 1 outside" in verdict
    assert page.locator("#strip polyline").count() == 2
    assert page.locator("#keys tr").count() == 1 + 3
    assert "not validated on study labels" in page.inner_text("#study-result")
    page.screenshot(path=str(screenshots(tmp_path) / "web-study.png"), full_page=True)

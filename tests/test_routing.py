"""Routing rules of pushed studies (TOML) and the DICOMweb client's retries against a real HTTP
server that keeps failing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from app.config import Settings
from app.logging_setup import configure_logging
from app.pacs.client import DicomWebClient, PacsConfig, PacsUnavailable
from app.pacs.routing import Routing

SHIPPED_RULES = Path(__file__).resolve().parents[1] / "docker" / "orthanc" / "routing.toml"


def test_the_first_rule_every_condition_of_which_holds_wins(tmp_path: Path) -> None:
    rules = tmp_path / "routing.toml"
    rules.write_text(
        '[[rule]]\nmodel = "head"\n'
        'when = { Modality = "CT", BodyPartExamined = ["HEAD", "BRAIN*"] }\n'
        '[[rule]]\nmodel = "any-ct"\nversion = 2\nwhen = { Modality = "ct" }\n'
    )
    routing = Routing.from_file(rules)
    head = routing.route([{"Modality": "CT", "BodyPartExamined": "brain_stem"}])
    assert head is not None and head.model == "head"
    chest = routing.route([{"Modality": "CT", "BodyPartExamined": "CHEST"}])
    assert chest is not None and (chest.model, chest.version) == ("any-ct", 2)
    assert routing.route([{"Modality": "MR", "BodyPartExamined": "HEAD"}]) is None
    two_series = [{"Modality": "SR"}, {"Modality": "CT", "BodyPartExamined": "HEAD"}]
    assert routing.route(two_series).model == "head"  # type: ignore[union-attr]
    assert Routing.from_file(None).route([{"Modality": "CT"}]) is None


def test_a_rule_with_an_unknown_attribute_or_key_fails_loudly(tmp_path: Path) -> None:
    rules = tmp_path / "routing.toml"
    rules.write_text('[[rule]]\nmodel = "x"\nwhen = { PatientName = "DOE*" }\n')
    with pytest.raises(ValidationError, match="unknown attributes"):
        Routing.from_file(rules)
    rules.write_text('[[rule]]\nmodel = "x"\nmodality = "CT"\nwhen = { Modality = "CT" }\n')
    with pytest.raises(ValidationError):
        Routing.from_file(rules)


def test_the_shipped_rules_route_the_shipped_tasks() -> None:
    routing = Routing.from_file(SHIPPED_RULES)
    expected = {
        ("CT", "HEAD"): "head-ct-hemorrhage",
        ("CT", "CHEST"): "chest-ct-cancer",
        ("DX", "CHEST"): "covid-xray",
        ("CR", "CHEST"): "covid-xray",
    }
    for (modality, part), model in expected.items():
        rule = routing.route([{"Modality": modality, "BodyPartExamined": part}])
        assert rule is not None and rule.model == model
    assert routing.route([{"Modality": "MR", "BodyPartExamined": "HEAD"}]) is None


class Failing(BaseHTTPRequestHandler):
    calls = 0

    def do_GET(self) -> None:
        Failing.calls += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_pacs() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/dicom-web"
    server.shutdown()
    server.server_close()


def test_5xx_answers_are_retried_with_growing_waits_then_reported(
    failing_pacs: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        pacs_url=failing_pacs,
        pacs_username="reader",
        pacs_password=SecretStr("do-not-log-me"),
        pacs_retries=3,
        pacs_backoff_s=0.5,
    )
    root_level = logging.getLogger().level
    configure_logging("INFO")  # the service's default; httpx writes each URL at INFO
    caplog.set_level(logging.DEBUG)
    config = PacsConfig.from_settings(settings)
    assert config is not None and "do-not-log-me" not in repr(config)
    waits: list[float] = []
    client = DicomWebClient(config, sleep=waits.append)
    Failing.calls = 0
    with pytest.raises(PacsUnavailable, match="after 4 tries; last: HTTP 503"):
        client.retrieve_study("1.2.3", 10, 10**6)
    client.close()
    logging.getLogger().setLevel(root_level)
    assert Failing.calls == 4 and waits == [0.5, 1.0, 2.0]
    assert "do-not-log-me" not in caplog.text and "1.2.3" not in caplog.text

"""Logging configured once, for the service and the CLI: text or JSON, with request ids."""

from __future__ import annotations

import json
import logging

from app.request_context import RequestIdFilter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


QUIET_LIBRARIES = ("httpx", "httpcore")


def configure_logging(level: str = "INFO", as_json: bool = False) -> None:
    """Standard logging to stderr; calling it again replaces the project's handler."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_ctscan", False)]:
        root.removeHandler(handler)
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RequestIdFilter())
    handler._ctscan = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    for chatty in QUIET_LIBRARIES:  # their INFO lines carry request URLs (StudyInstanceUIDs)
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))

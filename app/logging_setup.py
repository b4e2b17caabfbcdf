"""Logging configured once, for the service and the CLI."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Standard logging to stderr; calling it again only changes the level."""
    root = logging.getLogger()
    if not any(getattr(h, "_ctscan", False) for h in root.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter(FORMAT))
        handler._ctscan = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(level.upper())

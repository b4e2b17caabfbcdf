"""Which model classifies a study pushed to the service: rules in a TOML file, tried in order,
the first whose conditions all hold for one of the study's series wins. A condition names a
header attribute and the values it may take (case-insensitive; `*` and `?` wildcards); a study
no rule matches is reported, never guessed. See docs/pacs.md."""

from __future__ import annotations

import fnmatch
import tomllib
from collections.abc import Iterable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

ROUTABLE = ("Modality", "BodyPartExamined", "StudyDescription", "SeriesDescription", "ProtocolName")
SeriesAttributes = dict[str, str]  # the ROUTABLE attributes of a series' first instance


class Rule(BaseModel):
    """`model` (and optionally `version`) for the studies whose series match every condition."""

    model_config = ConfigDict(extra="forbid")

    model: str
    version: int | None = None
    when: dict[str, list[str]] = Field(min_length=1)

    @field_validator("when", mode="before")
    @classmethod
    def _lists(cls, value: object) -> object:
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("when")
    @classmethod
    def _known_attributes(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = sorted(set(value) - set(ROUTABLE))
        if unknown:
            raise ValueError(f"unknown attributes {unknown}; rules may test {list(ROUTABLE)}")
        return value

    def matches(self, series: SeriesAttributes) -> bool:
        return all(
            any(fnmatch.fnmatchcase(series.get(name, "").upper(), p.upper()) for p in patterns)
            for name, patterns in self.when.items()
        )


class Routing(BaseModel):
    """The rules of one routing file."""

    model_config = ConfigDict(extra="forbid")

    rule: list[Rule] = Field(default_factory=list)

    @classmethod
    def from_file(cls, path: Path | None) -> Routing:
        """The rules in `path`; none when unset. A bad file fails the start, loudly."""
        if path is None:
            return cls()
        with path.open("rb") as handle:
            return cls.model_validate(tomllib.load(handle))

    def route(self, series: Iterable[SeriesAttributes]) -> Rule | None:
        """The first rule one of the series matches."""
        listed = list(series)
        return next((r for r in self.rule if any(r.matches(s) for s in listed)), None)


def describe(series: Iterable[SeriesAttributes]) -> str:
    """What a study showed the rules (no patient data: the routable attributes only)."""
    seen = sorted({f"{s.get('Modality', '')}/{s.get('BodyPartExamined', '')}" for s in series})
    return "Modality/BodyPartExamined " + ", ".join(seen)

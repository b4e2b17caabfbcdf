"""The coded concepts of the results. Class names and probabilities have no standard codes, so
they use the project's private coding scheme (designator `99CTSCAN`: DICOM reserves `99` for
local schemes); everything else uses DCM, SCT and UCUM codes viewers know."""

from __future__ import annotations

from highdicom.sr import CodedConcept
from pydicom.sr.codedict import codes

SCHEME = "99CTSCAN"
RESEARCH_USE = "Research use only: not for diagnostic use. The study-level rule is not validated."
MANUFACTURER = "ctscan"

CT_PROCEDURE = codes.SCT.ComputedTomography
XRAY_PROCEDURE = CodedConcept("363680008", "SCT", "Radiographic imaging procedure")
UNITLESS = codes.UCUM.NoUnits
NOT_ASSESSED = CodedConcept("not-assessed", SCHEME, "No slice the model can judge")
APPLICABILITY = CodedConcept("applicability", SCHEME, "Applicability of the model")


def label_code(label: str) -> CodedConcept:
    """A class of a model (e.g. `hemorrhage`) as a coded value."""
    return CodedConcept(label, SCHEME, label)  # past 16 characters: a Long Code Value


def probability_code(label: str) -> CodedConcept:
    """The concept name of one class probability."""
    return CodedConcept(f"p-{label}", SCHEME, f"Probability of {label}")


def procedure_code(modality: str | None) -> CodedConcept:
    return CT_PROCEDURE if modality == "CT" else XRAY_PROCEDURE

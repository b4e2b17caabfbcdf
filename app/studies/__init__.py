"""Whole studies: a DICOM series in, per-slice and study-level answers out."""

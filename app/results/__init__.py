"""A study answer as DICOM objects for the source study: a Structured Report and a Secondary
Capture of each key slice."""

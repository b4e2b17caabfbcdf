"""Realistic DICOM series built in memory: CT slices with positions along the patient axis,
orientation, UIDs, windows and instance numbers that do not follow the positions; a localizer
mixed in; zips of shuffled members in nested folders."""

from __future__ import annotations

import io
import random
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

WINDOW = (40.0, 400.0)  # a file window: HU -160 → grey 0, HU 240 → grey 1


@dataclass
class SeriesSpec:
    """One series: grey levels per slice (in the file window), in order along the patient axis."""

    greys: Sequence[float]
    spacing_mm: float = 2.5
    first_z_mm: float = -100.0
    size: int = 32
    patient: str = "Test^Patient"
    patient_id: str = "P-0001"
    study_uid: str = "1.2.826.0.1.3680043.10.1234.1"
    series_uid: str = "1.2.826.0.1.3680043.10.1234.1.2"
    series_number: int = 2
    modality: str = "CT"
    body_part: str | None = None
    image_type: tuple[str, ...] = ("ORIGINAL", "PRIMARY", "AXIAL")
    orientation: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
    positions: bool = True
    sizes: Sequence[int] = field(default_factory=list)
    z_override: dict[int, float] = field(default_factory=dict)


def slice_file(
    spec: SeriesSpec,
    index: int,
    instance_number: int,
    compress: bool = False,
    pixels: np.ndarray | None = None,
    window: tuple[float, float] = WINDOW,
) -> bytes:
    """One slice of `spec` as a DICOM file; `pixels` (grey in [0, 1] through `window`) replace
    the flat grey level."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RLELossless

    size = spec.sizes[index] if spec.sizes else spec.size
    if pixels is not None:
        size = pixels.shape[0]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"{spec.series_uid}.{index + 1}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = spec.study_uid, spec.series_uid
    ds.SeriesNumber, ds.InstanceNumber = spec.series_number, instance_number
    ds.Modality, ds.ImageType = spec.modality, list(spec.image_type)
    if spec.body_part:
        ds.BodyPartExamined = spec.body_part
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = spec.patient, spec.patient_id, "19700101"
    z = spec.z_override.get(index, spec.first_z_mm + index * spec.spacing_mm)
    if spec.positions:
        ds.ImagePositionPatient = [-100.0, -100.0, z]
        ds.ImageOrientationPatient = list(spec.orientation)
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.8], spec.spacing_mm
    ds.Rows = ds.Columns = size
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.RescaleSlope, ds.RescaleIntercept = 1.0, -1024.0
    ds.WindowCenter, ds.WindowWidth = window
    grey = np.full((size, size), spec.greys[index]) if pixels is None else pixels
    ds.PixelData = np.ascontiguousarray(stored_values(grey, window).astype(np.uint16)).tobytes()
    if compress:
        ds.compress(RLELossless)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def series_files(spec: SeriesSpec, compress: bool = False) -> list[bytes]:
    """Every slice; instance numbers run against the positions (last slice is number 1)."""
    count = len(spec.greys)
    return [slice_file(spec, i, count - i, compress) for i in range(count)]


def localizer(spec: SeriesSpec) -> bytes:
    """A scout image of the same study: its own series, ImageType LOCALIZER, coronal."""
    scout = SeriesSpec(
        greys=[0.5],
        study_uid=spec.study_uid,
        series_uid=spec.series_uid + ".99",
        series_number=1,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
        orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0),
        patient=spec.patient,
        patient_id=spec.patient_id,
    )
    return slice_file(scout, 0, 1)


def zipped(files: dict[str, bytes], seed: int = 0) -> bytes:
    """A zip of `files` (name → bytes) written in shuffled order."""
    names = list(files)
    random.Random(seed).shuffle(names)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            archive.writestr(name, files[name])
    return buffer.getvalue()


def study_zip(spec: SeriesSpec, extra: dict[str, bytes] | None = None) -> bytes:
    """The series in nested folders, with a localizer and a text file mixed in."""
    files = {
        f"DICOM/S{spec.series_number}/IM{i:04d}": data for i, data in enumerate(series_files(spec))
    }
    files["DICOM/S1/IM0000"] = localizer(spec)
    files["README.txt"] = b"exported by a viewer"
    files.update(extra or {})
    return zipped(files)


def pattern(spec: SeriesSpec, index: int) -> np.ndarray:
    """A slice whose content shows its orientation: its grey level plus a ramp to the right and
    a brighter top-left corner (grey in [0, 1])."""
    size = spec.size
    ramp = np.tile(np.linspace(0.0, 0.1, size), (size, 1))
    image = np.clip(spec.greys[index] + ramp, 0, 1)
    image[: size // 4, : size // 4] = 1.0
    return image


def stored_values(grey: np.ndarray, window: tuple[float, float] = WINDOW) -> np.ndarray:
    """Stored values (HU + 1024, rounded) that display as `grey` through `window`, within the
    unsigned 16-bit range: below -1024 HU (a window reaching under air, e.g. the lung window) a
    negative value would wrap around in uint16 and turn air white, so air is stored as 0."""
    return (np.round(window[0] - window[1] / 2 + grey * window[1]) + 1024.0).clip(0, 65535)


def single_frame_files(spec: SeriesSpec) -> list[bytes]:
    return [slice_file(spec, i, i + 1, pixels=pattern(spec, i)) for i in range(len(spec.greys))]


def enhanced_ct(spec: SeriesSpec) -> bytes:
    """The series as one multi-frame Enhanced CT object, frames stored last slice first."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    enhanced_uid = "1.2.840.10008.5.1.4.1.1.2.1"
    order = list(range(len(spec.greys)))[::-1]
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = enhanced_uid
    meta.MediaStorageSOPInstanceUID = spec.series_uid + ".1000"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = enhanced_uid, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID, ds.SeriesInstanceUID = spec.study_uid, spec.series_uid
    ds.SeriesNumber, ds.InstanceNumber, ds.Modality = spec.series_number, 1, "CT"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PatientName, ds.PatientID = spec.patient, spec.patient_id
    ds.Rows = ds.Columns = spec.size
    ds.NumberOfFrames = len(order)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = Dataset()
    shared.PlaneOrientationSequence = [Dataset()]
    shared.PlaneOrientationSequence[0].ImageOrientationPatient = list(spec.orientation)
    shared.PixelValueTransformationSequence = [Dataset()]
    transform = shared.PixelValueTransformationSequence[0]
    transform.RescaleSlope, transform.RescaleIntercept, transform.RescaleType = 1.0, -1024.0, "HU"
    shared.FrameVOILUTSequence = [Dataset()]
    shared.FrameVOILUTSequence[0].WindowCenter, shared.FrameVOILUTSequence[0].WindowWidth = WINDOW
    ds.SharedFunctionalGroupsSequence = [shared]
    frames = []
    for index in order:
        group = Dataset()
        group.PlanePositionSequence = [Dataset()]
        z = spec.first_z_mm + index * spec.spacing_mm
        group.PlanePositionSequence[0].ImagePositionPatient = [-100.0, -100.0, z]
        frames.append(group)
    ds.PerFrameFunctionalGroupsSequence = frames
    stored = np.stack([stored_values(pattern(spec, i)) for i in order]).astype(np.uint16)
    ds.PixelData = np.ascontiguousarray(stored).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def nifti(spec: SeriesSpec, compress: bool = True) -> bytes:
    """The series as a NIfTI volume of Hounsfield units, stored in RAS+ voxel order (the
    reader must turn it back to the DICOM display)."""
    import gzip

    import nibabel as nib

    size, count = spec.size, len(spec.greys)
    lps = np.zeros((size, size, count))  # [column (x, to the left), row (y, to posterior), z]
    for index in range(count):
        lps[:, :, index] = (stored_values(pattern(spec, index)) - 1024.0).T
    ras = lps[::-1, ::-1, :]
    affine = np.diag([1.0, 1.0, spec.spacing_mm, 1.0])
    affine[:3, 3] = [100.0 - (size - 1), 100.0 - (size - 1), spec.first_z_mm]
    data = nib.Nifti1Image(ras.astype(np.int16), affine).to_bytes()
    return gzip.compress(data) if compress else data

"""Pixels read where the header says they lie give what pydicom's `pixel_array` gives: on every
file of pydicom's own test set, and on layouts built here (unused high bits set, signed, 8-bit,
implicit VR, an odd pixel count); a study's header pass finds them from a file's start."""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("pydicom")

import pydicom
from pydicom.data import get_testdata_file

from app.imaging.decode import DecodedImage
from app.imaging.dicom import decode_dataset, decode_dicom, native_image
from app.studies.headers import read_header
from app.studies.pipeline import HEAD_BYTES, read_header_of
from app.studies.series import SliceHeader
from app.studies.sources import FolderSource, StudyLimits
from app.studies.volumes import FrameReader
from tests.factories import dicom_bytes
from tests.series_factory import SeriesSpec, series_files

PYDICOM_FILES = sorted(Path(str(get_testdata_file("CT_small.dcm"))).parent.glob("*.dcm"))
HIGH_BITS_SET = np.array([[0xF000, 0x0FFF, 0x8123], [0x7ABC, 0x0800, 0x0001]], dtype=np.uint16)


def through_pydicom(data: bytes) -> DecodedImage | None:
    """The reference: a full parse and pydicom's `pixel_array`; None where that fails. (The
    service ignores pydicom's warnings, e.g. on excess padding; the test run raises them.)"""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return decode_dataset(pydicom.dcmread(io.BytesIO(data)))
        except Exception:
            return None


def decoded_or_none(data: bytes) -> DecodedImage | None:
    try:
        return decode_dicom(data)
    except Exception:
        return None


def is_native(data: bytes) -> bool:
    stream = io.BytesIO(data)
    dataset = pydicom.dcmread(stream, stop_before_pixels=True)
    return native_image(dataset, data, stream.tell()) is not None


def one_header(member: str, data: bytes) -> SliceHeader:
    found = read_header(member, data)
    assert isinstance(found, list) and len(found) == 1
    return found[0]


def assert_same(ours: DecodedImage | None, reference: DecodedImage | None) -> None:
    assert (ours is None) == (reference is None)
    if ours is not None and reference is not None:
        assert ours.pixels.dtype == reference.pixels.dtype == np.float32
        np.testing.assert_array_equal(ours.pixels, reference.pixels)
        assert (ours.window, ours.mode, ours.modality) == (
            reference.window,
            reference.mode,
            reference.modality,
        )


@pytest.mark.parametrize("path", PYDICOM_FILES, ids=lambda p: p.name)
def test_pydicom_test_files_decode_as_pydicom_decodes_them(path: Path) -> None:
    data = path.read_bytes()
    assert_same(decoded_or_none(data), through_pydicom(data))


def test_the_native_path_is_taken_where_it_applies() -> None:
    native = set()
    for path in PYDICOM_FILES:
        try:
            native.add(path.name) if is_native(path.read_bytes()) else None
        except Exception:  # files pydicom cannot parse at all
            continue
    assert {"CT_small.dcm", "MR_small_implicit.dcm", "examples_overlay.dcm"} <= native
    assert not native & {"MR_small_bigendian.dcm", "MR_small_RLE.dcm", "JPEG2000.dcm"}
    assert not native & {"rtdose_1frame.dcm", "liver_1frame.dcm"}  # 32 bits; 1 bit


LAYOUTS: list[dict[str, Any]] = [
    {"bits": (16, 12)},  # the high nibble of every value is masked off
    {"bits": (16, 12), "signed": True},  # bit 11 is the sign
    {"bits": (16, 16), "signed": True},
    {"bits": (16, 12), "implicit_vr": True},
    {"bits": (8, 8)},
    {"bits": (8, 7), "signed": True},
    {"bits": (16, 12), "interpretation": "MONOCHROME1", "window": (0.0, 1000.0)},
]


@pytest.mark.parametrize("layout", LAYOUTS, ids=str)
def test_layouts_decode_as_pydicom_decodes_them(layout: dict[str, Any]) -> None:
    stored = HIGH_BITS_SET if layout["bits"][0] == 16 else HIGH_BITS_SET & 0xFF
    if layout.get("signed"):
        stored = stored.view(np.int16) if layout["bits"][0] == 16 else stored.astype(np.int8)
    data = dicom_bytes(stored, **layout)
    assert is_native(data)
    assert_same(decode_dicom(data), through_pydicom(data))


def test_an_odd_pixel_count_with_its_pad_byte() -> None:
    data = dicom_bytes(np.arange(15, dtype=np.uint8).reshape(3, 5), bits=(8, 8))
    assert is_native(data)
    assert_same(decode_dicom(data), through_pydicom(data))


def test_a_file_cut_inside_its_pixels_is_refused_as_before() -> None:
    data = dicom_bytes(HIGH_BITS_SET, bits=(16, 12))[:-3]
    assert through_pydicom(data) is None
    with pytest.raises(Exception, match="pixel data cannot be decoded"):
        decode_dicom(data)


def test_the_header_pass_locates_the_pixels_from_a_files_start() -> None:
    spec = SeriesSpec([0.2, 0.5, 0.8], size=256)
    for index, data in enumerate(series_files(spec)):
        header = one_header(f"IM{index}", data[:4096])
        assert header.pixels is not None
        decoded = FrameReader(lambda _member, data=data: data).decoded(header, None)
        assert_same(decoded, through_pydicom(data))
        cut = FrameReader(lambda _member, data=data: data[:-10])
        with pytest.raises(Exception, match="cannot be decoded"):
            cut.decoded(header, None)  # shorter than the header said: pydicom's path refuses


def test_compressed_series_are_left_to_pydicom() -> None:
    data = series_files(SeriesSpec([0.5]), compress=True)[0]
    header = one_header("IM0", data)
    assert header.pixels is None
    decoded = FrameReader(lambda _member: data).decoded(header, None)
    assert_same(decoded, through_pydicom(data))


class RecordedHeads(FolderSource):
    """A folder source that notes the size of each head read."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, StudyLimits())
        self.sizes: list[int] = []

    def head(self, name: str, size: int) -> bytes:
        self.sizes.append(size)
        return super().head(name, size)


@pytest.mark.parametrize(
    ("comment_bytes", "compress", "sizes"),
    [
        (0, False, HEAD_BYTES[:1]),
        (10_000, False, HEAD_BYTES),
        (0, True, HEAD_BYTES[:1]),  # compressed pixels: the header ends in 8 kB all the same
    ],
)
def test_the_header_pass_reads_8_kb_when_they_hold_the_whole_header(
    tmp_path: Path, comment_bytes: int, compress: bool, sizes: tuple[int, ...]
) -> None:
    spec = SeriesSpec([0.5], size=256)
    dataset = pydicom.dcmread(io.BytesIO(series_files(spec, compress=compress)[0]))
    dataset.ImageComments = "x" * comment_bytes  # pushes the pixels past the first 8 kB
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    (tmp_path / "IM0").write_bytes(buffer.getvalue())
    source = RecordedHeads(tmp_path)
    found = read_header_of(source, "IM0")
    assert isinstance(found, list) and found[0].size == (256, 256)
    assert source.sizes == list(sizes)
    assert (found[0].pixels is None) == compress


def test_a_head_that_ends_before_the_pixel_data_is_not_taken_for_the_header() -> None:
    from app.studies.headers import HEADER_CUT

    data = series_files(SeriesSpec([0.5], size=64))[0]
    stream = io.BytesIO(data)
    pydicom.dcmread(stream, stop_before_pixels=True)
    at_pixels = stream.tell()
    assert isinstance(read_header("IM0", data[: at_pixels + 12], head=True), list)
    assert read_header("IM0", data[:at_pixels], head=True) == HEADER_CUT  # parses, may lack tags
    assert isinstance(read_header("IM0", data[:at_pixels]), list)  # what a head once passed for

"""Zip members inflated by ISA-L: the same bytes as zipfile's, and a corrupt member or one
larger than its header says refused as zipfile's reading refuses them."""

from __future__ import annotations

import io
import struct
import zipfile

import pytest

pytest.importorskip("isal")

from app.errors import InvalidImage
from app.studies.inflate import read_deflated
from app.studies.sources import StudyLimits, ZipSource
from tests.series_factory import SeriesSpec, series_files

SLICE = series_files(SeriesSpec([0.3], size=128))[0]


def archive(method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as written:
        written.writestr("IM0", SLICE)
    return buffer.getvalue()


def source(data: bytes) -> ZipSource:
    return ZipSource(io.BytesIO(data), StudyLimits())


def test_a_deflated_member_is_inflated_by_isal_to_the_same_bytes() -> None:
    data = archive()
    with zipfile.ZipFile(io.BytesIO(data)) as opened:
        assert read_deflated(opened, opened.getinfo("IM0")) == SLICE == opened.read("IM0")
    assert source(data).read("IM0") == SLICE


def test_a_stored_member_is_left_to_zipfile() -> None:
    data = archive(zipfile.ZIP_STORED)
    with zipfile.ZipFile(io.BytesIO(data)) as opened:
        assert read_deflated(opened, opened.getinfo("IM0")) is None
    assert source(data).read("IM0") == SLICE


def test_a_corrupt_member_is_refused() -> None:
    data = bytearray(archive())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as opened:
        info = opened.getinfo("IM0")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF  # a flipped byte inside the deflate stream
    with pytest.raises(InvalidImage, match="zip member 'IM0'"):
        source(bytes(data)).read("IM0")


def test_a_member_whose_crc_does_not_match_is_refused() -> None:
    data = bytearray(archive())
    central = data.rindex(b"PK\x01\x02")
    data[central + 16] ^= 0xFF  # the CRC-32 the central directory holds
    with pytest.raises(InvalidImage, match="CRC does not match"):
        source(bytes(data)).read("IM0")


def test_a_member_larger_than_its_header_says_is_refused() -> None:
    data = bytearray(archive())
    central = data.rindex(b"PK\x01\x02")  # the member's central directory entry
    struct.pack_into("<I", data, central + 24, len(SLICE) // 2)  # its uncompressed size
    with pytest.raises(InvalidImage, match="larger than its header says"):
        source(bytes(data)).read("IM0")


def test_a_member_smaller_than_its_header_says_is_read_as_zipfile_reads_it() -> None:
    data = bytearray(archive())
    central = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, len(SLICE) * 2)
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as opened:
        info = opened.getinfo("IM0")
        with opened.open(info) as member:
            assert member.read(info.file_size + 1) == SLICE  # zipfile does not object
    assert source(bytes(data)).read("IM0") == SLICE


def test_a_member_cut_short_is_refused() -> None:
    data = bytearray(archive())
    central = data.rindex(b"PK\x01\x02")
    (compressed,) = struct.unpack_from("<I", data, central + 20)
    struct.pack_into("<I", data, central + 20, compressed - 100)  # its compressed size
    with pytest.raises(InvalidImage, match="cut short"):
        source(bytes(data)).read("IM0")


def test_a_member_running_past_the_archive_is_refused() -> None:
    data = bytearray(archive())
    central = data.rindex(b"PK\x01\x02")
    (compressed,) = struct.unpack_from("<I", data, central + 20)
    struct.pack_into("<I", data, central + 20, compressed + 10**6)  # past the archive's end
    start = data.index(b"IM0") + 3  # the member's data, after its local header and name
    data[start : start + 5] = bytes([0, 0xFF, 0xFF, 0, 0])  # a stored block that never ends
    with pytest.raises(InvalidImage, match="zip member 'IM0' cannot be read"):
        source(bytes(data)).read("IM0")  # EOFError inside zipfile, a 500 until 2026-12-05
    with pytest.raises(InvalidImage, match="zip member 'IM0' cannot be read"):
        source(bytes(data)).head("IM0", 64 * 1024)  # the header pass's read, by zipfile

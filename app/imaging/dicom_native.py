"""Uncompressed little-endian DICOM pixels read straight from the file's bytes.

pydicom parses a whole file again to give its `pixel_array`, though the header, once parsed,
says where the pixels lie and how they are stored. For the common case, one grey frame stored
uncompressed in little-endian order, `native_layout` finds that from the header alone (a
study's header pass reads only a file's start), and `NativeLayout.stored` gives the same
values as `pixel_array` from a view on the bytes. Anything else is left to pydicom."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from app.imaging.dicom_values import HeaderValues

IMPLICIT_VR = {"1.2.840.10008.1.2": True, "1.2.840.10008.1.2.1": False}  # native LE syntaxes
PIXEL_DATA_TAG = b"\xe0\x7f\x10\x00"  # (7FE0,0010), little endian
UNDEFINED_LENGTH = 0xFFFFFFFF  # encapsulated (compressed) pixel data


@dataclass(frozen=True)
class NativeLayout:
    """Where one grey frame's stored values lie in their file, and their type."""

    offset: int  # of the first pixel byte
    rows: int
    columns: int
    dtype: str  # of the stored values, as numpy names it: "<u2", "<i2", "<u1", "<i1"
    unused_bits: int  # BitsAllocated - BitsStored

    def stored(self, data: bytes) -> np.ndarray | None:
        """The stored values as pydicom's `pixel_array` gives them (the unused high bits masked,
        or sign-extended when signed); None when `data` ends before the last pixel."""
        count = self.rows * self.columns
        if self.offset + count * np.dtype(self.dtype).itemsize > len(data):
            return None
        values = np.frombuffer(data, self.dtype, count, self.offset)
        if self.unused_bits:
            values = np.left_shift(values, self.unused_bits)
            np.right_shift(values, self.unused_bits, out=values)
        return values.reshape(self.rows, self.columns)


def native_layout(dataset: Any, head: bytes, position: int) -> NativeLayout | None:
    """The layout of the pixels of `dataset`, parsed by pydicom from `head` (the file or its
    start) with `stop_before_pixels`, which leaves the reader at `position`; None unless the
    file holds one grey frame, uncompressed, little endian, of 8 or 16 bits per value."""
    try:
        return _layout(dataset, head, position)
    except (AttributeError, KeyError, TypeError, ValueError, OverflowError):
        return None  # a missing or malformed tag: pydicom decides, and says what is wrong


def _layout(dataset: Any, head: bytes, position: int) -> NativeLayout | None:
    implicit = IMPLICIT_VR.get(str(dataset.file_meta.get("TransferSyntaxUID", "")))
    if implicit is None or tuple(dataset.original_encoding) != (implicit, True):
        return None
    start = _pixel_value_start(head, position, implicit)
    values = HeaderValues(dataset)
    if start is None or values.unsigned("SamplesPerPixel") != 1:
        return None
    if (values.integer("NumberOfFrames") or 1) != 1:
        return None
    rows, columns = values.unsigned("Rows") or 0, values.unsigned("Columns") or 0
    allocated, bits = values.unsigned("BitsAllocated") or 0, values.unsigned("BitsStored") or 0
    signed = values.unsigned("PixelRepresentation")
    if allocated not in (8, 16) or not 0 < bits <= allocated or signed not in (0, 1):
        return None
    if rows <= 0 or columns <= 0 or start[1] < rows * columns * allocated // 8:
        return None
    dtype = f"<{'i' if signed else 'u'}{allocated // 8}"
    return NativeLayout(start[0], rows, columns, dtype, allocated - bits)


def _pixel_value_start(head: bytes, position: int, implicit: bool) -> tuple[int, int] | None:
    """(offset, length) of the Pixel Data value whose element starts at `position`."""
    element = head[position : position + (8 if implicit else 12)]
    if not element.startswith(PIXEL_DATA_TAG) or len(element) < (8 if implicit else 12):
        return None
    if not implicit and element[4:6] not in (b"OB", b"OW"):
        return None
    length = int.from_bytes(element[-4:], "little")
    if length == UNDEFINED_LENGTH:
        return None
    return position + len(element), length

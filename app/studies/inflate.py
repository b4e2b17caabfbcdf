"""Deflated zip members inflated by ISA-L (the `isal` package, in the `dicom` extra).

Inflating each member is the largest cost of a zipped study before `session.run` (1.15 ms for a
512 x 512 CT slice with zlib on our 2-core VM, 0.47 ms with ISA-L). zipfile inflates with zlib
only, so the member's compressed bytes are read through zipfile as if stored (its locking and
its local-header checks) and inflated here; the size and CRC are checked as zipfile checks
them. Without ISA-L, or for anything but a plain deflated member, zipfile reads it."""

from __future__ import annotations

import copy
import zipfile
from typing import Any


def read_deflated(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes | None:
    """The member's bytes, at most `info.file_size + 1` of them (one more says it lied about
    its size; fewer, with the right CRC, are accepted as zipfile accepts them); None when
    zipfile must read it. BadZipFile for a corrupt or truncated member."""
    isal_zlib = _isal_zlib()
    if isal_zlib is None or info.compress_type != zipfile.ZIP_DEFLATED or info.flag_bits & 0x1:
        return None
    as_stored = copy.copy(info)
    as_stored.compress_type, as_stored.file_size = zipfile.ZIP_STORED, info.compress_size
    as_stored.CRC = None  # type: ignore[assignment]  # the compressed bytes have none to check
    with archive.open(as_stored) as member:
        compressed = member.read()
    inflater = isal_zlib.decompressobj(-15)
    try:
        data: bytes = inflater.decompress(compressed, info.file_size + 1)
    except isal_zlib.error as exc:
        raise zipfile.BadZipFile(f"the member cannot be inflated ({exc})") from exc
    if len(data) > info.file_size:
        return data  # the caller refuses it, as it does zipfile's
    if not inflater.eof or isal_zlib.crc32(data) != info.CRC:
        raise zipfile.BadZipFile("the member is cut short or its CRC does not match")
    return data


def _isal_zlib() -> Any:
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib

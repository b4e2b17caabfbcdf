"""Where a study's files come from: a zip archive (read member by member from a spooled file,
never extracted by name), a folder, or the parts of a multipart upload. Each source lists its
files by a name and reads one at a time, with the caps that keep a hostile archive small."""

from __future__ import annotations

import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from app.errors import InvalidImage, PayloadTooLarge
from app.studies.inflate import read_deflated

ZIP_MAGIC = b"PK\x03\x04"


@dataclass(frozen=True)
class StudyLimits:
    """Caps on one study: files, bytes once expanded, and the expansion ratio of a member."""

    max_files: int = 2000
    max_expanded_bytes: int = 4 * 1024**3
    max_ratio: float = 200.0


class StudySource(Protocol):
    """Files of one study, by name."""

    def names(self) -> list[str]: ...

    def read(self, name: str) -> bytes: ...

    def head(self, name: str, size: int) -> bytes: ...

    def close(self) -> None: ...


class ZipSource:
    """The members of a zip archive (folders ignored, any layout)."""

    def __init__(self, handle: IO[bytes], limits: StudyLimits, owns: bool = False) -> None:
        self._handle = handle if owns else None
        try:
            self._zip = zipfile.ZipFile(handle)
            infos = [i for i in self._zip.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError, ValueError) as exc:
            self.close()
            raise InvalidImage(f"the zip archive cannot be read ({exc})") from exc
        self._infos = {info.filename: info for info in infos}
        try:
            check_archive(infos, limits)
        except (InvalidImage, PayloadTooLarge):
            self.close()
            raise

    def close(self) -> None:
        """Close the archive (and the file, when this source opened it)."""
        if getattr(self, "_zip", None) is not None:
            self._zip.close()
        if self._handle is not None:
            self._handle.close()

    def names(self) -> list[str]:
        return list(self._infos)

    def read(self, name: str) -> bytes:
        info = self._infos[name]
        try:
            data = read_deflated(self._zip, info)
            if data is None:
                with self._zip.open(info) as member:
                    data = member.read(info.file_size + 1)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
            raise InvalidImage(f"zip member {name!r} cannot be read ({exc})") from exc
        if len(data) > info.file_size:
            raise InvalidImage(f"zip member {name!r} is larger than its header says")
        return data

    def head(self, name: str, size: int) -> bytes:
        """The first `size` bytes of a member (a DICOM header), without inflating the rest."""
        try:
            with self._zip.open(self._infos[name]) as member:
                return member.read(size)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, NotImplementedError) as exc:
            raise InvalidImage(f"zip member {name!r} cannot be read ({exc})") from exc


def check_archive(infos: list[zipfile.ZipInfo], limits: StudyLimits) -> None:
    """413 for too many members or too many bytes once expanded; 422 for a member that expands
    more than a DICOM file can (a zip bomb)."""
    if len(infos) > limits.max_files:
        raise PayloadTooLarge(
            f"the archive holds {len(infos)} files; the limit is {limits.max_files}"
        )
    expanded = sum(info.file_size for info in infos)
    if expanded > limits.max_expanded_bytes:
        raise PayloadTooLarge(
            f"the archive expands to {expanded} bytes; the limit is {limits.max_expanded_bytes}"
        )
    for info in infos:
        ratio = info.file_size / max(info.compress_size, 1)
        if ratio > limits.max_ratio:
            raise InvalidImage(
                f"zip member {info.filename!r} expands {ratio:.0f} times; the limit is "
                f"{limits.max_ratio:g} (a zip bomb?)"
            )


class FolderSource:
    """Every file under a folder, at any depth (hidden files left out)."""

    def __init__(self, root: Path, limits: StudyLimits) -> None:
        self._root = root
        files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
        if len(files) > limits.max_files:
            raise PayloadTooLarge(
                f"the folder holds {len(files)} files; the limit is {limits.max_files}"
            )
        self._files = {str(p.relative_to(root)): p for p in files}

    def names(self) -> list[str]:
        return list(self._files)

    def read(self, name: str) -> bytes:
        return self._files[name].read_bytes()

    def head(self, name: str, size: int) -> bytes:
        with self._files[name].open("rb") as handle:
            return handle.read(size)

    def close(self) -> None:
        """Nothing held open."""


class PartsSource:
    """Files handed over as readers (the parts of a multipart upload), named by position."""

    def __init__(self, readers: list[Callable[[], bytes]], limits: StudyLimits) -> None:
        if len(readers) > limits.max_files:
            raise PayloadTooLarge(f"{len(readers)} files sent; the limit is {limits.max_files}")
        self._readers = {f"part {index + 1}": reader for index, reader in enumerate(readers)}

    def names(self) -> list[str]:
        return list(self._readers)

    def read(self, name: str) -> bytes:
        return self._readers[name]()

    def head(self, name: str, size: int) -> bytes:
        return self._readers[name]()[:size]

    def close(self) -> None:
        """Nothing held open (the caller owns the files)."""


def open_path(path: Path, limits: StudyLimits) -> StudySource:
    """A folder, or a zip archive, or one file (a single-file study) on disk."""
    if path.is_dir():
        return FolderSource(path, limits)
    with path.open("rb") as handle:
        is_zip = handle.read(4) == ZIP_MAGIC
    if is_zip:
        return ZipSource(path.open("rb"), limits, owns=True)
    return PartsSource([path.read_bytes], limits)

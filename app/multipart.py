"""The files of a `multipart/form-data` body already in memory, parsed in one pass.

python-multipart's parser, fed the whole body at once: no temporary files and no form object,
about 30 µs less than Starlette's form parsing for a 90 kB slice."""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

from app.errors import BadRequest

MAX_PARTS = 16


@dataclass
class _Part:
    headers: dict[bytes, bytes] = field(default_factory=dict)
    data: list[bytes] = field(default_factory=list)


class _Collector:
    """The parser's callbacks: every part's headers and data."""

    def __init__(self) -> None:
        self.parts: list[_Part] = []
        self._name = b""

    def part_begin(self) -> None:
        if len(self.parts) == MAX_PARTS:
            raise BadRequest(f"a form of more than {MAX_PARTS} parts")
        self.parts.append(_Part())

    def header_field(self, data: bytes, start: int, end: int) -> None:
        self._name = data[start:end].lower()
        self.parts[-1].headers[self._name] = b""

    def header_value(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1].headers[self._name] += data[start:end]

    def part_data(self, data: bytes, start: int, end: int) -> None:
        self.parts[-1].data.append(data[start:end])


def boundary_of(content_type: str | None) -> bytes:
    """The boundary named in a multipart Content-Type; 400 without one."""
    _, options = parse_options_header(content_type or "")
    boundary = options.get(b"boundary", b"")
    if not boundary:
        raise BadRequest("a multipart body needs a boundary in its Content-Type")
    return boundary


def form_files(body: bytes, boundary: bytes, name: str) -> list[bytes]:
    """The contents of the file parts (those with a filename) of the form field `name`; 400 for
    a malformed form or one of more than MAX_PARTS parts."""
    collector = _Collector()
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": collector.part_begin,
            "on_header_field": collector.header_field,
            "on_header_value": collector.header_value,
            "on_part_data": collector.part_data,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except MultipartParseError as exc:
        raise BadRequest(f"malformed multipart form: {exc}") from None
    if parser.state != MultipartState.END:
        raise BadRequest("the multipart form ends before its closing boundary")
    wanted = name.encode()
    return [b"".join(part.data) for part in collector.parts if _is_file(part, wanted)]


def _is_file(part: _Part, name: bytes) -> bool:
    _, options = parse_options_header(part.headers.get(b"content-disposition", b""))
    return options.get(b"name") == name and b"filename" in options

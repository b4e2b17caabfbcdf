"""The one-pass multipart form reader of the predict routes (app/multipart.py)."""

from __future__ import annotations

import pytest

from app.errors import BadRequest
from app.multipart import MAX_PARTS, boundary_of, form_files

BOUNDARY = b"b0undary"


def part(name: str, data: bytes, filename: str | None = "a.png") -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    head = f"--b0undary\r\nContent-Disposition: {disposition}\r\nContent-Type: image/png\r\n\r\n"
    return head.encode() + data + b"\r\n"


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + b"--b0undary--\r\n"


def test_the_file_of_the_field_byte_for_byte() -> None:
    data = bytes(range(256)) * 40 + b"\r\n--b0undar"  # CRLFs and a near-boundary inside
    body = form(part("note", b"text", filename=None), part("file", data))
    assert form_files(body, BOUNDARY, "file") == [data]


def test_fields_without_a_filename_and_other_names_are_not_files() -> None:
    body = form(part("file", b"text", filename=None), part("other", b"x"))
    assert form_files(body, BOUNDARY, "file") == []
    assert form_files(form(part("file", b"1"), part("file", b"2")), BOUNDARY, "file") == [
        b"1",
        b"2",
    ]


def test_preamble_padding_and_epilogue_are_allowed() -> None:
    file = part("file", b"data").replace(b"--b0undary\r\n", b"--b0undary \t\r\n", 1)
    body = b"a preamble\r\n" + form(part("note", b"", filename=None), file) + b"an epilogue"
    assert form_files(body, BOUNDARY, "file") == [b"data"]
    headerless = b"--b0undary\r\n\r\nno headers\r\n--b0undary--"
    assert form_files(headerless, BOUNDARY, "file") == []


@pytest.mark.parametrize(
    "body",
    [
        b"not a form at all",
        b"--b0undaryX\r\n\r\ndata\r\n--b0undary--",  # a boundary line with more after it
        b"--b0undary\r\nno colon here\r\n\r\ndata\r\n--b0undary--",
        b"--b0undary\r\nContent-Type: a/b\r\ndata, no empty line\r\n--b0undary--",
        form(part("file", b"data"))[:-18],  # cut before the closing boundary
        b"",
        form(*[part(f"f{i}", b"x") for i in range(MAX_PARTS + 1)]),
    ],
    ids=[
        "garbage",
        "boundary-suffix",
        "header-no-colon",
        "no-blank-line",
        "truncated",
        "empty",
        "too-many-parts",
    ],
)
def test_malformed_forms_are_400(body: bytes) -> None:
    with pytest.raises(BadRequest):
        form_files(body, BOUNDARY, "file")


def test_the_boundary_comes_from_the_content_type() -> None:
    assert boundary_of('multipart/form-data; boundary="abc"') == b"abc"
    for content_type in ("multipart/form-data", None):
        with pytest.raises(BadRequest):
            boundary_of(content_type)

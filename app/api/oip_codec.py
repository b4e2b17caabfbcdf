"""Open Inference Protocol (KServe v2) request decoding: JSON tensors and the binary extension."""

from __future__ import annotations

import base64
import struct
from typing import Any

import numpy as np
from pydantic import BaseModel, Field, ValidationError

from app.errors import BadRequest


class TensorIn(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequest(BaseModel):
    id: str | None = None
    inputs: list[TensorIn] = Field(min_length=1)
    outputs: list[dict[str, Any]] | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)


def parse_request(body: bytes, header_length: str | None) -> tuple[InferRequest, dict[str, Any]]:
    """The request and each input's values: an FP32 array, or a list of BYTES items."""
    head, binary = _split(body, header_length)
    try:
        request = InferRequest.model_validate_json(head)
    except ValidationError as exc:
        raise BadRequest(f"invalid inference request: {exc.errors()[0]['msg']}") from exc
    values, offset = {}, 0
    for tensor in request.inputs:
        if "binary_data_size" in tensor.parameters:
            chunk = _binary_chunk(tensor, binary, offset)
            offset += len(chunk)
            values[tensor.name] = _from_binary(tensor, chunk)
        else:
            values[tensor.name] = _from_json(tensor)
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes after the JSON header belong to no input")
    return request, values


def _binary_chunk(tensor: TensorIn, binary: bytes, offset: int) -> bytes:
    """The `binary_data_size` bytes of `tensor` that start at `offset`; 400 when the size is not
    a whole number of bytes or runs past the body."""
    size = tensor.parameters["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise BadRequest(f"input {tensor.name!r}: binary_data_size must be a whole number >= 0")
    if offset + size > len(binary):
        raise BadRequest(
            f"input {tensor.name!r}: binary_data_size {size} runs past the body "
            f"({len(binary) - offset} bytes left)"
        )
    return binary[offset : offset + size]


def _split(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError as exc:
        raise BadRequest("Inference-Header-Content-Length must be an integer") from exc
    if not 0 < length <= len(body):
        raise BadRequest("Inference-Header-Content-Length exceeds the body")
    return body[:length], body[length:]


def _from_json(tensor: TensorIn) -> Any:
    if tensor.data is None:
        raise BadRequest(f"input {tensor.name!r} has no data")
    if tensor.datatype == "FP32":
        return _fp32(tensor, _json_numbers(tensor))
    if tensor.datatype == "BYTES":
        items = list(np.asarray(tensor.data, dtype=object).ravel())
        return [_bytes_item(item, tensor) for item in items]
    raise BadRequest(f"input {tensor.name!r}: datatype {tensor.datatype} is not FP32 or BYTES")


def _json_numbers(tensor: TensorIn) -> np.ndarray:
    """The FP32 values of a JSON input, flat; a 400 for anything but (nested) lists of numbers."""
    try:
        return np.asarray(tensor.data, dtype=np.float32).ravel()
    except (TypeError, ValueError) as exc:
        raise BadRequest(
            f"input {tensor.name!r}: FP32 data must be numbers, flat or in nested lists of "
            "equal length"
        ) from exc


def _bytes_item(item: Any, tensor: TensorIn) -> bytes:
    """JSON BYTES items are strings: base64 when the input says so (parameter `content_type`
    = `base64`, the default for images), else UTF-8 text."""
    if not isinstance(item, str):
        raise BadRequest(f"input {tensor.name!r}: BYTES items must be strings")
    if tensor.parameters.get("content_type", "base64") == "base64":
        try:
            return base64.b64decode(item, validate=True)
        except ValueError as exc:
            raise BadRequest(f"input {tensor.name!r}: items are not valid base64") from exc
    return item.encode("utf-8")


def _from_binary(tensor: TensorIn, chunk: bytes) -> Any:
    if tensor.datatype == "FP32":
        if len(chunk) % 4:
            raise BadRequest(f"input {tensor.name!r}: binary FP32 data is not a multiple of 4")
        return _fp32(tensor, np.frombuffer(chunk, dtype="<f4"))
    if tensor.datatype == "BYTES":
        return _length_prefixed(chunk, tensor.name)
    raise BadRequest(f"input {tensor.name!r}: datatype {tensor.datatype} is not FP32 or BYTES")


def _length_prefixed(chunk: bytes, name: str) -> list[bytes]:
    items, offset = [], 0
    while offset < len(chunk):
        if offset + 4 > len(chunk):
            raise BadRequest(f"input {name!r}: truncated BYTES element")
        (size,) = struct.unpack_from("<I", chunk, offset)
        items.append(chunk[offset + 4 : offset + 4 + size])
        offset += 4 + size
    return items


def _fp32(tensor: TensorIn, flat: np.ndarray) -> np.ndarray:
    if int(np.prod(tensor.shape)) != flat.size or any(d < 0 for d in tensor.shape):
        raise BadRequest(f"input {tensor.name!r}: {flat.size} values do not fill {tensor.shape}")
    return flat.reshape(tensor.shape)


def response_body(
    model: str, version: int, request_id: str | None, outputs: dict[str, np.ndarray]
) -> dict[str, Any]:
    """A JSON inference response."""
    body: dict[str, Any] = {
        "model_name": model,
        "model_version": str(version),
        "outputs": [
            {
                "name": name,
                "datatype": "FP32",
                "shape": list(array.shape),
                "data": array.astype(np.float32).ravel().tolist(),
            }
            for name, array in outputs.items()
        ],
    }
    if request_id is not None:
        body["id"] = request_id
    return body

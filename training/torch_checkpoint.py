"""Read a PyTorch state dict saved in the legacy (pre-1.6, non-zip) format without PyTorch, as
numpy arrays. The file is a run of pickles (magic number, protocol version, system info, the
state dict, the storage keys) followed by each storage's raw bytes. The unpickler resolves only
the few globals a state dict needs, to stand-ins; anything else is refused, so a hostile file
cannot run code."""

from __future__ import annotations

# pickle is used only through RestrictedUnpickler below, which resolves a fixed few globals
import pickle  # nosec B403
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch state dict this reader accepts."""


@dataclass(frozen=True)
class StorageType:
    """Stand-in for `torch.<X>Storage`: only its element type matters."""

    dtype: type


@dataclass(frozen=True)
class StorageRef:
    key: str
    dtype: type
    numel: int


@dataclass(frozen=True)
class TensorRef:
    """What `torch._utils._rebuild_tensor_v2` would rebuild: a strided view of a storage."""

    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: StorageRef, offset: int, size: Any, stride: Any, *_: Any) -> TensorRef:
    return TensorRef(
        storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride)
    )


class RestrictedUnpickler(pickle.Unpickler):  # nosec B301
    """Resolves `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2` and the
    `torch.*Storage` types; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch" and name in DTYPES:
            return StorageType(DTYPES[name])
        raise CheckpointError(f"the checkpoint needs {module}.{name}, which is not allowed")

    def persistent_load(self, pid: Any) -> StorageRef:
        try:
            kind, storage_type, key, _location, numel = pid[:5]
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"unexpected persistent id {pid!r}") from exc
        if kind != "storage" or not isinstance(storage_type, StorageType):
            raise CheckpointError(f"unexpected persistent id {pid!r}")
        return StorageRef(str(key), storage_type.dtype, int(numel))


def _unpickle(handle: BinaryIO) -> Any:
    return RestrictedUnpickler(handle).load()


def read_state_dict(path: Path) -> dict[str, np.ndarray]:
    """The state dict of a legacy-format checkpoint, tensor name → array (C order)."""
    with path.open("rb") as handle:
        return parse_state_dict(handle)


def parse_state_dict(handle: BinaryIO) -> dict[str, np.ndarray]:
    if _unpickle(handle) != LEGACY_MAGIC:
        raise CheckpointError("not a legacy PyTorch checkpoint (magic number)")
    _unpickle(handle)  # protocol version
    info = _unpickle(handle)
    if not isinstance(info, dict) or not info.get("little_endian", False):
        raise CheckpointError("only little-endian checkpoints are read")
    state = _unpickle(handle)
    keys = _unpickle(handle)
    if not isinstance(state, dict) or not isinstance(keys, list):
        raise CheckpointError("the checkpoint holds no state dict")
    refs = {ref.storage.key: ref.storage for ref in state.values() if isinstance(ref, TensorRef)}
    storages = {key: _read_storage(handle, refs[key]) for key in keys if key in refs}
    return {name: _view(ref, storages) for name, ref in state.items() if isinstance(ref, TensorRef)}


def _read_storage(handle: BinaryIO, ref: StorageRef) -> np.ndarray:
    (count,) = struct.unpack("<q", handle.read(8))
    if count != ref.numel:
        raise CheckpointError(f"storage {ref.key}: {count} elements, expected {ref.numel}")
    itemsize = np.dtype(ref.dtype).itemsize
    data = handle.read(count * itemsize)
    if len(data) != count * itemsize:
        raise CheckpointError(f"storage {ref.key} is truncated")
    return np.frombuffer(data, dtype=ref.dtype)


def _view(ref: TensorRef, storages: dict[str, np.ndarray]) -> np.ndarray:
    storage = storages[ref.storage.key]
    itemsize = storage.dtype.itemsize
    if not ref.size:
        return np.array(storage[ref.offset])
    view = np.lib.stride_tricks.as_strided(
        storage[ref.offset :],
        shape=ref.size,
        strides=tuple(s * itemsize for s in ref.stride),
        writeable=False,
    )
    return np.ascontiguousarray(view)

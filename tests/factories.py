"""Small real artifacts built in memory: ONNX models with valid cards, and image bytes; and a
store of the models in a folder, loaded as the service loads them."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper
from PIL import Image

from app.config import Settings
from app.inference.applicability import ApplicabilityStats, LayerStats, LowerTriangular
from app.inference.store import ModelStore

CLASSES = ["dark", "bright"]
SHIPPED_MODELS = Path(__file__).resolve().parents[1] / "models"


def loaded_store(models_dir: Path = SHIPPED_MODELS, **settings: Any) -> ModelStore:
    """Every model in `models_dir` (the shipped ones by default), loaded as the service loads
    them, with these settings overridden (e.g. `providers`, `max_batch_size`)."""
    store = ModelStore(Settings(models_dir=models_dir, **settings))
    store.load_all()
    return store


def brightness_model(
    size: int = 16,
    classes: list[str] | None = None,
    with_map: bool = False,
    with_features: bool = False,
) -> bytes:
    """An ONNX graph: mean pixel → linear → softmax; bright images → the last class.
    `with_map` adds `class_activation` (N, H, W, classes) = pixel x class weight;
    `with_features` adds `features` (N, 1) = the mean pixel, for an applicability check."""
    classes = classes or CLASSES
    n = len(classes)
    weights = np.linspace(-6.0, 6.0, n, dtype=np.float32).reshape(1, n)
    bias = -weights.reshape(n) * 0.5
    bias[1:-1] += 1.0  # middle classes win around mid-grey
    nodes = [
        helper.make_node("ReduceMean", ["image"], ["mean"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["mean", "w"], ["logits_raw"]),
        helper.make_node("Add", ["logits_raw", "b"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probabilities"], axis=-1),
    ]
    outputs = [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n])]
    if with_map:
        nodes.append(helper.make_node("Mul", ["image", "wflat"], ["class_activation"]))
        outputs.append(
            helper.make_tensor_value_info(
                "class_activation", TensorProto.FLOAT, ["batch", size, size, n]
            )
        )
    if with_features:
        nodes.append(helper.make_node("Identity", ["mean"], ["features"]))
        outputs.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", 1]))
    graph = helper.make_graph(
        nodes,
        "brightness",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", size, size, 1])],
        outputs,
        initializer=[
            helper.make_tensor("w", TensorProto.FLOAT, [1, n], weights.ravel().tolist()),
            helper.make_tensor("b", TensorProto.FLOAT, [n], bias.tolist()),
            helper.make_tensor("wflat", TensorProto.FLOAT, [n], weights.ravel().tolist()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def card_for(name: str, version: int, onnx_bytes: bytes, size: int = 16, **extra: Any) -> dict:
    """A valid model card for `brightness_model`."""
    card: dict[str, Any] = {
        "name": name,
        "version": version,
        "created": "2026-11-22T00:00:00Z",
        "classes": extra.pop("classes", CLASSES),
        "architecture": {"name": "brightness-test"},
        "input": {"height": size, "width": size, "intensity": "none"},
        "sha256": hashlib.sha256(onnx_bytes).hexdigest(),
    }
    card.update(extra)
    return card


# The toy applicability check: the training images' mean pixels were 0.2 (dark) and 0.8
# (bright) with a spread of 0.1, so the score is ((mean - nearest) / 0.1)^2 and mid-grey images
# (0.4-0.6) lie outside the threshold of 4 (two spreads).
TOY_CHECK_MEANS, TOY_CHECK_SPREAD, TOY_CHECK_THRESHOLD = (0.2, 0.8), 0.1, 4.0


def toy_check_stats() -> ApplicabilityStats:
    """Statistics of the toy check (one member, two classes, one feature)."""
    whiten = np.array([[[1 / TOY_CHECK_SPREAD]]], np.float32)  # precision = W Wᵀ
    means = np.array(TOY_CHECK_MEANS, np.float32).reshape(1, 2, 1) @ whiten
    return ApplicabilityStats([LayerStats(means, LowerTriangular.from_dense(whiten), np.ones(1))])


def write_check(folder: Path, **spec: Any) -> dict[str, Any]:
    """Write the toy check's statistics into `folder`; return the card's section."""
    data = toy_check_stats().to_bytes()
    (folder / "applicability.npz").write_bytes(data)
    section = {"sha256": hashlib.sha256(data).hexdigest(), "threshold": TOY_CHECK_THRESHOLD}
    return {**section, **spec}


def write_model(root: Path, name: str, version: int = 1, size: int = 16, **extra: Any) -> Path:
    """Write `<root>/<name>/<version>/{model.onnx, metadata.json}` and return the folder;
    `with_check=True` (or a dict of card fields) adds the toy applicability check."""
    classes = extra.get("classes")
    with_map = extra.pop("with_map", False)
    with_check = extra.pop("with_check", False)
    onnx_bytes = brightness_model(size, classes, with_map, bool(with_check))
    if with_map:
        extra["output"] = {"activation_map": "class_activation"}
    folder = root / name / str(version)
    folder.mkdir(parents=True, exist_ok=True)
    if with_check:
        extra["applicability"] = write_check(
            folder, **(with_check if isinstance(with_check, dict) else {})
        )
    (folder / "model.onnx").write_bytes(onnx_bytes)
    card = card_for(name, version, onnx_bytes, size, **extra)
    (folder / "metadata.json").write_text(json.dumps(card, indent=2))
    return folder


def encode(image: Image.Image, fmt: str, **params: Any) -> bytes:
    """Image → file bytes in the given Pillow format."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def grey_gradient(width: int = 40, height: int = 30, high: int = 255) -> np.ndarray:
    """A horizontal ramp from 0 to `high` (uint8 or uint16 range)."""
    ramp = np.linspace(0, high, width)
    return np.tile(ramp, (height, 1))


def png_bytes(level: int = 200, size: tuple[int, int] = (32, 24), mode: str = "L") -> bytes:
    """A flat PNG of the given grey level."""
    return encode(Image.new(mode, size, level if mode == "L" else (level,) * len(mode)), "PNG")


def dicom_bytes(
    stored: np.ndarray,
    slope: float = 1.0,
    intercept: float = -1024.0,
    interpretation: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    frames: int = 1,
    pixel_data: bool = True,
    modality: str = "CT",
    body_part: str | None = None,
    bits: tuple[int, int] = (16, 16),
    signed: bool = False,
    implicit_vr: bool = False,
) -> bytes:
    """A CT DICOM file (explicit VR little endian, else implicit) with the given stored pixel
    values; `bits` are (allocated, stored), `signed` the pixel representation."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        CTImageStorage,
        ExplicitVRLittleEndian,
        ImplicitVRLittleEndian,
        generate_uid,
    )

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ImplicitVRLittleEndian if implicit_vr else ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName = modality, "Test^Patient"
    if body_part:
        ds.BodyPartExamined = body_part
    ds.Rows, ds.Columns = stored.shape[-2:]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, interpretation
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits[0], bits[1], bits[1] - 1
    ds.PixelRepresentation = int(signed)
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    if frames > 1:
        ds.NumberOfFrames = frames
    if pixel_data:
        dtype = f"<{'i' if signed else 'u'}{bits[0] // 8}"
        ds.PixelData = np.ascontiguousarray(stored.astype(dtype)).tobytes()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()

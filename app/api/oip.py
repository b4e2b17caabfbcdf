"""Open Inference Protocol (KServe v2) endpoints, so Triton and KServe clients work unchanged.

Inputs: `image` FP32 in the model's input shape [N, H, W, C] (already preprocessed), or any
BYTES input carrying encoded images (PNG, JPEG, TIFF, DICOM, ...) that the server decodes and
preprocesses. Outputs: `probabilities` FP32 [N, classes]; with an applicability check also
`applicability_score` and `in_domain` FP32 [N]."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse

from app import __version__
from app.api.deps import StoreDep
from app.api.oip_codec import parse_request, response_body
from app.api.predict import ERRORS, PipelineDep
from app.api.schemas import problem_responses
from app.errors import BadRequest
from app.inference.applicability import IN_DOMAIN as IN_DOMAIN_VERDICT
from app.inference.applicability import OUTSIDE
from app.inference.predict import prepare, run_in_chunks
from app.inference.store import LoadedModel

LOOKUP_ERRORS = problem_responses(400, 404, 503)
OUTPUT = "probabilities"  # the output every model gives, named in metadata and answers
SCORE, IN_DOMAIN = "applicability_score", "in_domain"  # models with an applicability check
router = APIRouter(prefix="/v2", tags=["open inference protocol"])
open_router = APIRouter(prefix="/v2", tags=["open inference protocol"])  # no API key needed


@open_router.get("", summary="Server metadata")
async def server_metadata() -> dict[str, Any]:
    return {"name": "ctscan", "version": __version__, "extensions": ["binary_tensor_data"]}


@open_router.get("/health/live", summary="Server live")
async def server_live() -> dict[str, bool]:
    return {"live": True}


@open_router.get(
    "/health/ready", summary="Server ready", responses={503: {"description": "Not ready"}}
)
async def server_ready(store: StoreDep) -> JSONResponse:
    ready = bool(store.readiness()["ready"])
    return JSONResponse({"ready": ready}, status_code=200 if ready else 503)


def model_metadata(store: Any, model: LoadedModel) -> dict[str, Any]:
    spec, card = model.card.input, model.card
    return {
        "name": card.name,
        "versions": [str(v) for v in sorted(store.models[card.name])],
        "platform": "onnxruntime_onnx",
        "inputs": [
            {
                "name": spec.name,
                "datatype": "FP32",
                "shape": [-1, spec.height, spec.width, spec.channels],
            },
            {"name": "image_bytes", "datatype": "BYTES", "shape": [-1]},
        ],
        "outputs": [
            {"name": name, "datatype": "FP32", "shape": shape}
            for name, shape in output_shapes(model).items()
        ],
    }


def output_shapes(model: LoadedModel) -> dict[str, list[int]]:
    """The outputs a model gives: its probabilities and, with an applicability check, each
    image's score and whether it is in the model's domain (1.0) or outside (0.0)."""
    shapes = {OUTPUT: [-1, len(model.card.classes)]}
    if model.applicability:
        shapes.update({SCORE: [-1], IN_DOMAIN: [-1]})
    return shapes


@router.get("/models/{name}", summary="Model metadata", responses=LOOKUP_ERRORS)
async def metadata(name: str, store: StoreDep) -> dict[str, Any]:
    return model_metadata(store, store.get(name))


@router.get(
    "/models/{name}/versions/{version}", summary="Model version metadata", responses=LOOKUP_ERRORS
)
async def version_metadata(name: str, version: int, store: StoreDep) -> dict[str, Any]:
    return model_metadata(store, store.get(name, version))


@router.get("/models/{name}/ready", summary="Model ready", responses=LOOKUP_ERRORS)
async def model_ready(name: str, store: StoreDep) -> dict[str, Any]:
    return {"name": store.get(name).card.name, "ready": True}


@router.get(
    "/models/{name}/versions/{version}/ready",
    summary="Model version ready",
    responses=LOOKUP_ERRORS,
)
async def version_ready(name: str, version: int, store: StoreDep) -> dict[str, Any]:
    return {"name": store.get(name, version).card.name, "ready": True}


InferHeader = Annotated[str | None, Header(alias="Inference-Header-Content-Length")]


@router.post("/models/{name}/infer", summary="Inference (JSON or binary tensors)", responses=ERRORS)
async def infer(
    name: str, request: Request, pipeline: PipelineDep, header_length: InferHeader = None
) -> dict[str, Any]:
    return await _infer(pipeline.store.get(name), request, pipeline, header_length)


@router.post(
    "/models/{name}/versions/{version}/infer",
    summary="Inference, pinned version",
    responses=ERRORS,
)
async def infer_version(
    name: str,
    version: int,
    request: Request,
    pipeline: PipelineDep,
    header_length: InferHeader = None,
) -> dict[str, Any]:
    return await _infer(pipeline.store.get(name, version), request, pipeline, header_length)


async def _infer(
    model: LoadedModel, request: Request, pipeline: Any, header_length: str | None
) -> dict[str, Any]:
    parsed, values = parse_request(await request.body(), header_length)
    _check_requested_outputs(model, parsed.outputs)
    if len(values) != 1:
        raise BadRequest("send exactly one input: `image` (FP32) or an encoded-image BYTES input")
    ((input_name, value),) = values.items()
    if isinstance(value, np.ndarray):
        batch = _checked_fp32(model, input_name, value)
    else:
        limit = pipeline.settings.max_image_pixels
        batch = await pipeline.runner.run(_prepare_all, model, value, limit)
    chunk = pipeline.settings.batching_for(model.card.name).max_batch_size
    results = await pipeline.runner.run(run_in_chunks, model, batch, chunk)
    outputs = {OUTPUT: results.probabilities}
    parameters = {}
    if model.applicability and results.scores is not None:
        outputs[SCORE] = results.scores
        outputs[IN_DOMAIN] = model.applicability.inside(results.scores).astype(np.float32)
        parameters["applicability_threshold"] = model.applicability.spec.threshold
        verdicts = [IN_DOMAIN_VERDICT if inside else OUTSIDE for inside in outputs[IN_DOMAIN]]
        pipeline.metrics.count_verdicts(model.card.name, verdicts)
    wanted = {o.get("name") for o in parsed.outputs or []} or set(outputs)
    chosen = {name: array for name, array in outputs.items() if name in wanted}
    body = response_body(model.card.name, model.card.version, parsed.id, chosen)
    return {**body, "parameters": parameters} if parameters else body


def _check_requested_outputs(model: LoadedModel, outputs: list[dict[str, Any]] | None) -> None:
    """Every output a request names must be one the model gives (as Triton answers)."""
    known = list(output_shapes(model))
    unknown = [o.get("name") for o in outputs or [] if o.get("name") not in known]
    if unknown:
        raise BadRequest(f"unknown output {unknown[0]!r}; this model gives {known}")


def _checked_fp32(model: LoadedModel, name: str, array: np.ndarray) -> np.ndarray:
    spec = model.card.input
    expected = (spec.height, spec.width, spec.channels)
    if name != spec.name or array.ndim != 4 or tuple(array.shape[1:]) != expected:
        raise BadRequest(
            f"FP32 input must be {spec.name!r} with shape [N, {expected[0]}, "
            f"{expected[1]}, {expected[2]}], got {name!r} {list(array.shape)}"
        )
    if len(array) == 0:
        raise BadRequest("the FP32 input holds no image (N = 0)")
    if not np.isfinite(array).all():
        raise BadRequest("FP32 input holds NaN or infinite values")
    return np.ascontiguousarray(array, dtype=np.float32)


def _prepare_all(model: LoadedModel, items: list[bytes], max_pixels: int) -> np.ndarray:
    if not items:
        raise BadRequest("the BYTES input holds no image")
    return np.stack([prepare(model, item, max_pixels).tensor for item in items])

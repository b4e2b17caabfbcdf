"""`POST /v1/models/{name}/explain`: the prediction plus a heatmap of the evidence."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, Response

from app.api.predict import ERRORS, UPLOAD_BODY, PipelineDep
from app.api.schemas import Explanation
from app.inference.explain import explain, overlay_bytes

router = APIRouter(tags=["predict"])


@router.post(
    "/v1/models/{name}/explain",
    response_model=Explanation,
    responses={
        **ERRORS,
        200: {
            "content": {"image/png": {}},
            "description": "JSON (default), or the overlay PNG with `Accept: image/png`",
        },
    },
    openapi_extra=UPLOAD_BODY,
    summary="Classify one image and show where the evidence is (class activation map)",
)
async def explain_upload(
    name: str,
    pipeline: PipelineDep,
    target: Annotated[str | None, Query(alias="class", description="Class to explain")] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Any:
    model, prepared = await pipeline.prepared(name, None)
    result = pipeline.checked(await pipeline.runner.run(explain, model, prepared, target))
    if accept and "image/png" in accept and "application/json" not in accept:
        return Response(overlay_bytes(result), media_type="image/png")
    return JSONResponse(result)

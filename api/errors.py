"""Error bodies: always {"detail": "<a sentence>"}, documented in the OpenAPI schema."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.schemas import ErrorBody

ERRORS = {status: {"model": ErrorBody} for status in (400, 404, 413, 415, 422, 503)}
IMAGE_ERROR_STATUS = {"empty": 400, "corrupt": 400, "not_image": 415, "too_large": 413}


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
        problems.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    detail = "Invalid request: " + "; ".join(problems)
    if any(str(error.get("loc", ("", ""))[-1]) == "image" for error in exc.errors()):
        detail += ". Send the photo as a multipart form file field named 'image'."
    return JSONResponse(status_code=422, content={"detail": detail})

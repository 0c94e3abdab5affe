"""Error bodies: always {"detail": "<a sentence>"}, documented in the OpenAPI schema.

The service raises domain errors; the handlers here are the one place that maps them to HTTP.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api.batching import QueueFull
from api.decoding import DecodeBusy
from api.schemas import ErrorBody
from api.service import LandmarkExists, StorageUnavailable, UnknownImage, UnknownLandmark
from landmarks.images import ImageError

log = logging.getLogger(__name__)

ERRORS = {status: {"model": ErrorBody} for status in (400, 404, 413, 415, 422, 503)}
WRITE_ERRORS = {**ERRORS, **{status: {"model": ErrorBody} for status in (401, 403, 409)}}
IMAGE_ERROR_STATUS = {"empty": 400, "corrupt": 400, "not_image": 415, "too_large": 413}
STORAGE_RETRY_AFTER = 30


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": detail}, headers=headers)


async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path"))
        problems.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
    detail = "Invalid request: " + "; ".join(problems)
    if any(str(error.get("loc", ("", ""))[-1]) == "image" for error in exc.errors()):
        detail += ". Send the photo as a multipart form file field named 'image'."
    return _error(422, detail)


async def image_error(request: Request, exc: ImageError) -> JSONResponse:
    return _error(IMAGE_ERROR_STATUS[exc.kind], str(exc))


async def unknown_landmark(request: Request, exc: UnknownLandmark) -> JSONResponse:
    return _error(404, f"No landmark with id {exc.args[0]!r}; see GET /landmarks, or create it with POST /landmarks.")


async def unknown_image(request: Request, exc: UnknownImage) -> JSONResponse:
    return _error(404, f"No gallery photo with id {exc.args[0]}.")


async def landmark_exists(request: Request, exc: LandmarkExists) -> JSONResponse:
    return _error(409, f"Landmark {exc.args[0]!r} already exists; add photos to it instead.")


async def busy(request: Request, exc: QueueFull | DecodeBusy) -> JSONResponse:
    return _error(503, "The service is busy; retry in a moment.", {"Retry-After": str(exc.retry_after)})


async def storage_unavailable(request: Request, exc: StorageUnavailable) -> JSONResponse:
    return _error(
        503,
        "The gallery cannot be written right now (the index folder is not writable); nothing was changed. Retry later.",
        {"Retry-After": str(STORAGE_RETRY_AFTER)},
    )


async def internal_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback after this answer; the client gets the one error shape.
    return _error(500, "Internal error: the service could not answer this request. It has been logged.")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ImageError, image_error)
    app.add_exception_handler(UnknownLandmark, unknown_landmark)
    app.add_exception_handler(UnknownImage, unknown_image)
    app.add_exception_handler(LandmarkExists, landmark_exists)
    app.add_exception_handler(QueueFull, busy)
    app.add_exception_handler(DecodeBusy, busy)
    app.add_exception_handler(StorageUnavailable, storage_unavailable)
    app.add_exception_handler(Exception, internal_error)

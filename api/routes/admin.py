"""Gallery management at run time: add landmarks and photos, delete them, reload the index.

Every write needs the operator's API key. A write is acknowledged only once it is durable (photo
fsynced, SQLite committed), and the next search sees it without a restart.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, File, HTTPException, Path, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from landmarks.gallery import Landmark

from api.auth import require_write_key
from api.deps import get_service, image_url
from api.errors import ERRORS
from api.schemas import (
    AddedPhotos,
    Deleted,
    GalleryImageRef,
    LandmarkCreate,
    LandmarkInfo,
    RejectedPhoto,
    Reloaded,
)
from api.service import LandmarkExists, UnknownImage, UnknownLandmark

WRITE_ERRORS = {**ERRORS, 401: ERRORS[400], 403: ERRORS[400], 409: ERRORS[400]}
router = APIRouter(tags=["gallery management"], dependencies=[Depends(require_write_key)], responses=WRITE_ERRORS)
MAX_PHOTOS_PER_REQUEST = 20


@router.post("/landmarks", status_code=201, response_model=LandmarkInfo)
async def create_landmark(request: Request, body: LandmarkCreate) -> LandmarkInfo:
    """Create a landmark with its metadata; add photos to it next."""
    service = get_service(request)
    core = body.model_dump(include={"landmark_id", "name", "city", "country", "lat", "lon"})
    extra = {key: str(value) for key, value in (body.model_extra or {}).items()}
    try:
        landmark = await run_in_threadpool(service.create_landmark, Landmark(**core, extra=extra))
    except LandmarkExists as exc:
        raise HTTPException(409, f"Landmark {body.landmark_id!r} already exists; add photos to it instead.") from exc
    return LandmarkInfo(**landmark.to_dict(), image_count=0)


@router.post("/landmarks/{landmark_id}/images", status_code=201, response_model=AddedPhotos)
async def add_photos(request: Request, landmark_id: str, images: list[UploadFile] = File(..., description="One or more photos.")) -> AddedPhotos:
    """Add photos to a landmark. Unreadable photos are listed in `rejected`; the rest are indexed."""
    service = get_service(request)
    if len(images) > MAX_PHOTOS_PER_REQUEST:
        raise HTTPException(413, f"At most {MAX_PHOTOS_PER_REQUEST} photos per request.")
    photos = [(upload.filename or f"photo-{number}", await upload.read()) for number, upload in enumerate(images)]
    try:
        ids, rejected = await run_in_threadpool(service.add_photos, landmark_id, photos)
    except UnknownLandmark as exc:
        raise HTTPException(404, f"No landmark with id {landmark_id!r}; create it first with POST /landmarks.") from exc
    if not ids:
        reasons = "; ".join(f"{name}: {why}" for name, why in rejected)
        raise HTTPException(400, f"None of the photos could be used. {reasons}")
    return AddedPhotos(
        landmark_id=landmark_id,
        added=[GalleryImageRef(image_id=image_id, image_url=image_url(request, image_id)) for image_id in ids],
        rejected=[RejectedPhoto(filename=name, detail=why) for name, why in rejected],
    )


@router.delete("/landmarks/{landmark_id}", response_model=Deleted)
async def delete_landmark(request: Request, landmark_id: str) -> Deleted:
    """Delete a landmark and all its photos from the index."""
    service = get_service(request)
    try:
        removed = await run_in_threadpool(service.delete_landmark, landmark_id)
    except UnknownLandmark as exc:
        raise HTTPException(404, f"No landmark with id {landmark_id!r}.") from exc
    return Deleted(deleted=landmark_id, removed_images=removed)


@router.delete("/gallery/{image_id}", response_model=Deleted)
async def delete_photo(request: Request, image_id: int = Path(ge=0, le=2**63 - 1)) -> Deleted:
    """Delete one gallery photo from the index."""
    service = get_service(request)
    try:
        await run_in_threadpool(service.delete_image, image_id)
    except UnknownImage as exc:
        raise HTTPException(404, f"No gallery photo with id {image_id}.") from exc
    return Deleted(deleted=str(image_id), removed_images=1)


@router.post("/index/reload", response_model=Reloaded)
async def reload_index(request: Request) -> Reloaded:
    """Re-open the index from disk (after an offline `landmarks index build`), swapping it in
    without dropping a request: searches in flight finish on the old one."""
    current = get_service(request)
    fresh = await run_in_threadpool(current.reloaded)
    request.app.state.service = fresh
    request.app.state.retired.append(current)  # closed at shutdown, once nothing can still use it
    return Reloaded(gallery_size=len(fresh.index), landmark_count=len(fresh.landmarks))


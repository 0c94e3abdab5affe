"""Gallery management at run time: add landmarks and photos, delete them, reload the index.

Every write needs the operator's API key. A write is acknowledged only once it is durable (photo
fsynced, SQLite committed), and the next search sees it without a restart.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, File, HTTPException, Path, UploadFile
from starlette.concurrency import run_in_threadpool

from api.auth import require_write_key
from api.deps import ImageUrlsDep, ServiceDep
from api.errors import WRITE_ERRORS
from api.photos import embed_upload
from api.schemas import (
    AddedPhotos,
    Deleted,
    GalleryImageRef,
    LandmarkCreate,
    LandmarkInfo,
    RejectedPhoto,
    Reloaded,
    landmark_fields,
)
from api.service import PreparedPhoto
from landmarks.images import ImageError

router = APIRouter(tags=["gallery management"], dependencies=[Depends(require_write_key)], responses=WRITE_ERRORS)
MAX_PHOTOS_PER_REQUEST = 20


@router.post("/landmarks", status_code=201, response_model=LandmarkInfo)
async def create_landmark(service: ServiceDep, body: LandmarkCreate) -> LandmarkInfo:
    """Create a landmark with its metadata; add photos to it next."""
    landmark = await run_in_threadpool(service.create_landmark, body.to_landmark())
    return LandmarkInfo(**landmark_fields(landmark), image_count=0)


@router.post("/landmarks/{landmark_id}/images", status_code=201, response_model=AddedPhotos)
async def add_photos(
    service: ServiceDep,
    image_urls: ImageUrlsDep,
    landmark_id: str,
    # No maxItems in the schema: past the limit the answer is 413, which schema validators (and
    # Schemathesis) do not accept for a schema-violating request.
    images: Annotated[list[UploadFile], File(description=f"One to {MAX_PHOTOS_PER_REQUEST} photos (more: 413).")],
) -> AddedPhotos:
    """Add photos to a landmark. Unreadable photos are listed in `rejected`; the rest are indexed.

    Photos are decoded and embedded one at a time (a request of many large photos holds one decoded
    photo, not all of them); the photo files are then stored and committed together.
    """
    if len(images) > MAX_PHOTOS_PER_REQUEST:
        raise HTTPException(413, f"At most {MAX_PHOTOS_PER_REQUEST} photos per request.")
    service.require_landmark(landmark_id)  # before the work of embedding
    prepared, rejected = [], []
    for number, upload in enumerate(images):
        filename = upload.filename or f"photo-{number}"
        data = await upload.read()
        try:
            query = await embed_upload(service, data)
            prepared.append(PreparedPhoto(filename, data, query.vector, query.prior))
        except ImageError as exc:
            rejected.append(RejectedPhoto(filename=filename, detail=str(exc)))
    if not prepared:
        reasons = "; ".join(f"{photo.filename}: {photo.detail}" for photo in rejected)
        raise HTTPException(400, f"None of the photos could be used. {reasons}")
    outcome = await run_in_threadpool(service.add_photos, landmark_id, prepared)
    rejected += [
        RejectedPhoto(filename=name, detail=f"The same photo as {first!r} in this request.")
        for name, first in outcome.duplicates
    ]
    return AddedPhotos(
        landmark_id=landmark_id,
        added=[GalleryImageRef(image_id=image_id, image_url=image_urls(image_id)) for _, image_id in outcome.added],
        rejected=rejected,
    )


@router.delete("/landmarks/{landmark_id}", response_model=Deleted)
async def delete_landmark(service: ServiceDep, landmark_id: str) -> Deleted:
    """Delete a landmark and all its photos from the index."""
    removed = await run_in_threadpool(service.delete_landmark, landmark_id)
    return Deleted(deleted=landmark_id, removed_images=removed)


@router.delete("/gallery/{image_id}", response_model=Deleted)
async def delete_photo(service: ServiceDep, image_id: int = Path(ge=0, le=2**63 - 1)) -> Deleted:
    """Delete one gallery photo from the index."""
    await run_in_threadpool(service.delete_image, image_id)
    return Deleted(deleted=str(image_id), removed_images=1)


@router.post("/index/reload", response_model=Reloaded)
async def reload_index(service: ServiceDep) -> Reloaded:
    """Re-open the index from disk (after an offline `landmarks index build`), swapping it in
    without dropping a request: searches in flight finish on the old one, writes wait for the swap."""
    await run_in_threadpool(service.reload)
    return Reloaded(gallery_size=service.gallery_size, landmark_count=len(service.landmarks))

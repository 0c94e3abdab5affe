"""Reading the gallery: photos, the landmark list, one landmark."""

from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from api.deps import ImageUrlsDep, ServiceDep
from api.errors import ERRORS
from api.schemas import ExcludedPhoto, GalleryImageRef, LandmarkDetail, LandmarkList, LandmarkSummary, landmark_fields
from api.service import UnknownLandmark
from landmarks.images import ImageError

log = logging.getLogger(__name__)
router = APIRouter(tags=["gallery"])


@router.get(
    "/gallery/{image_id}",
    name="gallery_image",
    response_class=Response,
    responses={200: {"content": {"image/jpeg": {}}}, **ERRORS},
)
async def gallery_image(
    service: ServiceDep,
    image_id: int = Path(ge=0, le=2**63 - 1),
    size: int = Query(
        512,
        ge=64,
        le=1024,
        description="Longest side at most this; served in sizes 64, 128, 256, 512, 1024 (rounded down).",
    ),
) -> Response:
    """A gallery photo as JPEG, longest side at most `size` pixels."""
    try:
        data = await run_in_threadpool(service.thumbnail, image_id, service.thumbnail_size(size))
    except (ImageError, OSError) as exc:
        log.warning("gallery photo unreadable", extra={"image_id": image_id, "error": str(exc)})
        raise HTTPException(404, f"Gallery photo {image_id} is no longer readable.") from exc
    return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})


@router.get("/landmarks", response_model=LandmarkList, responses=ERRORS)
async def list_landmarks(
    service: ServiceDep,
    image_urls: ImageUrlsDep,
    q: str | None = Query(None, max_length=200, description="Filter by name or id."),
) -> LandmarkList:
    """The landmarks in the gallery, sorted by name."""
    needle = (q or "").strip().casefold()
    chosen = [
        landmark
        for landmark in service.landmarks.values()
        if not needle or needle in landmark.name.casefold() or needle in landmark.landmark_id.casefold()
    ]
    chosen.sort(key=lambda landmark: landmark.name.casefold())
    samples = await run_in_threadpool(service.sample_images)
    counts = service.counts
    items = [
        LandmarkSummary(
            **landmark_fields(landmark),
            image_count=counts.get(landmark.landmark_id, 0),
            excluded_count=service.excluded_counts.get(landmark.landmark_id, 0),
            sample_image_url=image_urls(samples[landmark.landmark_id]) if landmark.landmark_id in samples else None,
        )
        for landmark in chosen
    ]
    return LandmarkList(landmarks=items, total=len(items))


@router.get("/landmarks/{landmark_id}", response_model=LandmarkDetail, responses=ERRORS)
async def get_landmark(service: ServiceDep, image_urls: ImageUrlsDep, landmark_id: str) -> LandmarkDetail:
    """One landmark with all its gallery photos."""
    landmark = service.landmark(landmark_id)
    if landmark is None:
        raise UnknownLandmark(landmark_id)
    image_ids, excluded = await run_in_threadpool(service.images_of, landmark_id)
    refs = [GalleryImageRef(image_id=image_id, image_url=image_urls(image_id)) for image_id in image_ids]
    left_out = [
        ExcludedPhoto(image_id=image_id, image_url=image_urls(image_id), reason=review.reason, detail=review.detail)
        for image_id, review in excluded
    ]
    return LandmarkDetail(**landmark_fields(landmark), image_count=len(refs), images=refs, excluded=left_out)

"""POST /search: a photo in, the landmark and the closest gallery photos out; POST /search/batch: several."""

from __future__ import annotations

import asyncio
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, File, HTTPException, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from api.batching import QueueFull
from api.decoding import DecodeBusy
from api.deps import BatcherDep, ImageUrls, ImageUrlsDep, ServiceDep
from api.errors import ERRORS, IMAGE_ERROR_STATUS
from api.photos import embed_upload_keeping, upload_location
from api.schemas import (
    BatchError,
    BatchItem,
    BatchResponse,
    BestLandmark,
    Detection,
    LandmarkHit,
    Match,
    PhotoLocation,
    SearchResponse,
    landmark_fields,
)
from api.service import SearchOutcome
from landmarks.images import ImageError
from landmarks.search.ranking import distance_km

router = APIRouter(tags=["search"])
# Photos per POST /search/batch (Cloud Vision's batch size): a bigger batch is refused whole (413).
MAX_BATCH_PHOTOS = 16


def given_location(
    lat: Annotated[
        float | None,
        Query(ge=-90, le=90, description="Where the photo was taken (with lon), when it carries no EXIF GPS."),
    ] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180, description="Longitude, with lat.")] = None,
) -> tuple[float, float] | None:
    if (lat is None) != (lon is None):
        raise HTTPException(422, "Give both lat and lon, or neither.")
    return None if lat is None else (lat, lon)


GivenLocationDep = Annotated[tuple[float, float] | None, Depends(given_location)]
# Finding the box embeds 21 crops of the photo: p50 1,456 ms against 98 ms without (bench/region.py),
# so only on request.
BoxQuery = Annotated[
    bool,
    Query(description="Also find where the named landmark is in the photo (`landmark.box`); slower."),
]


# Every region of the photo searched as a photo (landmarks.search.detection): some two dozen crops.
DetectQuery = Annotated[
    Literal["best", "all"],
    Query(description="`all`: also every landmark the photo shows, each with its region (`detections`); slower."),
]


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
async def search(
    service: ServiceDep,
    batcher: BatcherDep,
    image_urls: ImageUrlsDep,
    image: Annotated[UploadFile, File(description="The photo: JPEG, PNG, WebP or HEIC.")],
    given: GivenLocationDep,
    k: Annotated[int, Query(ge=1, le=100, description="How many gallery photos to return.")] = 5,
    box: BoxQuery = False,
    detect: DetectQuery = "best",
) -> SearchResponse:
    """Find the landmark in a photo, with the k closest gallery photos. Where the photo was taken (its
    EXIF GPS, else `lat`/`lon`) lifts the landmarks near it. `box=true`: and where the landmark is in it.
    `detect=all`: and every landmark the photo shows (`detections`)."""
    data = await image.read()
    location, source = upload_location(data, given)
    find_all = detect == "all"
    query, photo = await embed_upload_keeping(service, data, batcher, location, keep=box or find_all)
    outcome = await run_in_threadpool(service.search_query, query, k, photo, locate=box, find_all=find_all)
    return to_response(outcome, image_urls, service.empty_notice, source)


@router.post("/search/batch", response_model=BatchResponse, responses=ERRORS)
async def search_batch(
    service: ServiceDep,
    batcher: BatcherDep,
    image_urls: ImageUrlsDep,
    images: Annotated[list[UploadFile], File(description=f"One to {MAX_BATCH_PHOTOS} photos (more: 413).")],
    given: GivenLocationDep,
    k: Annotated[int, Query(ge=1, le=100, description="How many gallery photos to return per photo.")] = 5,
    box: BoxQuery = False,
) -> BatchResponse:
    """Several photos in one request: an answer or an error per photo, in order; one bad photo does
    not fail the others (when none can be searched, the first one's error answers the request). The
    photos are embedded together (the micro-batcher groups them)."""
    if len(images) > MAX_BATCH_PHOTOS:
        raise HTTPException(413, f"At most {MAX_BATCH_PHOTOS} photos per batch.")
    uploads = [
        (upload.filename or f"photo {position + 1}", await upload.read()) for position, upload in enumerate(images)
    ]
    locations = [upload_location(data, given) for _, data in uploads]
    embedded = await asyncio.gather(
        *(
            embed_upload_keeping(service, data, batcher, location, keep=box)
            for (_, data), (location, _) in zip(uploads, locations, strict=True)
        ),
        return_exceptions=True,
    )
    items = []
    for (filename, _), embedded_or_error, (_, source) in zip(uploads, embedded, locations, strict=True):
        query, photo = embedded_or_error if isinstance(embedded_or_error, tuple) else (embedded_or_error, None)
        if isinstance(query, ImageError):
            items.append(
                BatchItem(filename=filename, error=BatchError(status=IMAGE_ERROR_STATUS[query.kind], detail=str(query)))
            )
        elif isinstance(query, (QueueFull, DecodeBusy)):
            error = BatchError(status=503, detail="The service is busy; send this photo again in a moment.")
            items.append(BatchItem(filename=filename, error=error))
        elif isinstance(query, BaseException):
            raise query
        else:
            outcome = await run_in_threadpool(service.search_query, query, k, photo)
            result = to_response(outcome, image_urls, service.empty_notice, source)
            items.append(BatchItem(filename=filename, result=result))
    if all(item.error is not None for item in items):
        # Nothing to answer: refused whole, as POST /landmarks/{id}/images refuses a batch of bad photos.
        first = items[0]
        raise HTTPException(
            first.error.status, f"None of the photos could be searched. {first.filename}: {first.error.detail}"
        )
    return BatchResponse(results=items)


def to_response(
    outcome: SearchOutcome, image_urls: ImageUrls, notice: str | None, location_source: str | None
) -> SearchResponse:
    """location_source: how the photo's location is known (upload_location), None when it is not."""
    result, landmarks, counts = outcome.result, outcome.landmarks, outcome.counts

    def name_of(landmark_id: str) -> str:
        landmark = landmarks.get(landmark_id)
        return landmark.name if landmark else landmark_id

    hits = []
    for scored, confidence in zip(result.landmarks, result.confidences, strict=True):
        landmark = landmarks.get(scored.landmark_id)
        fields = (
            landmark_fields(landmark) if landmark else {"landmark_id": scored.landmark_id, "name": scored.landmark_id}
        )
        distance = None
        if (
            result.location is not None
            and landmark is not None
            and landmark.lat is not None
            and landmark.lon is not None
        ):
            distance = round(distance_km(result.location, (landmark.lat, landmark.lon)), 3)
        hits.append(
            LandmarkHit(
                **fields,
                image_count=counts.get(scored.landmark_id, 0),
                score=round(scored.score, 4),
                confidence=round(confidence, 4),
                distance_km=distance,
            )
        )
    best = None
    if result.landmark is not None:
        region = outcome.region
        best = BestLandmark(
            landmark_id=result.landmark.landmark_id,
            name=name_of(result.landmark.landmark_id),
            confidence=round(result.confidence, 4),
            box=[round(v, 4) for v in region.box] if region is not None else None,
            box_source=region.source if region is not None else None,
        )
    detections = None
    if outcome.detections is not None:
        detections = [
            Detection(
                landmark_id=found.landmark_id,
                name=name_of(found.landmark_id),
                confidence=round(found.confidence, 4),
                box=[round(v, 4) for v in found.box],
            )
            for found in outcome.detections
        ]
    matches = [
        Match(
            image_id=match.image_id,
            landmark_id=match.landmark_id,
            name=name_of(match.landmark_id),
            score=round(match.score, 4),
            image_url=image_urls(match.image_id),
        )
        for match in result.matches
    ]
    return SearchResponse(
        landmark=best,
        landmarks=hits,
        matches=matches,
        gallery_size=outcome.gallery_size,
        notice=notice,
        photo_location=None
        if result.location is None
        else PhotoLocation(lat=result.location[0], lon=result.location[1], source=location_source),
        refusal=result.refusal,
        detections=detections,
    )

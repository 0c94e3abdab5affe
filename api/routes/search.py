"""POST /search: a photo in, the landmark and the closest gallery photos out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile
from starlette.concurrency import run_in_threadpool

from api.deps import BatcherDep, ImageUrls, ImageUrlsDep, ServiceDep
from api.errors import ERRORS
from api.photos import embed_upload
from api.schemas import BestLandmark, LandmarkHit, Match, SearchResponse, landmark_fields
from api.service import SearchOutcome

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
async def search(
    service: ServiceDep,
    batcher: BatcherDep,
    image_urls: ImageUrlsDep,
    image: Annotated[UploadFile, File(description="The photo: JPEG, PNG, WebP or HEIC.")],
    k: Annotated[int, Query(ge=1, le=100, description="How many gallery photos to return.")] = 5,
) -> SearchResponse:
    """Find the landmark in a photo, with the k closest gallery photos."""
    query = await embed_upload(service, await image.read(), batcher)
    outcome = await run_in_threadpool(service.search_query, query, k)
    return to_response(outcome, image_urls, service.empty_notice)


def to_response(outcome: SearchOutcome, image_urls: ImageUrls, notice: str | None) -> SearchResponse:
    result, landmarks, counts = outcome.result, outcome.landmarks, outcome.counts

    def name_of(landmark_id: str) -> str:
        landmark = landmarks.get(landmark_id)
        return landmark.name if landmark else landmark_id

    hits = []
    for scored in result.landmarks:
        landmark = landmarks.get(scored.landmark_id)
        fields = (
            landmark_fields(landmark) if landmark else {"landmark_id": scored.landmark_id, "name": scored.landmark_id}
        )
        hits.append(LandmarkHit(**fields, image_count=counts.get(scored.landmark_id, 0), score=round(scored.score, 4)))
    best = None
    if result.landmark is not None:
        best = BestLandmark(
            landmark_id=result.landmark.landmark_id,
            name=name_of(result.landmark.landmark_id),
            confidence=round(result.confidence, 4),
        )
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
        refusal=result.refusal,
    )

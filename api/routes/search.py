"""POST /search: a photo in, the landmark and the closest gallery photos out."""

from __future__ import annotations

from fastapi import APIRouter, File, HTTPException, Query, Request, UploadFile
from starlette.concurrency import run_in_threadpool

from landmarks.images import ImageError

from api.batching import QueueFull
from api.deps import get_service, image_url
from api.errors import ERRORS, IMAGE_ERROR_STATUS
from api.schemas import BestLandmark, LandmarkHit, Match, SearchResponse
from api.service import SearchOutcome

router = APIRouter(tags=["search"])


@router.post("/search", response_model=SearchResponse, responses=ERRORS)
async def search(
    request: Request,
    image: UploadFile = File(..., description="The photo: JPEG, PNG, WebP or HEIC."),
    k: int = Query(5, ge=1, le=100, description="How many gallery photos to return."),
) -> SearchResponse:
    """Find the landmark in a photo, with the k closest gallery photos."""
    service = get_service(request)
    data = await image.read()
    try:
        # Decoding and resizing run on a worker thread, off the event loop and off the model's path.
        photo = await run_in_threadpool(service.decode, data)
    except ImageError as exc:
        raise HTTPException(IMAGE_ERROR_STATUS[exc.kind], str(exc)) from exc
    batcher = request.app.state.batcher
    try:
        if batcher is not None:
            vector = await batcher.submit(photo)
        else:
            vector = (await run_in_threadpool(service.embed, [photo]))[0]
    except QueueFull as exc:
        raise HTTPException(503, "The service is busy; retry in a moment.", headers={"Retry-After": str(exc.retry_after)}) from exc
    outcome = await run_in_threadpool(service.search_vector, vector, k)
    return to_response(request, outcome, service.empty_notice)


def to_response(request: Request, outcome: SearchOutcome, notice: str | None) -> SearchResponse:
    result, landmarks, counts = outcome.result, outcome.landmarks, outcome.counts

    def name_of(landmark_id: str) -> str:
        landmark = landmarks.get(landmark_id)
        return landmark.name if landmark else landmark_id

    hits = []
    for scored in result.landmarks:
        landmark = landmarks.get(scored.landmark_id)
        fields = landmark.to_dict() if landmark else {"landmark_id": scored.landmark_id, "name": scored.landmark_id}
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
            image_url=image_url(request, match.image_id),
        )
        for match in result.matches
    ]
    return SearchResponse(landmark=best, landmarks=hits, matches=matches, gallery_size=outcome.gallery_size, notice=notice)

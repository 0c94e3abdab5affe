"""The FastAPI application: model and index load in the lifespan, inference runs off the event loop."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from landmarks.images import ImageError

from api.limits import BodySizeLimit
from api.schemas import (
    BestLandmark,
    ErrorBody,
    GalleryImageRef,
    Health,
    LandmarkDetail,
    LandmarkHit,
    LandmarkList,
    LandmarkSummary,
    Match,
    Ready,
    SearchResponse,
)
from api.service import SearchOutcome, SearchService, UnknownImage
from api.settings import Settings

log = logging.getLogger(__name__)

IMAGE_ERROR_STATUS = {"empty": 400, "corrupt": 400, "not_image": 415, "too_large": 413}
ERRORS = {status: {"model": ErrorBody} for status in (400, 404, 413, 415, 422, 503)}


def create_app(settings: Settings | None = None, service: SearchService | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.service = service or await run_in_threadpool(SearchService.load, settings)
        try:
            yield
        finally:
            app.state.service.close()

    app = FastAPI(
        title="Landmark Search",
        version="0.1.0",
        summary="Send a photo, get the landmark it shows with the closest gallery photos.",
        lifespan=lifespan,
    )
    app.state.service = None
    if settings.cors_origins:  # closed by default: browsers may call only from listed origins
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"])
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "query"))
            problems.append(f"{where or 'request'}: {error.get('msg', 'invalid')}")
        detail = "Invalid request: " + "; ".join(problems)
        if any(str(e.get("loc", ["", ""])[-1]) == "image" for e in exc.errors()):
            detail += ". Send the photo as a multipart form file field named 'image'."
        return JSONResponse(status_code=422, content={"detail": detail})

    def get_service(request: Request) -> SearchService:
        current = request.app.state.service
        if current is None:
            raise HTTPException(503, "The model and index are still loading; try again in a moment.")
        return current

    def image_url(request: Request, image_id: int) -> str:
        return str(request.url_for("gallery_image", image_id=image_id))

    def search_response(request: Request, outcome: SearchOutcome, notice: str | None) -> SearchResponse:
        result, landmarks, counts = outcome.result, outcome.landmarks, outcome.counts

        def name_of(landmark_id: str) -> str:
            landmark = landmarks.get(landmark_id)
            return landmark.name if landmark else landmark_id

        hits = []
        for scored in result.landmarks:
            landmark = landmarks.get(scored.landmark_id)
            fields = landmark.to_dict() if landmark else {"landmark_id": scored.landmark_id, "name": scored.landmark_id}
            hits.append(LandmarkHit(**fields, image_count=counts.get(scored.landmark_id, 0), score=round(scored.score, 4)))
        best = (
            BestLandmark(landmark_id=result.landmark.landmark_id, name=name_of(result.landmark.landmark_id), confidence=round(result.confidence, 4))
            if result.landmark
            else None
        )
        matches = [
            Match(image_id=m.image_id, landmark_id=m.landmark_id, name=name_of(m.landmark_id), score=round(m.score, 4), image_url=image_url(request, m.image_id))
            for m in result.matches
        ]
        return SearchResponse(landmark=best, landmarks=hits, matches=matches, gallery_size=outcome.gallery_size, notice=notice)

    @app.post("/search", response_model=SearchResponse, responses=ERRORS, tags=["search"])
    async def search(
        request: Request,
        image: UploadFile = File(..., description="The photo: JPEG, PNG, WebP or HEIC."),
        k: int = Query(5, ge=1, le=100, description="How many gallery photos to return."),
    ) -> SearchResponse:
        """Find the landmark in a photo, with the k closest gallery photos."""
        current = get_service(request)
        data = await image.read()
        try:
            outcome = await run_in_threadpool(current.search, data, k)
        except ImageError as exc:
            raise HTTPException(IMAGE_ERROR_STATUS[exc.kind], str(exc)) from exc
        return search_response(request, outcome, current.empty_notice)

    @app.get("/gallery/{image_id}", name="gallery_image", response_class=Response, responses={200: {"content": {"image/jpeg": {}}}, **ERRORS}, tags=["gallery"])
    async def gallery_image(request: Request, image_id: int, size: int = Query(512, ge=64, le=1024)) -> Response:
        """A gallery photo as JPEG, longest side at most `size` pixels."""
        current = get_service(request)
        try:
            data = await run_in_threadpool(current.thumbnail, image_id, size)
        except UnknownImage as exc:
            raise HTTPException(404, f"No gallery photo with id {image_id}.") from exc
        except (ImageError, OSError) as exc:
            log.warning("gallery photo unreadable", extra={"image_id": image_id, "error": str(exc)})
            raise HTTPException(404, f"Gallery photo {image_id} is no longer readable.") from exc
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "public, max-age=3600"})

    def summary(request: Request, current: SearchService, landmark_id: str) -> LandmarkSummary:
        landmark = current.landmarks[landmark_id]
        images = current.index.store.images_of(landmark_id)
        return LandmarkSummary(
            **landmark.to_dict(),
            image_count=len(images),
            sample_image_url=image_url(request, images[0].image_id) if images else None,
        )

    @app.get("/landmarks", response_model=LandmarkList, responses=ERRORS, tags=["gallery"])
    async def list_landmarks(request: Request, q: str | None = Query(None, max_length=200, description="Filter by name or id.")) -> LandmarkList:
        """The landmarks in the gallery, sorted by name."""
        current = get_service(request)
        needle = (q or "").strip().casefold()
        chosen = [
            lm for lm in current.landmarks.values()
            if not needle or needle in lm.name.casefold() or needle in lm.landmark_id.casefold()
        ]
        chosen.sort(key=lambda lm: lm.name.casefold())
        items = [summary(request, current, lm.landmark_id) for lm in chosen]
        return LandmarkList(landmarks=items, total=len(items))

    @app.get("/landmarks/{landmark_id}", response_model=LandmarkDetail, responses=ERRORS, tags=["gallery"])
    async def get_landmark(request: Request, landmark_id: str) -> LandmarkDetail:
        """One landmark with all its gallery photos."""
        current = get_service(request)
        landmark = current.landmark(landmark_id)
        if landmark is None:
            raise HTTPException(404, f"No landmark with id {landmark_id!r}.")
        images = current.index.store.images_of(landmark_id)
        refs = [GalleryImageRef(image_id=r.image_id, image_url=image_url(request, r.image_id)) for r in images]
        return LandmarkDetail(**landmark.to_dict(), image_count=len(refs), images=refs)

    @app.get("/health", response_model=Health, tags=["operations"])
    async def health(request: Request) -> Health:
        """Liveness, with what is loaded."""
        current = request.app.state.service
        if current is None:
            return Health(status="ok", ready=False, gallery_size=0, landmark_count=0, model=settings.model, device="")
        return Health(
            status="ok",
            ready=True,
            gallery_size=len(current.index),
            landmark_count=len(current.landmarks),
            model=current.extractor.describe(),
            device=current.extractor.device.type,
        )

    @app.get("/ready", response_model=Ready, responses={503: {"model": ErrorBody}}, tags=["operations"])
    async def ready(request: Request) -> Ready:
        """200 once the model and the index are loaded."""
        get_service(request)
        return Ready(status="ready")

    return app

"""Liveness and readiness for orchestrators and the other services."""

from __future__ import annotations

from fastapi import APIRouter, Request

from api.deps import ServiceDep, SettingsDep
from api.schemas import ErrorBody, Health, Ready

router = APIRouter(tags=["operations"])


@router.get("/health", response_model=Health)
async def health(request: Request, settings: SettingsDep) -> Health:
    """Liveness, with what is loaded."""
    service = request.app.state.service
    if service is None:
        return Health(status="ok", ready=False, gallery_size=0, landmark_count=0, model=settings.model or "", device="")
    return Health(
        status="ok",
        ready=True,
        gallery_size=service.gallery_size,
        landmark_count=len(service.landmarks),
        model=service.describe_model(),
        device=service.device_type,
    )


@router.get("/ready", response_model=Ready, responses={503: {"model": ErrorBody}})
async def ready(service: ServiceDep) -> Ready:
    """200 once the model and the index are loaded."""
    return Ready(status="ready")

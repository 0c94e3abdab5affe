"""Request-scoped helpers shared by the routers."""

from __future__ import annotations

from fastapi import HTTPException, Request

from api.service import SearchService


def get_service(request: Request) -> SearchService:
    current = request.app.state.service
    if current is None:
        raise HTTPException(503, "The model and index are still loading; try again in a moment.")
    return current


def image_url(request: Request, image_id: int) -> str:
    return str(request.url_for("gallery_image", image_id=image_id))

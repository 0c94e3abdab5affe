"""Request-scoped dependencies shared by the routers."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Request

from api.batching import MicroBatcher
from api.service import SearchService
from api.settings import Settings


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_service(request: Request) -> SearchService:
    current = request.app.state.service
    if current is None:
        raise HTTPException(503, "The model and index are still loading; try again in a moment.")
    return current


def get_batcher(request: Request) -> MicroBatcher | None:
    return request.app.state.batcher


class ImageUrls:
    """Builds gallery photo URLs: on LANDMARKS_PUBLIC_URL when set, else on the request's own address."""

    def __init__(self, request: Request) -> None:
        self.request = request
        self.public_url = request.app.state.settings.public_url

    def __call__(self, image_id: int) -> str:
        if self.public_url:
            return f"{self.public_url}{self.request.app.url_path_for('gallery_image', image_id=image_id)}"
        return str(self.request.url_for("gallery_image", image_id=image_id))


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[SearchService, Depends(get_service)]
BatcherDep = Annotated[MicroBatcher | None, Depends(get_batcher)]
ImageUrlsDep = Annotated[ImageUrls, Depends(ImageUrls)]

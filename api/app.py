"""The FastAPI application factory: resources load in the lifespan, one router per feature."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.concurrency import run_in_threadpool

from api.auth import KeyGuard, require_read_key
from api.batching import MicroBatcher
from api.errors import install_error_handlers
from api.limits import BodySizeLimit
from api.memory import map_large_buffers, trim_memory_forever
from api.ratelimit import RateLimit
from api.routes import admin, gallery, operations, search
from api.service import SearchService
from api.settings import Settings


def create_app(settings: Settings | None = None, service: SearchService | None = None) -> FastAPI:
    """Build the app. Pass `service` when it is already loaded (the CLI loads it before binding)."""
    settings = settings or Settings.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        map_large_buffers()
        app.state.service = service or await run_in_threadpool(SearchService.load, settings)
        if settings.batching:
            app.state.batcher = MicroBatcher(
                app.state.service.embed,
                max_batch=settings.batch_max_size or (16 if app.state.service.device_type == "cuda" else 4),
                max_wait=settings.batch_max_wait_ms / 1000,
                max_queue=settings.queue_max,
            )
            await app.state.batcher.start()
        trimmer = asyncio.create_task(trim_memory_forever(), name="malloc-trim")
        try:
            yield
        finally:
            trimmer.cancel()
            if app.state.batcher is not None:
                await app.state.batcher.stop()
            app.state.service.close()

    app = FastAPI(
        title="Landmark Search",
        version="0.1.0",
        summary="Send a photo, get the landmark it shows with the closest gallery photos.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.service = None
    app.state.batcher = None
    # Middleware added later wraps what came before: a request meets the size limit, CORS, the rate
    # limit (key guessing counts too), then the key guard; all of them before its body is read.
    app.add_middleware(
        KeyGuard,
        settings=settings,
        write_routes=admin.router.routes,
        read_routes=[*search.router.routes, *gallery.router.routes],
    )
    if (
        settings.rate_limit
    ):  # per client IP, e.g. "60/minute"; off when empty (inside CORS: a 429 keeps its CORS headers)
        app.add_middleware(RateLimit, rate=settings.rate_limit)
    if settings.cors_origins:  # closed by default: browsers may call only from listed origins
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"])
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    install_error_handlers(app)
    # Reads declare the key in the schema only when they need it (KeyGuard enforces it either way).
    reads = [Depends(require_read_key)] if settings.protect_reads else []
    for router in (search.router, gallery.router):
        app.include_router(router, dependencies=reads)
    for router in (admin.router, operations.router):
        app.include_router(router)
    return app

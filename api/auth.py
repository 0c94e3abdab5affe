"""API keys: writes always need one; reads only when LANDMARKS_PROTECT_READS is set.

The key is checked twice, by one rule (`key_problem`): by `KeyGuard`, a pure ASGI middleware that
answers before a request body is read (a write without the key costs its sender a round trip, not
the service a multipart parse), and by the route dependencies, which also document the header in
the OpenAPI schema.
"""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader
from starlette.routing import BaseRoute, Match

from api.asgi import send_error
from api.settings import Settings

KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(name=KEY_HEADER, auto_error=False, description="The operator's key (LANDMARKS_API_KEY).")


def key_problem(settings: Settings, supplied: str | None) -> tuple[int, str] | None:
    """None when SUPPLIED is the operator's key, else (status, detail)."""
    if settings.api_key is None:
        return 403, "Gallery changes are disabled: the operator has not set LANDMARKS_API_KEY."
    if not supplied:  # absent or empty
        return 401, f"This needs the operator's API key in the {KEY_HEADER} header."
    if not hmac.compare_digest(supplied.encode(), settings.api_key.encode()):
        return 403, "The API key is not valid."
    return None


def _refuse(problem: tuple[int, str] | None) -> None:
    if problem is not None:
        status, detail = problem
        raise HTTPException(status, detail, headers={"WWW-Authenticate": "APIKey"} if status == 401 else None)


def require_write_key(request: Request, supplied: str | None = Security(api_key_header)) -> None:
    _refuse(key_problem(request.app.state.settings, supplied))


def require_read_key(request: Request, supplied: str | None = Security(api_key_header)) -> None:
    if request.app.state.settings.protect_reads:
        _refuse(key_problem(request.app.state.settings, supplied))


class KeyGuard:
    """Refuses a request to a guarded route that lacks the key, before its body is read.

    WRITE_ROUTES always need the key, READ_ROUTES only when reads are protected; a request that
    matches no guarded route (another method, another path, the probes and the docs) goes on to
    its route, 404 or 405.
    """

    def __init__(self, app, settings: Settings, write_routes: list[BaseRoute], read_routes: list[BaseRoute]) -> None:
        self.app = app
        self.settings = settings
        self.guarded = [*write_routes, *(read_routes if settings.protect_reads else [])]

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not self._guarded(scope):
            return await self.app(scope, receive, send)
        supplied = None
        for name, value in scope.get("headers") or []:
            if name == b"x-api-key":
                supplied = value.decode("latin-1")
                break
        problem = key_problem(self.settings, supplied)
        if problem is None:
            return await self.app(scope, receive, send)
        status, detail = problem
        headers = [(b"www-authenticate", b"APIKey")] if status == 401 else []
        # The body was never read: the connection cannot carry another request after this answer.
        headers.append((b"connection", b"close"))
        await send_error(send, status, detail, headers)

    def _guarded(self, scope) -> bool:
        return any(route.matches(scope)[0] == Match.FULL for route in self.guarded)

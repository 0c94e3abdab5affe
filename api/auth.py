"""API keys: writes always need one; reads only when LANDMARKS_PROTECT_READS is set.

The key is checked twice, by one rule (`key_problem`): by `KeyGuard`, a pure ASGI middleware that
answers before a request body is read (a write without the key costs its sender a round trip, not
the service a multipart parse), and by the route dependencies, which also document the header in
the OpenAPI schema.
"""

from __future__ import annotations

import hmac
import json

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

from api.settings import Settings

KEY_HEADER = "X-API-Key"
api_key_header = APIKeyHeader(name=KEY_HEADER, auto_error=False, description="The operator's key (LANDMARKS_API_KEY).")
# Routes a visitor may call without a key unless reads are protected; every other route is a write.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
READ_POSTS = frozenset({"/search"})
OPEN_PATHS = frozenset({"/health", "/ready", "/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json"})  # probes and docs


def key_problem(settings: Settings, supplied: str | None) -> tuple[int, str] | None:
    """None when SUPPLIED is the operator's key, else (status, detail)."""
    if settings.api_key is None:
        return 403, "Gallery changes are disabled: the operator has not set LANDMARKS_API_KEY."
    if supplied is None:
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


def is_write(method: str, path: str) -> bool:
    return method not in READ_METHODS and path not in READ_POSTS


class KeyGuard:
    """Refuses a request that needs the key and lacks it, before its body is read."""

    def __init__(self, app, settings: Settings) -> None:
        self.app = app
        self.settings = settings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        if not (is_write(scope["method"], scope["path"]) or self.settings.protect_reads):
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
        body = json.dumps({"detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b"APIKey"))
        # The body was never read: the connection cannot carry another request after this answer.
        headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

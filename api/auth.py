"""API keys: writes always need one; reads only when LANDMARKS_PROTECT_READS is set."""

from __future__ import annotations

import hmac

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyHeader

api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The operator's key (LANDMARKS_API_KEY).")


def _check(request: Request, supplied: str | None) -> None:
    expected = request.app.state.settings.api_key
    if expected is None:
        raise HTTPException(403, "Gallery changes are disabled: the operator has not set LANDMARKS_API_KEY.")
    if supplied is None:
        raise HTTPException(401, "This needs the operator's API key in the X-API-Key header.", headers={"WWW-Authenticate": "APIKey"})
    if not hmac.compare_digest(supplied.encode(), expected.encode()):
        raise HTTPException(403, "The API key is not valid.")


def require_write_key(request: Request, supplied: str | None = Security(api_key_header)) -> None:
    _check(request, supplied)


def require_read_key(request: Request, supplied: str | None = Security(api_key_header)) -> None:
    if request.app.state.settings.protect_reads:
        _check(request, supplied)

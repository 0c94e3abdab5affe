"""One set of errors for every way a call to the API can fail, and the one mapping from httpx's
failures and the API's status codes to them, shared by the sync and the async client.

    ApiError                   the API could not give us an answer
    ├── ApiUnavailable         nothing answered (stopped, wrong URL, network down)
    ├── ApiTimeout             connected, but no answer in time
    └── ApiHttpError           an error status, with the API's `detail` sentence
        ├── ApiClientError     4xx: the request was refused
        │   └── ApiRejected    400, 413, 415, 422: what was sent (a photo, the fields) was refused
        └── ApiServerError     5xx (503: still loading, or busy), or an answer we cannot read
"""

from __future__ import annotations

import httpx

# The statuses with which the API refuses the content of a request rather than the caller:
# unreadable or not an image (400, 415), too large (413), missing or out-of-range fields (422).
REJECTED_STATUSES = frozenset({400, 413, 415, 422})
# The detail of an answer that is not the documented JSON, whatever its status.
UNREADABLE_ANSWER = "The service sent an unreadable answer."


class ApiError(Exception):
    """Base class: the API could not give us an answer."""


class ApiUnavailable(ApiError):
    """Nothing answered at the API address (stopped, wrong URL, network down)."""


class ApiTimeout(ApiError):
    """The API accepted the connection but did not answer in time."""


class ApiHttpError(ApiError):
    """The API answered with an error status; `detail` is its human sentence. `retry_after` is the
    wait in seconds the API advised (429 over the rate limit, 503 busy), None when it gave none."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}")
        self.status = status
        self.detail = detail
        self.retry_after = retry_after


class ApiClientError(ApiHttpError):
    """4xx: the request was refused (key, unknown landmark, id taken, rate limit...)."""


class ApiRejected(ApiClientError):
    """400, 413, 415 or 422: the API refused what was sent (a photo, a landmark's fields)."""


class ApiServerError(ApiHttpError):
    """5xx: the service failed or is still loading (503); also an answer that cannot be read."""


def detail_of(response: httpx.Response) -> str:
    """The API's `detail` sentence, or something readable when the body is not the documented JSON
    (a proxy's HTML error page, FastAPI's list-shaped 422 detail)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, str) and detail:
        return detail
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        return str(detail[0].get("msg", response.reason_phrase))
    return response.reason_phrase or f"HTTP {response.status_code}"


def _retry_after(response: httpx.Response) -> float | None:
    # The API sends whole seconds; the HTTP-date form of the header is not worth a parser here.
    try:
        return float(response.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def check_status(response: httpx.Response) -> httpx.Response:
    """The response itself when it succeeded, else the error its status means."""
    status = response.status_code
    if status < 400:
        return response
    if status >= 500:
        kind: type[ApiHttpError] = ApiServerError
    elif status in REJECTED_STATUSES:
        kind = ApiRejected
    else:
        kind = ApiClientError
    raise kind(status, detail_of(response), _retry_after(response))


def transport_error(exc: httpx.RequestError, base_url: str, timeout_s: float) -> ApiError:
    """What a failure before any answer means for the caller."""
    # A connect timeout means nothing is listening usefully: report it as "down", not "slow".
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return ApiUnavailable(f"Cannot connect to {base_url}: {exc}")
    if isinstance(exc, httpx.TimeoutException):
        return ApiTimeout(f"{base_url} did not answer within {timeout_s:g} s")
    return ApiUnavailable(f"Connection to {base_url} failed: {type(exc).__name__}: {exc}")

"""Per-client rate limiting: a pure ASGI middleware with one token bucket per client IP.

`LANDMARKS_RATE_LIMIT="60/minute"` lets each client make bursts of up to 60 requests, refilled at
60 per minute; over it the client gets 429 `{"detail": ...}` with `Retry-After` (whole seconds).
Empty means off. The client is `scope["client"]`: behind a reverse proxy, run uvicorn with
`--proxy-headers --forwarded-allow-ips=<proxy>` so that it is the real client and not the proxy.
Liveness and readiness probes are never limited (an orchestrator must not see a healthy service
as dead because it polls often).
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from api.asgi import send_error

_UNITS = {
    **dict.fromkeys(("s", "sec", "secs", "second", "seconds"), 1),
    **dict.fromkeys(("m", "min", "mins", "minute", "minutes"), 60),
    **dict.fromkeys(("h", "hr", "hour", "hours"), 3600),
    **dict.fromkeys(("d", "day", "days"), 86400),
}
_RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d*)\s*([a-z]+)\s*$")


def parse_rate(text: str) -> tuple[int, float]:
    """'60/minute' → (60 requests, 60.0 seconds). Also '10/s', '1000/hour', '5/10s', '100/day'."""
    match = _RATE.match(text.lower())
    if not match or match.group(3) not in _UNITS:
        raise ValueError(f"rate limit {text!r} is not like '60/minute' (units: second, minute, hour, day)")
    count, multiple, unit = int(match.group(1)), int(match.group(2) or 1), match.group(3)
    if count < 1 or multiple < 1:
        raise ValueError(f"rate limit {text!r} must allow at least one request per period")
    return count, float(multiple * _UNITS[unit])


class TokenBuckets:
    """Token buckets keyed by client; at most `max_clients` are tracked (least recently seen go first)."""

    def __init__(
        self, capacity: int, period: float, *, max_clients: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.capacity = float(capacity)
        self.per_second = capacity / period
        self.max_clients = max_clients
        self.clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client → (tokens, when)
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """Spend one token: 0.0 when allowed, else the seconds until a token is available."""
        now = self.clock()
        with self._lock:
            tokens, when = self._buckets.pop(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - when) * self.per_second)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self.per_second
            self._buckets[client] = (tokens, now)
            while len(self._buckets) > self.max_clients:
                self._buckets.popitem(last=False)  # a forgotten client starts again with a full bucket
        return wait


class RateLimit:
    """ASGI middleware: 429 + Retry-After for a client over its budget; other traffic untouched."""

    def __init__(
        self, app, rate: str, *, exempt: Iterable[str] = ("/health", "/ready"), max_clients: int = 10_000
    ) -> None:
        self.app = app
        capacity, period = parse_rate(rate)
        self.rate = rate
        self.buckets = TokenBuckets(capacity, period, max_clients=max_clients)
        self.exempt = frozenset(exempt)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") in self.exempt:
            return await self.app(scope, receive, send)
        client = scope.get("client")
        wait = self.buckets.take(client[0] if client else "unknown")
        if wait <= 0:
            return await self.app(scope, receive, send)
        retry_after = max(1, math.ceil(wait))
        detail = f"Too many requests (limit {self.rate} per client); retry in {retry_after} s."
        await send_error(send, 429, detail, [(b"retry-after", str(retry_after).encode())])

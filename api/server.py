"""Running the app under uvicorn, guarded against connection abuse.

uvicorn alone keeps a connection open for as long as its client trickles bytes (its keep-alive timer
restarts on every byte), has no limit on open connections short of the process's file descriptors,
and logs a traceback for every connection it then fails to accept. `GuardedH11Protocol` adds:

- a header deadline: a request's headers must be complete within `header_timeout` seconds of the
  connection opening (or of the previous response), however slowly they trickle;
- a body stall limit: a request body that sends nothing for `body_timeout` seconds is dropped
  (only while the server is reading: a body the app is not yet reading does not count);
- a connection cap: above `max_connections` a new connection gets an immediate 503 and is closed,
  so the process never runs out of file descriptors (whose failed accepts asyncio would log, one
  traceback each, in a tight loop). The deadlines above keep idle connections from holding the
  cap: a flood of them is shed within `header_timeout`.

Proxy headers (X-Forwarded-For, X-Forwarded-Proto) are believed only from LANDMARKS_TRUSTED_PROXIES.
"""

from __future__ import annotations

import logging
import resource
import time

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.settings import Settings

log = logging.getLogger(__name__)

BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
    b"connection: close\r\ncontent-length: 60\r\n\r\n"
    b'{"detail": "The service has too many open connections."}   '
)
FD_HEADROOM = 64  # descriptors kept free for the index, the model, logs and the listening socket


class GuardedH11Protocol(H11Protocol):
    max_connections = 4096
    header_timeout = 10.0
    body_timeout = 30.0
    check_every = 1.0  # seconds between deadline checks of one connection

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._waiting_since = time.monotonic()  # for headers; None while a request is being served
        self._last_body_data = self._waiting_since
        self._watchdog = self.loop.call_later(self.check_every, self._check_deadlines)
        if len(self.connections) > self.max_connections:
            transport.write(BUSY_RESPONSE)
            transport.close()

    def connection_lost(self, exc) -> None:
        self._watchdog.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        before = self.cycle
        self._last_body_data = time.monotonic()
        super().data_received(data)
        if self.cycle is not before and self.cycle is not None:
            self._waiting_since = None  # the headers are complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._waiting_since = time.monotonic()  # the next request's headers, on a kept-alive connection

    def _idle_for(self, now: float) -> float | None:
        """Seconds this connection has been waiting for a request's headers, or None if serving one."""
        if self._waiting_since is None or (self.cycle is not None and not self.cycle.response_complete):
            return None
        return now - self._waiting_since

    def _check_deadlines(self) -> None:
        if self.transport.is_closing():
            return
        now = time.monotonic()
        waited = self._idle_for(now)
        if waited is not None and waited > self.header_timeout:
            self.transport.close()
            return
        reading_body = self.cycle is not None and self.cycle.more_body and not self.flow.read_paused
        if reading_body and now - self._last_body_data > self.body_timeout:
            self.transport.close()  # the app's receive() then sees http.disconnect
            return
        self._watchdog = self.loop.call_later(self.check_every, self._check_deadlines)


def guarded_protocol(settings: Settings) -> type[GuardedH11Protocol]:
    return type(
        "ConfiguredH11Protocol",
        (GuardedH11Protocol,),
        {
            "max_connections": settings.max_connections,
            "header_timeout": settings.header_timeout,
            "body_timeout": settings.body_timeout,
        },
    )


def raise_file_limit(wanted: int) -> int:
    """Raise the soft limit on open files towards WANTED (within the hard limit); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft


def serve(app, settings: Settings, host: str, port: int) -> None:
    """Run APP on HOST:PORT until SIGINT/SIGTERM (in-flight requests drain first)."""
    limit = raise_file_limit(settings.max_connections + FD_HEADROOM)
    if settings.max_connections + FD_HEADROOM > limit:
        # Accepting past the descriptor limit fails in a tight, logged loop: stay below it.
        settings_cap = max(1, limit - FD_HEADROOM)
        log.warning(
            "connection cap lowered to fit the open-file limit",
            extra={"max_connections": settings_cap, "nofile": limit},
        )
        protocol = type("ConfiguredH11Protocol", (guarded_protocol(settings),), {"max_connections": settings_cap})
    else:
        protocol = guarded_protocol(settings)
    trusted = ",".join(settings.trusted_proxies)
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=protocol,
        proxy_headers=bool(trusted),
        forwarded_allow_ips=trusted or None,
        timeout_keep_alive=5,
        log_level="warning",
        access_log=False,
    )
